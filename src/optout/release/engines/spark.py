"""The Spark engine: the same release on Apache Spark (``--engine spark``), local or on a cluster.

The rules are those of ``base.py`` (and of the reference engine, its executable spec), written as
Spark column expressions:

- the NHS number of every row is normalised and checked in the JVM by :func:`spark_reason` /
  :func:`spark_normalised`, which mirror ``optout.nhs_number.parse`` (spellings, Modulus 11,
  ranges, CHI dates) exactly; only ANSI-safe conversions are used, so no value can ever fail a
  cast and appear in an error message;
- the allow-list (and the cohort) becomes a DataFrame from Arrow batches (an RDD, never a
  ``LocalRelation`` holding the numbers in the query plan, never a table, never a file) and is
  joined to each table: a *broadcast* hash join when it has at most ``broadcast_rows`` numbers,
  a shuffle join otherwise (the report says which);
- a linked table is joined to its parent's key summary (key -> every row kept and one person),
  computed once per parent column and cached for the write;
- ``classify`` runs one aggregate per table (counts per status, reasons, traced rows, and exact
  distinct people per status: kept people by their place in the allow-list in bitmaps, removed
  people by hashing the removed rows), and one more only when some number is missing or invalid,
  for the row numbers of the first problem rows; ``write`` recomputes the classification on the
  full rows and writes the kept ones as a folder of parts (``episodes.parquet/part-00000.parquet``
  ...), which :meth:`SparkEngine.outputs` lists with each part's rows, so the manifest lists every
  part.

Row order: when every join of a table is a broadcast join, nothing is shuffled: each part holds
the rows of one slice of an input file, in file order, and reading the parts in name order gives
each input file's kept rows in their original order. When a join must shuffle (an allow-list or
a parent's keys larger than ``broadcast_rows``), the kept rows are range-partitioned and sorted
by (file, block, position) before writing, which restores that order at the cost of one more
shuffle of the kept rows.

Sources and outputs: besides local files, a folder of part files (read in part-name order), a
Hadoop-compatible URI (opened, sniffed and listed through the session's file system by
:func:`open_sources`) and a catalog table (``spark.table``); with ``out_tables`` each table is
written as a catalog table under a temporary name, handed to the caller as :class:`StagedTables`
and renamed to its final name only when the release folder is committed (dropped otherwise). For
inputs the driver cannot hash, :meth:`SparkEngine.input_identity` gives what identifies them (a
URI's listing, a Delta version, or a content hash computed by the executors) after checking
they did not change.

PySpark is imported only here, and only when the engine is made (the registry loads this module
on first use).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from optout.errors import InputError, Location, OptoutError, OutputError, UsageError
from optout.nhs_number import Reason
from optout.release.engines.base import (
    PROBLEM_ROWS_SHOWN,
    Engine,
    Lists,
    ProgressFn,
    Status,
    TableCounts,
)
from optout.release.plan import Link, PlannedTable, ReleasePlan
from optout.tables import TableSource

__all__ = ["DEFAULT_BROADCAST_ROWS", "SparkEngine", "StagedTables", "open_sources", "with_nhs_number"]

# An allow-list (or a parent's key summary) of at most this many rows is broadcast to every
# executor: some 16-40 bytes a row in Spark's hashed relation, so 25 M numbers ~ 0.4-1 GB per
# executor. Larger ones are joined with a shuffle.
DEFAULT_BROADCAST_ROWS = 25_000_000
DEFAULT_DRIVER_MEMORY = "8g"  # a local session's JVM (the driver is the executor in local mode)
# Bytes a row takes in a broadcast hash relation (key, row, map slot), measured on Spark 4:
# a number list (n, place) and a parent's key summary (key, kept, person, place).
_LIST_ROW_BYTES = 40
_KEY_ROW_BYTES = 80
_BROADCAST_SHARE = 8  # a broadcast may take up to 1/8 of the smaller of driver and executor heap

_CORRUPT = "__optout_corrupt"
_KEPT = [int(s) for s in Status if s.kept]
_WS = " \t\n\r\x0b\x0c\xa0"  # as optout.nhs_number._WS (asserted by the tests)
_CHI_LOW = 100_000_000
_LOW = 1_000_000_000
_HIGH = 10_000_000_000
_CHI_FIRST = 101_000_000
_CHI_LAST = 3_112_999_999
_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
# Java regexes: \z is the very end (Java's $ also matches before a final line terminator)
_PLAIN10 = r"^[0-9]{10}\z"
_PLAIN_CHI = r"^[0-9]{9,10}\z"
_SPACED = r"^[0-9]+(?:[ \-]+[0-9]+)*\z"
_EXCEL = r"^[+]?([0-9]+)(\.([0-9]+))?([eE]([+\-]?[0-9]+))?\z"
_INT_TYPES = ("ByteType", "ShortType", "IntegerType", "LongType")


# --------------------------------------------------------------------------- NHS numbers


def _F() -> Any:
    from pyspark.sql import functions

    return functions


def _lit(v: Any) -> Any:
    return _F().lit(v)


def _name(column: str) -> Any:
    """A column by its exact name (dots and backticks are not struct access)."""
    return _F().col("`" + column.replace("`", "``") + "`")


def _checked(x: str) -> Any:
    """Reason for BIGINT column ``x`` (our own name) of the right form (0 <= x < 10**10): 0, bad
    check digit (Modulus 11, first) or bad CHI date (in the CHI range, DDMMYY not a real date).
    Integer arithmetic only (``div``, ``pmod``): exact, and it cannot overflow."""
    terms = " + ".join(f"pmod({x} div {10 ** (10 - i)}, 10) * {w}" for i, w in enumerate(_WEIGHTS, start=1))
    mod11 = f"(pmod(11 - pmod({terms}, 11), 11) = pmod({x}, 10))"
    mm = f"pmod({x} div 1000000, 100)"
    yy = f"pmod({x} div 10000, 100)"
    days = (
        f"CASE WHEN {mm} = 2 THEN (CASE WHEN pmod({yy}, 4) = 0 THEN 29 ELSE 28 END) "
        f"WHEN {mm} IN (4, 6, 9, 11) THEN 30 WHEN {mm} BETWEEN 1 AND 12 THEN 31 ELSE 0 END"
    )
    return _F().expr(
        f"CASE WHEN {x} IS NULL THEN NULL WHEN NOT {mod11} THEN {int(Reason.BAD_CHECK_DIGIT)} "
        f"WHEN {x} BETWEEN {_CHI_FIRST} AND {_CHI_LAST} AND ({x} div 100000000) > ({days}) "
        f"THEN {int(Reason.BAD_CHI_DATE)} ELSE 0 END"
    )


def _text_stages(text: Any, chi: bool) -> list[dict[str, Any]]:
    """The rules of ``parse`` for text, as projections of named columns, each computed once
    (a column that is not cheap and is used more than once is not inlined by Spark's optimizer,
    so each regular expression runs once per row, and only for the rows that need it).

    Every conversion to a number is guarded so it only ever sees text it can convert: no error
    whatever ``spark.sql.ansi.enabled`` says, so no value can reach an error message."""
    F = _F()
    c = _name
    lens = [9, 10] if chi else [10]
    t = c("__n_t")
    plain, spaced, excel = c("__n_plain"), c("__n_spaced"), c("__n_excel")
    odd = ~plain & ~spaced & excel  # only these need the spreadsheet notation worked out
    exp = F.when(c("__n_x") == "", _lit(0.0)).otherwise(c("__n_x").cast("double"))
    k = c("__n_k")
    return [
        # both ends, the same characters as Python's str.strip(_WS) (btrim: Spark 3.5+)
        {"__n_t": F.btrim(text, F.lit(_WS))},
        {"__n_plain": F.coalesce(t.rlike(_PLAIN_CHI if chi else _PLAIN10), _lit(False))},
        {
            "__n_spaced": F.when(plain, _lit(False)).otherwise(F.coalesce(t.rlike(_SPACED), _lit(False))),
            "__n_compact": F.when(~plain, F.regexp_replace(t, r"[ \-]", "")),
        },
        {
            "__n_excel": F.when(plain | spaced, _lit(False)).otherwise(
                F.coalesce(t.rlike(_EXCEL), _lit(False))
            )
        },
        {
            "__n_i": F.when(odd, F.regexp_extract(t, _EXCEL, 1)),
            "__n_f": F.when(odd, F.regexp_extract(t, _EXCEL, 3)),
            "__n_x": F.when(odd, F.regexp_extract(t, _EXCEL, 5)),
        },
        # S: the digits without leading zeros; S2: nor trailing zeros
        {"__n_sig": F.regexp_replace(F.concat(c("__n_i"), c("__n_f")), r"^0+", "")},
        {"__n_sig2": F.regexp_replace(c("__n_sig"), r"0+\z", "")},
        # the exponent is [+-]?[0-9]+, which always converts to a DOUBLE (huge ones to infinity);
        # k is S2's power of ten
        {"__n_k": exp - F.length(c("__n_f")) + (F.length(c("__n_sig")) - F.length(c("__n_sig2")))},
        {
            "__n_pre": F.when(t.isNull() | (t == ""), _lit(int(Reason.MISSING)))
            .when(plain, _lit(0))
            .when(
                spaced,
                F.when(F.length(c("__n_compact")).isin(*lens), _lit(0)).otherwise(
                    _lit(int(Reason.WRONG_LENGTH))
                ),
            )
            .when(~excel, _lit(int(Reason.NOT_DIGITS)))
            .when(c("__n_sig2") == "", _lit(int(Reason.WRONG_LENGTH)))
            .when(k < 0, _lit(int(Reason.NOT_INTEGER)))
            .when((F.length(c("__n_sig2")) + k).isin(*[float(n) for n in lens]), _lit(0))
            .otherwise(_lit(int(Reason.WRONG_LENGTH)))
        },
        # where __n_pre is 0 the value is a whole number of at most 10 digits, which a DOUBLE
        # holds exactly, so the (correctly rounded) text-to-DOUBLE conversion is exact there
        {
            "__n_cand": F.when(c("__n_pre") != 0, _lit(None).cast("bigint"))
            .when(plain, t.cast("bigint"))
            .when(spaced, c("__n_compact").cast("bigint"))
            .otherwise(t.cast("double").cast("bigint"))
        },
    ]


def _numeric_stages(x: Any, kind: str, chi: bool) -> list[dict[str, Any]]:
    """The rules of ``parse`` for an integer or floating-point column."""
    F = _F()
    low = _CHI_LOW if chi else _LOW
    if kind == "int":
        pre = (
            F.when(x.isNull(), _lit(int(Reason.MISSING)))
            .when(x < 0, _lit(int(Reason.NOT_DIGITS)))
            .when((x < low) | (x >= _HIGH), _lit(int(Reason.WRONG_LENGTH)))
            .otherwise(_lit(0))
        )
    else:
        inf = float("inf")
        pre = (
            F.when(x.isNull() | F.isnan(x), _lit(int(Reason.MISSING)))
            .when((x == inf) | (x == -inf) | (F.pmod(x, _lit(1.0)) != 0), _lit(int(Reason.NOT_INTEGER)))
            .when(x < 0, _lit(int(Reason.NOT_DIGITS)))
            .when((x < low) | (x >= _HIGH), _lit(int(Reason.WRONG_LENGTH)))
            .otherwise(_lit(0))
        )
    return [{"__n_pre": pre}, {"__n_cand": F.when(_name("__n_pre") == 0, x.cast("bigint"))}]


def _kind(data_type: Any) -> str:
    name = type(data_type).__name__
    if name in _INT_TYPES:
        return "int"
    if name in ("FloatType", "DoubleType"):
        return "float"
    return "text"  # strings, decimals (as their text, as Python's str(Decimal)), booleans, dates...


def with_nhs_number(
    df: Any, column: str, *, chi: bool = False, reason: str = "__reason", norm: str = "__norm"
) -> Any:
    """``df`` with two more columns: ``reason``, the ``Reason`` code (0 = valid) of ``column``,
    and ``norm``, the normalised NHS number (BIGINT) of valid values, else NULL.

    The same answers as ``optout.nhs_number.parse`` for every value (tests/unit/test_spark_engine.py)."""
    F = _F()
    dtype = df.schema[column].dataType
    kind = _kind(dtype)
    col = _name(column)
    if kind == "text":
        text = col if type(dtype).__name__ == "StringType" else col.cast("string")
        stages = _text_stages(text, chi)
    else:
        stages = _numeric_stages(col, kind, chi)
    for stage in stages:
        df = df.withColumns(stage)
    pre = _name("__n_pre")
    df = df.withColumn(reason, F.when(pre != 0, pre).otherwise(_checked("__n_cand")).cast("int"))
    df = df.withColumn(norm, F.when(_name(reason) == 0, _name("__n_cand")).cast("bigint"))
    return df.drop(*[n for stage in stages for n in stage])


# --------------------------------------------------------------------------- the engine


@dataclass
class _KeySummary:
    df: Any  # (__pk, __pk_kept, __pk_person, __pk_i), cached
    rows: int
    broadcast: bool


def _memory(limit: str | None) -> str:
    if not limit:
        return DEFAULT_DRIVER_MEMORY
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT])i?[bB]?\s*", limit)
    if not m:
        raise UsageError(
            "the memory limit is not a size Spark understands",
            hint="give it like 8GB or 512MB (for --engine spark it is the local driver's memory)",
        )
    return f"{m.group(1)}{m.group(2).lower()}"


def _bytes(size: str) -> int:
    """A JVM memory size (``4g``, ``512m``, ``1024k``, bytes) in bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)b?\s*", str(size).lower())
    if not m:
        return 1 << 30
    return int(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " ")


