"""Evidence packs: what an IG lead attaches to the Data Security and Protection Toolkit (DSPT).

``export_evidence(store, start=..., end=..., out_dir=...)`` writes, atomically, a folder with

- ``evidence.json`` (``"format": "optout-evidence/1"``): the audit entries in the period (with
  their seq and hash, so they can be matched against the log), the verification of the *whole*
  chain and its head hash (keep it: ``optout audit verify --expect-head HASH`` later proves no
  entry was cut off the end), counts of entries by action, the releases made and disclosures
  done in the period with their deadlines, check requests, and the register of data flows;
- ``evidence.html``: the same as a readable report (Jinja2 template ``templates/evidence.html.j2``).

Nothing here holds an NHS number: the audit trail and the store never do. Counts that describe
people (rows, records, children, numbers sent or returned, ...) between 1 and 4 are shown as
"<5" when the pack is meant to leave the organisation (``report_for="external"``, the default).
Which numbers describe people is decided fail-closed: every whole number in an entry's details is
treated as a count of people unless its key is one of ``NOT_PEOPLE`` (versions, days, files, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from optout import audit
from optout.errors import OutputError, UsageError
from optout.store import Store, check_requests, disclosures, flows, releases
from optout.text import mask_nested
from optout.version import __version__

FORMAT = "optout-evidence/1"
SUPPRESSED = "<5"
REPORT_FOR = ("external", "internal")

# Keys in audit details whose whole numbers do not count people (all others are treated as if
# they do, and 1-4 are suppressed in external packs).
NOT_PEOPLE = frozenset(
    {
        "version",
        "flow_version",
        "seq",
        "days",
        "window_days",
        "tables",
        "table_count",
        "files",
        "file_count",
        "chunks",
        "bytes",
        "size_bytes",
        "attempts",
        "exit_code",
        "port",
        "columns",
        "duration_ms",
        "elapsed_ms",
        "entries",
        "head_seq",
        "year",
    }
)

# check_requests columns that count people
_PEOPLE_COLUMNS = ("cohort_size", "sent_count", "returned_count")


def suppress(value: Any, key: str | None = None) -> Any:
    """``value`` with counts of people 1-4 replaced by "<5" (recursively through dicts/lists)."""
    if isinstance(value, dict):
        return {k: suppress(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [suppress(v, key) for v in value]
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    if key is not None and key in NOT_PEOPLE:
        return value
    return SUPPRESSED if 1 <= value <= 4 else value


def parse_bound(text: str, *, option: str, end: bool = False) -> datetime:
    """``--from``/``--to``: a date (whole day, UTC; ``--to`` includes that day) or an ISO datetime."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            t = datetime.combine(d, time(0, 0), tzinfo=UTC)
            return t + timedelta(days=1) if end else t
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} is not a date",
            hint=f"give {option} as YYYY-MM-DD (a whole day, UTC) or an ISO 8601 time "
            "like 2026-01-31T17:00:00Z",
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def _in(value: str | None, start: str, end: str) -> bool:
    return value is not None and start <= _norm(value) < end


