"""``optout sandbox start|stop|status``: a local MESH (mesh-sandbox) with the reference service."""

from __future__ import annotations

import json

import typer

sandbox_app = typer.Typer(
    name="sandbox",
    help="Run a local MESH (mesh-sandbox) with an organisation mailbox and the reference check "
    "service's mailbox and responder, for trying optout and for tests. State lives in "
    "<OPTOUT_HOME>/sandbox (default .optout/sandbox).",
    no_args_is_help=True,
)


def _state_dir():  # type: ignore[no-untyped-def]
    from optout.config import load_settings
    from optout.service.sandbox import default_state_dir

    settings = load_settings()
    return settings.home, default_state_dir(settings.home)


def _describe(info) -> list[str]:  # type: ignore[no-untyped-def]
    responder = f"running (pid {info.responder_pid})" if info.responder_pid else "not running"
    return [
        f"url:              {info.url}",
        f"sandbox pid:      {info.pid}",
        f"org mailbox:      {info.org_mailbox}  (used by optout check / cache when OPTOUT_MESH_URL is unset)",
        f"service mailbox:  {info.service_mailbox}  (the reference check service)",
        f"responder:        {responder}",
        f"register:         {info.register_path or '-'}",
        "shared key:       in sandbox.json (owner-only); mailbox password: password",
    ]


@sandbox_app.command("start")
def start(
    port: int | None = typer.Option(None, "--port", help="Port on 127.0.0.1 (default: a free one)."),
    responder: bool = typer.Option(
        True, "--responder/--no-responder", help="Also start the reference service's responder."
    ),
) -> None:
    """Start mesh-sandbox and the responder in the background; wait until the sandbox answers."""
    from optout.service.sandbox import sandbox_status, start_sandbox

    home, state = _state_dir()
    before = sandbox_status(state)
    info = start_sandbox(state, port=port, with_responder=responder, register_path=home / "service")
    if before is not None:
        typer.echo("the sandbox was already running:")
    else:
        typer.echo("sandbox started:")
    for line in _describe(info):
        typer.echo("  " + line)
    if before is None:
        typer.echo(
            "next: `optout service seed --population 100000` to give the service people to answer "
            "about, then `optout check COHORT --out cleaned.dat`; `optout sandbox stop` when done"
        )


@sandbox_app.command("stop")
def stop() -> None:
    """Stop the responder and the sandbox and remove the sandbox's messages (the register is kept)."""
    from optout.service.sandbox import stop_sandbox

    _home, state = _state_dir()
    if stop_sandbox(state):
        typer.echo("sandbox stopped")
    else:
        typer.echo("the sandbox was not running; nothing to stop")


@sandbox_app.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON (without the shared key)."),
) -> None:
    """Say whether the sandbox runs: URL, mailboxes, process ids."""
    from optout.service.sandbox import sandbox_status

    _home, state = _state_dir()
    info = sandbox_status(state)
    if as_json:
        doc = None
        if info is not None:
            doc = {k: v for k, v in vars(info).items() if k != "shared_key"}
        typer.echo(json.dumps({"running": info is not None, "sandbox": doc}, indent=2))
    elif info is None:
        typer.echo("the sandbox is not running; start it with `optout sandbox start`")
    else:
        typer.echo("the sandbox is running:")
        for line in _describe(info):
            typer.echo("  " + line)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(sandbox_app)
