"""Releases and disclosures: (preparing ->) prepared -> disclosed | expired | withdrawn.

A *release* is a folder of files made ready to leave the organisation, with a manifest
(``release.json``) listing every file and its SHA-256. ``optout apply`` makes one (state
``prepared``) after removing the records of people with a national data opt-out. This module
follows it to the end:

- **deadline** (001 §8.4): the opt-out check service is refreshed every 24 hours and an opt-out
  takes up to 21 days to apply everywhere, so data checked directly with the service must be
  disclosed within 20 days of the check, and data processed with a temporary cache within 13
  days. After the deadline the release is ``expired`` (shown so as soon as the deadline passes;
  recorded so when a disclosure is refused for it) and cannot be disclosed: re-run the check and
  apply again.
- **disclose** to the flow's recipient only. Onward sharing (001 §8.3: "data controllers should
  apply the most up to date national data opt-out at this point") is a new disclosure, so it is a
  new release with a fresh check, never the same release sent to someone else. A release is
  disclosed once.
- **the flow must not have changed** since the release was made: the release was made for what
  the flow's facts said then.
- **integrity**: the folder must still match its manifest (every file's SHA-256, no extra files)
  or the disclosure is refused with :class:`~optout.errors.IntegrityError`.
- **linkage** (001 §8.1): when the manifest marks files whose opt-out was *not* upheld (exempt or
  anonymised; manifest field ``files[].opt_out_upheld: false``), the files are checked for common
  identifiers (:mod:`optout.release.linkcheck`) before they go; findings refuse the disclosure unless the
  person accepts the risk with a recorded reason.
- **withdraw** a release that has not been disclosed (data already disclosed need not be recalled,
  001 §8.3, and cannot be withdrawn).
- **preparing** and **failed** come before ``prepared``: ``optout apply`` records a release as
  ``preparing`` before its folder is renamed into place, and a release whose folder never appeared
  (the apply was killed or failed) ends ``failed``. Neither can be disclosed or withdrawn;
  :func:`list_releases` first settles those left by an interrupted apply
  (:mod:`optout.release.recover`).

Every change is recorded in the audit trail: ``release.disclosed``, ``release.withdrawn``,
``release.expired`` (and, by ``optout apply`` and :mod:`optout.release.recover`,
``release.preparing``, ``release.prepared``, ``release.failed``). Times come from ``now=``
(tests inject a clock), else the system clock.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from optout import audit
from optout.digest import sha256_file
from optout.errors import (
    IntegrityError,
    Location,
    NotFoundError,
    OptoutError,
    PolicyRefusal,
    UsageError,
)
from optout.release.recover import reconcile
from optout.store import Store, disclosures, releases
from optout.text import guard_free_text, mask, mask_nested

__all__ = [
    "CHECK_WINDOWS",
    "MANIFEST_NAME",
    "Disclosure",
    "DisclosureResult",
    "ManifestFile",
    "Release",
    "disclose",
    "get_release",
    "list_releases",
    "manifest_files",
    "read_manifest",
    "verify_release_dir",
    "withdraw",
]

MANIFEST_NAME = "release.json"
# 001 §8.4: days from the check to the last day of disclosure, by how the check was made
CHECK_WINDOWS: dict[str, int] = {"one-off": 20, "cache": 13}
STATES = ("preparing", "prepared", "disclosed", "expired", "withdrawn", "failed")


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disclosure:
    id: int
    release_id: str
    recipient: str
    disclosed_at: str
    actor: str | None


@dataclass(frozen=True)
class Release:
    id: str
    flow_id: str | None
    flow_version: int | None
    stored_state: str
    created_at: str
    checked_at: str | None
    check_source: str | None
    deadline: datetime | None
    out_dir: str | None
    manifest_sha256: str | None
    details: dict[str, Any]
    disclosures: list[Disclosure] = field(default_factory=list)

    def state(self, now: datetime | None = None) -> str:
        """The state now: a prepared release whose deadline has passed is expired."""
        if self.stored_state == "prepared" and self.deadline is not None and _now(now) > self.deadline:
            return "expired"
        return self.stored_state

    def days_left(self, now: datetime | None = None) -> float | None:
        if self.deadline is None:
            return None
        return (self.deadline - _now(now)).total_seconds() / 86400

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        left = self.days_left(now)
        return {
            "id": self.id,
            "state": self.state(now),
            "flow_id": self.flow_id,
            "flow_version": self.flow_version,
            "created_at": self.created_at,
            "checked_at": self.checked_at,
            "check_source": self.check_source,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "days_left": None if left is None else round(left, 2),
            "out_dir": self.out_dir,
            "manifest_sha256": self.manifest_sha256,
            "details": self.details,
            "disclosures": [vars(d) for d in self.disclosures],
        }


@dataclass(frozen=True)
class ManifestFile:
    path: str  # relative to the release folder
    sha256: str | None
    opt_out_upheld: bool = True
    basis: str | None = None  # why not upheld: exempt | anonymised | consent | ...


@dataclass
class DisclosureResult:
    release: Release
    disclosure: Disclosure
    linkcheck: Any | None = None  # optout.release.linkcheck.LinkReport when it ran


# --- helpers -----------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise UsageError("now= must be timezone-aware", hint="pass datetime(..., tzinfo=UTC)")
    return now.astimezone(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _actor(actor: str | None) -> str:
    if actor:
        return guard_free_text("the actor name", actor, error=UsageError)
    from optout.config import load_settings

    return load_settings().actor


def _same_recipient(a: str | None, b: str | None) -> bool:
    def norm(s: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", s).casefold().split())

    return a is not None and b is not None and norm(a) == norm(b)


def _deadline(row: Any) -> datetime | None:
    if row.deadline:
        return _parse_time(row.deadline)
    checked = _parse_time(row.checked_at)
    if checked is not None and row.check_source in CHECK_WINDOWS:
        return checked + timedelta(days=CHECK_WINDOWS[row.check_source])
    return None


def _release(row: Any, discs: Sequence[Any] = ()) -> Release:
    return Release(
        id=row.id,
        flow_id=row.flow_id,
        flow_version=row.flow_version,
        stored_state=row.state,
        created_at=row.created_at,
        checked_at=row.checked_at,
        check_source=row.check_source,
        deadline=_deadline(row),
        out_dir=row.out_dir,
        manifest_sha256=row.manifest_sha256,
        # free text is guarded where it enters; rows stored before that guard are read masked
        details=mask_nested(dict(row.details or {})),
        disclosures=[
            Disclosure(d.id, d.release_id, mask(d.recipient), d.disclosed_at, d.actor and mask(d.actor))
            for d in discs
        ],
    )


# --- reading -----------------------------------------------------------------------------------


def get_release(store: Store, release_id: str) -> Release:
    with store.begin() as conn:
        row = conn.execute(sa.select(releases).where(releases.c.id == release_id)).first()
        if row is None:
            known = [r[0] for r in conn.execute(sa.select(releases.c.id)).all()]
            close = difflib.get_close_matches(release_id, known, n=1)
            raise NotFoundError(
                f"no release with id {release_id!r}",
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + "list releases with `optout release list`; releases are made by `optout apply`",
            )
        discs = conn.execute(
            sa.select(disclosures).where(disclosures.c.release_id == release_id).order_by(disclosures.c.id)
        ).all()
    return _release(row, discs)


def list_releases(
    store: Store, *, now: datetime | None = None, state: str | None = None, flow_id: str | None = None
) -> list[Release]:
    """Every release, newest first; ``state`` filters on the state *now* (expired included).

    Releases left ``preparing`` by an interrupted apply are settled first (``recover.reconcile``).
    """
    if state is not None and state not in STATES:
        raise UsageError(f"unknown release state {state!r}", hint="use one of: " + ", ".join(STATES))
    t = _now(now)
    reconcile(store)
    with store.begin() as conn:
        q = sa.select(releases).order_by(releases.c.created_at.desc(), releases.c.id)
        if flow_id is not None:
            q = q.where(releases.c.flow_id == flow_id)
        rows = conn.execute(q).all()
        discs = conn.execute(sa.select(disclosures).order_by(disclosures.c.id)).all()
    by_release: dict[str, list[Any]] = {}
    for d in discs:
        by_release.setdefault(d.release_id, []).append(d)
    out = [_release(r, by_release.get(r.id, [])) for r in rows]
    if state is not None:
        out = [r for r in out if r.state(t) == state]
    return out


# --- the manifest ------------------------------------------------------------------------------


def read_manifest(out_dir: str | Path) -> tuple[dict[str, Any], str]:
    """The release folder's manifest and the SHA-256 of its bytes."""
    path = Path(out_dir) / MANIFEST_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(
            f"the release folder has no {MANIFEST_NAME} (or the folder is gone)",
            where=Location(file=path),
            hint="the release cannot be shown to match what was prepared: apply again to make a new release",
        ) from None
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise IntegrityError(
            f"{MANIFEST_NAME} is not valid JSON",
            where=Location(file=path),
            hint="the manifest was changed or damaged: apply again to make a new release",
        ) from None
    if not isinstance(manifest, dict):
        raise IntegrityError(
            f"{MANIFEST_NAME} is not a JSON object", where=Location(file=path), hint="apply again"
        )
    return manifest, hashlib.sha256(data).hexdigest()


