"""The central opt-out register of the reference service: preference events and published snapshots.

This is the *central* side (the national service's stand-in): it holds NHS numbers by design.
It still never prints or logs one; ``status`` gives counts only.

Storage, in one folder:

- ``register.sqlite``: the preference events (``opted_out`` set or withdrawn, with the moment it
  was registered), publications, and the request messages already answered (so a duplicate
  delivery is not answered twice). SQLite, so ``optout service import`` can add events while the
  responder runs in another process.
- ``snapshots/<id>.npy``: each published snapshot, the sorted unique int64 NHS numbers with an
  opt-out in force at publication time; ``current.json`` names the latest (replaced atomically).

Rules:
- 001 §8.3 "their current choice is respected at any given time, replacing any previous choices
  made": per person the latest event (by registration time, then arrival order) stands, and a
  withdrawal re-includes them.
- 001 §8.4 "The service to check for national data opt-outs is updated every 24 hrs": requests
  are answered from the latest *published* snapshot, never from live events, so an opt-out
  registered after a publication applies from the next one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from optout import atomic, nhs_number
from optout.errors import InputError, Location, OutputError, UsageError

__all__ = ["PUBLISH_EVERY", "Register", "RegisterStatus", "Snapshot", "utcnow"]

PUBLISH_EVERY = timedelta(hours=24)  # 001 §8.4: the check service is updated every 24 hrs
_KEEP_SNAPSHOTS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    nhs_number INTEGER NOT NULL,
    opted_out INTEGER NOT NULL,
    at_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS publications (
    id TEXT PRIMARY KEY,
    published_at_us INTEGER NOT NULL,
    opted_out_count INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answered (
    message_id TEXT PRIMARY KEY,
    local_id TEXT,
    answered_at_us INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    submitted INTEGER,
    returned INTEGER,
    snapshot_id TEXT
);
"""

