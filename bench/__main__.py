"""``make bench`` / ``python -m bench [--rows N] [--people N] [--stages a,b] ...``.

Generates synthetic data (kept under bench/data/, git-ignored, reused when the sizes match), runs
every stage in its own process, prints a table and merges the run into bench/results.json.
Examples::

    make bench                                   # 10 M episode rows over 2 M people, Parquet
                                                 # (zstd): the three linked tables, then episodes alone
    make bench ARGS="--layout one"               # the one-table extract only
    make bench ARGS="--format csv"               # the same data as CSV
    make bench ARGS="--rows 50000000"            # the 50 M-row run (takes a while)
    make bench ARGS="--stages floor,apply_api --repeat 1"
    make bench ARGS="--stages mesh_roundtrip --mesh-sizes 1000000"   # MESH round trip, 1 M only
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import core, stages


def _parser() -> argparse.ArgumentParser:
    names = [m.NAME for m in stages.all_stages()]
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000, help="episode rows (default 10 000 000)")
    p.add_argument("--people", type=int, default=2_000_000, help="people (default 2 000 000)")
    p.add_argument("--opt-out-rate", type=float, default=0.055, help="share opted out (default 0.055)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument(
        "--compression", default="zstd", help="Parquet codec of the generated extract (default zstd)"
    )
    p.add_argument(
        "--layout",
        choices=["linked", "one", "both"],
        default="both",
        help="the three linked tables, the episodes table alone, or both in turn (default both)",
    )
    p.add_argument("--stages", help=f"comma-separated subset of: {', '.join(names)}")
    p.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="runs per stage, taken in turn (every stage once, then again); the fastest counts (default 2)",
    )
    p.add_argument("--force-pandas", action="store_true", help="run pandas even above 20 M rows")
    p.add_argument("--no-save", action="store_true", help="do not write bench/results.json")
    p.add_argument("--data-dir", type=Path, default=core.DATA_DIR, help="where data is generated")
    p.add_argument("--results", type=Path, default=core.RESULTS, help="the results file to merge into")
    p.add_argument(
        "--mesh-sizes",
        default="1000000,10000000",
        help="cohort sizes for the MESH round trip stage (default 1000000,10000000)",
    )
    return p


def _fmt_s(x: float) -> str:
    return f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 130)

    def log(msg: str) -> None:
        console.print(f"[dim]{msg}[/dim]")

    chosen = stages.all_stages()
    if args.stages:
        wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {m.NAME for m in chosen})
        if unknown:
            console.print(f"unknown stage(s): {', '.join(unknown)}")
            return 2
        chosen = [m for m in chosen if m.NAME in wanted]
    else:
        chosen = [m for m in chosen if getattr(m, "DEFAULT", True)]

    started = datetime.now(UTC)
    facts = core.machine()
    core.compile_package()
    base = core.prepare_data(
        args.rows,
        args.people,
        args.opt_out_rate,
        args.seed,
        args.format,
        log,
        args.data_dir.resolve(),
        compression=args.compression,
    )
    base.extra["force_pandas"] = args.force_pandas
    base.extra["mesh_sizes"] = [int(s) for s in args.mesh_sizes.replace("_", "").split(",") if s.strip()]
    layouts = ["linked", "one"] if args.layout == "both" else [args.layout]
    code = 0
    for i, layout in enumerate(layouts):
        ctx = core.for_layout(base, layout)
        # stages outside the release group (validation, MESH) run once, with the first layout
        todo = [m for m in chosen if m.GROUP == "release" or i == 0]
        code |= _run_layout(args, console, log, ctx, todo, facts, started)
    return code


def _run_layout(
    args: argparse.Namespace,
    console: Console,
    log: Any,
    ctx: core.Context,
    chosen: list[Any],
    facts: dict[str, Any],
    started: datetime,
) -> int:
    log(f"== {ctx.label}: {', '.join(ctx.tables)}")
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    runnable = []
    for stage in chosen:
        reason = stage.skip(ctx) if hasattr(stage, "skip") else None
        if reason:
            skipped[stage.NAME] = reason
            log(f"{stage.NAME}: skipped ({reason})")
        else:
            runnable.append(stage)
    # in turn, so that a burst of load on a shared machine does not fall on one stage's runs
    runs: dict[str, list[dict[str, Any]]] = {m.NAME: [] for m in runnable}
    for rep in range(args.repeat):
        for stage in runnable:
            if rep >= min(getattr(stage, "REPEAT", args.repeat), args.repeat):
                continue
            log(f"{stage.NAME}: {stage.TITLE} (run {rep + 1}) ...")
            t0 = time.perf_counter()
            runs[stage.NAME].append(core.run_once(stage, ctx, rep))
            log(f"  {runs[stage.NAME][-1]['seconds']:.2f} s (stage took {time.perf_counter() - t0:.0f} s)")
    for stage in runnable:
        results[stage.NAME] = core.best_of(stage, runs[stage.NAME])

    for stage in chosen:  # stages that print and keep their own results (e.g. mesh_roundtrip)
        if stage.NAME in results and hasattr(stage, "save"):
            own = results.pop(stage.NAME)
            stage.report(console, own)
            if not args.no_save:
                stage.save(args.results, own, facts)
    if not results:
        return 0
    core.add_ratios(results)
    disagreements = core.check_agreement(results)
    targets = core.evaluate(results)
    fastest = core.fastest_floor(results)

    table = Table(title=f"optout bench: {ctx.label} ({ctx.extra['data']['rows_in']})")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("x fastest floor", justify="right")
    table.add_column("peak RSS", justify="right")
    table.add_column("notes")
    for name, r in results.items():
        ratio = r.get("ratio_vs_floor")
        notes = f"{r['values_per_second'] / 1e6:.0f} M values/s" if "values_per_second" in r else ""
        if name == fastest:
            notes = "the fastest floor"
        if name == "pandas_isin" and "apply_api" in results:
            speedup = r["seconds"] / results["apply_api"]["seconds"]
            notes = f"optout {speedup:.1f}x faster" if speedup >= 1 else f"optout {1 / speedup:.1f}x slower"
        if r["group"] == "spark" and not r.get("is_floor"):  # against the hand-written PySpark job
            notes = "x floor: against spark_sql"
            if "apply_api" in results:
                notes += f"; {r['seconds'] / results['apply_api']['seconds']:.1f}x the default engine"
        if len(r.get("runs_seconds", [])) > 1:
            each = ", ".join(f"{x:.2f}" for x in r["runs_seconds"])
            notes = (notes + "; " if notes else "") + "runs " + each
        table.add_row(
            f"{name} [dim]{r['title']}[/dim]",
            _fmt_s(r["seconds"]),
            "" if ratio is None or r["group"] not in ("release", "spark") else f"{ratio:.2f}",
            f"{r['peak_rss_bytes'] / core.GiB:.2f} GiB",
            notes,
        )
    for name, why in skipped.items():
        table.add_row(name, "-", "-", "-", f"skipped: {why}")
    console.print(table)
    for name, r in results.items():
        if "profile" in r:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in r["profile"].items())
            console.print(f"  profile of {name} ({r.get('engine')}), seconds: {parts}")
    for t in targets:
        mark = {True: "[green]met[/green]", False: "[red]NOT met[/red]", None: "[dim]not measured[/dim]"}[
            t["met"]
        ]
        m = t["measured"]
        shown = "-" if m is None else (f"{m / 1e6:.1f} M" if m > 1000 else f"{m:.2f}")
        console.print(f"  {t['target']}: {shown} ({t['threshold']}) {mark}")
    for d in disagreements:
        console.print(f"[red]DISAGREEMENT: {d}[/red]")

    record = {
        "started_at": started.replace(microsecond=0).isoformat(),
        "machine": facts,
        "data": {
            "rows": args.rows,
            "people": args.people,
            "opt_out_rate": args.opt_out_rate,
            "seed": args.seed,
            "format": args.format,
            "compression": ctx.extra.get("compression"),
            **ctx.extra["data"],
        },
        "repeat": args.repeat,
        "fastest_floor": fastest,
        "stages": results,
        "skipped": skipped,
        "targets": targets,
        "agreement": disagreements or "all release stages kept the same rows",
    }
    if not args.no_save:
        core.save(ctx.label, record, args.results)
        log(f"wrote {args.results}")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
