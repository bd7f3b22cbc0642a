"""optout.tables: CSV dialect/encoding sniffing, Parquet, and a precise error for each bad input
(file, row, column, what to do) that never quotes a value from the file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.errors import InputError, UsageError
from optout.tables import open_table, read_column, read_table

NHS = "9434765919"  # a valid (test-range) NHS number that must never appear in a message


def _w(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "encoding", "delimiter", "newline"),
    [
        (b"id,nhs_number\n1,9434765919\n", "utf-8", ",", "\n"),
        (b"id;nhs_number\r\n1;9434765919\r\n", "utf-8", ";", "\r\n"),
        (b"id\tnhs_number\n1\t9434765919\n", "utf-8", "\t", "\n"),
        (b"id|nhs_number\n1|9434765919\n", "utf-8", "|", "\n"),
        (b"\xef\xbb\xbfid,nhs_number\n1,9434765919\n", "utf-8-sig", ",", "\n"),
        ("id,name,nhs_number\n1,Zoë,9434765919\n".encode("latin-1"), "latin-1", ",", "\n"),
    ],
)
def test_csv_dialect_and_encoding_are_sniffed(
    tmp_path: Path, data: bytes, encoding: str, delimiter: str, newline: str
) -> None:
    src = open_table(_w(tmp_path / "t.csv", data))
    assert (src.encoding, src.delimiter, src.newline) == (encoding, delimiter, newline)
    assert src.columns[0] == "id" and src.columns[-1] == "nhs_number"
    assert src.name == "t"
    assert read_column(src, "nhs_number").to_pylist() == [NHS]


def test_sniffing_can_be_overridden(tmp_path: Path) -> None:
    src = open_table(_w(tmp_path / "t.csv", b"a;b\n1;2\n"), delimiter=",", encoding="latin-1")
    assert src.delimiter == "," and src.encoding == "latin-1" and src.columns == ["a;b"]


def test_csv_values_are_kept_as_text(tmp_path: Path) -> None:
    src = open_table(_w(tmp_path / "t.csv", b'id,code,when\n007,"1,50",01/02/2026\n'))
    assert read_table(src).to_pylist() == [{"id": "007", "code": "1,50", "when": "01/02/2026"}]


def test_parquet_keeps_its_schema(tmp_path: Path) -> None:
    t = pa.table({"nhs_number": pa.array([int(NHS)], pa.int64()), "x": pa.array([1.5])})
    pq.write_table(t, tmp_path / "t.parquet", compression="zstd")
    src = open_table(tmp_path / "t.parquet")
    assert src.format == "parquet" and src.num_rows == 1 and src.compression == "ZSTD"
    assert src.types == {}  # described by DuckDB on first use: only its engine needs it
    assert src.sql_types()["nhs_number"] == "BIGINT" and src.types["nhs_number"] == "BIGINT"
    assert read_table(src).equals(t)


BAD = [
    ("empty file", "t.csv", b"", "is empty", None),
    ("header only", "t.csv", b"id,nhs_number\n", "no data rows", None),
    ("blank first line", "t.csv", b"\n\n1,2\n", "no header", None),
    ("ragged row", "t.csv", f"id,nhs_number\n1,{NHS}\n2\n".encode(), "2 fields|1 fields", 2),
    ("extra field", "t.csv", f"id,nhs_number\n1,{NHS}\n2,{NHS},x\n".encode(), "3 fields", 2),
    ("duplicate column", "t.csv", b"nhs_number,NHS_NUMBER\n1,2\n", "appears twice", None),
    ("unnamed column", "t.csv", b"a,,c\n1,2,3\n", "has no name", None),
    ("no header (data first)", "t.csv", f"{NHS},x\n{NHS},y\n".encode(), "looks like data", None),
    ("unterminated quote", "t.csv", f'id,nhs_number\n1,"{NHS}\n2,3\n'.encode(), "never closed", 1),
    ("not parquet", "t.parquet", b"PAR1 this is not parquet", "not a readable Parquet", None),
]


@pytest.mark.parametrize(("what", "name", "data", "message", "row"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_precise_error(
    tmp_path: Path, what: str, name: str, data: bytes, message: str, row: int | None
) -> None:
    path = _w(tmp_path / name, data)
    with pytest.raises(InputError) as exc:
        src = open_table(path)
        read_table(src)
    err = exc.value
    assert any(m in err.message for m in message.split("|")), err.message
    assert err.hint
    assert err.where is not None and Path(str(err.where.file)).name == name
    if row is not None:
        assert err.where.row == row
    assert NHS not in err.render()
    assert NHS not in str(err.to_dict())


def test_undecodable_bytes_name_the_row(tmp_path: Path) -> None:
    """Valid UTF-8 at the start (so it is sniffed as UTF-8), a bad byte far into the file."""
    lines = [b"id,name"] + [f"{i},x".encode() for i in range(1, 20000)] + [b"20000,\xff\xfe"]
    path = _w(tmp_path / "t.csv", b"\n".join(lines) + b"\n")
    src = open_table(path)
    assert src.encoding == "utf-8"
    with pytest.raises(InputError) as exc:
        read_table(src)
    assert "not valid UTF-8" in exc.value.message
    assert exc.value.where is not None and exc.value.where.row == 20000
    assert "latin-1" in (exc.value.hint or "")


def test_undecodable_bytes_with_an_explicit_encoding(tmp_path: Path) -> None:
    path = _w(tmp_path / "t.csv", b"id,name\n1,\xff\n")
    with pytest.raises(InputError, match="not valid utf-8"):
        open_table(path, encoding="utf-8")


def test_missing_file_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_table(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="folder with no part files"):  # a folder is a table of parts
        open_table(tmp_path)
    _w(tmp_path / "t.csv", b"a,b\n1,2\n")
    with pytest.raises(UsageError):
        open_table(tmp_path / "t.csv", encoding="ebcdic")
    with pytest.raises(UsageError):
        open_table(tmp_path / "t.csv", delimiter=";;")


def test_read_column_of_unknown_column(tmp_path: Path) -> None:
    src = open_table(_w(tmp_path / "t.csv", b"a,b\n1,2\n"))
    with pytest.raises(InputError, match="no column"):
        read_column(src, "c")


def test_row_order_is_file_order(tmp_path: Path) -> None:
    body = "\n".join(f"{i},{i * 7 % 13}" for i in range(50000))
    src = open_table(_w(tmp_path / "t.csv", f"i,v\n{body}\n".encode()))
    assert read_column(src, "i").to_pylist() == [str(i) for i in range(50000)]
