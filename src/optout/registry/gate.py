"""The registry collection gate: what a national registry or audit (such as CRANE) may record.

Policy 000 (CRANE Database - Complying with the National Data Opt-out), as a profile plus three
rules, applied to one submission at a time:

- 000 §2: "if the parent chooses to opt-out of their child's confidential patient information
  being used for purposes other than their immediate clinical care, none of the child's data
  should be recorded in CRANE - this includes both registry and audit data."
  -> a child not on the cleaned list (the allow-list from the national check service) is
  dropped entirely: **opted-out**.
- 000 §2: "there is a minimum dataset that CRANE is allowed to collect, on all children born with
  a cleft, under our Section 251 approval" -> the profile's ``registry_fields`` are kept for every
  child who is on the cleaned list.
- 000 §1: families "consent to the audit function"; "the withdrawal of patients' consent can be
  implemented at any time by changing the patient's consent status to 'No'" -> the profile's
  ``audit_fields`` are kept only when the consent status is an explicit Yes.

Choices (fail closed: a record, or a field, goes out only when it is known to be allowed):

- **Unchecked children record nothing.** A row whose NHS number is missing or invalid cannot be
  checked against the opt-out (001 §8.2: the NHS number is the single identifier), so it is not
  known that the child has not opted out: the row is dropped and counted as *needs NHS number*,
  with its row number in the internal report so the unit can fix it and resubmit. Likewise, when
  the cohort that was checked is known and a valid number is not in it: *not checked*.
- **Consent other than an explicit Yes is No.** Blank, "Unknown", "Pending", a typo: the audit
  fields are blanked and the row is counted as *registry only (consent unclear)*. When a child
  has several rows that disagree, the least permissive wins (any non-Yes -> No for all its rows).
- **Audit fields are blanked, not removed**, so every output file has the same columns in the
  same order whatever the consent mix (registries load files against a fixed layout).
- **Withdrawal applies from the next submission.** The gate looks only at the consent status in
  the submission in hand. A child whose status changed to 'No' loses the audit fields from the
  next submission on; what was sent before is not recalled by this tool (001 §8.3: the opt-out
  is not applied retrospectively; ask the registry to act on data already held).
- Every column of the submission must be named in the profile (registry, audit, the NHS number
  or the consent column): an unknown column is refused rather than passed through.

Nothing here prints, logs or stores an NHS number, or which children opted out: the report and
the audit entry (``collection.filtered``) carry counts and file hashes only.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from optout import atomic
from optout.digest import sha256_file
from optout.errors import InputError, Location, NotFoundError, OutputError, PolicyRefusal, UsageError
from optout.text import guard_free_text

PROFILE_FORMAT = "optout-collection-profile/1"
REPORT_FORMAT = "optout-collection-report/1"
SUPPRESSED = "<5"

# outcome keys, in report order
KEPT_ALL = "kept_all"  # consent Yes: registry + audit fields
KEPT_REGISTRY = "kept_registry_only"  # consent No: registry minimum dataset only
KEPT_REGISTRY_UNCLEAR = "kept_registry_only_consent_unclear"  # neither Yes nor No: treated as No
DROPPED_OPTED_OUT = "dropped_opted_out"  # valid number, not on the cleaned list
DROPPED_NOT_CHECKED = "dropped_not_checked"  # valid number, not in the cohort that was checked
DROPPED_NHS_NUMBER = "dropped_needs_nhs_number"  # missing / invalid NHS number: cannot be checked
OUTCOMES = (
    KEPT_ALL,
    KEPT_REGISTRY,
    KEPT_REGISTRY_UNCLEAR,
    DROPPED_OPTED_OUT,
    DROPPED_NOT_CHECKED,
    DROPPED_NHS_NUMBER,
)

OUTCOME_TEXT = {
    KEPT_ALL: "kept: registry and audit fields (consent Yes)",
    KEPT_REGISTRY: "kept: registry minimum dataset only (consent No)",
    KEPT_REGISTRY_UNCLEAR: "kept: registry minimum dataset only (consent neither Yes nor No: treated as No)",
    DROPPED_OPTED_OUT: "dropped entirely: not on the cleaned list (national data opt-out)",
    DROPPED_NOT_CHECKED: "dropped entirely: NHS number not in the cohort that was checked (check, resubmit)",
    DROPPED_NHS_NUMBER: "dropped entirely: NHS number missing or invalid, cannot be checked (fix, resubmit)",
}

_PROFILE_KEYS = {
    "format",
    "name",
    "title",
    "illustrative",
    "note",
    "policy",
    "nhs_number_column",
    "consent",
    "registry_fields",
    "audit_fields",
}
_CONSENT_KEYS = {"column", "yes_values", "no_values"}
_REQUIRED = ("name", "nhs_number_column", "consent", "registry_fields", "audit_fields")


@dataclass(frozen=True)
class Profile:
    """What a registry may collect: registry minimum dataset, audit fields, consent status."""

    name: str
    nhs_number_column: str
    consent_column: str
    consent_yes: tuple[str, ...]
    consent_no: tuple[str, ...]
    registry_fields: tuple[str, ...]
    audit_fields: tuple[str, ...]
    title: str = ""
    illustrative: bool = False
    note: str = ""
    source: str = ""  # file name it came from
    sha256: str = ""

    @property
    def known_columns(self) -> set[str]:
        return {*self.registry_fields, *self.audit_fields, self.nhs_number_column, self.consent_column}


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def available_profiles() -> list[str]:
    folder = resources.files("optout.registry") / "profiles"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (``crane``) or a profile YAML file by path."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists() or os.sep in text_name:
        if not path.is_file():
            raise NotFoundError(
                f"profile file {path.name} does not exist",
                where=Location(file=path),
                hint="give a profile YAML file, or one of the shipped profiles: "
                + ", ".join(available_profiles()),
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(
                f"cannot read profile {path.name}: {exc.strerror}",
                where=Location(file=path),
                hint="check the file's permissions",
            ) from None
        return parse_profile(data, source=path.name)
    names = available_profiles()
    if text_name not in names:
        raise NotFoundError(
            f"there is no shipped profile called {text_name!r}{_did_you_mean(text_name, names)}",
            hint=f"use one of: {', '.join(names)}, or give the path of a profile YAML file",
        )
    data = (resources.files("optout.registry") / "profiles" / f"{text_name}.yaml").read_bytes()
    return parse_profile(data, source=f"{text_name}.yaml")


def parse_profile(data: bytes, *, source: str = "profile") -> Profile:
    where = Location(file=source)
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise InputError(
            f"profile {source} is not valid YAML",
            where=Location(file=source, line=None if line is None else line + 1),
            hint="fix the YAML syntax (indentation, colons, quotes)",
        ) from None
    if not isinstance(raw, dict):
        raise InputError(
            f"profile {source} must be a YAML mapping", where=where, hint="see profiles/crane.yaml"
        )
    for k in raw:
        if k not in _PROFILE_KEYS:
            raise InputError(
                f"profile {source} has an unknown key {k!r}{_did_you_mean(str(k), _PROFILE_KEYS)}",
                where=where,
                hint=f"valid keys: {', '.join(sorted(_PROFILE_KEYS))}",
            )
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise InputError(
            f"profile {source} is missing {', '.join(missing)}",
            where=where,
            hint="see the shipped example: optout collect --help, profile crane",
        )
    if raw.get("format", PROFILE_FORMAT) != PROFILE_FORMAT:
        raise InputError(f"profile {source}: unknown format", where=where, hint=f"format: {PROFILE_FORMAT}")
    consent = raw["consent"]
    if not isinstance(consent, dict):
        consent = {}
    for k in consent:
        if isinstance(k, bool):
            raise InputError(
                f"profile {source}: YAML reads a bare yes/no key as true/false",
                where=where,
                hint="name the keys yes_values and no_values",
            )
        if k not in _CONSENT_KEYS:
            raise InputError(
                f"profile {source}: unknown key consent.{k}{_did_you_mean(str(k), _CONSENT_KEYS)}",
                where=where,
                hint="consent takes column, yes_values and no_values",
            )

    if "column" not in consent or "yes_values" not in consent:
        raise InputError(
            f"profile {source}: consent must give column and yes_values (and no_values)",
            where=where,
            hint='consent: {column: consent_status, yes_values: ["Yes"], no_values: ["No"]}',
        )

    def names(key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and any(isinstance(v, bool) for v in value):
            raise InputError(
                f"profile {source}: {key} has a bare Yes/No, which YAML reads as true/false",
                where=where,
                hint=f'quote the values: {key}: ["Yes"]',
            )
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise InputError(
                f"profile {source}: {key} must be a list of names", where=where, hint=f"{key}: [a, b, c]"
            )
        return tuple(v.strip() for v in value)

    registry = names("registry_fields", raw["registry_fields"])
    audit_f = names("audit_fields", raw["audit_fields"]) if raw["audit_fields"] else ()
    yes = names("consent.yes_values", consent["yes_values"])
    no = names("consent.no_values", consent.get("no_values") or [])
    nhs = str(raw["nhs_number_column"]).strip()
    col = str(consent["column"]).strip()
    if nhs in audit_f or col in audit_f:
        raise InputError(
            f"profile {source}: the NHS number and consent status columns cannot be audit fields",
            where=where,
            hint="list them under registry_fields, or leave them out (they are always kept)",
        )
    both = sorted(set(registry) & set(audit_f))
    if both:
        raise InputError(
            f"profile {source}: {', '.join(both)} listed as both registry and audit fields",
            where=where,
            hint="a field is either in the registry minimum dataset (s251) or an audit item (consent)",
        )
    clash = {v.casefold() for v in yes} & {v.casefold() for v in no}
    if clash:
        raise InputError(
            f"profile {source}: a consent value is listed as both yes and no",
            where=where,
            hint="each consent value means either yes or no",
        )
    registry = tuple(dict.fromkeys((nhs, *registry)))
    for key in ("name", "title", "note"):  # printed in reports and stored in the audit trail
        guard_free_text(f"'{key}'", str(raw.get(key) or ""), where=Location(file=source, column=key))
    return Profile(
        name=str(raw["name"]),
        nhs_number_column=nhs,
        consent_column=col,
        consent_yes=yes,
        consent_no=no,
        registry_fields=registry,
        audit_fields=audit_f,
        title=str(raw.get("title") or ""),
        illustrative=bool(raw.get("illustrative", False)),
        note=str(raw.get("note") or ""),
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
    )


@dataclass
class CollectionReport:
    profile: str
    submission: str
    output: str | None
    rows_in: int
    rows_out: int
    counts: dict[str, int]
    nhs_number_problems: dict[str, int]
    rows_to_fix: list[int]  # 1-based data rows whose NHS number must be fixed (not opt-out related)
    consent_values: dict[str, int]  # "yes" | "no" | "unclear" -> rows (before the opt-out)
    checked_at: str
    deadline: str
    submission_sha256: str
    cleaned_list_sha256: str
    output_sha256: str | None
    profile_sha256: str
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self, *, report_for: str = "internal") -> dict[str, Any]:
        external = report_for == "external"

        def n(v: int) -> int | str:
            return SUPPRESSED if external and 1 <= v <= 4 else v

        return {
            "format": REPORT_FORMAT,
            "report_for": report_for,
            "profile": self.profile,
            "submission": {
                "file": self.submission,
                "sha256": self.submission_sha256,
                "rows": n(self.rows_in),
            },
            "output": {"file": self.output, "sha256": self.output_sha256, "rows": n(self.rows_out)},
            "cleaned_list": {
                "sha256": self.cleaned_list_sha256,
                "checked_at": self.checked_at,
                "deadline": self.deadline,
            },
            "counts": {k: n(v) for k, v in self.counts.items()},
            "consent": {k: n(v) for k, v in self.consent_values.items()},
            "nhs_number_problems": {k: n(v) for k, v in self.nhs_number_problems.items()},
            **({} if external else {"rows_to_fix": self.rows_to_fix}),
            "profile_sha256": self.profile_sha256,
            "dry_run": self.dry_run,
            "notes": self.notes,
            "suppression": "counts 1-4 shown as <5" if external else "none (internal report)",
        }

    def describe(self, *, report_for: str = "internal") -> str:
        d = self.to_dict(report_for=report_for)
        lines = [
            f"{self.submission}: {d['submission']['rows']} rows in, {d['output']['rows']} rows out"
            + (" (dry run: nothing written)" if self.dry_run else f" -> {self.output}"),
        ]
        for k in OUTCOMES:
            lines.append(f"  {d['counts'][k]:>8}  {OUTCOME_TEXT[k]}")
        if self.nhs_number_problems:
            probs = ", ".join(f"{k}: {v}" for k, v in d["nhs_number_problems"].items())
            lines.append(f"  NHS number problems: {probs}")
            if report_for == "internal" and self.rows_to_fix:
                shown = ", ".join(str(r) for r in self.rows_to_fix[:20])
                more = f" and {len(self.rows_to_fix) - 20} more" if len(self.rows_to_fix) > 20 else ""
                lines.append(f"  rows whose NHS number needs fixing: {shown}{more}")
        lines.extend(f"  note: {x}" for x in self.notes)
        return "\n".join(lines)


def _check_columns(profile: Profile, columns: list[str], path: Path) -> None:
    known = profile.known_columns
    unknown = [c for c in columns if c not in known]
    if unknown:
        c = unknown[0]
        raise InputError(
            f"{path.name} has a column {c!r} that the profile {profile.name!r} does not list"
            f"{_did_you_mean(c, known)}",
            where=Location(file=path, column=c),
            hint="a registry may record only what its profile allows: rename the column, remove it, or add "
            "it to the profile's registry_fields (s251 minimum dataset) or audit_fields (consent)",
        )
    missing = [c for c in sorted(known) if c not in columns]
    if missing:
        raise InputError(
            f"{path.name} lacks column(s) the profile {profile.name!r} lists: {', '.join(missing)}",
            where=Location(file=path, column=missing[0]),
            hint="export the submission with every profile column (empty ones may stay blank), or use a "
            "profile that matches the submission",
        )


def _consent_classes(col: pa.ChunkedArray | pa.Array, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """(is_yes, is_no) per row: trimmed, case-insensitive match against the profile's values."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    norm = pc.utf8_lower(pc.utf8_trim_whitespace(col))
    yes = pc.is_in(norm, value_set=pa.array([v.casefold() for v in profile.consent_yes])).fill_null(False)
    no_vals = [v.casefold() for v in profile.consent_no]
    no = pc.is_in(norm, value_set=pa.array(no_vals, pa.string())).fill_null(False)
    return np.asarray(yes.to_numpy(zero_copy_only=False), bool), np.asarray(
        no.to_numpy(zero_copy_only=False), bool
    )


