"""The harness: data, one process per stage run, peak RSS, ratios, results.json, the table."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"  # git-ignored
RESULTS = BENCH_DIR / "results.json"
GiB = 1024**3


@dataclass
class Context:
    """Everything a stage needs, passed to its process as JSON."""

    label: str
    rows: int
    people: int
    opt_out_rate: float
    seed: int
    format: str
    data_dir: str
    tables: dict[str, str]  # table name -> file
    allow_path: str  # the cleaned list (.dat)
    checked_at: str  # ISO-8601 UTC
    links: list[str]
    nhs_columns: dict[str, str]
    work_dir: str  # an empty folder for this run's outputs; removed afterwards
    optout_home: str  # OPTOUT_HOME for the tool's metadata store
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Context:
        return cls(**json.loads(text))

    def path(self, table: str) -> Path:
        return Path(self.tables[table])


def label_for(rows: int, people: int, fmt: str) -> str:
    def short(n: int) -> str:
        return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else (f"{n // 1000}k" if n % 1000 == 0 else str(n))

    return f"{short(rows)}-rows-{short(people)}-people-{fmt}"


LAYOUTS = {
    # name -> (tables, label suffix): the three linked tables, or the episodes table alone
    "linked": (("patients", "episodes", "procedures"), ""),
    "one": (("episodes",), "-one-table"),
}


def for_layout(ctx: Context, layout: str) -> Context:
    """The same data, with only the tables of ``layout`` (and only the links between them)."""
    names, suffix = LAYOUTS[layout]
    tables = {k: v for k, v in ctx.tables.items() if k in names}
    links = [lk for lk in ctx.links if all(part.split(".")[0] in tables for part in lk.split("="))]
    nhs = {k: v for k, v in ctx.nhs_columns.items() if k in tables}
    rows_in = {k: v for k, v in ctx.extra["data"]["rows_in"].items() if k in tables}
    data = {**ctx.extra["data"], "rows_in": rows_in, "layout": layout}
    return Context(
        **{
            **asdict(ctx),
            "label": ctx.label + suffix,
            "tables": tables,
            "links": links,
            "nhs_columns": nhs,
            "extra": {**ctx.extra, "data": data, "layout": layout},
        }
    )


def prepare_data(
    rows: int,
    people: int,
    opt_out_rate: float,
    seed: int,
    fmt: str,
    log: Any,
    data_dir: Path = DATA_DIR,
    compression: str = "zstd",
) -> Context:
    """Generate (or reuse) the extract and the cleaned list under bench/data/<label>/."""
    from optout import synth

    label = label_for(rows, people, fmt)
    d = data_dir / label
    params: dict[str, Any] = {
        "rows": rows,
        "people": people,
        "opt_out_rate": opt_out_rate,
        "seed": seed,
        "format": fmt,
    }
    if fmt == "parquet":
        params["compression"] = compression
    meta_file = d / "params.json"
    allow_path = d / "cleaned.dat"
    if meta_file.exists() and json.loads(meta_file.read_text()).get("params") == params:
        meta = json.loads(meta_file.read_text())
        log(f"reusing data in {d}")
    else:
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        log(f"generating {rows:,} episode rows over {people:,} people ({fmt}) in {d} ...")
        t0 = time.perf_counter()
        ex = synth.extract(d / "extract", people, rows, seed, fmt, compression=compression)
        pop = synth.population(people, seed)
        allow = synth.cleaned_list(pop, opt_out_rate, seed)
        synth.write_cleaned_list(allow_path, allow)
        meta = {
            "params": params,
            "tables": {k: str(v) for k, v in ex.paths.items()},
            "rows_in": ex.rows,
            "bytes": {k: v.stat().st_size for k, v in ex.paths.items()},
            "allow_list": int(allow.shape[0]),
            "opted_out_people": int(pop.shape[0] - allow.shape[0]),
            "seconds_to_generate": round(time.perf_counter() - t0, 2),
            "links": ex.links,
            "nhs_columns": ex.nhs_columns,
        }
        meta_file.write_text(json.dumps(meta, indent=2))
        log(f"  done in {meta['seconds_to_generate']} s")
    home = d / "optout-home"
    home.mkdir(exist_ok=True)
    return Context(
        label=label,
        rows=rows,
        people=people,
        opt_out_rate=opt_out_rate,
        seed=seed,
        format=fmt,
        data_dir=str(d),
        tables=meta["tables"],
        allow_path=str(allow_path),
        checked_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        links=meta["links"],
        nhs_columns=meta["nhs_columns"],
        work_dir="",
        optout_home=str(home),
        extra={
            "data": {k: meta[k] for k in ("rows_in", "bytes", "allow_list", "opted_out_people")},
            "compression": compression if fmt == "parquet" else None,
        },
    )


def run_once(stage: ModuleType, ctx: Context, i: int = 0) -> dict[str, Any]:
    """Run ``stage`` once in a fresh process; its result with wall time and peak RSS."""
    work = Path(ctx.data_dir) / "work" / f"{stage.NAME}-{i}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    run_ctx = Context(**{**asdict(ctx), "work_dir": str(work)})
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        ctx_file, result_file = Path(tmp) / "ctx.json", Path(tmp) / "result.json"
        ctx_file.write_text(run_ctx.to_json())
        path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]  # e.g. another checkout's src
        env = dict(os.environ, OPTOUT_HOME=ctx.optout_home, PYTHONPATH=os.pathsep.join(path))
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.child", stage.NAME, str(ctx_file), str(result_file)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        output = proc.stdout.read()
        # wait4: this child's own resource usage (peak RSS includes children it waited for)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            tail = output.decode(errors="replace")[-3000:]
            raise RuntimeError(f"stage {stage.NAME} failed (exit {proc.returncode}):\n{tail}")
        result: dict[str, Any] = json.loads(result_file.read_text())
    shutil.rmtree(work, ignore_errors=True)
    result["wall_seconds"] = round(wall, 3)
    result["peak_rss_bytes"] = int(usage.ru_maxrss) * 1024  # Linux reports KiB
    return result


def best_of(stage: ModuleType, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run, with every run's time and the highest peak RSS."""
    best = min(runs, key=lambda r: r["seconds"])
    return {
        **best,
        "title": stage.TITLE,
        "group": stage.GROUP,
        "is_floor": getattr(stage, "IS_FLOOR", False),
        "runs_seconds": [round(r["seconds"], 3) for r in runs],
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
    }


