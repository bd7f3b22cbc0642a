"""Applying opt-outs to an extract: whole-record removal (001 §8.1) into an atomic release folder.

    apply_opt_outs(tables, out_dir=..., cleaned_list=...) -> ReleaseReport

1. read the allow-list (the cleaned list: people WITHOUT an opt-out) and refuse when its
   disclosure deadline has passed (001 §8.4);
2. plan: open every table, find its NHS-number column or its link to a parent table, check the
   ``unmatched`` choice (001 §8.2) fits;
3. classify every row of every table (engine: Polars streaming, the default; DuckDB; Spark; or
   the pure-Python reference); with ``unmatched="fail"`` stop here when any NHS number is
   missing or invalid;
4. write the kept rows into a temporary folder beside ``out_dir``; record the release (state
   "preparing", audited, counts only), write ``release.json``, rename the folder into place, and
   record it "prepared" (audited). A release left "preparing" by a killed apply is settled by the
   next apply or ``optout release list`` (:mod:`optout.release.recover`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optout import atomic
from optout.check.cleaned_list import AllowList, parse_checked_at, read_cleaned_list
from optout.dat import read_number_file
from optout.digest import early_sha256
from optout.errors import InputError, Location, NotFoundError, PolicyRefusal, UsageError
from optout.release.engines import (
    DEFAULT_ENGINE,
    ENGINES,
    embedded_engine_names,
    engine_names,
    get_engine,
    load_engine,
)
from optout.release.engines.base import Lists, Status, TableCounts
from optout.release.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    manifest_bytes,
    sha256_file,
    staged_release,
)
from optout.release.plan import ReleasePlan, make_plan
from optout.release.report import ReleaseReport, TableReport
from optout.tables import TableSource, folder_parts, local_path
from optout.version import __version__

if TYPE_CHECKING:
    from optout.store import Store

__all__ = ["ENGINES", "REPORT_FOR", "ReleaseReport", "TableReport", "apply_opt_outs"]

REPORT_FOR = ("internal", "external")
CLOCK_SKEW = timedelta(minutes=10)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise UsageError("now= must be timezone-aware", hint="pass datetime.now(UTC)")
    return now.astimezone(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def _load_allow_list(
    cleaned_list: str | Path | None,
    allow_list: AllowList | None,
    checked_at: datetime | str | None,
    cohort: str | Path | None,
) -> tuple[AllowList, str | None]:
    cohort_sha = None
    if allow_list is not None:
        if cleaned_list is not None:
            raise UsageError(
                "give either a cleaned list file or an allow-list, not both",
                hint="use --cleaned-list FILE or --cache",
            )
        if checked_at is not None:
            allow_list = dataclasses.replace(allow_list, checked_at=parse_checked_at(checked_at))
        if cohort is not None:
            numbers, cohort_sha = read_number_file(cohort)
            allow_list = dataclasses.replace(allow_list, cohort=numbers)
        return allow_list, cohort_sha
    if cleaned_list is None:
        raise UsageError(
            "no cleaned list given",
            hint="give --cleaned-list FILE (the check service's reply) or use the temporary cache (--cache)",
        )
    al = read_cleaned_list(cleaned_list, checked_at=checked_at, cohort=cohort)
    if cohort is not None:
        cohort_sha = sha256_file(Path(cohort))
    return al, cohort_sha


def _check_timing(al: AllowList, now: datetime) -> None:
    if al.checked_at > now + CLOCK_SKEW:
        raise UsageError(
            f"the check time {_iso(al.checked_at)} is in the future",
            hint="give the time the check request was sent (--checked-at ...Z), and check the clock",
        )
    if now > al.deadline:
        days = 13 if al.source == "cache" else 20
        raise PolicyRefusal(
            f"the {'cache' if al.source == 'cache' else 'cleaned list'} was checked at "
            f"{_iso(al.checked_at)}; data must be disclosed within {days} days of the check "
            f"(001 §8.4), and that deadline passed at {_iso(al.deadline)}",
            hint="check the cohort again (`optout check`) and apply with the new cleaned list",
        )


def _fail_refusal(plan: ReleasePlan, counts: Mapping[str, TableCounts]) -> PolicyRefusal | None:
    bad = [(t, counts[t.name]) for t in plan.tables if counts[t.name].invalid]
    if not bad:
        return None
    parts = []
    for t, c in bad:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(c.invalid.items()))
        rows = ", ".join(str(r) for r in c.problem_rows)
        parts.append(
            f"{t.source.path.name} column {t.nhs_column!r}: {classes} (rows {rows}"
            + (", ..." if sum(c.invalid.values()) > len(c.problem_rows) else "")
            + ")"
        )
    return PolicyRefusal(
        "some NHS numbers are missing or invalid, so the opt-out cannot be checked for those rows "
        "(001 §8.2); nothing was written: " + "; ".join(parts),
        hint="fix them at source (see `optout nhs-number check FILE`), or choose what to do with "
        "--unmatched withhold (remove them), --unmatched trace --trace-index FILE (look them up), "
        "or --unmatched release --reason disproportionate-effort|legally-restricted (keep them, "
        "recorded in the manifest)",
    )


def _table_report(plan: ReleasePlan, name: str, c: TableCounts, cohort_known: bool) -> TableReport:
    t = plan.table(name)
    kept: dict[str, dict[str, int]] = {}
    removed: dict[str, dict[str, int]] = {}
    for st in sorted(c.by_status):
        rows, people = c.by_status[st]
        (kept if st.kept else removed)[st.label(cohort_known=cohort_known)] = {"rows": rows, "people": people}
    return TableReport(
        name=name,
        file=t.source.path.name,
        format=t.source.format,
        nhs_column=t.nhs_column,
        link=str(t.link) if t.link else None,
        rows_in=c.rows_in,
        rows_out=c.rows_out,
        people_kept=c.people_kept,
        people_removed=c.people_removed,
        kept=kept,
        removed=removed,
        invalid_nhs_numbers=dict(sorted(c.invalid.items())),
        problem_rows=list(c.problem_rows),
        traced_rows=c.traced,
    )


def _stat_key(src: TableSource) -> Any:
    """What changes when a local input changes: a file's size and time; a folder's parts' too."""
    paths = folder_parts(src.path) if src.kind == "folder" else [src.path]
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def _hash_input(src: TableSource) -> dict[str, Any]:
    """A local input's SHA-256; a folder's: each part's, and the SHA-256 of the lines
    ``<sha256>  <part name>`` of its parts in name order (what ``sha256sum part-* | sha256sum``
    prints in the folder)."""
    if src.kind != "folder":  # hashed while the command line loaded its libraries, if unchanged
        return {"sha256": early_sha256(src.path) or sha256_file(src.path)}
    parts = [{"path": p.name, "sha256": sha256_file(p)} for p in src.parts]
    lines = "".join(f"{x['sha256']}  {x['path']}\n" for x in parts)
    return {"sha256": hashlib.sha256(lines.encode("utf-8")).hexdigest(), "parts": parts}