def _error_class(exc: BaseException) -> str:
    """A Spark error's class (e.g. PATH_NOT_FOUND): never its message, which can quote values."""
    get = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    with contextlib.suppress(Exception):
        cls = get() if get else None
        if cls:
            return str(cls)
    return exc.__class__.__name__


# --------------------------------------------------------------------------- sources

_started: Any = None  # a session optout started to open sources: the engine then owns it


def _session(options: dict[str, Any], memory_limit: str | None) -> Any:
    """The session the engine will use: ``session=``, the active one, or one started here."""
    global _started
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError(
            "--engine spark needs PySpark, which is not installed",
            hint="pip install 'optout[spark]' (and Java 17)",
        ) from None
    session = options.get("session")
    if session is None and options.get("master") is None:
        session = SparkSession.getActiveSession()
    if session is None:
        from optout import atomic

        session = SparkEngine._start(
            SparkSession, options.get("master") or "local[*]", memory_limit, atomic.spill_dir()
        )
        _started = session
    return session


def _hadoop(spark: Any, location: str) -> tuple[Any, Any]:
    """(FileSystem, Path) of a Hadoop-compatible URI, through the session's JVM."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _listing(spark: Any, location: str) -> list[tuple[str, int, int]]:
    """(name, bytes, modification time in ms) of the file at ``location``, or of the part files of
    the folder there, in name order (not ``_*``, ``.*``, ``*.crc``)."""
    fs, path = _hadoop(spark, location)
    status = fs.getFileStatus(path)
    if not status.isDirectory():
        return [(str(status.getPath().getName()), int(status.getLen()), int(status.getModificationTime()))]
    out = []
    for st in fs.listStatus(path):
        name = str(st.getPath().getName())
        if st.isDirectory() or name.startswith(("_", ".")) or name.endswith(".crc"):
            continue
        out.append((name, int(st.getLen()), int(st.getModificationTime())))
    return sorted(out)


def _head(spark: Any, location: str, n: int = 1 << 16) -> bytes:
    fs, path = _hadoop(spark, location)
    stream = fs.open(path)
    try:
        return bytes(stream.readNBytes(n))
    finally:
        stream.close()


def _open_uri(
    spark: Any, uri: str, *, encoding: str | None, delimiter: str | None, quote: str | None
) -> TableSource:
    """A file or folder of parts at a Hadoop-compatible URI, sniffed through Spark's file system."""
    from urllib.parse import urlparse

    from optout import tables

    segment = urlparse(uri).path.rstrip("/").rsplit("/", 1)[-1] or uri
    where = Location(file=Path(segment))
    try:
        listing = _listing(spark, uri)
    except Exception as exc:
        raise InputError(
            f"Spark cannot read {uri} ({_error_class(exc)})",
            where=where,
            hint="check the URI, and that this cluster has the credentials to read it",
        ) from None
    listing = [x for x in listing if x[1] > 0]
    if not listing:
        raise InputError(
            f"{segment} holds no data (no part file, or every one is empty)",
            where=where,
            hint="export it again",
        )
    first = listing[0][0]
    is_dir = False
    with contextlib.suppress(Exception):
        fs, hpath = _hadoop(spark, uri)
        is_dir = bool(fs.getFileStatus(hpath).isDirectory())
    first_uri = f"{uri.rstrip('/')}/{first}" if is_dir else uri
    try:
        head = _head(spark, first_uri)
    except Exception as exc:
        raise InputError(
            f"Spark cannot read {uri} ({_error_class(exc)})", where=where, hint="check the URI"
        ) from None
    fmt = tables._format_of(Path(segment if Path(segment).suffix else first), head)
    name = Path(segment)
    if fmt == "csv":
        src = tables._open_csv(
            name, listing[0][1], head, encoding=encoding, delimiter=delimiter, quote=quote, allow_empty=True
        )
    else:
        try:
            schema = spark.read.parquet(uri).schema
        except Exception as exc:
            raise InputError(
                f"Spark could not read {segment} as Parquet ({_error_class(exc)})",
                where=where,
                hint="export it again",
            ) from None
        columns = [f.name for f in schema.fields]
        tables._check_header(name, columns)
        src = TableSource(name=name.stem, path=name, format="parquet", columns=columns, compression="SNAPPY")
    src.kind, src.location, src.size = "uri", uri, sum(x[1] for x in listing)
    src.name = name.stem
    return src