_TRUE = {"1", "true", "t", "yes", "y", "set", "opt-out", "opted-out", "opted_out", "optout"}
_FALSE = {"0", "false", "f", "no", "n", "withdrawn", "withdraw", "withdrawal", "opt-in", "none"}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _us(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("register times must be time-zone aware (UTC)")
    return int(dt.timestamp() * 1_000_000)


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


@dataclass(frozen=True)
class Snapshot:
    """One publication: who had an opt-out in force at ``published_at``."""

    id: str
    published_at: datetime
    count: int  # people with an opt-out in this snapshot
    sha256: str
    path: Path


@dataclass(frozen=True)
class RegisterStatus:
    events: int
    people: int  # people with at least one recorded choice
    opted_out_now: int  # live: opted out per the latest events (not yet necessarily published)
    snapshot: Snapshot | None
    next_publication_due: datetime | None
    requests_answered: int
    requests_rejected: int
    requests_ignored: int

    def to_dict(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "events": self.events,
            "people_with_a_choice": self.people,
            "opted_out_live": self.opted_out_now,
            "published_snapshot": None
            if snap is None
            else {"id": snap.id, "published_at": snap.published_at.isoformat(), "opted_out": snap.count},
            "next_publication_due": self.next_publication_due.isoformat()
            if self.next_publication_due
            else None,
            "requests_answered": self.requests_answered,
            "requests_rejected": self.requests_rejected,
            "requests_ignored": self.requests_ignored,
        }


class Register:
    """Preference events per NHS number, published as a daily snapshot the responder answers from."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.path = Path(path)
        self.clock = clock
        # NHS numbers and each person's choice: owner-only (001 §8.5), made so before anything is
        # written, and tightened if an older version left them readable by others
        db = self.path / "register.sqlite"
        try:
            atomic.private_dir(self.path)
            atomic.private_dir(self.path / "snapshots")
            if not atomic.create_private_file(db):
                olds = [db, *(db.with_name(db.name + x) for x in ("-wal", "-shm", "-journal"))]
                for p in [*olds, self.path / "current.json", *(self.path / "snapshots").glob("*.npy")]:
                    if p.exists():
                        atomic.tighten(p)
        except OSError as exc:
            raise OutputError(
                f"cannot create the register folder: {exc.strerror}",
                where=Location(file=self.path),
                hint="choose a writable folder with --register",
            ) from None
        self._db = sqlite3.connect(db, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._loaded: tuple[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Register:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ events

    def record(self, nhs_number: int, opted_out: bool, at: datetime | None = None) -> None:
        """Register one choice (opt-out set: True; withdrawn: False) at ``at`` (default: now)."""
        self.record_many(np.asarray([nhs_number], dtype=np.int64), np.asarray([opted_out]), at=at)

    def record_many(
        self,
        numbers: np.ndarray,
        opted_out: np.ndarray | bool,
        at: datetime | np.ndarray | None = None,
    ) -> int:
        """Register many choices at once; every number must be a valid NHS number."""
        x = np.asarray(numbers, dtype=np.int64)
        reasons = nhs_number.validate_int_array(x)
        bad = np.flatnonzero(reasons != 0)
        if bad.size:
            raise InputError(
                f"{bad.size} value(s) are not valid NHS numbers; nothing was recorded",
                where=Location(
                    row=int(bad[0]) + 1, value_class=nhs_number.Reason(int(reasons[bad[0]])).label
                ),
                hint="the register holds valid NHS numbers only: fix or remove those rows",
            )
        flags = np.broadcast_to(np.asarray(opted_out, dtype=bool), x.shape).astype(np.int64)
        if at is None or isinstance(at, datetime):
            when = np.full(x.shape, _us(at or self.clock()), dtype=np.int64)
        else:
            when = np.asarray(at, dtype=np.int64)
        rows = np.stack([x, flags, when], axis=1).tolist()
        with self._tx():
            self._db.executemany("INSERT INTO events (nhs_number, opted_out, at_us) VALUES (?, ?, ?)", rows)
        return int(x.size)

    def seed(self, population: int, opt_out_rate: float, seed: int = 0) -> int:
        """Opt out ``round(population * rate)`` people of ``nhs_number.synthetic(population, seed)``.

        Returns how many opt-outs were recorded. Use the same seed for a demo extract so both
        refer to the same (synthetic, 9xx-range) people.
        """
        if population < 1:
            raise UsageError("--population must be at least 1", hint="e.g. --population 100000")
        if not 0.0 <= opt_out_rate <= 1.0:
            raise UsageError("--opt-out-rate must be between 0 and 1", hint="e.g. --opt-out-rate 0.054")
        people = nhs_number.synthetic(population, seed=seed)
        rng = np.random.default_rng([seed, 1])
        k = round(population * opt_out_rate)
        chosen = rng.choice(population, size=k, replace=False) if k else np.empty(0, dtype=np.int64)
        return self.record_many(people[np.sort(chosen)], True)

    def import_csv(self, path: str | Path) -> int:
        """Bulk import ``nhs_number,opted_out[,at]`` rows (header required). Returns rows imported.

        ``opted_out``: true/false, yes/no, 1/0, set/withdrawn. ``at``: ISO-8601 with a time zone
        (default: now). The whole file is checked before anything is recorded.
        """
        import pyarrow as pa
        import pyarrow.csv as pacsv

        path = Path(path)
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(encoding="utf-8"),
            )
        except FileNotFoundError:
            raise InputError(
                "file not found", where=Location(file=path), hint="check the path of the CSV to import"
            ) from None
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise InputError(
                f"cannot read the CSV: {str(exc).splitlines()[0][:120]}",
                where=Location(file=path),
                hint="a UTF-8 CSV with a header row: nhs_number,opted_out[,at]",
            ) from None
        cols = {c.strip().lower(): c for c in table.column_names}
        for need in ("nhs_number", "opted_out"):
            if need not in cols:
                raise InputError(
                    f"the CSV has no {need!r} column",
                    where=Location(file=path, column=need),
                    hint="the header must be nhs_number,opted_out (and optionally at)",
                )
        values, reasons = nhs_number.parse_array(table.column(cols["nhs_number"]))
        bad = np.flatnonzero(reasons != 0)
        if bad.size:
            raise InputError(
                f"{bad.size} row(s) do not hold a valid NHS number; nothing was imported",
                where=Location(
                    file=path,
                    row=int(bad[0]) + 1,
                    column=cols["nhs_number"],
                    value_class=nhs_number.Reason(int(reasons[bad[0]])).label,
                ),
                hint="fix or remove those rows (`optout nhs-number check` lists them by row)",
            )
        flags = np.empty(len(values), dtype=bool)
        for i, raw in enumerate(table.column(cols["opted_out"]).to_pylist()):
            text = str(raw if raw is not None else "").strip().lower()
            if text in _TRUE:
                flags[i] = True
            elif text in _FALSE:
                flags[i] = False
            else:
                raise InputError(
                    "opted_out must be true/false (or set/withdrawn)",
                    where=Location(
                        file=path, row=i + 1, column=cols["opted_out"], value_class="not a choice"
                    ),
                    hint="write true for an opt-out set, false for one withdrawn",
                )
        when = np.full(len(values), _us(self.clock()), dtype=np.int64)
        if "at" in cols:
            for i, raw in enumerate(table.column(cols["at"]).to_pylist()):
                text = str(raw if raw is not None else "").strip()
                if not text:
                    continue
                try:
                    dt = (
                        raw
                        if isinstance(raw, datetime)
                        else datetime.fromisoformat(text.replace("Z", "+00:00"))
                    )
                    when[i] = _us(dt)
                except ValueError:
                    raise InputError(
                        "at must be an ISO-8601 time with a time zone",
                        where=Location(file=path, row=i + 1, column=cols["at"], value_class="not a time"),
                        hint="e.g. 2026-03-01T09:30:00Z",
                    ) from None
        return self.record_many(values, flags, at=when)

    # ------------------------------------------------------------------ publication

    def _live_opted_out(self, until_us: int | None = None) -> np.ndarray:
        """Sorted unique numbers whose latest event (registered by ``until``) is an opt-out."""
        sql = "SELECT nhs_number, opted_out, at_us, seq FROM events"
        args: tuple[int, ...] = ()
        if until_us is not None:
            sql += " WHERE at_us <= ?"
            args = (until_us,)
        cur = self._db.execute(sql, args)
        chunks: list[np.ndarray] = []
        while True:
            rows = cur.fetchmany(500_000)
            if not rows:
                break
            chunks.append(np.asarray(rows, dtype=np.int64))
        if not chunks:
            return np.empty(0, dtype=np.int64)
        ev = np.concatenate(chunks)
        order = np.lexsort((ev[:, 3], ev[:, 2], ev[:, 0]))  # by number, then time, then arrival
        ev = ev[order]
        last = np.ones(len(ev), dtype=bool)
        last[:-1] = ev[1:, 0] != ev[:-1, 0]
        latest = ev[last]
        return np.ascontiguousarray(latest[latest[:, 1] == 1, 0])

    def publish(self) -> Snapshot:
        """Publish a snapshot of the opt-outs in force now (001 §8.4)."""
        now = self.clock()
        now_us = _us(now)
        opted = self._live_opted_out(now_us)
        snap_id = now.strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path / "snapshots" / f"{snap_id}.npy"
        fd, tmp = tempfile.mkstemp(prefix=".snapshot.", suffix=".npy", dir=self.path / "snapshots")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, opted, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        sha = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
        os.replace(tmp, target)
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO publications (id, published_at_us, opted_out_count, sha256) "
                "VALUES (?, ?, ?, ?)",
                (snap_id, now_us, int(opted.size), sha),
            )
        snapshot = Snapshot(snap_id, _dt(now_us), int(opted.size), sha, target)
        self._write_current(snapshot)
        self._prune()
        self._loaded = (snap_id, opted)
        return snapshot

    def _write_current(self, snap: Snapshot) -> None:
        doc = {
            "id": snap.id,
            "published_at": snap.published_at.isoformat(),
            "count": snap.count,
            "sha256": snap.sha256,
            "file": snap.path.name,
        }
        atomic.write_bytes(self.path / "current.json", json.dumps(doc).encode("utf-8"))

    def _prune(self) -> None:
        files = sorted((self.path / "snapshots").glob("*.npy"))
        for old in files[:-_KEEP_SNAPSHOTS]:
            old.unlink(missing_ok=True)

    def latest(self) -> Snapshot | None:
        """The latest published snapshot (possibly published by another process), or None."""
        try:
            doc = json.loads((self.path / "current.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return Snapshot(
            id=str(doc["id"]),
            published_at=datetime.fromisoformat(doc["published_at"]),
            count=int(doc["count"]),
            sha256=str(doc["sha256"]),
            path=self.path / "snapshots" / str(doc["file"]),
        )

    def publication_due(self) -> bool:
        snap = self.latest()
        return snap is None or self.clock() - snap.published_at >= PUBLISH_EVERY

    def ensure_published(self) -> Snapshot:
        """Publish when there is no snapshot yet or the latest is 24 hours old."""
        snap = self.latest()
        if snap is None or self.clock() - snap.published_at >= PUBLISH_EVERY:
            return self.publish()
        return snap

    def _snapshot_array(self) -> tuple[Snapshot, np.ndarray]:
        snap = self.latest()
        if snap is None:
            raise UsageError(
                "the register has no published snapshot yet",
                hint="run `optout service publish` (the responder publishes on its own every 24 hours)",
            )
        if self._loaded is None or self._loaded[0] != snap.id:
            self._loaded = (snap.id, np.load(snap.path, allow_pickle=False))
        return snap, self._loaded[1]

    def answer(self, numbers: np.ndarray) -> np.ndarray:
        """Those of ``numbers`` WITHOUT an opt-out in the latest published snapshot (order kept)."""
        return self.answer_with_snapshot(numbers)[0]

    def answer_with_snapshot(self, numbers: np.ndarray) -> tuple[np.ndarray, Snapshot]:
        snap, opted = self._snapshot_array()
        x = np.asarray(numbers, dtype=np.int64)
        if opted.size == 0 or x.size == 0:
            return x.copy(), snap
        idx = np.searchsorted(opted, x)
        idx[idx == opted.size] = 0
        return x[opted[idx] != x], snap

    # ------------------------------------------------------------------ requests answered

    def was_answered(self, message_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM answered WHERE message_id = ?", (message_id,)).fetchone()
        return row is not None

    def mark_answered(
        self,
        message_id: str,
        *,
        local_id: str | None,
        outcome: str,
        submitted: int | None = None,
        returned: int | None = None,
        snapshot_id: str | None = None,
    ) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO answered VALUES (?, ?, ?, ?, ?, ?, ?)",
                (message_id, local_id, _us(self.clock()), outcome, submitted, returned, snapshot_id),
            )

    # ------------------------------------------------------------------ status

    def status(self) -> RegisterStatus:
        events = int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
        people = int(self._db.execute("SELECT count(DISTINCT nhs_number) FROM events").fetchone()[0])
        live = int(self._live_opted_out().size)
        outcomes = dict(
            self._db.execute("SELECT outcome, count(*) FROM answered GROUP BY outcome").fetchall()
        )
        snap = self.latest()
        return RegisterStatus(
            events=events,
            people=people,
            opted_out_now=live,
            snapshot=snap,
            next_publication_due=(snap.published_at + PUBLISH_EVERY) if snap else None,
            requests_answered=int(outcomes.get("answered", 0)),
            requests_rejected=int(outcomes.get("rejected", 0)),
            requests_ignored=int(outcomes.get("ignored", 0)),
        )

    # ------------------------------------------------------------------ helpers

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, typ: object, value: object, tb: object) -> None:
        self.db.execute("COMMIT" if typ is None else "ROLLBACK")