def _sources(
    tables: Sequence[str | Path],
    catalog_tables: Sequence[str],
    engine: str,
    options: dict[str, Any],
    memory_limit: str | None,
    csv_options: dict[str, str | None],
) -> list[str | Path | TableSource]:
    """The tables for the plan: paths (files, folders of parts) as given; URIs and catalog tables
    opened by Spark. Only ``--engine spark`` reads folders, URIs and catalog tables."""
    remote = [str(t) for t in tables if local_path(t) is None]
    if engine in embedded_engine_names():
        spark_only = [*remote, *catalog_tables]
        spark_only += [str(t) for t in tables if (p := local_path(t)) is not None and p.is_dir()]
        if spark_only or options.get("out_tables"):
            what = "writing tables (--out-tables)" if not spark_only else f"{spark_only[0]}"
            raise UsageError(
                f"--engine {engine} reads and writes local files only: {what} needs --engine spark "
                "(folders of part files, URIs such as s3a:// or abfss://, catalog tables given with "
                "--table, tables written with --out-tables)",
                hint="add --engine spark",
            )
    if not remote and not catalog_tables:
        return list(tables)
    from optout.release.engines.spark import open_sources

    opened = iter(
        open_sources(remote, list(catalog_tables), options=options, memory_limit=memory_limit, **csv_options)
    )
    out: list[str | Path | TableSource] = [t if local_path(t) is not None else next(opened) for t in tables]
    return out + list(opened)