def manifest_files(manifest: dict[str, Any]) -> list[ManifestFile]:
    """The data files a manifest lists.

    Reads ``files``: a list of objects with ``path`` (or ``name``/``file``, relative to the
    release folder), ``sha256`` and, optionally, ``opt_out_upheld`` (default true) and ``basis``
    (why the opt-out was not upheld: ``exempt``, ``anonymised``, ...). A top-level
    ``opt_out_upheld: false`` marks every file.
    """
    raw = manifest.get("files", [])
    all_upheld = manifest.get("opt_out_upheld", True) is not False
    if isinstance(raw, dict):  # {"name": {"sha256": ...}}
        raw = [{"path": k, **(v if isinstance(v, dict) else {"sha256": v})} for k, v in raw.items()]
    out: list[ManifestFile] = []
    for entry in raw if isinstance(raw, list) else []:
        if isinstance(entry, str):
            out.append(ManifestFile(entry, None, all_upheld))
            continue
        if not isinstance(entry, dict):
            continue
        path = entry.get("path") or entry.get("name") or entry.get("file") or entry.get("output")
        if not path:
            continue
        upheld = all_upheld and entry.get("opt_out_upheld", True) is not False
        out.append(ManifestFile(str(path), entry.get("sha256"), upheld, entry.get("basis")))
    return out


