"""Reading extract tables: CSV (dialect and encoding sniffed, overridable) and Parquet.

A table is named by its file's stem (``episodes.csv`` -> ``episodes``). A folder of part files
(``episodes.parquet/part-00000.parquet`` ..., as Spark and other distributed writers make them) is
one table, named by the folder's stem, its parts read in name order (files whose names start
with ``_`` or ``.``, and ``.crc`` files, are bookkeeping and skipped, as Spark skips them); only
``--engine spark`` reads folders. A ``file://`` URI is a local path. Other URIs (``s3a://``,
``abfss://``, ``hdfs://`` ...) and catalog tables are opened by the Spark engine, not here.

CSV files are read as text (every column VARCHAR) so that a release reproduces each value exactly
as it was written: no leading zero lost, no date or decimal reformatted. Parquet files keep their schema.

Every problem becomes an :class:`~optout.errors.InputError` naming the file, the row and the
column, and saying what to do. Messages never quote a value from the file: DuckDB's own error
text (which echoes the offending line) is translated, not passed on.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from optout import atomic
from optout.errors import InputError, Location, UsageError

__all__ = [
    "CSV_SUFFIXES",
    "PARQUET_SUFFIXES",
    "TableSource",
    "connect",
    "folder_parts",
    "is_uri",
    "local_path",
    "open_table",
    "quote_ident",
    "quote_literal",
    "read_column",
    "read_table",
    "translate_duckdb_error",
]

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".psv")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_SAMPLE = 1 << 16
_DELIMITERS = ",;\t|"
_ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "utf-8-sig": "utf-8-sig",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "cp1252": "latin-1",  # DuckDB reads latin-1; cp1252 differs only in 0x80-0x9F
}


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_uri(spec: str | os.PathLike[str]) -> bool:
    """``scheme://...`` (``file://``, ``s3a://``, ``abfss://``, ``hdfs://``, ``dbfs://`` ...)."""
    return isinstance(spec, str) and _URI.match(spec) is not None


def local_path(spec: str | os.PathLike[str]) -> Path | None:
    """The local path of a table: a path as given, or a ``file://`` URI's path; None for another URI."""
    if not is_uri(spec):
        return Path(spec)
    from urllib.parse import unquote, urlparse

    u = urlparse(str(spec))
    if u.scheme.lower() != "file" or u.netloc not in ("", "localhost"):
        return None
    return Path(unquote(u.path))


def folder_parts(folder: Path) -> list[Path]:
    """A folder's part files in name order (not ``_*``, ``.*`` or ``*.crc``: Spark skips those)."""
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(("_", ".")) and not p.name.endswith(".crc") and p.is_file()
    )


def quote_ident(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str | os.PathLike[str]) -> str:
    """A DuckDB string literal."""
    return "'" + str(text).replace("'", "''") + "'"