def apply_opt_outs(
    tables: Sequence[str | Path],
    *,
    out_dir: str | Path,
    cleaned_list: str | Path | None = None,
    allow_list: AllowList | None = None,
    checked_at: datetime | str | None = None,
    cohort: str | Path | None = None,
    nhs_columns: Mapping[str, str] | Sequence[str] | None = None,
    links: Sequence[str] = (),
    chi_columns: Sequence[str] = (),
    unmatched: str = "fail",
    trace_index: str | Path | None = None,
    release_reason: str | None = None,
    report_for: str = "internal",
    dry_run: bool = False,
    force: bool = False,
    flow_id: str | None = None,
    engine: str = DEFAULT_ENGINE,
    memory_limit: str | None = None,
    store: Store | None = None,
    now: datetime | None = None,
    trace_keys: Mapping[str, str] | Sequence[str] | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    quote: str | None = None,
    progress: Callable[[str, str], None] | None = None,
    actor: str | None = None,
    engine_options: Mapping[str, Any] | None = None,
    catalog_tables: Sequence[str] = (),
    out_tables: str | None = None,
    out_table_prefix: str = "",
) -> ReleaseReport:
    """Remove every opted-out person's whole record from ``tables`` into the release ``out_dir``.

    See the module docstring and docs/guides/data-engineer.md for every choice. Returns the report;
    raises ``optout.errors`` exceptions (never with an NHS number in the message). ``actor`` names
    who made the release in its audit entries (the web app's user); default: the settings' actor.

    ``engine="spark"`` also reads folders of part files, Hadoop-compatible URIs (``s3a://``,
    ``abfss://``, ``hdfs://`` ...) in ``tables``, and catalog tables (``catalog_tables=
    ["catalog.schema.table"]``, each named by its last part); with ``out_tables="catalog.schema"``
    it writes each table's kept rows as the table ``catalog.schema.<out_table_prefix><name>``
    instead of files (``out_dir`` then holds only ``release.json``). See docs/guides/spark.md.
    """
    t_now = _now(now)
    if report_for not in REPORT_FOR:
        raise UsageError(f"--report-for {report_for!r} is not a choice", hint="use internal or external")
    if engine not in engine_names():
        raise UsageError(f"unknown engine {engine!r}", hint=f"use one of: {', '.join(engine_names())}")
    options = dict(engine_options or {})  # engine-specific (spark: session, master, broadcast_rows)
    if out_table_prefix and not out_tables:
        raise UsageError("--out-table-prefix is only for --out-tables", hint="add --out-tables SCHEMA")
    if out_tables:
        options.update(out_tables=out_tables, out_table_prefix=out_table_prefix)
    csv_options = {"encoding": encoding, "delimiter": delimiter, "quote": quote}
    if engine in embedded_engine_names():  # refused before anything is read
        _sources(tables, catalog_tables, engine, options, memory_limit, csv_options)
    # The list is parsed and checked on a thread (NumPy, mostly without the GIL) while the tables
    # are opened and the engine loaded; its errors and the timing refusal still come first.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-list") as reader:
        loading = reader.submit(_load_allow_list, cleaned_list, allow_list, checked_at, cohort)
        try:
            plan = make_plan(
                _sources(tables, catalog_tables, engine, options, memory_limit, csv_options),
                nhs_columns=nhs_columns,
                links=links,
                chi_columns=chi_columns,
                unmatched=unmatched,
                trace_index=trace_index,
                trace_keys=trace_keys,
                release_reason=release_reason,
                encoding=encoding,
                delimiter=delimiter,
                quote=quote,
            )
            if engine in embedded_engine_names():
                load_engine(engine)  # its libraries, imported now rather than after the list
        except BaseException:
            al, _ = loading.result()  # a bad list is reported before a bad table, as before
            _check_timing(al, t_now)
            raise
        al, cohort_sha = loading.result()
    _check_timing(al, t_now)
    allow = al.numbers
    if al.cohort is not None:
        allow = np.intersect1d(allow, al.cohort, assume_unique=True)
    lists = Lists(allow=allow, cohort=al.cohort)
    cohort_known = al.cohort is not None
    release_id = f"rel-{t_now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    out = Path(os.path.abspath(out_dir))
    details: dict[str, Any] = {}  # how the engine ran (never a value)

    def report_of(counts: Mapping[str, TableCounts]) -> ReleaseReport:
        return ReleaseReport(
            release_id=release_id,
            out_dir=str(out),
            dry_run=dry_run,
            created_at=t_now,
            checked_at=al.checked_at,
            deadline=al.deadline,
            check_source=al.source,
            cleaned_list=al.origin,
            cleaned_list_sha256=al.sha256,
            unmatched=plan.unmatched,
            release_reason=plan.release_reason,
            engine=engine,
            tables=[_table_report(plan, t.name, counts[t.name], cohort_known) for t in plan.tables],
            report_for=report_for,
            cohort_known=cohort_known,
            engine_details=dict(details),
        )

    if dry_run:
        # the spill folder: 0700, removed on exit; one a crash left is swept by the next run
        with (
            atomic.private_tempdir() as spill,
            get_engine(engine, memory_limit=memory_limit, temp_dir=spill, **options) as eng,
        ):
            counts = eng.classify(plan, lists, progress)
            eng.finish_counts()
            details.update(eng.details)
        refusal = _fail_refusal(plan, counts) if plan.unmatched == "fail" else None
        if refusal is not None:
            raise refusal
        return report_of(counts)

    local = [t for t in plan.tables if t.source.local]
    before = {t.name: _stat_key(t.source) for t in local}
    # hash the inputs while the engine works (hashlib releases the GIL on large blocks)
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-sha256")
    input_sha = {t.name: hasher.submit(_hash_input, t.source) for t in local}
    hasher.shutdown(wait=False)

    with contextlib.ExitStack() as early:
        # An engine that writes nothing while it classifies (the default, unless a CSV is
        # Latin-1) classifies now, while the metadata store is opened (its libraries loaded) and
        # an interrupted apply's release settled, on a thread: the engine's work runs without the
        # GIL. Otherwise the store comes first and the engine classifies in the staging folder.
        counts_early: dict[str, TableCounts] | None = None
        eng_early: Any = None
        needs_temp_dir = getattr(load_engine(engine), "needs_temp_dir", None)
        if needs_temp_dir is None or needs_temp_dir(plan):
            store, flow_version = _ready_store(store, out, flow_id)
        else:
            eng_early = early.enter_context(
                get_engine(engine, memory_limit=memory_limit, temp_dir=None, **options)
            )
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-store") as opener:
                readying = opener.submit(_ready_store, store, out, flow_id)
                try:
                    counts_early = eng_early.classify(plan, lists, progress)
                    details.update(eng_early.details)
                finally:
                    store, flow_version = readying.result()  # its error, if any, comes first
        from optout.release.recover import attempt

        with (
            attempt(store, release_id, actor=actor) as tracked,
            staged_release(out, force=force) as staged,
        ):
            spill = staged.path(".spill")
            spill.mkdir()
            tables_staged: Any = None  # catalog tables under temporary names (spark, --out-tables)
            try:
                with (
                    contextlib.nullcontext(eng_early)
                    if counts_early is not None
                    else get_engine(engine, memory_limit=memory_limit, temp_dir=spill, **options)
                ) as eng:
                    if counts_early is None:
                        counts = eng.classify(plan, lists, progress)
                        details.update(eng.details)
                    else:
                        counts = counts_early
                    refusal = _fail_refusal(plan, counts) if plan.unmatched == "fail" else None
                    if refusal is not None:
                        raise refusal
                    files: list[tuple[Any, Path, int]] = []
                    # each output is hashed on a thread while the next table is written
                    out_hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-sha256-out")
                    out_sha: dict[Path, Any] = {}
                    for t in plan.tables:
                        if progress:
                            progress(t.name, "writing")
                        target = staged.path(
                            t.source.path.name if t.source.kind != "catalog" else t.name + ".parquet"
                        )
                        rows = eng.write(t.name, target)
                        # one file, or (spark) each part of the folder it wrote
                        for part, n in eng.outputs(t.name, target, rows):
                            files.append((t, part, n))
                            if (digest := eng.written_sha256(part)) is not None:
                                out_sha[part] = _done(digest)  # hashed as it was written
                            else:
                                out_sha[part] = out_hasher.submit(sha256_file, part)
                    out_hasher.shutdown(wait=False)
                    eng.finish_counts()  # people counted beside the writes
                    # URIs and catalog tables: checked unchanged, identified (version, listing, hash)
                    identity = {
                        t.name: eng.input_identity(t.source) for t in plan.tables if not t.source.local
                    }
                    tables_out = eng.tables_written()
                    tables_staged = eng.staged_tables()
                shutil.rmtree(spill, ignore_errors=True)
                inputs = []
                for t in plan.tables:
                    if not t.source.local:
                        inputs.append((t, identity[t.name] or {}))
                        continue
                    if _stat_key(t.source) != before[t.name]:
                        raise InputError(
                            f"{t.source.path.name} changed while the release was being made",
                            where=Location(file=t.source.path),
                            hint="wait until whatever writes the file has finished, then apply again",
                        )
                    inputs.append((t, input_sha[t.name].result()))
                report = report_of(counts)
                manifest = _manifest(
                    report,
                    plan,
                    al,
                    cohort_sha,
                    inputs,
                    files,
                    counts,
                    flow_id,
                    flow_version,
                    t_now,
                    staged.tmp,
                    tables_out,
                    {part: f.result() for part, f in out_sha.items()},
                )
                data = manifest_bytes(manifest)
                report.manifest_sha256 = hashlib.sha256(data).hexdigest()
                # recorded before it can be seen: no release folder without a record and an audit entry
                tracked.preparing(
                    staged.tmp,
                    lambda info: _record_preparing(store, report, flow_id, flow_version, counts, info, actor),
                )
                (staged.path(MANIFEST_NAME)).write_bytes(data)
                if tables_staged is not None:  # temporary names -> final names, then the folder
                    tables_staged.publish()
                staged.commit()
                tracked.prepared()
                staged.finish()
            except BaseException:
                if tables_staged is not None:  # no table without its release
                    tables_staged.discard()
                raise
            finally:
                if tables_staged is not None:
                    tables_staged.close()
    return report