def _open_catalog(spark: Any, table: str) -> TableSource:
    """A table of a Spark catalog (``catalog.schema.table``), named by its last part."""
    from optout import tables

    short = table.rsplit(".", 1)[-1].strip("`")
    try:
        df = spark.table(table)
        columns = [f.name for f in df.schema.fields]
    except Exception as exc:
        raise InputError(
            f"Spark cannot read the table {table} ({_error_class(exc)})",
            where=Location(file=Path(table)),
            hint="check the name (catalog.schema.table) and that this cluster may read it",
        ) from None
    tables._check_header(Path(table), columns)
    return TableSource(
        name=short,
        path=Path(table),
        format="parquet",  # typed columns; written out as Parquet parts when written as files
        columns=columns,
        compression="SNAPPY",
        kind="catalog",
        location=table,
    )


def open_sources(
    uris: list[str],
    catalog_tables: list[str],
    *,
    options: dict[str, Any],
    memory_limit: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    quote: str | None = None,
) -> list[TableSource]:
    """Open URIs (``s3a://``, ``abfss://``, ``hdfs://`` ...: a file or a folder of parts) and catalog
    tables with Spark, for the plan. The session is ``options["session"]``, the active one, or one
    started here (which the engine then uses and stops)."""
    spark = _session(options, memory_limit)
    out = [_open_uri(spark, u, encoding=encoding, delimiter=delimiter, quote=quote) for u in uris]
    return out + [_open_catalog(spark, t) for t in catalog_tables]


def _content_hash(df: Any) -> dict[str, Any]:
    """``rows`` and ``content_hash``: the SHA-256 of ``"<rows>:<xor>:<sum>"``, where ``xor`` is the
    bitwise XOR (16 hex digits) and ``sum`` the sum of the low 32 bits of Spark's xxhash64 (seed
    42) of every row's columns in order. Order-independent; computed by the executors (no row
    reaches the driver). The SHA-256 hides the XOR and sum, so the hashes of an input and of its
    release cannot be subtracted to give one of the removed rows'."""
    F = _F()
    h = F.xxhash64(*[_name(c) for c in df.columns])
    row = (
        df.select(h.alias("h"))
        .agg(
            F.count(_lit(1)).alias("n"),
            F.expr("bit_xor(h)").alias("x"),
            F.sum((F.col("h").bitwiseAND(_lit(0xFFFFFFFF))).cast("decimal(38,0)")).alias("s"),
        )
        .collect()[0]
    )
    n = int(row["n"])
    text = f"{n}:{int(row['x'] or 0) & 0xFFFFFFFFFFFFFFFF:016x}:{int(row['s'] or 0)}"
    return {"rows": n, "content_hash": hashlib.sha256(text.encode("ascii")).hexdigest()}