@dataclass
class TableSource:
    """One extract table, opened and sniffed but not read."""

    name: str  # the file's stem: how links and --nhs-column refer to the table
    path: Path
    format: str  # "csv" | "parquet"
    columns: list[str]
    # DuckDB type per column: CSV all text; Parquet read from the file on first use (sql_types)
    types: dict[str, str] = field(default_factory=dict)
    encoding: str | None = None  # csv: "utf-8" | "utf-8-sig" | "latin-1"
    delimiter: str | None = None
    quote: str | None = None
    newline: str | None = None  # csv: "\n" | "\r\n"
    size: int = 0
    num_rows: int | None = None  # parquet: from the footer
    compression: str | None = None  # parquet: codec of the first column chunk
    # "file"; "folder" (of part files, ``parts``); "uri" or "catalog" (read by Spark only, from
    # ``location``: the URI or the catalog table's name)
    kind: str = "file"
    parts: list[Path] = field(default_factory=list)  # folder: its part files, in name order
    location: str | None = None

    def sql_types(self) -> dict[str, str]:
        """DuckDB's type for each column (Parquet: described once, by DuckDB, on first use; only
        the DuckDB engine needs them, so the others never load DuckDB to open a table)."""
        if not self.types and self.format == "parquet" and self.local:
            import duckdb

            con = duckdb.connect(":memory:")
            try:
                rel = con.execute(f"DESCRIBE SELECT * FROM {self.scan_sql()}").fetchall()
            except duckdb.Error as exc:
                raise translate_duckdb_error(exc, self.path) from None
            finally:
                con.close()
            self.types = {r[0]: r[1] for r in rel}
        return self.types

    @property
    def local(self) -> bool:
        """Can the driver read it as files (a file, or a folder of parts)?"""
        return self.kind in ("file", "folder")

    @property
    def bom(self) -> bool:
        return self.encoding == "utf-8-sig"

    def scan_sql(self) -> str:
        """A DuckDB table expression that reads this table (text columns for CSV; a folder's parts
        in name order)."""
        files = quote_literal(self.path)
        if self.kind == "folder":
            files = "[" + ", ".join(quote_literal(p) for p in self.parts) + "]"
        if self.format == "parquet":
            return f"read_parquet({files})"
        cols = ", ".join(f"{quote_literal(c)}: 'VARCHAR'" for c in self.columns)
        enc = "latin-1" if self.encoding == "latin-1" else "utf-8"
        q = self.quote or '"'
        return (
            f"read_csv({files}, header=true, auto_detect=false, "
            f"delim={quote_literal(self.delimiter or ',')}, quote={quote_literal(q)}, "
            f"escape={quote_literal(q)}, columns={{{cols}}}, encoding={quote_literal(enc)}, "
            "strict_mode=true, null_padding=false)"
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "file": self.path.name, "format": self.format}
        if self.kind != "file":
            out["kind"] = self.kind
        if self.location is not None:
            out["location"] = self.location
        if self.kind == "catalog":
            del out["file"]
            out["format"] = "table"
            return out
        if self.format == "csv":
            out.update(
                encoding=self.encoding,
                delimiter=self.delimiter,
                quote=self.quote,
                newline="CRLF" if self.newline == "\r\n" else "LF",
            )
        else:
            out["compression"] = self.compression
        return out


def connect(*, memory_limit: str | None = None, temp_dir: str | Path | None = None) -> Any:
    """A private in-memory DuckDB connection with bounded memory that spills to ``temp_dir``.

    Without ``temp_dir`` it spills into this process's owner-only spill folder
    (:func:`optout.atomic.spill_dir`), never DuckDB's default ``.tmp`` in the working directory
    (made with the umask's mode, and left there by a crash).
    """
    import duckdb

    if temp_dir is None:
        temp_dir = atomic.spill_dir()
    con = duckdb.connect(":memory:")
    con.execute("SET preserve_insertion_order = true")
    if memory_limit:
        try:
            con.execute(f"SET memory_limit = {quote_literal(memory_limit)}")
        except duckdb.Error:
            raise UsageError(
                "the memory limit is not a size DuckDB understands",
                hint="give it like 2GB, 512MB or 75%",
            ) from None
    con.execute(f"SET temp_directory = {quote_literal(temp_dir)}")
    return con


def _not_readable(path: Path, exc: OSError) -> InputError:
    return InputError(
        f"cannot read {path.name}: {exc.strerror or exc.__class__.__name__}",
        where=Location(file=path),
        hint="check the path and that your account may read the file",
    )


def _format_of(path: Path, head: bytes) -> str:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    return "parquet" if head[:4] == b"PAR1" else "csv"


