"""``optout web serve|create-user|set-role|unlock|disable|enable|users|token``: the web app.

The web app (``optout.web``) is for people who will never open a terminal: IG leads, DPOs,
practices and care providers. These commands start it and manage its local accounts; everything
the pages do goes through the same library as the other commands.
"""

from __future__ import annotations

import sys

import typer

web_app = typer.Typer(
    name="web",
    help="The web app for IG leads, practices and care providers: serve it, manage its users.",
    no_args_is_help=True,
)
token_app = typer.Typer(name="token", help="API tokens for scripts that use the web app's JSON API.")
web_app.add_typer(token_app, name="token")

_ROLE_HELP = "admin, ig_lead, analyst or viewer."


def _store():  # type: ignore[no-untyped-def]
    from optout.store import open_store

    return open_store()


def _actor() -> str:
    from optout.config import load_settings

    return load_settings().actor


def _read_password(username: str, from_stdin: bool) -> str:
    from optout.errors import UsageError
    from optout.web.security import password_problem

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(f"Password for {username}", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password, username)
    if problem:
        raise UsageError(problem, hint="use a long passphrase, e.g. three or more random words")
    return password


@web_app.command("serve")
def serve_cmd(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on. Keep the default behind a TLS reverse proxy."
    ),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    proxy_headers: bool = typer.Option(
        False,
        "--proxy-headers",
        help="Trust X-Forwarded-Proto/-For from the proxy at --forwarded-allow-ips (needed behind a TLS "
        "proxy, so the app knows requests arrived over https).",
    ),
    forwarded_allow_ips: str = typer.Option(
        "127.0.0.1", "--forwarded-allow-ips", metavar="IPS", help="The proxy's address(es), comma-separated."
    ),
) -> None:
    """Serve the web app (dashboard, flows, releases, checks, audit, settings, users).

    It listens on 127.0.0.1:8000 by default. In production put it behind a reverse proxy that
    terminates TLS (nginx, Apache, IIS) and pass --proxy-headers: session cookies are marked
    Secure, so sign-in only works over https (or over plain http to a loopback address, for
    trying it on your own computer). Create the first user with `optout web create-user`.
    """
    import uvicorn

    from optout.cli.lifetime import long_running
    from optout.web.accounts import list_users
    from optout.web.app import create_app

    app = create_app()
    if not list_users(app.state.store):
        typer.echo(
            "optout: no web users yet; create one with: optout web create-user NAME --role admin", err=True
        )
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if not loopback and not proxy_headers:
        typer.echo(
            f"optout: listening on {host} without --proxy-headers: put the app behind a TLS proxy; "
            "sign-in will not work over plain http to this address",
            err=True,
        )
    _mask_access_log()
    typer.echo(f"optout web: http://{host}:{port}/ (Ctrl-C to stop)", err=True)
    long_running()
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips if proxy_headers else None,
        server_header=False,
        log_level="info",
    )


def _mask_access_log() -> None:
    """Access log lines pass through the one guard for printed text: no NHS number in a logged URL."""
    import logging

    from optout.text import mask

    class _Mask(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.args:
                record.args = tuple(mask(a) if isinstance(a, str) else a for a in record.args)
            record.msg = mask(str(record.msg))
            if record.exc_info:  # a traceback's messages may quote a value: mask them too
                record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            return True

    logging.getLogger("uvicorn.access").addFilter(_Mask())
    logging.getLogger("uvicorn.error").addFilter(_Mask())


@web_app.command("create-user")
def create_user_cmd(
    username: str = typer.Argument(..., help="Lower-case letters, numbers, '.', '-', '_' (e.g. j.smith)."),
    role: str = typer.Option(..., "--role", help=_ROLE_HELP),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of standard input."
    ),
) -> None:
    """Create a web user with a role; the password is asked for twice (or read with --password-stdin)."""
    from optout.web import accounts

    store = _store()
    accounts.check_username(username)
    accounts.check_role(role)
    if accounts.get_user(store, username) is not None:
        from optout.errors import UsageError

        raise UsageError(f"a web user called {username!r} already exists", hint="choose another username")
    password = _read_password(username, password_stdin)
    user = accounts.create_user(store, username, role, password, actor=_actor())
    typer.echo(f"created web user {user.username} ({user.role_label})")


