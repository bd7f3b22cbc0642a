"""``optout service seed|import|publish|status|run``: the reference central check service.

This is the central side (a stand-in for the national service), for demos and tests. It stores
NHS numbers by design, but no command prints one: only counts and times.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path

import typer

service_app = typer.Typer(
    name="service",
    help="The reference central check service: register of opt-out choices, daily published "
    "snapshot (001 §8.4) and the MESH responder. Central side only; prints counts, never numbers.",
    no_args_is_help=True,
)

REGISTER_OPTION = typer.Option(
    None,
    "--register",
    metavar="DIR",
    help="Register folder (default <OPTOUT_HOME>/service, the one `optout sandbox start` uses).",
)


def _register(path: Path | None):  # type: ignore[no-untyped-def]
    from optout.config import load_settings
    from optout.service import Register

    return Register(path or (load_settings().home / "service"))


@service_app.command("seed")
def seed(
    population: int = typer.Option(..., "--population", help="How many synthetic people (9xx test range)."),
    opt_out_rate: float = typer.Option(0.054, "--opt-out-rate", help="Share of them who opt out (0-1)."),
    seed_: int = typer.Option(0, "--seed", help="Random seed; use the same for a demo extract."),
    publish: bool = typer.Option(True, "--publish/--no-publish", help="Publish a snapshot straight away."),
    register_path: Path | None = REGISTER_OPTION,
) -> None:
    """Record opt-outs for a share of ``nhs_number.synthetic(POPULATION, seed=SEED)``."""
    with _register(register_path) as reg:
        n = reg.seed(population, opt_out_rate, seed=seed_)
        typer.echo(f"recorded {n} opt-outs among {population} synthetic people (seed {seed_})")
        if publish:
            snap = reg.publish()
            typer.echo(f"published snapshot {snap.id}: {snap.count} opt-outs in force")
        else:
            typer.echo("they apply from the next publication (`optout service publish`)")


@service_app.command("import")
def import_(
    file: Path = typer.Argument(..., help="CSV with header nhs_number,opted_out[,at]."),
    register_path: Path | None = REGISTER_OPTION,
) -> None:
    """Bulk import choices (opted_out true = set, false = withdrawn; at = when, ISO-8601)."""
    with _register(register_path) as reg:
        n = reg.import_csv(file)
    typer.echo(
        f"imported {n} choices; they apply from the next publication (001 §8.4), "
        "`optout service publish` to publish now"
    )


@service_app.command("publish")
def publish(register_path: Path | None = REGISTER_OPTION) -> None:
    """Publish a snapshot now (the responder does so by itself every 24 hours)."""
    with _register(register_path) as reg:
        snap = reg.publish()
    typer.echo(
        f"published snapshot {snap.id} at {snap.published_at.isoformat()}: {snap.count} opt-outs in force"
    )


@service_app.command("status")
def status(
    register_path: Path | None = REGISTER_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Counts and the last publication. Never lists anyone."""
    with _register(register_path) as reg:
        st = reg.status()
    doc = st.to_dict()
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    snap = doc["published_snapshot"]
    typer.echo(f"events recorded:           {st.events}")
    typer.echo(f"people with a choice:      {st.people}")
    typer.echo(f"opted out (live events):   {st.opted_out_now}")
    if snap:
        typer.echo(
            f"last publication:          {snap['published_at']} ({snap['opted_out']} opt-outs in force)"
        )
        typer.echo(f"next publication due:      {doc['next_publication_due']}")
    else:
        typer.echo("last publication:          none yet (`optout service publish`)")
    typer.echo(
        f"requests:                  {st.requests_answered} answered, {st.requests_rejected} rejected, "
        f"{st.requests_ignored} ignored"
    )


def _service_mesh_settings():  # type: ignore[no-untyped-def]
    """The service mailbox: OPTOUT_SERVICE_MESH_* from the environment, else the local sandbox's."""
    from optout.config import MeshSettings, load_settings
    from optout.errors import UsageError
    from optout.mesh import default_state_dir, sandbox_status, service_settings

    env = os.environ
    if env.get("OPTOUT_SERVICE_MESH_URL"):
        return MeshSettings(
            url=env["OPTOUT_SERVICE_MESH_URL"],
            mailbox=env.get("OPTOUT_SERVICE_MESH_MAILBOX"),
            password=env.get("OPTOUT_SERVICE_MESH_PASSWORD"),
            shared_key=env.get("OPTOUT_SERVICE_MESH_SHARED_KEY"),
        )
    info = sandbox_status(default_state_dir(load_settings().home))
    if info is None:
        raise UsageError(
            "no MESH mailbox for the service",
            hint="start the local sandbox (`optout sandbox start`, which also runs the responder), or "
            "set OPTOUT_SERVICE_MESH_URL, _MAILBOX, _PASSWORD and _SHARED_KEY",
        )
    return service_settings(info)


@service_app.command("run")
def run(
    register_path: Path | None = REGISTER_OPTION,
    poll: float = typer.Option(5.0, "--poll", help="Longest wait between polls, seconds (backs off to it)."),
    once: bool = typer.Option(False, "--once", help="Answer what is waiting now, then exit."),
) -> None:
    """Run the responder in the foreground: poll the service mailbox and answer each request."""
    from optout.mesh import MeshMailbox
    from optout.service import Responder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = _service_mesh_settings()
    with _register(register_path) as reg, MeshMailbox(settings) as mailbox:
        responder = Responder(reg, mailbox)
        mailbox.handshake()
        if once:
            n = responder.run_once()
            typer.echo(f"answered {n} request(s)")
            return
        stop = threading.Event()

        def _stop(_sig: int, _frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        logging.getLogger("optout.service").info("responder polling %s at %s", settings.mailbox, settings.url)
        from optout.cli.lifetime import long_running

        long_running()
        responder.run_forever(stop, poll_interval=poll)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(service_app)
