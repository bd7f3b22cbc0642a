"""``optout cache refresh|status|destroy|keygen``: the temporary cache (001 §8, second way).

No command here lists the cache's members or answers whether one person has opted out (001 §8.5):
the cache is read only by ``optout apply --cache``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

cache_app = typer.Typer(
    name="cache",
    help="The temporary cache of the people without an opt-out, for large and frequent disclosures "
    "(refresh at least every 7 days; disclose within 13 days of the refresh, 001 §8.4).",
    no_args_is_help=True,
)


@cache_app.command("refresh")
def refresh_cmd(
    cohort: Path = typer.Argument(
        ...,
        metavar="COHORT",
        help="Everyone you have a legitimate relationship with: CSV/Parquet (with --column), list or .dat.",
    ),
    column: str | None = typer.Option(None, "--column", metavar="COL", help="The NHS-number column."),
    chi: bool = typer.Option(False, "--chi", help="The numbers are Scottish CHI numbers."),
    wait: str | None = typer.Option(
        None, "--wait", metavar="DURATION", help="How long to wait for the reply (default 2h)."
    ),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="Send and return; collect later with `optout check --collect LOCALID`."
    ),
    chunk_size: int | None = typer.Option(None, "--chunk-size", metavar="BYTES", help="MESH chunk size."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check the whole cohort with the service and keep the answer, encrypted, as the cache.

    Only the returned list (the people WITHOUT an opt-out) is stored, encrypted with AES-256-GCM
    under OPTOUT_CACHE_KEY or the key file; never the cohort, never who opted out.
    """
    from optout.check import refresh_cache
    from optout.cli.check import _echo_result, _wait

    res = refresh_cache(
        cohort,
        column=column,
        chi=chi,
        wait=_wait(wait, no_wait, "2h"),
        progress=sys.stderr.isatty() and not as_json,
        max_chunk_size=chunk_size,
    )
    _echo_result(res, as_json=as_json)


@cache_app.command("status")
def status_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the cache's age, when the next refresh is due and when it expires (never its members).

    Exit 4 when there is no usable cache (absent, expired), 8 when it fails its integrity check.
    """
    from optout.check import cache
    from optout.check.request import format_duration
    from optout.errors import IntegrityError, PolicyRefusal

    st = cache.status()
    if as_json:
        typer.echo(json.dumps(st.to_dict(), indent=2))
    else:
        d = st.to_dict()
        typer.echo(f"temporary cache: {st.state}  ({st.path})")
        if st.meta is not None and st.age is not None:
            typer.echo(f"  refreshed      {d['refreshed_at']}  ({format_duration(st.age)} ago)")
            typer.echo(f"  refresh due    {d['refresh_due']}")
            typer.echo(f"  expires        {d['expires_at']}  (001 §8.4: refresh at least every 7 days)")
            typer.echo(
                f"  disclose by    {d['disclose_by_if_used_now']}  for data processed with it (13 days)"
            )
            typer.echo(
                f"  cohort         {d['cohort_size']} sent, {d['returned_count']} may be released  "
                f"(request {d['local_id']})"
            )
        if st.problem:
            typer.echo(f"  problem: {st.problem}", err=True)
    if st.state == "absent":
        raise PolicyRefusal("there is no temporary cache", hint="make it with `optout cache refresh COHORT`")
    if st.state == "expired":
        raise PolicyRefusal(
            "the temporary cache has expired (001 §8.4: 7 days)",
            hint="refresh it: `optout cache refresh COHORT`",
        )
    if st.state == "unusable" and st.problem and not st.problem.startswith("not verified"):
        raise IntegrityError(st.problem, hint="`optout cache destroy`, then `optout cache refresh COHORT`")


@cache_app.command("destroy")
def destroy_cmd(yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete the temporary cache (recorded in the audit trail)."""
    from optout.check import cache

    if not yes and not typer.confirm("Delete the temporary cache?", err=True):
        raise typer.Exit(1)
    typer.echo("temporary cache deleted" if cache.destroy() else "there was no temporary cache")


@cache_app.command("keygen")
def keygen_cmd(
    file: Path | None = typer.Argument(
        None,
        metavar="FILE",
        help="Where to write the key (default: the configured key file or <home>/cache.key).",
    ),
) -> None:
    """Make a new random AES-256 key for the cache, in a file only you can read (mode 0600)."""
    from optout.check import cache
    from optout.config import load_settings

    settings = load_settings()
    path = cache.keygen(file or settings.cache_key_file or (settings.home / cache.KEY_FILE))
    typer.echo(f"wrote a new cache key to {path} (mode 0600)")
    if file is not None and file != settings.cache_key_file:
        typer.echo(f"use it with: export OPTOUT_CACHE_KEY_FILE={path}   (or [cache] key_file in optout.toml)")
    typer.echo("keep it apart from backups of the cache; a lost key means refreshing the cache")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(cache_app, name="cache")
