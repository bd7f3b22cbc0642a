"""The web app: FastAPI with server-rendered NHS.UK pages over the same library as the CLI.

``optout web serve`` runs it (``optout.cli.web``); ``create_app`` (in :mod:`optout.web.app`) builds
it. The contract the page areas share is in ``README.md`` beside this file:

- ``app.py``        ``create_app(settings, web_config=...)``; routers from ``routes.ROUTERS``
- ``config.py``     ``WebConfig`` (cookies, sessions, lock-out, upload limits, the secret key)
- ``deps.py``       ``current_user``, ``require_role``, ``get_store``, ``get_settings``,
                    ``audit_actor``, ``templates``, ``render``, ``flash``
- ``security.py``   passwords (argon2), sessions, CSRF (itsdangerous-signed double submit),
                    security headers, login lock-out and rate limiting
- ``accounts.py``   users, roles and API tokens in the metadata store (every change audited)
- ``panels.py``     dashboard panels other areas add (``dashboard_panel``)
- ``routes/``       one module per area, each exposing ``router = APIRouter()``

Nothing here answers whether a person has opted out, lists cache members or shows an NHS number.
"""

from __future__ import annotations