def _norm(value: str) -> str:
    """Stored times are ISO 8601; normalise to UTC microseconds so text comparison is time order."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return _iso(dt)


def _period_label(start: datetime, end: datetime) -> str:
    """ "2026-01-01 to 2026-03-31" for whole days (both included), else the two times (UTC)."""
    midnight = time(0, 0)
    s, e = start.astimezone(UTC), end.astimezone(UTC)
    if s.time() == midnight and e.time() == midnight:
        last = (e - timedelta(days=1)).date()
        return f"{s.date()} to {last} (UTC, whole days)"
    return f"{s.isoformat(timespec='minutes')} to {e.isoformat(timespec='minutes')} (UTC, end excluded)"


def _compact(d: Any) -> str:
    if not isinstance(d, dict):
        return str(d)
    parts = []
    for k, v in d.items():
        if v is None or v == [] or v == {}:
            continue
        text = (
            json.dumps(v, ensure_ascii=False, separators=(", ", ": ")) if isinstance(v, (dict, list)) else v
        )
        parts.append(f"{k}: {text}")
    return "; ".join(parts)


@dataclass
class EvidencePack:
    out_dir: Path
    json_path: Path
    html_path: Path
    json_sha256: str
    data: dict[str, Any]


def build_evidence(
    store: Store,
    *,
    start: datetime,
    end: datetime,
    report_for: str = "external",
    now: datetime | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """The evidence pack's content for entries with ``start <= at < end`` (a plain dict)."""
    if report_for not in REPORT_FOR:
        raise UsageError(
            f"--report-for must be one of {', '.join(REPORT_FOR)}", hint="use external or internal"
        )
    if end <= start:
        raise UsageError("--to is before --from", hint="give --from as the earlier date")
    s, e = _iso(start), _iso(end)
    external = report_for == "external"
    verification = audit.verify(store)
    all_entries = audit.entries(store)
    in_range = [x for x in all_entries if _in(x.at, s, e)]

    def details_of(x: audit.Entry) -> dict[str, Any]:
        try:
            d = x.details_dict
        except json.JSONDecodeError:  # a tampered entry: the chain result already says so
            return {"unreadable": True}
        return suppress(d) if external else d

    entry_dicts: list[dict[str, Any]] = [
        {
            "seq": x.seq,
            "at": x.at,
            "actor": x.actor,
            "action": x.action,
            "subject": x.subject,
            "details": details_of(x),
            "hash": x.hash,
        }
        for x in in_range
    ]
    with store.begin() as conn:
        rel_rows = [
            dict(r._mapping) for r in conn.execute(sa.select(releases).order_by(releases.c.created_at))
        ]
        dis_rows = [dict(r._mapping) for r in conn.execute(sa.select(disclosures).order_by(disclosures.c.id))]
        flow_rows = [dict(r._mapping) for r in conn.execute(sa.select(flows).order_by(flows.c.id))]
        chk_rows = [
            dict(r._mapping)
            for r in conn.execute(sa.select(check_requests).order_by(check_requests.c.created_at))
        ]

    by_release: dict[str, list[dict[str, Any]]] = {}
    for d in dis_rows:
        deadline = next((r["deadline"] for r in rel_rows if r["id"] == d["release_id"]), None)
        by_release.setdefault(d["release_id"], []).append(
            {
                "recipient": d["recipient"],
                "disclosed_at": d["disclosed_at"],
                "actor": d["actor"],
                "within_deadline": None if not deadline else _norm(d["disclosed_at"]) <= _norm(deadline),
                "in_period": _in(d["disclosed_at"], s, e),
            }
        )
    release_list = []
    for r in rel_rows:
        ds = by_release.get(r["id"], [])
        if not (_in(r["created_at"], s, e) or any(d["in_period"] for d in ds)):
            continue
        release_list.append(
            {
                "id": r["id"],
                "flow_id": r["flow_id"],
                "flow_version": r["flow_version"],
                "state": r["state"],
                "created_at": r["created_at"],
                "checked_at": r["checked_at"],
                "check_source": r["check_source"],
                "deadline": r["deadline"],
                "manifest_sha256": r["manifest_sha256"],
                "disclosures": ds,
            }
        )
    checks = []
    for c in chk_rows:
        if not (_in(c["created_at"], s, e) or _in(c["answered_at"], s, e)):
            continue
        item = {
            k: c[k]
            for k in ("local_id", "mode", "state", "created_at", "sent_at", "answered_at", "cohort_sha256")
        }
        for k in _PEOPLE_COLUMNS:
            item[k] = suppress(c[k]) if external else c[k]
        checks.append(item)
    flow_list = [
        {
            k: f[k]
            for k in (
                "id",
                "name",
                "owner",
                "recipient",
                "purpose",
                "legal_basis",
                "decision",
                "compliance",
                "exemption",
                "review_date",
                "version",
                "updated_at",
            )
        }
        for f in flow_rows
    ]
    counts = Counter(x.action for x in in_range)
    # free text is guarded where it enters; text stored before that guard existed (flow names,
    # recipients, actors, reasons) is masked here, as the pack may leave the organisation
    data: dict[str, Any] = {
        "format": FORMAT,
        "generated_at": _iso(now or datetime.now(UTC)),
        "generated_by": actor,
        "optout_version": __version__,
        "report_for": report_for,
        "suppression": "counts of people from 1 to 4 are shown as <5" if external else "none (internal)",
        "period": {"from": s, "to": e, "to_is": "exclusive", "label": _period_label(start, end)},
        "chain": verification.to_dict(),
        "head": {"seq": verification.head_seq, "hash": verification.head_hash},
        "summary": {
            "entries": len(in_range),
            "by_action": dict(sorted(counts.items())),
            "releases": len(release_list),
            # every state, "preparing" and "failed" included: a failed release was never complete
            "releases_by_state": dict(sorted(Counter(r["state"] for r in release_list).items())),
            "disclosures": sum(1 for r in release_list for d in r["disclosures"] if d["in_period"]),
            "late_disclosures": sum(
                1
                for r in release_list
                for d in r["disclosures"]
                if d["in_period"] and d["within_deadline"] is False
            ),
            "check_requests": len(checks),
            "flows": len(flow_list),
        },
        "releases": release_list,
        "checks": checks,
        "checks_and_cache": [x for x in entry_dicts if x["action"].split(".")[0] in ("check", "cache")],
        "flow_changes": [x for x in entry_dicts if x["action"].split(".")[0] == "flow"],
        "collections": [x for x in entry_dicts if x["action"].split(".")[0] == "collection"],
        "flows": flow_list,
        "entries": entry_dicts,
    }
    return mask_nested(data)