def verify_release_dir(release: Release) -> tuple[dict[str, Any], list[ManifestFile]]:
    """Check the release folder still matches what was prepared; IntegrityError if not."""
    if not release.out_dir:
        raise IntegrityError(
            f"release {release.id} has no folder recorded", hint="apply again to make a new release"
        )
    root = Path(release.out_dir)
    if not root.is_dir():
        raise IntegrityError(
            f"release {release.id}: its folder is gone",
            where=Location(file=root),
            hint="restore the folder as it was prepared, or apply again to make a new release",
        )
    manifest, sha = read_manifest(root)
    fix = "restore the files as they were prepared, or apply again to make a new release"
    if release.manifest_sha256 and sha != release.manifest_sha256:
        raise IntegrityError(
            f"release {release.id}: {MANIFEST_NAME} has changed since the release was prepared",
            where=Location(file=root / MANIFEST_NAME),
            hint=fix,
        )
    mid = manifest.get("release_id")
    if mid is not None and mid != release.id:
        raise IntegrityError(
            f"release {release.id}: the folder holds another release's manifest",
            where=Location(file=root / MANIFEST_NAME),
            hint="check the folder recorded for this release (`optout release show`); " + fix,
        )
    mflow = manifest.get("flow")
    if isinstance(mflow, dict) and (mflow.get("id"), mflow.get("version")) != (
        release.flow_id,
        release.flow_version,
    ):
        raise IntegrityError(
            f"release {release.id}: the manifest names another flow or version than the release record",
            where=Location(file=root / MANIFEST_NAME),
            hint=fix,
        )
    files = manifest_files(manifest)
    listed = set()
    for f in files:
        p = (root / f.path).resolve()
        if root.resolve() not in p.parents:
            raise IntegrityError(
                f"release {release.id}: the manifest names a file outside the release folder",
                where=Location(file=root / MANIFEST_NAME),
                hint=fix,
            )
        listed.add(p)
        if not p.is_file():
            raise IntegrityError(
                f"release {release.id}: {f.path} is missing", where=Location(file=root / f.path), hint=fix
            )
        if f.sha256 is None:
            raise IntegrityError(
                f"release {release.id}: the manifest has no SHA-256 for {f.path}",
                where=Location(file=root / MANIFEST_NAME),
                hint=fix,
            )
        if sha256_file(p) != f.sha256:
            raise IntegrityError(
                f"release {release.id}: {f.path} has changed since the release was prepared",
                where=Location(file=root / f.path),
                hint=fix,
            )
    allowed_extra = {MANIFEST_NAME, *(str(x) for x in manifest.get("auxiliary_files", []) or [])}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.resolve() not in listed:
            rel = p.relative_to(root).as_posix()
            if rel in allowed_extra or _is_report(rel):
                continue
            raise IntegrityError(
                f"release {release.id}: {rel} is in the release folder but not in its manifest",
                where=Location(file=p),
                hint="remove the file (only the manifest's files may go out), or apply again",
            )
    return manifest, files