def open_table(
    path: str | Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    quote: str | None = None,
) -> TableSource:
    """Open and sniff one table: a file, a folder of part files, or a ``file://`` URI of either.

    Raises InputError for anything that cannot become a release, UsageError for another URI (only
    ``--engine spark`` reads those)."""
    local = local_path(path)
    if local is None:
        raise UsageError(
            f"{path} is not a local path: only --engine spark reads URIs such as s3a://, abfss:// or hdfs://",
            hint="add --engine spark, or copy the table to a local folder",
        )
    path = local
    if not path.exists():
        raise InputError(
            f"{path.name} does not exist",
            where=Location(file=path),
            hint="check the file name and folder",
        )
    if path.is_dir():
        return _open_folder(path, encoding=encoding, delimiter=delimiter, quote=quote)
    if not path.is_file():
        raise InputError(
            f"{path.name} is not a file", where=Location(file=path), hint="name a CSV or Parquet file"
        )
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(_SAMPLE)
    except OSError as exc:
        raise _not_readable(path, exc) from None
    if size == 0:
        raise InputError(
            f"{path.name} is empty (0 bytes)",
            where=Location(file=path),
            hint="the export that made it probably failed: export the table again",
        )
    fmt = _format_of(path, head)
    if fmt == "parquet":
        return _open_parquet(path, size)
    return _open_csv(path, size, head, encoding=encoding, delimiter=delimiter, quote=quote)


def _open_folder(
    folder: Path, *, encoding: str | None, delimiter: str | None, quote: str | None
) -> TableSource:
    """A folder of part files: one table, its parts in name order, every part the same format and
    columns (a part with no rows is fine: distributed writers make them)."""
    try:
        parts = folder_parts(folder)
    except OSError as exc:
        raise _not_readable(folder, exc) from None
    hint = "name a CSV or Parquet file, or a folder of part files (part-00000.parquet ...)"
    if not parts:
        raise InputError(
            f"{folder.name} is a folder with no part files", where=Location(file=folder), hint=hint
        )
    first: TableSource | None = None
    formats: set[str] = set()
    total = 0
    rows: int | None = 0
    for p in parts:
        try:
            size = p.stat().st_size
            with p.open("rb") as fh:
                head = fh.read(_SAMPLE)
        except OSError as exc:
            raise _not_readable(p, exc) from None
        total += size
        if size == 0:
            continue
        fmt = _format_of(p, head)
        formats.add(fmt)
        if fmt == "parquet":
            src = _open_parquet(p, size, allow_empty=True)
        elif first is None:
            src = _open_csv(
                p, size, head, encoding=encoding, delimiter=delimiter, quote=quote, allow_empty=True
            )
        else:
            src = _open_csv(
                p,
                size,
                head,
                encoding=first.encoding,
                delimiter=first.delimiter,
                quote=first.quote,
                allow_empty=True,
            )
        if first is None:
            first = src
        elif src.columns != first.columns:
            raise InputError(
                f"{folder.name}: part {p.name} has other columns than {first.path.name}",
                where=Location(file=p),
                hint="every part of a table must have the same columns, in the same order",
            )
        rows = None if rows is None or src.num_rows is None else rows + src.num_rows
    if first is None:
        raise InputError(
            f"{folder.name}: every part file is empty (0 bytes)", where=Location(file=folder), hint=hint
        )
    if len(formats) > 1:
        raise InputError(
            f"{folder.name} mixes CSV and Parquet part files", where=Location(file=folder), hint=hint
        )
    if rows == 0:
        raise InputError(
            f"{folder.name} has columns but no rows",
            where=Location(file=folder),
            hint="a table with no rows usually means the export failed: export it again, "
            "or leave it out of the release",
        )
    return dataclasses.replace(
        first, name=folder.stem, path=folder, kind="folder", parts=parts, size=total, num_rows=rows
    )


def _open_parquet(path: Path, size: int, *, allow_empty: bool = False) -> TableSource:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException) and exc.errno:
            raise _not_readable(path, exc) from None
        raise InputError(
            f"{path.name} is not a readable Parquet file (its footer is missing or damaged)",
            where=Location(file=path),
            hint="export it again; if it is really CSV, give it a .csv name",
        ) from None
    columns = list(schema.names)
    _check_header(path, columns)
    if meta.num_rows == 0 and not allow_empty:
        raise InputError(
            f"{path.name} has columns but no rows",
            where=Location(file=path),
            hint="a table with no rows usually means the export failed: export it again, "
            "or leave it out of the release",
        )
    codec = None
    if meta.num_row_groups and meta.num_columns:
        codec = meta.row_group(0).column(0).compression
    return TableSource(
        name=path.stem,
        path=path,
        format="parquet",
        columns=columns,
        size=size,
        num_rows=meta.num_rows,
        compression=(codec or "SNAPPY").upper(),
    )


