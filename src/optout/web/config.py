"""Settings of the web app itself (the library's settings stay in ``optout.config``).

Read from the environment by :func:`load_web_config`; tests build a :class:`WebConfig` directly.

- ``OPTOUT_WEB_SECRET_KEY``: the key that signs CSRF tokens (at least 32 characters). When unset,
  a random key is generated into ``<OPTOUT_HOME>/web.key`` (0600) on first run and reused.
- ``OPTOUT_WEB_COOKIE_SECURE``: ``auto`` (default: ``Secure`` cookies, except over plain http to
  a loopback address, i.e. a developer's own machine and the tests), ``always``, or ``never``
  (refused unless the app is bound to loopback).
- ``OPTOUT_WEB_MAX_UPLOAD_MB``: the largest request body an upload may send (default 200).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from optout.errors import UsageError

COOKIE_SECURE_MODES = ("auto", "always", "never")


@dataclass
class WebConfig:
    """How the web app behaves; the defaults are the production ones."""

    secret_key: bytes | None = None  # None: OPTOUT_WEB_SECRET_KEY, else <home>/web.key
    cookie_secure: str = "auto"  # auto | always | never (see module docstring)
    session_idle_minutes: int = 30  # signed out after this long without a request
    session_max_hours: int = 10  # and after this long whatever
    max_failed_logins: int = 5  # wrong passwords in a row before the account is locked
    lockout_minutes: int = 15
    login_attempts_per_ip: int = 20  # any username, per window, from one client address
    login_window_seconds: int = 300
    max_form_bytes: int = 1024 * 1024  # a plain form (no file)
    max_upload_bytes: int = 200 * 1024 * 1024  # a multipart form (files)
    upload_dir: Path | None = None  # None: <OPTOUT_HOME>/web/uploads
    api_token_days: int | None = None  # None: tokens last until revoked
    extra: dict[str, str] = field(default_factory=dict)  # for areas' own knobs, read by name

    def __post_init__(self) -> None:
        if self.cookie_secure not in COOKIE_SECURE_MODES:
            raise UsageError(
                f"OPTOUT_WEB_COOKIE_SECURE must be one of {', '.join(COOKIE_SECURE_MODES)}",
                hint="leave it unset (auto) unless you know why",
            )


def load_web_config(env: Mapping[str, str] | None = None) -> WebConfig:
    """The web app's settings from the environment (see the module docstring)."""
    env = os.environ if env is None else env
    cfg = WebConfig(cookie_secure=env.get("OPTOUT_WEB_COOKIE_SECURE", "auto") or "auto")
    raw = env.get("OPTOUT_WEB_MAX_UPLOAD_MB")
    if raw:
        try:
            mb = int(raw)
        except ValueError:
            raise UsageError(
                "OPTOUT_WEB_MAX_UPLOAD_MB must be a whole number of megabytes", hint="e.g. 500"
            ) from None
        if mb <= 0:
            raise UsageError("OPTOUT_WEB_MAX_UPLOAD_MB must be more than 0", hint="e.g. 500")
        cfg.max_upload_bytes = mb * 1024 * 1024
    if env.get("OPTOUT_WEB_UPLOAD_DIR"):
        cfg.upload_dir = Path(env["OPTOUT_WEB_UPLOAD_DIR"])
    return cfg