def _done(value: Any) -> Future[Any]:
    f: Future[Any] = Future()
    f.set_result(value)
    return f


def _ready_store(store: Store | None, out: Path, flow_id: str | None) -> tuple[Store, int | None]:
    """The metadata store, open, with what an interrupted apply left settled (its release
    recorded as prepared or failed, its staging folder gone, a replaced release put back), and the
    flow's version (``flow_id``)."""
    from optout.release.recover import reconcile, sweep_replaced

    if store is None:
        store = _open_store()
    reconcile(store)
    sweep_replaced(out)
    return store, (_flow_version(store, flow_id) if flow_id is not None else None)


def _open_store() -> Store:
    from optout.config import load_settings
    from optout.store import open_store

    return open_store(load_settings().db_url)


def _flow_version(store: Store | None, flow_id: str) -> int:
    import sqlalchemy as sa

    from optout.store import flows

    assert store is not None
    with store.begin() as conn:
        row = conn.execute(sa.select(flows.c.version).where(flows.c.id == flow_id)).first()
    if row is None:
        raise NotFoundError(
            f"no data flow {flow_id!r} is registered",
            hint="list flows with `optout flow list`, or register it with `optout flow add`",
        )
    return int(row.version)


def _manifest(
    report: ReleaseReport,
    plan: ReleasePlan,
    al: AllowList,
    cohort_sha: str | None,
    inputs: list[tuple[Any, dict[str, Any]]],
    files: list[tuple[Any, Path, int]],
    counts: Mapping[str, TableCounts],
    flow_id: str | None,
    flow_version: int | None,
    now: datetime,
    root: Path | None = None,
    tables_out: Sequence[dict[str, Any]] = (),
    output_sha: Mapping[Path, str] | None = None,
) -> dict[str, Any]:
    """The release's manifest (release.json). ``output_sha``: outputs already hashed."""
    output_sha = output_sha or {}
    external = report.report_for == "external"
    under_reason = {
        name for name, c in counts.items() if c.by_status.get(Status.KEPT_UNDER_REASON, [0])[0] > 0
    }
    return {
        "format": MANIFEST_FORMAT,
        "release_id": report.release_id,
        "created_at": _iso(now),
        "tool": {"name": "optout", "version": __version__},
        "flow": {"id": flow_id, "version": flow_version} if flow_id else None,
        "check": {
            "cleaned_list": al.origin,
            "sha256": al.sha256,
            "checked_at": _iso(al.checked_at),
            "source": al.source,
            "local_id": al.local_id,
            "deadline": _iso(al.deadline),
            "deadline_rule": "001 §8.4: disclose within "
            + ("13 days of a cache refresh" if al.source == "cache" else "20 days of the check"),
            "cohort_sha256": cohort_sha,
        },
        "choices": {
            "unmatched": plan.unmatched,
            "release_reason": plan.release_reason,
            "nhs_columns": {t.name: t.nhs_column for t in plan.tables if t.nhs_column},
            "chi": [t.name for t in plan.tables if t.chi],
            "links": [str(link) for link in plan.links],
            "trace_index": (
                {"file": plan.trace.source.path.name, "sha256": sha256_file(plan.trace.source.path)}
                if plan.trace
                else None
            ),
            "trace_keys": {t.name: t.trace_key for t in plan.tables if t.trace_key},
            "engine": report.engine,
            **({"engine_details": report.engine_details} if report.engine_details else {}),
            "report_for": report.report_for,
        },
        "inputs": [
            {
                "table": t.name,
                **({"file": t.source.path.name} if t.source.kind != "catalog" else {}),
                **ident,
                **({} if external else {"rows": counts[t.name].rows_in}),
                **t.source.describe(),
            }
            for t, ident in inputs
        ],
        "files": [
            {
                "path": target.relative_to(root).as_posix() if root else target.name,
                "table": t.name,
                "format": t.source.format,
                "sha256": output_sha.get(target) or sha256_file(target),
                "rows": rows,
                "opt_out_upheld": t.name not in under_reason,
                **({"basis": plan.release_reason} if t.name in under_reason else {}),
            }
            for t, target, rows in files
        ],
        **(
            {
                "output_tables": [
                    {
                        **entry,
                        "opt_out_upheld": entry["table"] not in under_reason,
                        **({"basis": plan.release_reason} if entry["table"] in under_reason else {}),
                    }
                    for entry in tables_out
                ]
            }
            if tables_out
            else {}
        ),
        "counts": report.to_dict()["tables"],
    }