def _sniff_encoding(head: bytes, complete: bool) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    dec = codecs.getincrementaldecoder("utf-8")()
    try:
        dec.decode(head, final=complete)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _first_record_end(text: str, quote: str) -> int:
    """Index just past the first record's line end (a newline outside quotes), or -1."""
    inside = False
    for i, ch in enumerate(text):
        if ch == quote:
            inside = not inside
        elif ch == "\n" and not inside:
            return i + 1
    return -1


def _open_csv(
    path: Path,
    size: int,
    head: bytes,
    *,
    encoding: str | None,
    delimiter: str | None,
    quote: str | None,
    allow_empty: bool = False,
) -> TableSource:
    complete = size <= len(head)
    if encoding is not None:
        enc = _ENCODINGS.get(encoding.lower().replace("_", "-"))
        if enc is None:
            raise UsageError(
                f"unsupported encoding {encoding!r}",
                hint="use utf-8, utf-8-sig or latin-1 (or leave it out to sniff it)",
            )
        if enc == "utf-8" and head.startswith(codecs.BOM_UTF8):
            enc = "utf-8-sig"
    else:
        enc = _sniff_encoding(head, complete)
    try:
        text = codecs.getincrementaldecoder(enc)(errors="strict").decode(head, final=complete)
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path.name} is not valid {enc} text",
            where=Location(file=path, line=line),
            hint="give the right encoding with --encoding (latin-1 for most Windows exports), "
            "or re-save the file as UTF-8",
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    q = quote or '"'
    if len(q) != 1:
        raise UsageError("the quote character must be one character", hint="use --quote '\"'")
    end = _first_record_end(text, q)
    header_text = text if end < 0 else text[:end]
    rest = "" if end < 0 else text[end:]
    if not header_text.strip():
        raise InputError(
            f"{path.name} has no header line (the first line is blank)",
            where=Location(file=path, line=1),
            hint="the first line must name the columns",
        )
    newline = "\r\n" if header_text.endswith("\r\n") else "\n"
    if delimiter is None:
        delimiter = _sniff_delimiter(header_text, rest)
    elif delimiter in ("\\t", "tab", "TAB"):
        delimiter = "\t"
    if len(delimiter) != 1:
        raise UsageError("the delimiter must be one character", hint="use --delimiter ',' (or ';', tab, '|')")
    try:
        columns = next(csv.reader(io.StringIO(header_text), delimiter=delimiter, quotechar=q))
    except (csv.Error, StopIteration):
        raise InputError(
            f"{path.name}: the header line cannot be parsed",
            where=Location(file=path, line=1),
            hint="check the delimiter and quote character (--delimiter, --quote)",
        ) from None
    columns = [c.strip() for c in columns]
    _check_header(path, columns)
    if not rest.strip() and complete and not allow_empty:
        raise InputError(
            f"{path.name} has a header but no data rows",
            where=Location(file=path),
            hint="a table with no rows usually means the export failed: export it again, "
            "or leave it out of the release",
        )
    return TableSource(
        name=path.stem,
        path=path,
        format="csv",
        columns=columns,
        types=dict.fromkeys(columns, "VARCHAR"),
        encoding=enc,
        delimiter=delimiter,
        quote=q,
        newline=newline,
        size=size,
    )


def _sniff_delimiter(header: str, rest: str) -> str:
    sample = header + rest[: _SAMPLE // 4]
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        pass
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _check_header(path: Path, columns: list[str]) -> None:
    from optout.nhs_number import parse

    seen: dict[str, int] = {}
    for i, c in enumerate(columns, start=1):
        if not c:
            raise InputError(
                f"{path.name}: column {i} has no name",
                where=Location(file=path, line=1),
                hint="give every column a name in the header line",
            )
        if parse(c).ok:
            raise InputError(
                f"{path.name}: the first line looks like data (a column is named with an NHS number)",
                where=Location(file=path, line=1, value_class="NHS number in header"),
                hint="add a header line naming the columns",
            )
        key = c.lower()
        if key in seen:
            raise InputError(
                f"{path.name}: column {c!r} appears twice in the header (columns {seen[key]} and {i})",
                where=Location(file=path, line=1, column=c),
                hint="rename one of them so every column name is unique",
            )
        seen[key] = i


_LINE = re.compile(r"CSV Error on Line: (\d+)")
_COLS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")


def translate_duckdb_error(exc: BaseException, path: str | Path, *, column: str | None = None) -> InputError:
    """Turn a DuckDB reading error into an InputError without echoing any line of the file."""
    path = Path(path)
    text = str(exc)
    m = _LINE.search(text)
    record = int(m.group(1)) if m else None
    row = record - 1 if record and record > 1 else None  # DuckDB counts the header as record 1
    where = Location(file=path, row=row, column=column)
    if "Invalid unicode" in text or "not utf-8 encoded" in text:
        return InputError(
            f"{path.name} contains bytes that are not valid UTF-8",
            where=where,
            hint="give the right encoding with --encoding latin-1, or re-save the file as UTF-8",
        )
    c = _COLS.search(text)
    if c:
        return InputError(
            f"{path.name}: a row has {c.group(2)} fields where the header has {c.group(1)}",
            where=Location(file=path, row=row, value_class="ragged row"),
            hint="fix that row (a missing or extra delimiter, or an unquoted delimiter in a value), "
            "or give the right --delimiter",
        )
    if "unterminated quote" in text:
        return InputError(
            f"{path.name}: a quoted value is never closed",
            where=Location(file=path, row=row, value_class="unterminated quote"),
            hint="close the quote in that row, or give the right --quote",
        )
    if "magic bytes" in text or ("Parquet" in text and "footer" in text):
        return InputError(
            f"{path.name} is not a readable Parquet file",
            where=Location(file=path),
            hint="export it again; if it is really CSV, give it a .csv name",
        )
    duckdb = sys.modules.get("duckdb")  # a DuckDB error means DuckDB is loaded
    io_error = duckdb is not None and isinstance(exc, duckdb.IOException)
    if io_error or "No such file" in text or "Permission denied" in text:
        return InputError(
            f"cannot read {path.name}",
            where=Location(file=path),
            hint="check the file still exists and your account may read it",
        )
    if "Conversion Error" in text or "Could not convert" in text:
        return InputError(
            f"{path.name}: a value could not be read as its column's type",
            where=where,
            hint="check that column's values",
        )
    return InputError(
        f"{path.name} could not be parsed ({exc.__class__.__name__})",
        where=where,
        hint="check the delimiter (--delimiter), quote (--quote) and encoding (--encoding)",
    )


def read_column(source: TableSource, column: str) -> pa.ChunkedArray:
    """One column, in file order. For checks over a column (e.g. ``optout nhs-number check``)."""
    if column not in source.columns:
        raise InputError(
            f"{source.path.name} has no column {column!r}",
            where=Location(file=source.path, column=column),
            hint=f"choose one of: {', '.join(source.columns)}",
        )
    import duckdb

    con = connect()
    try:
        tbl = con.sql(f"SELECT {quote_ident(column)} FROM {source.scan_sql()}").to_arrow_table()
    except duckdb.Error as exc:
        raise translate_duckdb_error(exc, source.path) from None
    finally:
        con.close()
    return tbl.column(0)


def read_table(source: TableSource) -> pa.Table:
    """A whole (small) table as Arrow, in file order."""
    if source.format == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(source.path)
        except (pa.ArrowException, OSError) as exc:
            raise translate_duckdb_error(exc, source.path) from None
    import duckdb

    con = connect()
    try:
        return con.sql(f"SELECT * FROM {source.scan_sql()}").to_arrow_table()
    except duckdb.Error as exc:
        raise translate_duckdb_error(exc, source.path) from None
    finally:
        con.close()