def render_html(data: dict[str, Any]) -> str:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["compact"] = _compact
    env.filters["day"] = lambda t: (t or "")[:16].replace("T", " ")
    return env.get_template("evidence.html.j2").render(**data)


def _write_dir_atomically(out_dir: Path, files: dict[str, bytes], *, force: bool) -> None:
    out_dir = out_dir.absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir.name} exists and is not a folder", hint="choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise OutputError(
            f"the folder {out_dir.name} already exists and is not empty",
            hint="choose a new --out folder, or add --force to replace it",
        )
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    except OSError as exc:
        raise OutputError(
            f"cannot write to {out_dir.parent}: {exc.strerror}", hint="choose a writable --out"
        ) from None
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        old = None
        if out_dir.is_dir() and any(out_dir.iterdir()):
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(
            f"cannot write the evidence pack {out_dir.name}: {exc.strerror}",
            hint="check free space and permissions of the --out folder's parent",
        ) from None


def export_evidence(
    store: Store,
    *,
    start: datetime,
    end: datetime,
    out_dir: str | Path,
    report_for: str = "external",
    force: bool = False,
    actor: str | None = None,
    now: datetime | None = None,
) -> EvidencePack:
    """Write ``evidence.json`` and ``evidence.html`` to ``out_dir`` (atomically) and record it."""
    if actor is None:
        from optout.config import load_settings

        actor = load_settings().actor
    data = build_evidence(store, start=start, end=end, report_for=report_for, now=now, actor=actor)
    json_bytes = (json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")
    html_bytes = render_html(data).encode("utf-8")
    out = Path(out_dir)
    _write_dir_atomically(out, {"evidence.json": json_bytes, "evidence.html": html_bytes}, force=force)
    sha = hashlib.sha256(json_bytes).hexdigest()
    audit.record(
        store,
        "audit.exported",
        actor=actor,
        subject=out.name,
        details={
            "from": data["period"]["from"],
            "to": data["period"]["to"],
            "entries": data["summary"]["entries"],
            "head_seq": data["head"]["seq"],
            "head_hash": data["head"]["hash"],
            "chain_ok": data["chain"]["ok"],
            "report_for": report_for,
            "evidence_json_sha256": sha,
        },
    )
    return EvidencePack(out, out / "evidence.json", out / "evidence.html", sha, data)