def _record_preparing(
    store: Store,
    report: ReleaseReport,
    flow_id: str | None,
    flow_version: int | None,
    counts: Mapping[str, TableCounts],
    apply_info: dict[str, Any],
    actor: str | None = None,
) -> None:
    """The release row in state "preparing" and its audit entry, in one transaction."""
    from sqlalchemy.engine import Connection

    from optout import audit
    from optout.store import releases

    per_table = {n: {"rows_in": c.rows_in, "rows_out": c.rows_out} for n, c in counts.items()}
    details = {
        "tables": per_table,
        "unmatched": report.unmatched,
        "release_reason": report.release_reason,
        "engine": report.engine,
        "cleaned_list_sha256": report.cleaned_list_sha256,
    }

    def insert(conn: Connection) -> bool:
        conn.execute(
            releases.insert().values(
                id=report.release_id,
                flow_id=flow_id,
                flow_version=flow_version,
                state="preparing",
                created_at=_iso(report.created_at),
                checked_at=_iso(report.checked_at),
                check_source=report.check_source,
                deadline=_iso(report.deadline),
                out_dir=report.out_dir,
                manifest_sha256=report.manifest_sha256,
                details={**details, "apply": apply_info},
            )
        )
        return True

    audit.record_change(
        store,
        "release.preparing",
        insert,
        actor=actor,
        subject=report.release_id,
        details={**details, "deadline": _iso(report.deadline), "manifest_sha256": report.manifest_sha256},
    )