def _is_report(rel: str) -> bool:
    """The report ``optout apply`` writes beside the data stays with the organisation."""
    name = rel.rsplit("/", 1)[-1]
    return name.startswith("report.") or name.startswith("release-report.")


# --- changing state ----------------------------------------------------------------------------


def _mark_expired(store: Store, release: Release, t: datetime, who: str) -> None:
    with store.begin() as conn:
        res = conn.execute(
            releases.update()
            .where(releases.c.id == release.id, releases.c.state == "prepared")
            .values(state="expired", details={**release.details, "expired_at": _iso(release.deadline or t)})
        )
    if res.rowcount == 1:
        audit.record(
            store,
            "release.expired",
            actor=who,
            subject=release.id,
            at=_iso(t),
            details={
                "deadline": release.deadline.isoformat() if release.deadline else None,
                "check_source": release.check_source,
                "flow_id": release.flow_id,
            },
        )


def _refuse_unfinished(release: Release, state: str, doing: str) -> None:
    """A release that was never complete (preparing, failed) can be neither disclosed nor withdrawn."""
    if state == "preparing":
        raise PolicyRefusal(
            f"release {release.id} is not complete (preparing): its apply is still running or was "
            f"interrupted, so it cannot be {doing}",
            hint="wait for the apply to finish; `optout release list` settles a release an interrupted "
            "apply left (prepared when its folder is in place, failed when it never appeared)",
        )
    if state == "failed":
        why = (release.details.get("failed") or {}).get("reason")
        raise PolicyRefusal(
            f"release {release.id} failed" + (f" ({why})" if why else "") + f" and cannot be {doing}",
            hint="apply again to make a new release",
        )


def _refuse_state(release: Release, t: datetime, to: str) -> None:
    state = release.state(t)
    _refuse_unfinished(release, state, "disclosed")
    again = "re-run the check (`optout check`, or `optout cache refresh` for a cache), then " + (
        f"`optout apply ... --flow {release.flow_id}`" if release.flow_id else "`optout apply`"
    )
    if state == "withdrawn":
        why = (release.details.get("withdrawn") or {}).get("reason")
        raise PolicyRefusal(
            f"release {release.id} was withdrawn" + (f" ({why})" if why else "") + " and cannot be disclosed",
            hint=f"make a new release: {again}",
        )
    if state == "disclosed":
        prior = release.disclosures[-1] if release.disclosures else None
        if prior is not None and not _same_recipient(prior.recipient, to):
            raise PolicyRefusal(
                f"release {release.id} was already disclosed to {prior.recipient} "
                f"on {prior.disclosed_at[:10]}; giving it to {to} would be onward sharing",
                hint="onward sharing is a new disclosure (001 §8.3): register a flow for it, "
                "re-run the check and apply again to make a new release",
            )
        raise PolicyRefusal(
            f"release {release.id} was already disclosed"
            + (f" to {prior.recipient} on {prior.disclosed_at[:10]}" if prior else ""),
            hint="a release is disclosed once; to send the data again, re-run the check and apply again",
        )
    if state == "expired":
        deadline = release.deadline.strftime("%Y-%m-%d %H:%M UTC") if release.deadline else "?"
        window = CHECK_WINDOWS.get(release.check_source or "")
        how = (
            f"check at {release.checked_at[:16].replace('T', ' ')} UTC with a "
            f"{'temporary cache' if release.check_source == 'cache' else 'one-off cleaned list'} "
            f"+ {window} days, 001 §8.4"
            if window and release.checked_at
            else "001 §8.4"
        )
        raise PolicyRefusal(
            f"release {release.id} expired: its disclosure deadline passed on {deadline} ({how}); "
            "opt-outs registered since the check may not have been removed",
            hint=f"{again}, and disclose the new release",
        )
    if state != "prepared":  # fail closed on any state this code does not know
        raise PolicyRefusal(
            f"release {release.id} is {state} and cannot be disclosed",
            hint="apply again to make a new release",
        )


