"""Test helpers: a release folder with a manifest and its ``releases`` row, as ``optout apply``
leaves them (state "prepared"), without running apply; and one as an apply killed half-way leaves
it (state "preparing"). Used by the release tests."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from optout import audit
from optout.release.lifecycle import CHECK_WINDOWS, MANIFEST_NAME
from optout.store import Store, releases


def make_release(
    store: Store,
    root: Path,
    release_id: str,
    *,
    checked_at: datetime,
    source: str = "one-off",
    files: Mapping[str, str] | None = None,
    not_upheld: Sequence[str] = (),
    flow_id: str | None = None,
    flow_version: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ROOT/RELEASE_ID/{files..., release.json} and insert the prepared release row."""
    out = root / release_id
    out.mkdir(parents=True)
    files = files if files is not None else {"episodes.csv": "id,age\n1,40\n2,51\n"}
    entries = []
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        entry: dict[str, Any] = {"path": name, "sha256": hashlib.sha256(text.encode()).hexdigest()}
        if name in not_upheld:
            entry["opt_out_upheld"] = False
            entry["basis"] = "exempt"
        entries.append(entry)
    manifest = {"format": "optout-release/1", "release_id": release_id, "files": entries, **(extra or {})}
    data = json.dumps(manifest, indent=2).encode()
    (out / MANIFEST_NAME).write_bytes(data)
    deadline = checked_at + timedelta(days=CHECK_WINDOWS[source]) if source in CHECK_WINDOWS else None
    with store.begin() as conn:
        conn.execute(
            releases.insert().values(
                id=release_id,
                flow_id=flow_id,
                flow_version=flow_version,
                state="prepared",
                created_at=checked_at.isoformat(),
                checked_at=checked_at.isoformat() if source in CHECK_WINDOWS else None,
                check_source=source,
                deadline=deadline.isoformat() if deadline else None,
                out_dir=str(out),
                manifest_sha256=hashlib.sha256(data).hexdigest(),
                details={},
            )
        )
    return out


def make_preparing_release(
    store: Store, root: Path, release_id: str, *, in_place: bool, host: str | None = None
) -> tuple[Path, Path]:
    """A release as a killed ``optout apply`` leaves it: recorded "preparing", its folder still in
    the hidden staging folder (``in_place=False``) or renamed into place. Returns (OUT, staging)."""
    out = root / release_id
    staging = root / f".{release_id}.tmp-4194303-x1"  # a process id above Linux's pid_max: not running
    staging.mkdir(parents=True)
    data = b"id,age\n1,40\n"
    (staging / "episodes.csv").write_bytes(data)
    files = [{"path": "episodes.csv", "sha256": hashlib.sha256(data).hexdigest()}]
    manifest = json.dumps({"format": "optout-release/1", "release_id": release_id, "files": files}).encode()
    (staging / MANIFEST_NAME).write_bytes(manifest)
    if in_place:
        os.rename(staging, out)
    now = datetime.now(UTC)
    apply_info = {"staging": str(staging), "pid": 4194303, "host": host or socket.gethostname()}
    with store.begin() as conn:
        conn.execute(
            releases.insert().values(
                id=release_id,
                state="preparing",
                created_at=now.isoformat(),
                checked_at=(now - timedelta(days=1)).isoformat(),
                check_source="one-off",
                deadline=(now + timedelta(days=19)).isoformat(),
                out_dir=str(out),
                manifest_sha256=hashlib.sha256(manifest).hexdigest(),
                details={"engine": "duckdb", "apply": apply_info},
            )
        )
    audit.record(store, "release.preparing", subject=release_id, actor="test")
    return out, staging
