"""``optout doctor`` checks for the web app (imported by ``optout.doctor`` as a plugin).

- the secret key: ``OPTOUT_WEB_SECRET_KEY`` long enough, or ``<home>/web.key`` owner-only;
- cookies: ``OPTOUT_WEB_COOKIE_SECURE=never`` is for a developer's machine only;
- accounts: at least one active administrator once there are users (someone must be able to
  unlock the others).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from optout import atomic
from optout.doctor import ERROR, WARNING, Context, Finding, Note, register_check
from optout.web.security import KEY_FILE, SECRET_ENV


@register_check("web", "web app: secret key, cookies, administrators")
def _check_web(ctx: Context) -> Iterator[Finding | Note]:
    secret = ctx.env.get(SECRET_ENV)
    if secret:
        if len(secret) < 32:
            yield Finding(
                "web",
                "web-secret-short",
                ERROR,
                f"{SECRET_ENV} is shorter than 32 characters: the web app will not start",
                "set it to python -c 'import secrets; print(secrets.token_urlsafe(48))'",
            )
        else:
            yield Note(f"the web app's secret key comes from {SECRET_ENV} (not shown)")
    else:
        path = Path(os.path.abspath(ctx.home / KEY_FILE))
        if path.exists():
            if atomic.open_to_others(path):
                yield Finding(
                    "web",
                    "web-key-mode",
                    ERROR,
                    f"the web app's secret key file {path} is readable by other users",
                    f"chmod 600 {path}, then delete it and restart the web app if others may have read it",
                )
            else:
                yield Note("the web app's secret key file is owner-only")
        else:
            yield Note("no web app secret key yet (made on the web app's first start)")
    if ctx.env.get("OPTOUT_WEB_COOKIE_SECURE") == "never":
        yield Finding(
            "web",
            "web-cookies-insecure",
            WARNING,
            "OPTOUT_WEB_COOKIE_SECURE=never: session cookies may travel over plain http",
            "unset it (the default 'auto' is right behind a TLS proxy and on a developer's machine)",
        )
    store = ctx.store()
    if store is None:
        return
    from optout.web.accounts import list_users

    try:
        users = list_users(store)
    except Exception:  # an older database without the accounts tables: the web app upgrades it
        return
    if users and not any(u.role == "admin" and not u.disabled for u in users):
        yield Finding(
            "web",
            "web-no-admin",
            WARNING,
            "no active web administrator: nobody can unlock or add users in the web app",
            "optout web create-user NAME --role admin (or optout web set-role NAME --role admin)",
        )
    elif users:
        yield Note(f"{len(users)} web user(s), at least one active administrator")