def run_stage(stage: ModuleType, ctx: Context, repeat: int) -> dict[str, Any]:
    """Run ``stage`` ``repeat`` times, each in a fresh process; keep the fastest run."""
    return best_of(stage, [run_once(stage, ctx, i) for i in range(repeat)])


def compile_package() -> None:
    """Byte-compile optout's sources, as installing a package does (pip compiles what it
    installs). An editable install has no bytecode, and where ``PYTHONDONTWRITEBYTECODE`` is set
    Python never writes any: each ``optout`` process would compile its own modules again (about
    0.07 s), which no installed copy does. Up-to-date files are skipped."""
    import compileall

    import optout

    compileall.compile_dir(Path(optout.__file__).parent, quiet=1, workers=0)


def machine() -> dict[str, Any]:
    import duckdb
    import numpy
    import polars
    import psutil
    import pyarrow

    import optout

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import pandas

        pandas_version: str | None = pandas.__version__
    except ImportError:
        pandas_version = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / GiB, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": {
            "optout": optout.__version__,
            "duckdb": duckdb.__version__,
            "pyarrow": pyarrow.__version__,
            "polars": polars.__version__,
            "numpy": numpy.__version__,
            "pandas": pandas_version,
        },
        "git_commit": commit,
    }


TARGETS = [
    # (id, description, comparison, threshold)
    (
        "cli_vs_floor",
        "optout apply (command line, whole process) <= 1.5x the fastest I/O floor of the run",
        "<=",
        1.5,
    ),
    (
        "cli_vs_semijoin",
        "optout apply (command line) no slower than the hand-written DuckDB semi-join",
        "<=",
        1.0,
    ),
    ("apply_peak_rss_gib", "peak RSS of optout apply <= 1 GiB (target stated at 50 M rows)", "<=", 1.0),
    (
        "apply_vs_floor",
        "optout.apply_opt_outs (API) <= 1.5x the fastest I/O floor (for reference)",
        "<=",
        1.5,
    ),
    (
        "cli_vs_counts_by_hand",
        "optout apply (command line) no slower than hand-written Polars giving the same counts "
        "(for reference: what the exact people counts cost)",
        "<=",
        1.0,
    ),
    ("pandas_vs_apply", "optout apply >= 5x faster than pandas isin", ">=", 5.0),
    (
        "spark_vs_handwritten",
        "optout on Spark (local mode) <= 1.5x the hand-written PySpark broadcast semi-join",
        "<=",
        1.5,
    ),
    (
        "validation_values_per_s",
        "NHS-number validation of an int64 column >= 20 M values/s, 1 core",
        ">=",
        20e6,
    ),
]