def _describe_table(spark: Any, table: str) -> dict[str, Any]:
    """A catalog table's provider, location and (Delta) latest version, as far as Spark says."""
    out: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        for r in spark.sql(f"DESCRIBE TABLE EXTENDED {table}").collect():
            key = str(r[0]).strip()
            if key in ("Provider", "Location") and r[1]:
                out["storage_location" if key == "Location" else "provider"] = str(r[1])
    with contextlib.suppress(Exception):
        hist = spark.sql(f"DESCRIBE HISTORY {table} LIMIT 1").collect()
        if hist:
            out["delta_version"] = int(hist[0]["version"])
    return out


@dataclass
class StagedTables:
    """Catalog tables written under temporary names: renamed to their final names only when the
    release folder is committed (:meth:`publish`), dropped on any failure (:meth:`discard`)."""

    spark: Any
    names: list[tuple[str, str]]  # (temporary, final)
    owned: bool = False
    published: int = 0

    def publish(self) -> None:
        for tmp, final in self.names:
            if self.spark.catalog.tableExists(final):
                raise OutputError(
                    f"the table {final} appeared while the release was being made",
                    hint="choose another --out-tables schema or --out-table-prefix",
                )
            try:
                try:
                    self.spark.sql(f"ALTER TABLE {tmp} RENAME TO {final}")
                except Exception:
                    # the session catalog (Hive metastore) takes schema.table only
                    if final.count("`.`") < 2:
                        raise
                    self.spark.sql(f"ALTER TABLE {tmp} RENAME TO {final.split('.', 1)[1]}")
            except Exception as exc:
                raise OutputError(
                    f"Spark could not rename a table to {final} ({_error_class(exc)})",
                    hint="check this cluster may create tables in that schema; nothing was released",
                ) from None
            self.published += 1

    def discard(self) -> None:
        for i, (tmp, final) in enumerate(self.names):
            name = final if i < self.published else tmp
            with contextlib.suppress(Exception):
                self.spark.sql(f"DROP TABLE IF EXISTS {name}")
        self.published = 0

    def close(self) -> None:
        if self.owned:
            with contextlib.suppress(Exception):
                self.spark.stop()
            self.owned = False


