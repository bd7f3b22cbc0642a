"""Journeys in progress (an assessment, a release being made): one owner-only folder each.

A journey that spans many pages keeps its state in ``<root>/<id>/draft.json`` (0600, written
atomically), and the release journey keeps the uploaded tables in the same folder (0700, made so
as it is created, whatever the umask: DEVELOPERS.md "Security properties"). A draft belongs to
the user who started it: anyone else is told it does not exist. :meth:`Drafts.sweep` removes
drafts nobody has touched for a while, so uploaded files never outlive their purpose.

Ids are random (``secrets``), and checked against a pattern before they touch the file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from optout import atomic
from optout.errors import NotFoundError

__all__ = ["Draft", "Drafts"]

_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
DRAFT_FILE = "draft.json"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Draft:
    id: str
    owner: str
    kind: str
    folder: Path
    data: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""

    def path(self, *parts: str) -> Path:
        return self.folder.joinpath(*parts)


class Drafts:
    """Drafts of one kind under ``root`` (created owner-only on first use)."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root = Path(root)
        self.kind = kind

    def _folder(self, draft_id: str) -> Path:
        if not _ID.match(draft_id or ""):
            raise NotFoundError("no such draft", hint="start again")
        return self.root / draft_id

    def create(self, owner: str, data: dict[str, Any] | None = None) -> Draft:
        atomic.private_dir(self.root)
        draft_id = secrets.token_urlsafe(18)
        folder = self._folder(draft_id)
        folder.mkdir(mode=atomic.PRIVATE_DIR)
        os.chmod(folder, atomic.PRIVATE_DIR)
        stamp = _now().isoformat(timespec="seconds")
        draft = Draft(draft_id, owner, self.kind, folder, dict(data or {}), stamp, stamp)
        self.save(draft)
        return draft

    def load(self, draft_id: str, owner: str) -> Draft:
        folder = self._folder(draft_id)
        try:
            doc = json.loads((folder / DRAFT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise NotFoundError("no such draft", hint="it may have been finished or cleared away") from None
        if doc.get("owner") != owner or doc.get("kind") != self.kind:
            raise NotFoundError("no such draft", hint="it may have been finished or cleared away")
        return Draft(
            draft_id,
            owner,
            self.kind,
            folder,
            dict(doc.get("data") or {}),
            str(doc.get("created_at") or ""),
            str(doc.get("updated_at") or ""),
        )

    def save(self, draft: Draft) -> None:
        draft.updated_at = _now().isoformat(timespec="seconds")
        doc = {
            "owner": draft.owner,
            "kind": draft.kind,
            "created_at": draft.created_at,
            "updated_at": draft.updated_at,
            "data": draft.data,
        }
        atomic.write_bytes(draft.folder / DRAFT_FILE, json.dumps(doc, indent=1, default=str).encode("utf-8"))

    def delete(self, draft: Draft | str) -> None:
        folder = draft.folder if isinstance(draft, Draft) else self._folder(draft)
        shutil.rmtree(folder, ignore_errors=True)

    def mine(self, owner: str) -> list[Draft]:
        """The owner's drafts, newest first."""
        out: list[Draft] = []
        if not self.root.is_dir():
            return out
        for entry in self.root.iterdir():
            if not _ID.match(entry.name):
                continue
            with contextlib.suppress(NotFoundError):
                out.append(self.load(entry.name, owner))
        return sorted(out, key=lambda d: d.updated_at, reverse=True)

    def sweep(self, max_age: timedelta, *, now: datetime | None = None) -> int:
        """Remove drafts (and everything in their folders) untouched for ``max_age``."""
        if not self.root.is_dir():
            return 0
        cutoff = (now or _now()) - max_age
        removed = 0
        for entry in self.root.iterdir():
            if not entry.is_dir() or not _ID.match(entry.name):
                continue
            try:
                marker = entry / DRAFT_FILE
                mtime = (marker if marker.exists() else entry).stat().st_mtime
            except OSError:
                continue
            if datetime.fromtimestamp(mtime, UTC) < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed
