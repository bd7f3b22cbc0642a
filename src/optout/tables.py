"""Reading extract tables: CSV (dialect and encoding sniffed, overridable) and Parquet.

A table is named by its file's stem (``episodes.csv`` -> ``episodes``). CSV files are read as
text (every column VARCHAR) so that a release reproduces each value exactly as it was written:
no leading zero lost, no date or decimal reformatted. Parquet files keep their schema.

Every problem becomes an :class:`~optout.errors.InputError` naming the file, the row and the
column, and saying what to do. Messages never quote a value from the file: DuckDB's own error
text (which echoes the offending line) is translated, not passed on.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from optout import atomic
from optout.errors import InputError, Location, UsageError

__all__ = [
    "CSV_SUFFIXES",
    "PARQUET_SUFFIXES",
    "TableSource",
    "connect",
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
    types: dict[str, str] = field(default_factory=dict)  # DuckDB type per column
    encoding: str | None = None  # csv: "utf-8" | "utf-8-sig" | "latin-1"
    delimiter: str | None = None
    quote: str | None = None
    newline: str | None = None  # csv: "\n" | "\r\n"
    size: int = 0
    num_rows: int | None = None  # parquet: from the footer
    compression: str | None = None  # parquet: codec of the first column chunk

    @property
    def bom(self) -> bool:
        return self.encoding == "utf-8-sig"

    def scan_sql(self) -> str:
        """A DuckDB table expression that reads this table (text columns for CSV)."""
        if self.format == "parquet":
            return f"read_parquet({quote_literal(self.path)})"
        cols = ", ".join(f"{quote_literal(c)}: 'VARCHAR'" for c in self.columns)
        enc = "latin-1" if self.encoding == "latin-1" else "utf-8"
        q = self.quote or '"'
        return (
            f"read_csv({quote_literal(self.path)}, header=true, auto_detect=false, "
            f"delim={quote_literal(self.delimiter or ',')}, quote={quote_literal(q)}, "
            f"escape={quote_literal(q)}, columns={{{cols}}}, encoding={quote_literal(enc)}, "
            "strict_mode=true, null_padding=false)"
        )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "file": self.path.name, "format": self.format}
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
    """Open and sniff one table. Raises InputError for anything that cannot become a release."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path.name} does not exist",
            where=Location(file=path),
            hint="check the file name and folder",
        )
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


def _open_parquet(path: Path, size: int) -> TableSource:
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
    if meta.num_rows == 0:
        raise InputError(
            f"{path.name} has columns but no rows",
            where=Location(file=path),
            hint="a table with no rows usually means the export failed: export it again, "
            "or leave it out of the release",
        )
    codec = None
    if meta.num_row_groups and meta.num_columns:
        codec = meta.row_group(0).column(0).compression
    con = duckdb.connect(":memory:")
    try:
        rel = con.execute(f"DESCRIBE SELECT * FROM read_parquet({quote_literal(path)})").fetchall()
    except duckdb.Error as exc:
        raise translate_duckdb_error(exc, path) from None
    finally:
        con.close()
    types = {r[0]: r[1] for r in rel}
    return TableSource(
        name=path.stem,
        path=path,
        format="parquet",
        columns=columns,
        types=types,
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
    if not rest.strip() and complete:
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
    if isinstance(exc, duckdb.IOException) or "No such file" in text or "Permission denied" in text:
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
    con = connect()
    try:
        return con.sql(f"SELECT * FROM {source.scan_sql()}").to_arrow_table()
    except duckdb.Error as exc:
        raise translate_duckdb_error(exc, source.path) from None
    finally:
        con.close()