def _member(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    if sorted_unique.size == 0:
        return np.zeros(values.shape, dtype=bool)
    idx = np.searchsorted(sorted_unique, values)
    idx[idx >= sorted_unique.size] = 0
    return sorted_unique[idx] == values


def _write_atomically(path: Path, write: Any) -> str:
    """Write through ``write(tmp)`` then rename over ``path``; owner-only throughout.

    ``tmp`` is inside a fresh hidden 0700 folder beside ``path``: DuckDB's COPY recreates its
    target with the umask's mode, which others cannot reach in there; the file is made 0600
    (patient-level) before it is renamed into place.
    """
    try:
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OutputError(
            f"cannot write {path.name}: {exc.strerror}",
            where=Location(file=path),
            hint="check the --out folder exists and is writable",
        ) from None
    tmp = tmp_dir / path.name
    try:
        write(tmp)
        with tmp.open("rb+") as fh:
            os.fchmod(fh.fileno(), atomic.PRIVATE_FILE)
            os.fsync(fh.fileno())
        sha = sha256_file(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(
            f"cannot write {path.name}: {exc.strerror}", where=Location(file=path), hint="check free space"
        ) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return sha


def _out_format(out: Path, default: str) -> str:
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq", ".parq"):
        return "parquet"
    if suffix in (".csv", ".tsv", ".txt", ".psv"):
        return "csv"
    return default


def collect(
    submission: str | Path,
    *,
    profile: Profile | str | Path,
    out: str | Path | None,
    cleaned_list: str | Path | None = None,
    allow_list: Any = None,
    checked_at: datetime | str | None = None,
    cohort: str | Path | None = None,
    report_path: str | Path | None = None,
    report_for: str = "internal",
    force: bool = False,
    dry_run: bool = False,
    store: Any = None,
    now: datetime | None = None,
    record_audit: bool = True,
) -> CollectionReport:
    """Apply the collection gate to one submission and write what the registry may record.

    Output: the submission's rows that may be recorded, same columns in the same order, audit
    fields blank where consent is not an explicit Yes; CSV (UTF-8, the submission's delimiter) or
    Parquet by the ``out`` suffix. Written atomically, with a JSON report beside it
    (``report_path``, default ``OUT.report.json``).
    """
    from optout.check.cleaned_list import AllowList, read_cleaned_list
    from optout.nhs_number import Reason, parse_array
    from optout.tables import open_table, read_table

    if report_for not in ("internal", "external"):
        raise UsageError(
            "--report-for must be internal or external",
            hint="use --report-for external for a report leaving the organisation",
        )
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    sub_path = Path(submission)
    if (cleaned_list is None) == (allow_list is None):
        raise UsageError(
            "give the cleaned list (--cleaned-list) the national check service returned for this cohort",
            hint="000 §2: without it no child is known not to have opted out, so nothing may be recorded",
        )
    out_path = Path(out) if out is not None else None
    if out_path is None and not dry_run:
        raise UsageError(
            "give --out FILE for what the registry may record", hint="or --dry-run to only count"
        )
    if out_path is not None:
        if out_path.resolve() == sub_path.resolve():
            raise UsageError(
                "--out is the submission itself; sources are never modified",
                hint="write the output to a new file",
            )
        atomic.require_new_target(out_path, force=force or dry_run)
    allow: AllowList = (
        allow_list
        if allow_list is not None
        else read_cleaned_list(cleaned_list, checked_at=checked_at, cohort=cohort)  # type: ignore[arg-type]
    )
    at = now or datetime.now(UTC)
    if at > allow.deadline:
        raise PolicyRefusal(
            f"the cleaned list was checked at {allow.checked_at.isoformat(timespec='minutes')}; its window "
            f"to disclose closed at {allow.deadline.isoformat(timespec='minutes')} (001 §8.4: "
            f"{'13' if allow.source == 'cache' else '20'} days)",
            hint="check the cohort again with the national service (optout check) and collect with the new "
            "cleaned list: opt-outs registered since may now apply",
        )

    source = open_table(sub_path)
    _check_columns(prof, source.columns, sub_path)
    table = read_table(source)
    n = table.num_rows

    values, reasons = parse_array(table.column(prof.nhs_number_column))
    valid = reasons == Reason.VALID
    on_list = valid & _member(values, allow.numbers)
    checked = valid & _member(values, allow.cohort) if allow.cohort is not None else valid.copy()
    opted_out = checked & ~on_list
    not_checked = valid & ~checked
    keep = on_list

    is_yes, is_no = _consent_classes(table.column(prof.consent_column), prof)
    # a child whose rows disagree: the least permissive status wins for every row of that child
    not_yes_children = np.unique(values[keep & ~is_yes])
    child_yes = keep & is_yes & ~_member(values, not_yes_children)
    unclear = ~is_yes & ~is_no

    counts = {
        KEPT_ALL: int(child_yes.sum()),
        KEPT_REGISTRY: int((keep & ~child_yes & ~unclear).sum()),
        KEPT_REGISTRY_UNCLEAR: int((keep & ~child_yes & unclear).sum()),
        DROPPED_OPTED_OUT: int(opted_out.sum()),
        DROPPED_NOT_CHECKED: int(not_checked.sum()),
        DROPPED_NHS_NUMBER: int((~valid).sum()),
    }
    assert sum(counts.values()) == n
    problems: dict[str, int] = {}
    for code in np.unique(reasons[~valid]):
        problems[Reason(int(code)).label] = int((reasons == code).sum())
    rows_to_fix = [int(i) + 1 for i in np.flatnonzero(~valid)]
    consent_values = {"yes": int(is_yes.sum()), "no": int(is_no.sum()), "unclear": int(unclear.sum())}

    notes: list[str] = []
    if counts[KEPT_REGISTRY_UNCLEAR]:
        notes.append(
            "consent status neither Yes nor No was treated as No (fail closed): audit fields left blank; "
            "confirm consent and resubmit to include them"
        )
    if counts[DROPPED_NHS_NUMBER]:
        notes.append(
            "rows without a valid NHS number cannot be checked against the national data opt-out, so "
            "nothing of them was kept (001 §8.2, 000 §2); fix the NHS numbers and resubmit those rows"
        )
    if allow.cohort is None:
        notes.append(
            "the cohort that was checked was not given (--cohort): children not in it are counted as "
            "not on the cleaned list"
        )
    if prof.illustrative:
        notes.append(f"profile {prof.name!r} is illustrative: {prof.note}".strip())

    output_sha: str | None = None
    if not dry_run:
        assert out_path is not None
        mask = pa.array(keep)
        kept = table.filter(mask)
        yes_kept = pa.array(child_yes[keep])
        cols = []
        for name in kept.column_names:
            col = kept.column(name)
            if name in prof.audit_fields:
                col = pc.if_else(yes_kept, col, pa.scalar(None, col.type))
            cols.append(col)
        result = pa.table(cols, names=kept.column_names)
        fmt = _out_format(out_path, source.format)

        def write(tmp: Path) -> None:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                pq.write_table(result, tmp)
            else:  # DuckDB writes CSV quoting only where needed, blanks for nulls
                from optout.tables import connect, quote_literal

                con = connect()
                try:
                    con.register("collected", result)
                    delim = quote_literal(source.delimiter or ",")
                    con.execute(
                        f"COPY collected TO {quote_literal(tmp)} (FORMAT csv, HEADER, DELIMITER {delim})"
                    )
                finally:
                    con.close()

        output_sha = _write_atomically(out_path, write)

    report = CollectionReport(
        profile=prof.name,
        submission=sub_path.name,
        output=None if out_path is None or dry_run else out_path.name,
        rows_in=n,
        rows_out=int(keep.sum()),
        counts=counts,
        nhs_number_problems=problems,
        rows_to_fix=rows_to_fix,
        consent_values=consent_values,
        checked_at=allow.checked_at.isoformat(),
        deadline=allow.deadline.isoformat(),
        submission_sha256=sha256_file(sub_path),
        cleaned_list_sha256=allow.sha256,
        output_sha256=output_sha,
        profile_sha256=prof.sha256,
        dry_run=dry_run,
        notes=notes,
    )
    if not dry_run and out_path is not None:
        rp = (
            Path(report_path)
            if report_path is not None
            else out_path.with_name(out_path.name + ".report.json")
        )
        body = (json.dumps(report.to_dict(report_for=report_for), indent=2) + "\n").encode("utf-8")
        _write_atomically(rp, lambda tmp: tmp.write_bytes(body))
    if record_audit and not dry_run:
        from optout import audit
        from optout.store import open_store

        audit.record(
            store or open_store(),
            "collection.filtered",
            subject=prof.name,
            details={
                "counts": counts,
                "rows_in": n,
                "rows_out": report.rows_out,
                "submission": sub_path.name,
                "submission_sha256": report.submission_sha256,
                "cleaned_list_sha256": allow.sha256,
                "checked_at": report.checked_at,
                "output_sha256": output_sha,
                "profile_sha256": prof.sha256,
            },
        )
    return report


def counts_table(report: CollectionReport, *, report_for: str = "internal") -> Mapping[str, int | str]:
    return report.to_dict(report_for=report_for)["counts"]