def evaluate(stages_out: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    measured: dict[str, float | None] = {}
    api, cli, semi, pandas = (
        stages_out.get(k) for k in ("apply_api", "apply_cli", "duckdb_sql", "pandas_isin")
    )
    name = fastest_floor(stages_out)
    floor = stages_out[name] if name else None
    measured["cli_vs_floor"] = cli["seconds"] / floor["seconds"] if cli and floor else None
    measured["cli_vs_semijoin"] = cli["seconds"] / semi["seconds"] if cli and semi else None
    measured["apply_vs_floor"] = api["seconds"] / floor["seconds"] if api and floor else None
    counted = stages_out.get("polars_isin_counts")
    measured["cli_vs_counts_by_hand"] = cli["seconds"] / counted["seconds"] if cli and counted else None
    measured["pandas_vs_apply"] = pandas["seconds"] / api["seconds"] if api and pandas else None
    rss = [s["peak_rss_bytes"] for s in (api, cli) if s]
    measured["apply_peak_rss_gib"] = max(rss) / GiB if rss else None
    spark, by_hand = stages_out.get("spark_apply"), stages_out.get("spark_sql")
    measured["spark_vs_handwritten"] = spark["seconds"] / by_hand["seconds"] if spark and by_hand else None
    v = stages_out.get("validate")
    measured["validation_values_per_s"] = v["values_per_second"] if v else None
    out = []
    for key, text, op, threshold in TARGETS:
        m = measured[key]
        met = None if m is None else {"<=": m <= threshold, ">=": m >= threshold, "<": m < threshold}[op]
        out.append({"id": key, "target": text, "threshold": f"{op} {threshold:g}", "measured": m, "met": met})
    return out


def fastest_floor(stages_out: dict[str, dict[str, Any]], group: str = "release") -> str | None:
    """The name of the fastest floor stage of ``group`` in this run (ratios are against it)."""
    floors = [(s["seconds"], k) for k, s in stages_out.items() if s.get("is_floor") and s["group"] == group]
    return min(floors)[1] if floors else None


def add_ratios(stages_out: dict[str, dict[str, Any]]) -> None:
    groups = {s["group"] for s in stages_out.values()}
    floors = {g: stages_out[f]["seconds"] for g in groups if (f := fastest_floor(stages_out, g))}
    for s in stages_out.values():
        f = floors.get(s["group"])
        s["ratio_vs_floor"] = round(s["seconds"] / f, 3) if f else None


def check_agreement(stages_out: dict[str, dict[str, Any]]) -> list[str]:
    """Every release stage (other than the floor) must keep exactly the same rows per table."""
    kept = {k: s["rows_out"] for k, s in stages_out.items() if "rows_out" in s and not s.get("is_floor")}
    if not kept:
        return []
    first_name, first = next(iter(kept.items()))
    return [
        f"{name} kept {rows} rows where {first_name} kept {first}"
        for name, rows in kept.items()
        if rows != first
    ]


def save(label: str, record: dict[str, Any], path: Path = RESULTS) -> None:
    """Merge this run into results.json (one entry per data size/format, latest run wins)."""
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    data.setdefault("about", "written by `make bench` (python -m bench); one entry per data size")
    data.setdefault("runs", {})[label] = record
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