@web_app.command("users")
def users_cmd() -> None:
    """List the web users, their roles and whether they are locked or disabled."""
    from optout.web import accounts

    users = accounts.list_users(_store())
    if not users:
        typer.echo("no web users (create one with: optout web create-user NAME --role admin)")
    for u in users:
        state = "disabled" if u.disabled else ("locked" if u.locked() else "active")
        typer.echo(f"{u.username}\t{u.role}\t{state}\tlast sign-in {u.last_login_at or 'never'}")


@web_app.command("set-role")
def set_role_cmd(
    username: str = typer.Argument(..., help="The web user."),
    role: str = typer.Option(..., "--role", help=_ROLE_HELP),
) -> None:
    """Change a web user's role."""
    from optout.web import accounts

    user = accounts.set_role(_store(), username, role, actor=_actor())
    typer.echo(f"{user.username} is now {user.role_label}")


@web_app.command("unlock")
def unlock_cmd(username: str = typer.Argument(..., help="The web user.")) -> None:
    """Unlock a web user locked out by wrong passwords."""
    from optout.web import accounts

    accounts.unlock(_store(), username, actor=_actor())
    typer.echo(f"unlocked {username}")


@web_app.command("set-password")
def set_password_cmd(
    username: str = typer.Argument(..., help="The web user."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of standard input."
    ),
) -> None:
    """Set a web user's password (they are signed out everywhere)."""
    from optout.web import accounts

    store = _store()
    accounts.require_user(store, username)
    accounts.set_password(store, username, _read_password(username, password_stdin), actor=_actor())
    typer.echo(f"password changed for {username}")


@web_app.command("disable")
def disable_cmd(username: str = typer.Argument(..., help="The web user.")) -> None:
    """Disable a web user: they cannot sign in and their sessions and API tokens stop working."""
    from optout.web import accounts

    accounts.set_disabled(_store(), username, True, actor=_actor())
    typer.echo(f"disabled {username}")


@web_app.command("enable")
def enable_cmd(username: str = typer.Argument(..., help="The web user.")) -> None:
    """Enable a disabled web user again."""
    from optout.web import accounts

    accounts.set_disabled(_store(), username, False, actor=_actor())
    typer.echo(f"enabled {username}")


@token_app.command("create")
def token_create_cmd(
    username: str = typer.Argument(..., help="The web user the token acts as (with their role)."),
    name: str = typer.Option("script", "--name", help="What the token is for, e.g. 'nightly release'."),
) -> None:
    """Create an API token; it is printed once (on standard output) and stored only as a hash."""
    from optout.web import accounts

    token, secret = accounts.create_token(_store(), username, name, actor=_actor())
    typer.echo(f"created API token {token.id} for {username}; it is shown only this once:", err=True)
    typer.echo(secret)


@token_app.command("revoke")
def token_revoke_cmd(
    token_id: str = typer.Argument(..., help="The token's id (shown by `optout web token list`)."),
) -> None:
    """Revoke an API token at once."""
    from optout.web import accounts

    accounts.revoke_token(_store(), token_id, actor=_actor())
    typer.echo(f"revoked API token {token_id}")


@token_app.command("list")
def token_list_cmd(username: str | None = typer.Argument(None, help="Only this user's tokens.")) -> None:
    """List API tokens (ids, owners, names, last use; never the tokens themselves)."""
    from optout.web import accounts

    for t in accounts.list_tokens(_store(), username):
        state = "revoked" if t.revoked_at else "active"
        typer.echo(f"{t.id}\t{t.username}\t{t.name}\t{state}\tlast used {t.last_used_at or 'never'}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(web_app, name="web")
