"""``make demo``: the whole system, end to end, on one machine, with embedded defaults.

What an information-governance lead and a data engineer at a trust would do, command by command,
against a real MESH (NHS England's mesh-sandbox) and the reference central service:

 1. start the MESH sandbox and the reference check service;
 2. the central register: seed 100 000 people, ~5.4 % with a national data opt-out; publish;
 3. describe the data flow (a research disclosure under s251) and ask whether the opt-out applies;
 4. register the flow;
 5. generate a synthetic extract of three linked tables (patients, episodes, procedures);
 6. check the NHS numbers of the extract first (data quality), then the cohort over MESH
    (mode 1: a one-off cleaned list);
 7. apply: remove every opted-out person's whole record from every table (001 §8.1);
 8. disclose the release to the flow's recipient within the 20-day window;
 9. verify the audit trail and export the evidence pack;
10. stop everything;
11. check the installation (``optout doctor``): every file that holds patient-level or opt-out
    data owner-only, no request file left behind, the audit trail intact.

Every step is the real ``optout`` command, printed before it runs, so the demo doubles as a
walk-through. Everything is written under ``demo-out/`` (git-ignored); nothing else is touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from optout import synth
from optout.atomic import private_dir

POPULATION = 100_000
OPT_OUT_RATE = 0.054
SEED = 20260301
EXTRACT_PEOPLE = 60_000
FLOW_FILE = Path(__file__).resolve().parents[2] / "examples" / "flows" / "research-s251.yaml"


def _say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def _run(*args: str, env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0,)) -> str:
    shown = "optout " + " ".join(shlex.quote(a) for a in args)
    print(f"$ {shown}", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "optout", *args], env=env, cwd=cwd, text=True, capture_output=True
    )
    if proc.stdout:
        print(proc.stdout.rstrip())
    if proc.stderr:
        print(proc.stderr.rstrip(), file=sys.stderr)
    if proc.returncode not in ok:
        raise SystemExit(f"demo: `{shown}` failed with exit code {proc.returncode}")
    return proc.stdout


def main() -> None:
    started = time.monotonic()
    root = Path("demo-out").resolve()
    if root.exists():
        # a previous demo may have left its sandbox running: stop it before wiping its folder
        env0 = dict(os.environ, OPTOUT_HOME=str(root / ".optout"))
        subprocess.run(
            [sys.executable, "-m", "optout", "sandbox", "stop"], env=env0, cwd=root, capture_output=True
        )
        shutil.rmtree(root)
    # the synthetic extract stands in for patient-level data: keep the whole folder owner-only
    private_dir(root)
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("OPTOUT_")]:
        del env[key]
    env.update(
        OPTOUT_HOME=str(root / ".optout"),
        OPTOUT_ACTOR="demo.ig-lead@trust.example",
        PYTHONUNBUFFERED="1",
    )

    try:
        _say("1. Start the MESH sandbox and the reference central check service")
        _run("sandbox", "start", env=env, cwd=root)

        _say(f"2. Central register: {POPULATION:,} people, ~{OPT_OUT_RATE:.1%} opted out; publish")
        _run(
            "service",
            "seed",
            "--population",
            str(POPULATION),
            "--opt-out-rate",
            str(OPT_OUT_RATE),
            "--seed",
            str(SEED),
            env=env,
            cwd=root,
        )
        _run("service", "publish", env=env, cwd=root)

        _say("3. Does the national data opt-out apply to this flow?")
        flow = root / "flow.yaml"
        shutil.copyfile(FLOW_FILE, flow)
        _run("assess", str(flow), env=env, cwd=root)

        _say("4. Register the flow")
        _run("flow", "add", str(flow), "--id", "hf-outcomes", env=env, cwd=root)

        _say(f"5. A synthetic extract: three linked tables about {EXTRACT_PEOPLE:,} of those people")
        extract = root / "extract"
        synth.demo_extract(extract, population=POPULATION, people=EXTRACT_PEOPLE, seed=SEED)
        for f in sorted(extract.iterdir()):
            print(f"   {f.name}  ({f.stat().st_size / 1e6:.1f} MB)")

        _say("6a. Data quality first: which NHS numbers in the extract are unusable?")
        _run("nhs-number", "check", str(extract / "patients.csv"), env=env, cwd=root, ok=(0, 3))

        _say("6b. Check the cohort with the national service over MESH (one-off cleaned list)")
        cleaned = root / "cleaned.dat"
        _run("check", str(extract / "patients.csv"), "--out", str(cleaned), "--wait", "5m", env=env, cwd=root)

        _say("7. Apply: remove every opted-out person's whole record from every table (001 §8.1)")
        release = root / "release"
        _run(
            "apply",
            str(extract / "patients.csv"),
            str(extract / "episodes.parquet"),
            str(extract / "procedures.parquet"),
            "--cleaned-list",
            str(cleaned),
            "--cohort",
            str(extract / "patients.csv"),
            "--link",
            "procedures.episode_id=episodes.episode_id",
            "--unmatched",
            "withhold",
            "--flow",
            "hf-outcomes",
            "--out",
            str(release),
            "--report",
            str(root / "report.json"),
            env=env,
            cwd=root,
        )

        _say("8. Disclose the release to the flow's recipient, within the window")
        listing = _run("release", "list", "--json", env=env, cwd=root)
        release_id = _release_id(listing)
        _run(
            "release",
            "disclose",
            release_id,
            "--to",
            "University of Exampleshire, Department of Cardiology",
            env=env,
            cwd=root,
        )

        _say("9. Prove it: verify the audit trail and export the evidence pack")
        _run("audit", "verify", env=env, cwd=root)
        _run("audit", "export", "--out", str(root / "evidence"), env=env, cwd=root)
    finally:
        _say("10. Stop the sandbox and the service")
        _run("sandbox", "stop", env=env, cwd=root, ok=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9))

    _say("11. Check the installation: owner-only files, nothing left behind, audit trail intact")
    _run("doctor", env=env, cwd=root)

    print(f"\nDemo finished in {time.monotonic() - started:.0f} s. Everything is under {root}:")
    print("  release/            the release (tables + release.json manifest)")
    print("  report.json         what was kept and removed, and why")
    print("  evidence/           evidence.html + evidence.json for the IG lead / DSPT")
    print("\nSee the same flow, release and audit trail in a browser:")
    print("  OPTOUT_HOME=demo-out/.optout optout web create-user YOUR-NAME --role admin")
    print("  OPTOUT_HOME=demo-out/.optout optout web serve      # then open http://127.0.0.1:8000")


def _release_id(listing: str) -> str:
    import json

    data = json.loads(listing)
    rows = data["releases"] if isinstance(data, dict) else data
    return str(rows[0]["id"])


if __name__ == "__main__":
    main()