def _refuse_flow(store: Store, release: Release, to: str) -> None:
    if release.flow_id is None:
        return
    from optout.policy import register as flows

    current = flows.get_flow(store, release.flow_id)
    if release.flow_version is not None and current.version != release.flow_version:
        old = flows.get_version(store, release.flow_id, release.flow_version)
        keys = flows.changed_keys(old.facts, current.facts) if old is not None else []
        later = [v for v in flows.history(store, release.flow_id) if v.version > release.flow_version]
        who = "; ".join(f"v{v.version} by {v.changed_by or 'unknown'} at {v.changed_at[:16]}" for v in later)
        raise PolicyRefusal(
            f"release {release.id} was made for flow {release.flow_id} version {release.flow_version}, "
            f"but the flow has changed since (now version {current.version}: "
            + (f"changed {', '.join(keys)}" if keys else "re-assessed")
            + (f"; {who}" if who else "")
            + ")",
            hint=f"check the flow (`optout flow show {release.flow_id}`); if the opt-out still applies, "
            f"re-run the check and `optout apply ... --flow {release.flow_id}` to make a new release",
        )
    if current.decision == "cannot-decide":
        raise PolicyRefusal(
            f"flow {release.flow_id}: cannot decide whether the opt-out applies",
            hint=f"add the missing facts with `optout flow edit {release.flow_id}`",
        )
    if current.recipient and not _same_recipient(current.recipient, to):
        raise PolicyRefusal(
            f"release {release.id} is for flow {release.flow_id}, whose recipient is {current.recipient}, "
            f"not {to}",
            hint="a release may go only to its flow's recipient. Sharing onward or with another "
            "organisation is a new disclosure (001 §8.3): register a flow for it (`optout flow add`), "
            "re-run the check and apply again to make a new release",
        )


def disclose(
    store: Store,
    release_id: str,
    *,
    to: str,
    actor: str | None = None,
    now: datetime | None = None,
    accept_link_risk: str | None = None,
    linkcheck_options: dict[str, Any] | None = None,
) -> DisclosureResult:
    """Record that a prepared release was disclosed to ``to``, after every check passes.

    Refuses (:class:`PolicyRefusal`) an expired, withdrawn or already-disclosed release, one for a
    flow that changed since, one to anyone but the flow's recipient, and one whose not-upheld
    files share identifiers (unless ``accept_link_risk`` gives a reason); raises
    :class:`IntegrityError` when the folder no longer matches its manifest and
    :class:`NotFoundError` for an unknown release.
    """
    to = (to or "").strip()
    if not to:
        raise UsageError("say who the release is disclosed to", hint="give --to RECIPIENT (the organisation)")
    guard_free_text("--to (the recipient)", to, error=UsageError)
    guard_free_text("--accept-link-risk (the reason)", accept_link_risk, error=UsageError)
    t = _now(now)
    who = _actor(actor)
    release = get_release(store, release_id)
    if release.stored_state == "prepared" and release.state(t) == "expired":
        _mark_expired(store, release, t, who)
    _refuse_state(release, t, to)
    _refuse_flow(store, release, to)
    _manifest, files = verify_release_dir(release)
    if release.deadline is None and all(f.opt_out_upheld for f in files):
        raise PolicyRefusal(
            f"release {release.id}: when its opt-out check was made is not recorded, so its deadline "
            "cannot be worked out (001 §8.4)",
            hint="apply again with a cleaned list or cache that records its check time",
        )
    report = None
    not_upheld = [f for f in files if not f.opt_out_upheld]
    if not_upheld and len(files) > 1:
        from optout.release.linkcheck import linkcheck

        report = linkcheck(
            [Path(release.out_dir or ".") / f.path for f in files], **(linkcheck_options or {})
        )
        if not report.ok and not (accept_link_risk and accept_link_risk.strip()):
            raise PolicyRefusal(
                f"release {release.id} includes {len(not_upheld)} file(s) without the opt-out upheld, "
                f"and the files share possible identifiers (001 §8.1): "
                + "; ".join(f.message for f in report.findings),
                hint="remove the common identifier columns from the files and apply again; or, if the "
                "risk has been assessed and accepted, disclose with --accept-link-risk REASON (recorded)",
            )
    left = release.days_left(t)
    with store.begin() as conn:
        res = conn.execute(
            releases.update()
            .where(releases.c.id == release.id, releases.c.state == "prepared")
            .values(state="disclosed")
        )
        if res.rowcount != 1:
            raise OptoutError(
                f"release {release.id} changed while it was being disclosed",
                hint=f"look at `optout release show {release.id}`",
            )
        ins = conn.execute(
            disclosures.insert().values(release_id=release.id, recipient=to, disclosed_at=_iso(t), actor=who)
        )
        key = ins.inserted_primary_key
        assert key is not None
        disc_id = int(key[0])
    details: dict[str, Any] = {
        "recipient": to,
        "flow_id": release.flow_id,
        "flow_version": release.flow_version,
        "check_source": release.check_source,
        "deadline": release.deadline.isoformat() if release.deadline else None,
        "days_left": None if left is None else round(left, 2),
        "manifest_sha256": release.manifest_sha256,
        "files": len(files),
        "files_not_upheld": [f.path for f in not_upheld],
    }
    if report is not None:
        details["linkcheck"] = {
            "ok": report.ok,
            "findings": [
                {"kind": f.kind, "columns": f.columns, "overlap": f.overlap} for f in report.findings
            ],
        }
        if not report.ok:
            details["accepted_link_risk"] = (accept_link_risk or "").strip()
    audit.record(store, "release.disclosed", actor=who, subject=release.id, at=_iso(t), details=details)
    disc = Disclosure(disc_id, release.id, to, _iso(t), who)
    return DisclosureResult(get_release(store, release.id), disc, report)


