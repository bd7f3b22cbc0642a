"""The ``optout`` command line: a thin layer over the library.

Each area registers its commands from its own module (``optout/cli/<area>.py`` exposes
``register(app)``). ``main`` turns the package's errors into a message on stderr and the
documented exit code (see ``optout.errors``): no traceback for a user error, and never an NHS
number in any message.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback

import typer

from optout.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, OptoutError
from optout.version import __version__

app = typer.Typer(
    name="optout",
    help="Apply the National Data Opt-out: decide, check over MESH, remove, collect, prove.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"optout {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """optout: National Data Opt-out toolkit for health and adult social care in England."""


def _register_all() -> None:
    from optout.cli import (
        apply,
        assess,
        audit,
        cache,
        check,
        collect,
        doctor,
        flow,
        nhs_number,
        release,
        sandbox,
        service,
        web,
    )

    for module in (
        nhs_number,
        apply,
        check,
        cache,
        sandbox,
        service,
        assess,
        flow,
        release,
        audit,
        collect,
        doctor,
        web,
    ):
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``optout`` script."""
    try:
        rc = app(args=argv, standalone_mode=False, prog_name="optout")
        # without standalone mode, `raise typer.Exit(code)` comes back as a return value
        if isinstance(rc, int) and rc != 0:
            sys.exit(rc)
    except OptoutError as exc:
        # values are guarded where they enter; masking the message as well covers what an error
        # may quote (an unknown id as typed, a file name)
        from optout.text import mask

        typer.echo(f"optout: {exc.kind} error: {mask(exc.render())}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("optout: interrupted; nothing was left half-written", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except Exception as exc:  # usage errors from the CLI parser, or a bug
        # Typer >= 0.20 carries its own copy of click: handle its public exception types and
        # plain click's alike.
        import click

        if isinstance(exc, (typer.Exit, click.exceptions.Exit)):
            sys.exit(exc.exit_code)
        if isinstance(exc, (typer.Abort, click.exceptions.Abort)):
            typer.echo("optout: interrupted; nothing was left half-written", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if isinstance(exc, (typer.TyperException, click.exceptions.ClickException)):
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            else:
                typer.echo(f"optout: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        if os.environ.get("OPTOUT_DEBUG") == "1":
            traceback.print_exc()
        typer.echo(
            f"optout: internal error ({exc.__class__.__name__}). This is a bug; run again with "
            "OPTOUT_DEBUG=1 for details and report it.",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)


def run() -> None:
    """The ``optout`` script (and ``python -m optout``): :func:`main`, then a quick exit.

    When a command returns, everything it wrote is closed, and a release is fsynced and renamed
    into place. What is left is the interpreter's teardown, which frees every object one at a
    time (some 0.2 s after a large release). So the exit handlers run (the spill folder is
    removed, logs flushed), the standard streams are flushed, and the process ends with the
    command's exit code. In-process callers (tests) use :func:`main`, which returns.

    The cyclic garbage collector is off while a command runs: a command loads its libraries
    (some 200 collections, 0.05 s of ``optout apply``'s start) and ends, and what it holds in
    bulk (columns, arrays) is not collected by it anyway. The commands that run until stopped
    (``optout web serve``, ``optout service run``) turn it back on (``optout.cli.lifetime.long_running``).

    NumPy's OpenBLAS starts a thread per core when NumPy loads, and they spin for a while: no
    command does linear algebra, so one BLAS thread is asked for (unless the environment says
    otherwise), before NumPy loads (measured: about 0.1 CPU-s of ``optout apply``).
    """
    import atexit
    import gc

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    gc.disable()
    try:
        main()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    atexit._run_exitfuncs()  # what the interpreter would run at exit (its public name: none)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)
