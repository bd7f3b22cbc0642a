"""``optout apply``: remove opted-out people's whole records from an extract (a thin wrapper over
``optout.apply_opt_outs``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from optout.errors import EXIT_INTERRUPTED, UsageError


@contextmanager
def _progress() -> Iterator[Callable[[str, str], None] | None]:
    """Rich progress on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(table: str, phase: str) -> None:
            bar.update(task, description=f"{phase} {table}")

        yield update


def apply_cmd(
    tables: list[str] | None = typer.Argument(
        None,
        metavar="TABLE...",
        help="Extract tables (CSV or Parquet); each is named by its file's stem. --engine spark also "
        "reads folders of part files (named by the folder's stem) and URIs (s3a://, abfss://, hdfs://, "
        "file://).",
    ),
    catalog_table: list[str] = typer.Option(
        [],
        "--table",
        metavar="CATALOG.SCHEMA.TABLE",
        help="--engine spark: a table of the Spark catalog (Unity Catalog, Hive metastore) to read, "
        "named by its last part; repeat for each table.",
    ),
    cleaned_list: Path | None = typer.Option(
        None,
        "--cleaned-list",
        metavar="FILE",
        help="The check service's reply (.dat) or a one-column CSV: the people WITHOUT an opt-out.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        metavar="DIR",
        help="The release folder to create (with --out-tables it holds only release.json).",
    ),
    out_tables: str | None = typer.Option(
        None,
        "--out-tables",
        metavar="CATALOG.SCHEMA",
        help="--engine spark: write each table's kept rows as a new table of this schema (the "
        "session's default format: Delta on Databricks) instead of files; published only with "
        "the release, never replacing a table.",
    ),
    out_table_prefix: str = typer.Option(
        "",
        "--out-table-prefix",
        metavar="TEXT",
        help="With --out-tables: put TEXT before each table's name (e.g. r2026_03_).",
    ),
    checked_at: str | None = typer.Option(
        None,
        "--checked-at",
        metavar="TIME",
        help="When the list was checked (ISO-8601 with zone, e.g. 2026-03-01T09:30:00Z); "
        "read from FILE.json when `optout check` wrote one.",
    ),
    cohort: Path | None = typer.Option(
        None,
        "--cohort",
        metavar="FILE",
        help="The cohort submitted for checking; rows whose number was never submitted are removed "
        "and counted apart (not_in_cohort).",
    ),
    nhs_column: list[str] = typer.Option(
        [],
        "--nhs-column",
        metavar="TABLE=COL",
        help="The NHS-number column of a table (else detected by name).",
    ),
    link: list[str] = typer.Option(
        [],
        "--link",
        metavar="CHILD.COL=PARENT.COL",
        help="A table without NHS numbers: its rows go out only with their parent row (001 §8.1).",
    ),
    chi: list[str] = typer.Option(
        [], "--chi", metavar="TABLE", help="The table's NHS-number column holds Scottish CHI numbers."
    ),
    unmatched: str = typer.Option(
        "fail",
        "--unmatched",
        metavar="fail|withhold|trace|release",
        help="Rows whose NHS number is missing or invalid (001 §8.2): fail (stop), withhold (remove), "
        "trace (look up in --trace-index), release (keep, with --reason).",
    ),
    trace_index: Path | None = typer.Option(
        None, "--trace-index", metavar="FILE", help="CSV/Parquet of local identifier -> NHS number (trace)."
    ),
    trace_key: list[str] = typer.Option(
        [],
        "--trace-key",
        metavar="TABLE=COL",
        help="The table's column to look up in the trace index (default: the index's id column name).",
    ),
    reason: str | None = typer.Option(
        None,
        "--reason",
        metavar="disproportionate-effort|legally-restricted",
        help="Why unmatched rows are released (--unmatched release); recorded in the manifest.",
    ),
    report: Path | None = typer.Option(
        None, "--report", metavar="FILE.json", help="Also write the report here."
    ),
    report_for: str = typer.Option(
        "internal", "--report-for", metavar="internal|external", help="external: counts 1-4 shown as <5."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of a table."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Report what would be kept and removed; write nothing."
    ),
    force: bool = typer.Option(False, "--force", help="Replace DIR if it exists (atomically)."),
    flow: str | None = typer.Option(
        None, "--flow", metavar="ID", help="The registered data flow this is for."
    ),
    engine: str = typer.Option(
        "polars",
        "--engine",
        metavar="polars|duckdb|reference|spark",
        help="Engine (default polars, the fastest); duckdb spills to disk beyond --memory-limit; "
        "spark runs on Apache Spark (local[*], or --spark-master).",
    ),
    spark_master: str | None = typer.Option(
        None,
        "--spark-master",
        metavar="URL",
        help="--engine spark: the cluster to run on (e.g. spark://host:7077, yarn); default local[*].",
    ),
    memory_limit: str | None = typer.Option(
        None,
        "--memory-limit",
        metavar="SIZE",
        help="--engine duckdb: its memory limit, e.g. 2GB (default 1GB); it spills beyond. "
        "--engine spark: the local driver's memory (default 8GB). Not used by polars.",
    ),
    encoding: str | None = typer.Option(
        None, "--encoding", metavar="ENC", help="CSV encoding (utf-8, utf-8-sig, latin-1); default: sniffed."
    ),
    delimiter: str | None = typer.Option(
        None, "--delimiter", metavar="CHAR", help="CSV delimiter; default: sniffed."
    ),
    quote: str | None = typer.Option(
        None, "--quote", metavar="CHAR", help='CSV quote character (default ").'
    ),
    use_cache: bool = typer.Option(
        False,
        "--cache",
        help="Use the temporary cache (`optout cache refresh`) instead of --cleaned-list: refused when "
        "7 days old; disclose within 13 days of its refresh (001 §8.4).",
    ),
) -> None:
    """Remove every opted-out person's whole record from the tables, into a new release folder.

    A row goes out only when its person's NHS number is on the cleaned list (or, for a linked
    table, when its parent row goes out). Writes DIR atomically with release.json (inputs and
    outputs with SHA-256 and row counts, the check time, the disclosure deadline, the choices
    made), records the release, and prints the report. Exit 4 when refused by policy (unmatched
    NHS numbers with --unmatched fail, or the deadline has passed).
    """
    if tables and not dry_run:  # on the idle core while the libraries below load (optout.digest)
        from optout.digest import hash_early

        hash_early(tables)
    if cleaned_list is not None:  # parsed and checked meanwhile too (the file's errors: later)
        from optout.dat import read_early

        read_early(cleaned_list)
    from rich.console import Console

    from optout.release import apply_opt_outs

    if not tables and not catalog_table:
        raise UsageError(
            "no tables given", hint="name one or more CSV or Parquet files (or --table with --engine spark)"
        )
    if spark_master is not None and engine != "spark":
        raise UsageError("--spark-master is only for --engine spark", hint="add --engine spark")
    if report_for not in ("internal", "external"):
        raise UsageError(f"--report-for {report_for!r} is not a choice", hint="use internal or external")
    if flow is not None:  # the opt-out must apply to the flow: refuse does-not-apply / cannot-decide
        from optout.policy.register import flow_for_release
        from optout.store import open_store

        flow_for_release(open_store(), flow)
    allow_list = None
    if use_cache:  # the temporary cache: its own check time, never one given by hand
        if cleaned_list is not None or checked_at is not None:
            raise UsageError("--cache replaces --cleaned-list and --checked-at", hint="give --cache alone")
        from optout.check.cache import load_allow_list

        allow_list = load_allow_list()
    try:
        with _progress() as progress:
            rep = apply_opt_outs(
                list(tables or []),
                catalog_tables=catalog_table,
                out_tables=out_tables,
                out_table_prefix=out_table_prefix,
                out_dir=out,
                cleaned_list=cleaned_list,
                allow_list=allow_list,
                checked_at=checked_at,
                cohort=cohort,
                nhs_columns=nhs_column,
                links=link,
                chi_columns=chi,
                unmatched=unmatched,
                trace_index=trace_index,
                trace_keys=trace_key,
                release_reason=reason,
                report_for=report_for,
                dry_run=dry_run,
                force=force,
                flow_id=flow,
                engine=engine,
                engine_options={"master": spark_master} if spark_master else None,
                memory_limit=memory_limit,
                encoding=encoding,
                delimiter=delimiter,
                quote=quote,
                progress=progress,
            )
    except KeyboardInterrupt:
        # said here: outside standalone mode the CLI framework turns Ctrl-C into a bare exit 130
        typer.echo(
            "optout: interrupted; nothing was left half-written (no release folder was made)", err=True
        )
        raise SystemExit(EXIT_INTERRUPTED) from None
    if report is not None:
        rep.write(report, report_for=report_for)
    if as_json:
        typer.echo(rep.to_json(report_for=report_for), nl=False)
    else:
        rep.render(Console(soft_wrap=True), report_for=report_for)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("apply")(apply_cmd)
