"""Receiving uploaded extract tables: streamed straight to an owner-only folder, never spooled.

A ``multipart/form-data`` body is parsed as it arrives (``python-multipart``'s streaming parser):
each file part is written to a 0600 file inside the journey's 0700 folder as its bytes come in,
so nothing of an extract is held in memory or in the system's temporary folder. The body's size
is limited by the app's security middleware (``OPTOUT_WEB_MAX_UPLOAD_MB``); a body cut short, a
bad name or any other failure removes what was written.

File names become table names (``episodes.parquet`` -> ``episodes``, as ``optout apply`` names
them), so they must be plain (letters, digits, ``_`` and ``-``), end in a CSV or Parquet suffix,
and hold no NHS number. Each file is then opened by :func:`optout.tables.open_table`, whose
errors name the file, row and column and the *class* of a bad value, never the value.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from optout import atomic
from optout.errors import InputError, Location, OptoutError, UsageError
from optout.tables import CSV_SUFFIXES, PARQUET_SUFFIXES, open_table
from optout.text import contains_nhs_number

__all__ = ["MAX_FIELD_BYTES", "MAX_FILES", "Received", "UploadForm", "receive_multipart", "table_name"]

MAX_FILES = 20
MAX_FIELD_BYTES = 64 * 1024
_TABLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass
class Received:
    field: str
    filename: str  # as sent (base name only)
    path: Path  # where it was written (inside the incoming folder)
    size: int = 0


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[Received] = field(default_factory=list)


def table_name(filename: str) -> tuple[str, str]:
    """``episodes.parquet`` -> (``episodes``, ``.parquet``), or a UsageError saying how to rename it."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if contains_nhs_number(base):
        raise UsageError(
            "A file name looks like it holds an NHS number",
            hint="rename the file (a table's name is shown on pages and written in the manifest)",
        )
    stem, dot, suffix = base.rpartition(".")
    suffix = f".{suffix.lower()}" if dot else ""
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise UsageError(
            f"{base} is not a CSV or Parquet file",
            where=Location(file=base),
            hint="upload the tables as CSV (.csv) or Parquet (.parquet) files; save a spreadsheet as "
            "CSV first",
        )
    if not _TABLE.match(stem):
        raise UsageError(
            f"{base}: a table's file name may use only letters, digits, _ and - before its suffix",
            where=Location(file=base),
            hint="rename the file, e.g. episodes.csv (the name is how the table is referred to)",
        )
    return stem, suffix


async def receive_multipart(
    request_stream: AsyncIterator[bytes],
    content_type: str,
    folder: Path,
    *,
    on_field: Callable[[str, str], None] | None = None,
    before_file: Callable[[], None] | None = None,
    max_files: int = MAX_FILES,
) -> UploadForm:
    """Parse a multipart body, writing each file part into ``folder`` (made 0700) as it arrives.

    ``on_field(name, value)`` is called as soon as a plain field is complete, before any later
    part is read (the CSRF token comes first in our forms, so it is checked before any file is
    written), and ``before_file()`` before a file's first byte is written (it may refuse). Empty
    file inputs (no file chosen) are skipped. On any error every file written
    is removed.
    """
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UsageError("the form was not sent as a file upload", hint="use the page's upload form")
    atomic.private_dir(folder)
    form = UploadForm()
    state: dict[str, Any] = {}

    def part_begin() -> None:
        state.update(headers={}, name=None, filename=None, fh=None, buf=bytearray(), hfield=b"", hvalue=b"")

    def header_field(data: bytes, start: int, end: int) -> None:
        state["hfield"] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        state["hvalue"] += data[start:end]

    def header_end() -> None:
        state["headers"][state["hfield"].decode("latin-1").lower()] = state["hvalue"]
        state["hfield"], state["hvalue"] = b"", b""

    def headers_finished() -> None:
        disposition = state["headers"].get("content-disposition", b"")
        _kind, opts = parse_options_header(disposition)
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        state["name"] = name
        if b"filename" in opts:
            filename = opts[b"filename"].decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
            state["filename"] = filename
            if not filename:
                return  # an empty file input: nothing chosen
            if before_file is not None:
                before_file()
            if len(form.files) >= max_files:
                raise UsageError(f"upload at most {max_files} files at a time", hint="upload the rest next")
            target = folder / f"part-{len(form.files):03d}"
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, atomic.PRIVATE_FILE)
            os.fchmod(fd, atomic.PRIVATE_FILE)
            state["fh"] = os.fdopen(fd, "wb")
            form.files.append(Received(name, filename, target))

    def part_data(data: bytes, start: int, end: int) -> None:
        fh = state.get("fh")
        if fh is not None:
            fh.write(data[start:end])
            form.files[-1].size += end - start
        elif state.get("filename") is None:
            state["buf"] += data[start:end]
            if len(state["buf"]) > MAX_FIELD_BYTES:
                raise UsageError("a form field is too long", hint="use the page's form")

    def part_end() -> None:
        fh = state.get("fh")
        if fh is not None:
            fh.close()
            state["fh"] = None
        elif state.get("filename") is None and state.get("name"):
            value = bytes(state["buf"]).decode("utf-8", "replace")
            form.fields[state["name"]] = value
            if on_field is not None:
                on_field(state["name"], value)

    parser = MultipartParser(
        boundary,
        {  # type: ignore[arg-type]
            "on_part_begin": part_begin,
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_headers_finished": headers_finished,
            "on_part_data": part_data,
            "on_part_end": part_end,
        },
    )
    try:
        async for chunk in request_stream:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except BaseException:
        fh = state.get("fh")
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()
        for f in form.files:
            f.path.unlink(missing_ok=True)
        raise
    return form


def check_table(path: Path, shown_name: str) -> Any:
    """Open a received table (sniffing CSV dialect and encoding, reading a Parquet footer).

    Returns the :class:`optout.tables.TableSource`; an InputError names the file as uploaded."""
    try:
        return open_table(path)
    except OptoutError as exc:
        where = exc.where
        loc = Location(
            file=shown_name,
            row=where.row if where else None,
            line=where.line if where else None,
            column=where.column if where else None,
            value_class=where.value_class if where else None,
        )
        message = exc.message.replace(path.name, shown_name)
        raise InputError(message, where=loc, hint=exc.hint) from None


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