def withdraw(
    store: Store, release_id: str, *, reason: str, actor: str | None = None, now: datetime | None = None
) -> Release:
    """Withdraw a release that has not been disclosed, with a reason (recorded)."""
    reason = (reason or "").strip()
    if not reason:
        raise UsageError("say why the release is withdrawn", hint='give --reason "TEXT"')
    guard_free_text("--reason", reason, error=UsageError)
    t = _now(now)
    who = _actor(actor)
    release = get_release(store, release_id)
    state = release.state(t)
    _refuse_unfinished(release, state, "withdrawn")
    if state == "withdrawn":
        raise PolicyRefusal(f"release {release.id} is already withdrawn", hint="nothing to do")
    if state == "disclosed":
        prior = release.disclosures[-1] if release.disclosures else None
        raise PolicyRefusal(
            f"release {release.id} was already disclosed"
            + (f" to {prior.recipient} on {prior.disclosed_at[:10]}" if prior else "")
            + " and cannot be withdrawn",
            hint="data already disclosed need not be recalled (001 §8.3); any arrangement to delete it "
            "is made with the recipient under the data sharing agreement",
        )
    details = {**release.details, "withdrawn": {"at": _iso(t), "by": who, "reason": reason}}
    with store.begin() as conn:
        res = conn.execute(
            releases.update()
            .where(releases.c.id == release.id, releases.c.state.in_(("prepared", "expired")))
            .values(state="withdrawn", details=details)
        )
        if res.rowcount != 1:
            raise OptoutError(
                f"release {release.id} changed while it was being withdrawn",
                hint=f"look at `optout release show {release.id}`",
            )
    audit.record(
        store,
        "release.withdrawn",
        actor=who,
        subject=release.id,
        at=_iso(t),
        details={"reason": reason, "previous_state": state, "flow_id": release.flow_id},
    )
    return get_release(store, release.id)


def describe_deadline(release: Release, now: datetime | None = None) -> str:
    """'16 days 23 h left', 'expired 2 days ago', or 'no deadline' (whole hours, rounded down)."""
    left = release.days_left(now)
    if left is None:
        return "no deadline"
    hours = int(abs(left) * 24)
    d, h = divmod(hours, 24)
    span = " ".join(p for p in (f"{d} days" if d else "", f"{h} h" if h or not d else "") if p)
    return f"expired {span} ago" if left < 0 else f"{span} left"