# Temporary output tables older than this are taken to be left by a job killed outright.
STALE_TABLE_HOURS = 48
_TMP_TABLE = re.compile(r"_optout_tmp_([0-9a-f]{6,12})_[0-9a-f]{8}_", re.IGNORECASE)


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class SparkEngine(Engine):
    """Apply the plan with PySpark: ``local[*]`` by default, ``master=URL``, or ``session=``.

    ``out_tables="catalog.schema"`` writes each table's kept rows as a table of that schema (named
    ``out_table_prefix`` + the table's name) instead of files."""

    name = "spark"

    def __init__(
        self,
        *,
        memory_limit: str | None = None,
        temp_dir: Path | None = None,
        session: Any = None,
        master: str | None = None,
        broadcast_rows: int | None = None,
        csv_multiline: bool = True,
        out_tables: str | None = None,
        out_table_prefix: str = "",
    ) -> None:
        super().__init__(memory_limit=memory_limit, temp_dir=temp_dir)
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise UsageError(
                "--engine spark needs PySpark, which is not installed",
                hint="pip install 'optout[spark]' (and Java 17), or use --engine duckdb",
            ) from None
        self._owned = False
        if session is None and master is None:
            session = SparkSession.getActiveSession()
        if session is None:
            session = self._start(SparkSession, master or "local[*]", memory_limit, temp_dir)
            self._owned = True
        elif _started is not None and session is _started:  # started by open_sources
            self._owned = True
        self.spark = session
        self.out_tables = out_tables
        self.out_table_prefix = out_table_prefix or ""
        # a temporary table's name carries when it was made (seconds, hex) and a random part, so
        # that a later run can tell one left by a job killed outright (see _sweep_stale_tables)
        self._token = f"{int(time.time()):x}_{os.urandom(4).hex()}"
        self._staged: list[tuple[str, str]] = []
        self._handed = False
        self._tables_out: list[dict[str, Any]] = []
        self._identity_before: dict[str, Any] = {}
        # the rows a broadcast may have: given, or what fits the session's memory (and at most
        # DEFAULT_BROADCAST_ROWS numbers)
        self._given_rows = broadcast_rows is not None
        self.broadcast_rows = (
            int(broadcast_rows) if broadcast_rows is not None else self._fitting(_LIST_ROW_BYTES)
        )
        self.csv_multiline = csv_multiline
        self.details: dict[str, Any] = {"master": str(session.sparkContext.master)}
        self._plan: ReleasePlan | None = None
        self._lists: Lists | None = None
        self._allow: Any = None
        self._cohort: Any = None
        self._trace: Any = None
        self._trace_broadcast = True
        self._keys: dict[tuple[str, str, str], _KeySummary] = {}
        self._expected: dict[str, int] = {}
        self._parts: dict[str, list[tuple[Path, int]]] = {}
        self._cached: list[Any] = []
        self._frames: dict[tuple[str, bool], Any] = {}
        self._type_cache: dict[str, dict[str, str]] = {}
        self._saved_conf: dict[str, str | None] = {}
        # never a LocalRelation: the numbers would travel inside every query plan
        self._set_conf("spark.sql.execution.arrow.localRelationThreshold", "0")

    # ------------------------------------------------------------------ session

    @staticmethod
    def _start(builder_cls: Any, master: str, memory_limit: str | None, temp_dir: Path | None) -> Any:
        b = (
            builder_cls.builder.master(master)
            .appName("optout apply")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .config("spark.hadoop.fs.permissions.umask-mode", "077")
            .config("spark.io.encryption.enabled", "true")  # shuffle and spill files encrypted
            .config("spark.eventLog.enabled", "false")
        )
        if master.startswith("local"):
            b = b.config("spark.ui.enabled", "false").config("spark.driver.memory", _memory(memory_limit))
            # one machine: a few shuffle partitions per core, not 200 (each a task and a file per
            # map task: most of a small release's time in local mode)
            b = b.config("spark.sql.shuffle.partitions", str(4 * (os.cpu_count() or 2)))
            if temp_dir is not None:  # spill and shuffle inside the release's private temporary folder
                b = b.config("spark.local.dir", str(temp_dir))
        try:
            session = b.getOrCreate()
        except Exception as exc:
            raise UsageError(
                f"could not start Spark ({_error_class(exc)})",
                hint="check Java 17 is installed (java -version) and --spark-master is reachable",
            ) from None
        session.sparkContext.setLogLevel("WARN")
        return session

    def _set_conf(self, key: str, value: str) -> None:
        conf = self.spark.conf
        with contextlib.suppress(Exception):
            self._saved_conf.setdefault(key, conf.get(key, None))
            conf.set(key, value)

    def close(self) -> None:
        if self._staged and not self._handed:  # a failure before the release: no half-written table
            StagedTables(self.spark, self._staged).discard()
        for df in self._cached:
            with contextlib.suppress(Exception):
                df.unpersist()
        self._cached.clear()
        for key, value in self._saved_conf.items():
            with contextlib.suppress(Exception):
                if value is None:
                    self.spark.conf.unset(key)
                else:
                    self.spark.conf.set(key, value)
        if self._owned and not self._handed:
            global _started
            with contextlib.suppress(Exception):
                self.spark.stop()
            _started = None

    # ------------------------------------------------------------------ reading

    def _read(self, src: TableSource) -> Any:
        from pyspark.sql import types as T

        path = src.location or str(src.path)
        try:
            if src.kind == "catalog":
                return self.spark.table(path)
            if src.format == "parquet":
                return self.spark.read.parquet(path)
            schema = T.StructType(
                [T.StructField(c, T.StringType(), True) for c in src.columns]
                + [T.StructField(_CORRUPT, T.StringType(), True)]
            )
            enc = {"latin-1": "ISO-8859-1"}.get(src.encoding or "utf-8", "UTF-8")
            q = src.quote or '"'
            return (
                self.spark.read.schema(schema)
                .option("header", "true")
                .option("enforceSchema", "true")
                .option("sep", src.delimiter or ",")
                .option("quote", q)
                .option("escape", q)
                .option("encoding", enc)
                .option("multiLine", "true" if self.csv_multiline else "false")
                .option("mode", "PERMISSIVE")
                .option("columnNameOfCorruptRecord", _CORRUPT)
                .option("ignoreLeadingWhiteSpace", "false")
                .option("ignoreTrailingWhiteSpace", "false")
                .csv(path)
            )
        except Exception as exc:
            raise self._input_error(exc, src) from None

    def _input_error(self, exc: BaseException, src: TableSource) -> OptoutError:
        if isinstance(exc, OptoutError):
            return exc
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        return InputError(
            f"Spark could not read {src.location or src.path.name} ({_error_class(exc)})",
            where=Location(file=src.path),
            hint="check the file exists where every Spark executor can read it, and is the format "
            "its name says; run again with --engine duckdb to compare",
        )

    def _run(self, what: Any, src: TableSource) -> Any:
        try:
            return what()
        except OptoutError:
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if "interrupt" in exc.__class__.__name__.lower() or "cancel" in str(_error_class(exc)).lower():
                raise KeyboardInterrupt from None
            raise self._input_error(exc, src) from None

    # ------------------------------------------------------------------ lists

    def _number_frame(self, values: np.ndarray, name: str, index: str | None = None) -> Any:
        """A number list as a DataFrame; with ``index``, each number's place in the sorted list
        (1..N), so that kept people are counted exactly with bitmaps, not by hashing numbers."""
        columns = {name: pa.array(values, type=pa.int64())}
        if index is not None:
            columns[index] = pa.array(np.arange(1, values.size + 1, dtype=np.int64))
        table = pa.table(columns)
        with warnings.catch_warnings():  # PySpark checks the pandas version even for Arrow input
            warnings.simplefilter("ignore", FutureWarning)
            import pyspark

            if int(pyspark.__version__.split(".")[0]) >= 4:
                return self.spark.createDataFrame(table)
            # PySpark 3.5 takes no Arrow table: pandas, sent as Arrow batches (an RDD)
            self._set_conf("spark.sql.execution.arrow.pyspark.enabled", "true")
            self._set_conf("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
            return self.spark.createDataFrame(table.to_pandas())

    def _fitting(self, row_bytes: int) -> int:
        """Rows of ``row_bytes`` a broadcast may hold in this session's memory."""
        if self._given_rows:
            return self.broadcast_rows
        conf = self.spark.sparkContext.getConf()
        heap = _bytes(conf.get("spark.driver.memory", "1g"))
        if not str(self.spark.sparkContext.master).startswith("local"):
            heap = min(heap, _bytes(conf.get("spark.executor.memory", "1g")))
        return min(DEFAULT_BROADCAST_ROWS, heap // _BROADCAST_SHARE // row_bytes)

    def _maybe_broadcast(self, df: Any, rows: int) -> tuple[Any, bool]:
        if rows <= self.broadcast_rows:
            return _F().broadcast(df), True
        return df, False

    # ------------------------------------------------------------------ classification

    def _key_col(self, df: Any, column: str, plan: ReleasePlan, link: Link) -> tuple[Any, str]:
        """A link key: BIGINT when both sides are integer columns, else text ('' is no key)."""
        child_t = self._types(plan.table(link.child).source).get(link.child_column)
        parent_t = self._types(plan.table(link.parent).source).get(link.parent_column)
        if child_t in _INT_TYPES and parent_t in _INT_TYPES:
            return _name(column).cast("bigint"), "int"
        return _text_key(_name(column)), "text"

    def _types(self, src: TableSource) -> dict[str, str]:
        """Spark's type (class name) of each column of a table."""
        if src.name not in self._type_cache:
            df = self._read(src)
            self._type_cache[src.name] = {f.name: type(f.dataType).__name__ for f in df.schema.fields}
        return self._type_cache[src.name]

    def _classified(self, t: PlannedTable, plan: ReleasePlan, lists: Lists, *, order: bool = False) -> Any:
        """The table with __reason, __norm, __person, __status, __traced, __ck{i} (and its columns).

        Built once per table (and ordering): building a plan costs the Python-JVM round trips."""
        memo = self._frames.get((t.name, order))
        if memo is None:
            memo = self._frames[(t.name, order)] = self._build(t, plan, lists, order=order)
        return memo

    def _build(self, t: PlannedTable, plan: ReleasePlan, lists: Lists, *, order: bool) -> Any:
        F = _F()
        src = t.source
        df = self._read(src)
        if order:
            df = df.withColumn("__file", F.col("_metadata.file_path")).withColumn(
                "__block", F.col("_metadata.file_block_start")
            )
            df = df.withColumn("__mid", F.monotonically_increasing_id())
        if t.nhs_column is not None:
            df = with_nhs_number(df, t.nhs_column, chi=t.chi)
        else:
            df = df.withColumn("__reason", _lit(0)).withColumn("__norm", _lit(None).cast("bigint"))
        traced = _lit(False)
        person = F.col("__norm")
        if t.trace_key is not None and self._trace is not None:
            df = df.withColumn("__tk", _text_key(_name(t.trace_key)))
            tr = self._trace
            df = df.join(tr, (F.col("__norm").isNull()) & (F.col("__tk") == F.col("__tr_k")), "left")
            traced = F.col("__norm").isNull() & F.col("__tr_n").isNotNull()
            person = F.coalesce(F.col("__norm"), F.col("__tr_n"))
        df = df.withColumn("__traced", traced).withColumn("__person", person)
        if t.nhs_column is not None:
            df = df.join(self._allow, F.col("__person") == F.col("__al_n"), "left")
            df = df.withColumn("__pidx", F.col("__al_i"))
            on_list = F.col("__al_n").isNotNull()
            if self._cohort is not None:
                df = df.join(self._cohort, F.col("__person") == F.col("__co_n"), "left")
            if plan.unmatched == "release":
                own = F.when(F.col("__norm").isNull(), _lit(int(Status.KEPT_UNDER_REASON)))
            elif t.trace_key is not None:
                own = F.when(F.col("__person").isNull(), _lit(int(Status.REMOVED_UNTRACED)))
            else:
                own = F.when(F.col("__norm").isNull(), _lit(int(Status.REMOVED_INVALID)))
            if self._cohort is not None:
                own = own.when(F.col("__co_n").isNull(), _lit(int(Status.REMOVED_NOT_IN_COHORT)))
            own = own.when(on_list, _lit(int(Status.KEPT))).otherwise(_lit(int(Status.REMOVED_NOT_ON_LIST)))
        else:
            own = _lit(int(Status.KEPT_WITH_PARENT))
            df = df.withColumn("__pidx", _lit(None).cast("bigint"))
        df = df.withColumn("__own", own)
        status = F.col("__own")
        if t.link is not None:
            key, kind = self._key_col(df, t.link.child_column, plan, t.link)
            df = df.withColumn("__lk", key)
            summary = self._keys[(t.link.parent, t.link.parent_column, kind)]
            pk = summary.df
            pk = F.broadcast(pk) if summary.broadcast else pk
            df = df.join(pk, F.col("__lk") == F.col("__pk"), "left")
            status = (
                F.when(F.col("__own") >= 10, F.col("__own"))
                .when(F.col("__pk").isNull(), _lit(int(Status.REMOVED_ORPHAN)))
                .when(~F.col("__pk_kept"), _lit(int(Status.REMOVED_WITH_PARENT)))
                .otherwise(F.col("__own"))
            )
            if t.nhs_column is None:
                df = df.withColumn("__person", F.col("__pk_person")).withColumn("__pidx", F.col("__pk_i"))
        df = df.withColumn("__status", status)
        if src.format == "csv":
            # Spark refuses a CSV query whose only column read is the corrupt-record one, which
            # happens when the optimizer drops every other (e.g. a join with an empty list): a
            # term on the first column, never true, keeps that column read.
            never = F.coalesce(F.length(_name(src.columns[0])) < 0, _lit(False))
            bad = _name(_CORRUPT).isNotNull() | never
        else:
            bad = _lit(False)
        df = df.withColumn("__bad", bad)  # a CSV row with more or fewer fields than the header
        for i, child in enumerate(t.children):
            key, _ = self._key_col(df, child.parent_column, plan, child)
            df = df.withColumn(f"__ck{i}", key)
        return df

    def _shuffles(self, t: PlannedTable) -> bool:
        """Does classifying ``t`` need a shuffle join (so its row order must be restored)?"""
        if t.nhs_column is not None and not self._allow_broadcast:
            return True
        if t.trace_key is not None and self._trace is not None and not self._trace_broadcast:
            return True
        if t.link is not None:
            parent = (t.link.parent, t.link.parent_column)
            return any(not s.broadcast for (p, c, _k), s in self._keys.items() if (p, c) == parent)
        return False

    def classify(
        self, plan: ReleasePlan, lists: Lists, progress: ProgressFn | None = None
    ) -> dict[str, TableCounts]:
        F = _F()
        self._plan, self._lists = plan, lists
        for t in plan.tables:
            if self.out_tables and self.spark.catalog.tableExists(self._table_names(t.name)[1]):
                raise OutputError(
                    f"the table {self._table_names(t.name)[1].replace('`', '')} already exists",
                    hint="choose another --out-tables schema or --out-table-prefix (a release never "
                    "replaces a table)",
                )
            # the change check of sources the driver cannot read as files
            if not t.source.local:
                self._identity_before[t.name] = self._change_key(t.source)
        if self.out_tables:
            self.details["stale_tables_dropped"] = self._sweep_stale_tables()
        allow = self._number_frame(lists.allow, "__al_n", "__al_i")
        self._allow, self._allow_broadcast = self._maybe_broadcast(allow, int(lists.allow.size))
        self.details["allow_list"] = "broadcast" if self._allow_broadcast else "shuffle join"
        self.details["allow_list_numbers"] = int(lists.allow.size)
        self.details["broadcast_rows"] = self.broadcast_rows
        if lists.cohort is not None:
            cohort = self._number_frame(lists.cohort, "__co_n")
            self._cohort, _b = self._maybe_broadcast(cohort, int(lists.cohort.size))
        if plan.trace is not None:
            self._trace = self._trace_frame(plan)
        out: dict[str, TableCounts] = {}
        joins: dict[str, str] = {}
        from pyspark import StorageLevel

        for t in plan.tables:
            if progress:
                progress(t.name, "checking")
            # (caching the classified columns for the key summaries costs more than classifying
            # again: a Parquet table is re-read only in its NHS-number and key columns)
            c = self._classified(t, plan, lists)
            counts = self._classify_table(t, plan, lists, c)
            out[t.name] = counts
            self._expected[t.name] = counts.rows_out
            sort = " (order restored by a sort)" if t.source.kind != "catalog" else ""
            joins[t.name] = f"shuffle{sort}" if self._shuffles(t) else "broadcast"
            for i, child in enumerate(t.children):
                key_name = f"__ck{i}"
                _key, kind = self._key_col(c, child.parent_column, plan, child)
                ident = (t.name, child.parent_column, kind)
                if ident in self._keys:
                    continue
                kept = F.bool_and(F.col("__status").isin(*_KEPT)) & F.coalesce(
                    F.min("__person") == F.max("__person"), _lit(True)
                )
                summary = (
                    c.where(F.col(key_name).isNotNull())
                    .groupBy(F.col(key_name).alias("__pk"))
                    .agg(
                        kept.alias("__pk_kept"),
                        F.min("__person").alias("__pk_person"),
                        F.min("__pidx").alias("__pk_i"),
                    )
                )
                # cached when first used (the child's classification), reused for its write
                summary = summary.persist(StorageLevel.MEMORY_AND_DISK)
                self._cached.append(summary)
                # at most one key per row: a parent of few enough rows is broadcast without counting
                rows = counts.rows_in
                fits = self._fitting(_KEY_ROW_BYTES)
                if rows > fits:
                    rows = int(self._run(summary.count, t.source))
                self._keys[ident] = _KeySummary(summary, rows, rows <= fits)
        self.details["joins"] = joins
        return out

    def _trace_frame(self, plan: ReleasePlan) -> Any:
        F = _F()
        assert plan.trace is not None
        tr = plan.trace
        df = with_nhs_number(self._read(tr.source), tr.nhs_column, norm="__n")
        df = df.select(_text_key(_name(tr.key_column)).alias("__tr_k"), "__n").where(
            F.col("__tr_k").isNotNull()
        )
        g = df.groupBy("__tr_k").agg(
            F.when((F.count(_lit(1)) == F.count("__n")) & (F.min("__n") == F.max("__n")), F.min("__n")).alias(
                "__tr_n"
            )
        )
        from pyspark import StorageLevel

        g = g.persist(StorageLevel.MEMORY_AND_DISK)
        self._cached.append(g)
        rows = int(self._run(g.count, tr.source))
        self._trace_broadcast = rows <= self._fitting(_KEY_ROW_BYTES)
        return F.broadcast(g) if self._trace_broadcast else g

    def _classify_table(self, t: PlannedTable, plan: ReleasePlan, lists: Lists, c: Any) -> TableCounts:
        F = _F()
        src = t.source
        reasons = [r for r in Reason if r != Reason.VALID]
        sums = ["n", "traced", *[f"r{int(r)}" for r in reasons], "bad"]
        kept = F.col("__status").isin(*_KEPT)
        # Exact distinct people. A kept row's person is on the allow-list, so it is counted by its
        # place in the list in a bitmap (32768 places a bucket); a removed row's person by hashing,
        # over the (few) removed rows only. Two levels: per (status, bucket), then per status.
        aggs = [
            F.count(_lit(1)).alias("n"),
            F.sum(F.col("__traced").cast("long")).alias("traced"),
            *[F.sum((F.col("__reason") == int(r)).cast("long")).alias(f"r{int(r)}") for r in reasons],
            F.sum(F.col("__bad").cast("long")).alias("bad"),
            F.bitmap_construct_agg(F.when(kept, F.bitmap_bit_position("__pidx"))).alias("bm"),
            F.countDistinct(F.when(~kept, F.col("__person"))).alias("pr"),
        ]
        bucket = F.when(kept, F.bitmap_bucket_number("__pidx")).alias("bucket")
        level1 = c.groupBy("__status", bucket).agg(*aggs)
        level2 = level1.groupBy("__status").agg(
            *[F.sum(x).alias(x) for x in sums],
            F.sum(F.bitmap_count("bm")).alias("pk"),
            F.sum("pr").alias("pr"),
        )
        rows = self._run(level2.collect, src)
        counts = TableCounts()
        bad = 0
        for row in rows:
            st = Status(int(row["__status"]))
            n = int(row["n"])
            people = int((row["pk"] if st.kept else row["pr"]) or 0)
            counts.rows_in += n
            counts.by_status[st] = [n, people]
            if st.kept:
                counts.people_kept += people
                counts.rows_out += n
            else:
                counts.people_removed += people
            counts.traced += int(row["traced"] or 0)
            for r in reasons:
                k = int(row[f"r{int(r)}"] or 0)
                if k:
                    counts.invalid[r.label] = counts.invalid.get(r.label, 0) + k
            if src.format == "csv":
                bad += int(row["bad"] or 0)
        if bad:
            first = self._first_rows(t, plan, lists, F.col("__bad"), 1)
            raise InputError(
                f"{src.path.name}: a row does not have as many fields as the header",
                where=Location(file=src.path, row=first[0] if first else None, value_class="ragged row"),
                hint="fix that row (a missing or extra delimiter, or an unquoted delimiter in a value), "
                "or give the right --delimiter",
            )
        if counts.invalid:
            counts.problem_rows = self._first_rows(t, plan, lists, F.col("__reason") != 0, PROBLEM_ROWS_SHOWN)
        return counts

    def _first_rows(self, t: PlannedTable, plan: ReleasePlan, lists: Lists, where: Any, n: int) -> list[int]:
        """1-based data row numbers (in file order) of the first ``n`` rows matching ``where``.

        Spark has no row number for a CSV line, so: each row's file, the start of its file split
        and its position (``monotonically_increasing_id``, which counts up within a partition in
        read order); the splits' row counts give each split's first row number."""
        F = _F()
        src = t.source
        c = self._classified(t, plan, lists, order=True)
        blocks = self._run(
            lambda: (
                c.groupBy("__file", "__block")
                .agg(F.min("__mid").alias("m"), F.count(_lit(1)).alias("k"))
                .collect()
            ),
            src,
        )
        offsets: dict[tuple[str, int], tuple[int, int]] = {}
        start = 0
        for b in sorted(blocks, key=lambda r: (r["__file"], r["__block"])):
            offsets[(b["__file"], int(b["__block"]))] = (int(b["m"]), start)
            start += int(b["k"])
        return list(self._run(lambda: self._first_hits(c, where, offsets, n), src))

    def _first_hits(
        self, c: Any, where: Any, offsets: dict[tuple[str, int], tuple[int, int]], n: int
    ) -> list[int]:
        F = _F()
        from pyspark.sql import types as T

        schema = T.StructType(
            [
                T.StructField("__bf", T.StringType()),
                T.StructField("__bb", T.LongType()),
                T.StructField("__bm", T.LongType()),
                T.StructField("__bo", T.LongType()),
            ]
        )
        table = self.spark.createDataFrame(
            [(f, b, m, o) for (f, b), (m, o) in offsets.items()], schema=schema
        )
        j = c.join(
            F.broadcast(table), (F.col("__file") == F.col("__bf")) & (F.col("__block") == F.col("__bb"))
        )
        # no filter on the condition: Spark would push it below the NHS-number projections and
        # inline them all into one (too large to compile); rows that do not match sort last
        rn = F.when(where, F.col("__bo") + (F.col("__mid") - F.col("__bm")) + 1)
        rows = j.select(rn.alias("rn")).orderBy(F.col("rn").asc_nulls_last()).limit(n).collect()
        return [int(r["rn"]) for r in rows if r["rn"] is not None]

    # ------------------------------------------------------------------ writing

    def write(self, table: str, out_path: Path) -> int:
        F = _F()
        assert self._plan is not None and self._lists is not None
        t = self._plan.table(table)
        src = t.source
        # Spark reads several files in an order of its own (largest first): a folder's or a URI's
        # kept rows are put back in (part name, position) order, as rows after a shuffle join are. A
        # catalog table has no order to keep: its rows are written as Spark reads them.
        many = (src.kind == "folder" and len(src.parts) > 1) or src.kind == "uri"
        order = (self._shuffles(t) or many) and src.kind != "catalog"
        c = self._classified(t, self._plan, self._lists, order=order)
        kept = c.where(F.col("__status").isin(*_KEPT))
        if order:
            cols = ["__file", "__block", "__mid"]
            kept = kept.repartitionByRange(*cols).sortWithinPartitions(*cols)
        data_cols = [x for x in src.columns]
        out = kept.select(*[_name(x) for x in data_cols])
        if self.out_tables:
            return self._write_table(table, out)
        writer = out.write.mode("errorifexists")
        try:
            if src.format == "parquet":
                codec = (src.compression or "SNAPPY").lower()
                codec = {"uncompressed": "none", "lz4_raw": "lz4raw"}.get(codec, codec)
                writer.option("compression", codec).parquet(str(out_path))
            else:
                enc = {"latin-1": "ISO-8859-1"}.get(src.encoding or "utf-8", "UTF-8")
                q = src.quote or '"'
                (
                    writer.option("header", "true")
                    .option("sep", src.delimiter or ",")
                    .option("quote", q)
                    .option("escape", q)
                    .option("lineSep", src.newline or "\n")
                    .option("encoding", enc)
                    .option("ignoreLeadingWhiteSpace", "false")
                    .option("ignoreTrailingWhiteSpace", "false")
                    .csv(str(out_path))
                )
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            raise OutputError(
                f"Spark could not write {out_path.name} ({_error_class(exc)})",
                hint="check the --out folder is writable by Spark and has free space; nothing was released",
            ) from None
        parts = self._tidy(out_path, src)
        n = sum(k for _p, k in parts)
        if n != self._expected[table]:
            raise OptoutError(
                f"internal check failed: {table} wrote {n} rows where {self._expected[table]} were expected",
                hint="this is a bug; nothing was released. Run again with --engine reference and report it",
            )
        self._parts[table] = parts
        return n

    def _table_names(self, table: str) -> tuple[str, str]:
        """(temporary, final) names of ``table``'s output table, quoted."""
        schema = ".".join(_ident(p.strip("`")) for p in str(self.out_tables).split("."))
        base = f"{self.out_table_prefix}{table}"
        return f"{schema}.{_ident(f'_optout_tmp_{self._token}_{base}')}", f"{schema}.{_ident(base)}"

    def _sweep_stale_tables(self, now: float | None = None) -> int:
        """Drop this schema's temporary tables made more than STALE_TABLE_HOURS ago: left by a job
        killed outright (a job that fails drops its own). A younger one may belong to a release
        still running elsewhere and is left alone. Returns how many were dropped."""
        schema = ".".join(_ident(p.strip("`")) for p in str(self.out_tables).split("."))
        try:
            rows = self.spark.sql(f"SHOW TABLES IN {schema} LIKE '_optout_tmp_*'").collect()
        except Exception:  # a schema that does not exist yet has nothing to sweep
            return 0
        cutoff = (time.time() if now is None else now) - STALE_TABLE_HOURS * 3600
        dropped = 0
        for r in rows:
            name = str(r["tableName"])
            m = _TMP_TABLE.match(name)
            if m is None or bool(r["isTemporary"]) or int(m.group(1), 16) >= cutoff:
                continue
            with contextlib.suppress(Exception):
                self.spark.sql(f"DROP TABLE IF EXISTS {schema}.{_ident(name)}")
                dropped += 1
        return dropped

    def _write_table(self, table: str, out: Any) -> int:
        """Write the kept rows as a catalog table under a temporary name (the session's default
        format: Delta on Databricks), count and hash it there."""
        tmp, final = self._table_names(table)
        if self.spark.catalog.tableExists(final):
            raise OutputError(
                f"the table {final} already exists",
                hint="choose another --out-tables schema or --out-table-prefix (a release never "
                "replaces a table)",
            )
        self._staged.append((tmp, final))
        try:
            out.write.mode("errorifexists").saveAsTable(tmp)
            stats = _content_hash(self.spark.table(tmp))
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            raise OutputError(
                f"Spark could not write the table {final} ({_error_class(exc)})",
                hint="check this cluster may create tables in that schema; nothing was released",
            ) from None
        n = stats["rows"]
        if n != self._expected[table]:
            raise OptoutError(
                f"internal check failed: {table} wrote {n} rows where {self._expected[table]} were expected",
                hint="this is a bug; nothing was released. Run again with --engine reference and report it",
            )
        self._parts[table] = []
        self._tables_out.append(
            {"table": table, "name": final.replace("`", ""), "rows": n, "content_hash": stats["content_hash"]}
        )
        return n

    def tables_written(self) -> list[dict[str, Any]]:
        """The catalog tables written (final name, rows, content hash), for the manifest."""
        return list(self._tables_out)

    def staged_tables(self) -> StagedTables | None:
        """Hand the tables written under temporary names to the caller, who publishes them with the
        release folder or discards them (and then stops a session optout started)."""
        if not self._staged:
            return None
        self._handed = True
        return StagedTables(self.spark, list(self._staged), owned=self._owned)

    def _change_key(self, src: TableSource) -> Any:
        """What changes when a URI's files or a catalog table change: the listing (names, sizes,
        modification times); a Delta table's version."""
        if src.kind == "uri":
            return _listing(self.spark, str(src.location))
        info = _describe_table(self.spark, str(src.location))
        if "delta_version" in info:
            return ("delta", info["delta_version"])
        files = sorted(self.spark.table(str(src.location)).inputFiles())
        return [(f, _listing(self.spark, f)) for f in files]

    def input_identity(self, src: TableSource) -> dict[str, Any] | None:
        if src.local:
            return None
        try:
            now = self._change_key(src)
        except Exception as exc:
            raise InputError(
                f"Spark cannot read {src.location} any more ({_error_class(exc)})",
                where=Location(file=src.path),
                hint="wait until whatever writes the table has finished, then apply again",
            ) from None
        if now != self._identity_before.get(src.name, now):
            raise InputError(
                f"{src.location} changed while the release was being made",
                where=Location(file=src.path),
                hint="wait until whatever writes the table has finished, then apply again",
            )
        if src.kind == "uri":
            ident: dict[str, Any] = {
                "parts": [
                    {"path": n, "bytes": b, "modified_ms": m}
                    for n, b, m in _listing(self.spark, str(src.location))
                ]
            }
        else:
            ident = _describe_table(self.spark, str(src.location))
        if "delta_version" not in ident:
            ident["content_hash"] = self._run(lambda: _content_hash(self._read(src)), src)["content_hash"]
        return ident

    def _tidy(self, folder: Path, src: TableSource) -> list[tuple[Path, int]]:
        """Remove Spark's bookkeeping files, name the parts part-00000.<ext>... in order, make them
        owner-only, and count each part's rows."""
        ext = src.path.suffix if src.kind != "catalog" else ""
        ext = ext or (".parquet" if src.format == "parquet" else ".csv")
        names = sorted(os.listdir(folder))
        parts = [n for n in names if n.startswith("part-") and not n.endswith(".crc")]
        for n in names:
            if n not in parts:
                p = folder / n
                if p.is_file():
                    p.unlink()
        os.chmod(folder, 0o700)
        out: list[tuple[Path, int]] = []
        for i, n in enumerate(parts):
            target = folder / f"part-{i:05d}{ext}"
            os.rename(folder / n, target)
            os.chmod(target, 0o600)
            out.append((target, _count_rows(target, src)))
        return out

    def outputs(self, table: str, out_path: Path, rows: int) -> list[tuple[Path, int]]:
        return list(self._parts.get(table, [(out_path, rows)]))


def _text_key(col: Any) -> Any:
    """Link/trace keys compared as text; '' is no key."""
    F = _F()
    s = col.cast("string")
    return F.when(s == "", _lit(None).cast("string")).otherwise(s)


def _count_rows(part: Path, src: TableSource) -> int:
    if src.format == "parquet":
        import pyarrow.parquet as pq

        return int(pq.read_metadata(part).num_rows)
    enc = "latin-1" if src.encoding == "latin-1" else "utf-8"
    with part.open("r", encoding=enc, newline="") as fh:
        reader = csv.reader(fh, delimiter=src.delimiter or ",", quotechar=src.quote or '"')
        n = sum(1 for _ in reader)
    return max(n - 1, 0)  # the header
