"""``create_app``: the FastAPI application, its middleware, error pages and routers.

The routers come from ``optout.web.routes.ROUTERS`` (one module per area). Every state-changing
request outside ``/api`` must carry a CSRF token (``deps.csrf_protect``, app-wide); ``/api``
authenticates by bearer token only. The OpenAPI document is at ``/api/openapi.json`` and the
human-readable list of API operations at ``/api-docs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from optout.config import Settings, load_settings
from optout.errors import OptoutError
from optout.store import open_store
from optout.text import mask, mask_nested
from optout.version import __version__
from optout.web import security
from optout.web.config import WebConfig, load_web_config
from optout.web.deps import CsrfFailed, Forbidden, LoginRequired, Unauthorised, csrf_protect, is_api, render
from optout.web.routes import ROUTERS

STATIC_DIR = Path(__file__).with_name("static")

__all__ = ["WebConfig", "create_app"]

_STATUS = {
    "usage": 400,
    "input": 400,
    "policy": 409,
    "output": 500,
    "transport": 502,
    "pending": 409,
    "integrity": 409,
    "not-found": 404,
}


def create_app(settings: Settings | None = None, *, web_config: WebConfig | None = None) -> FastAPI:
    """The web app over the metadata store named by ``settings`` (default: ``load_settings()``)."""
    settings = settings or load_settings()
    web_config = web_config or load_web_config()
    store = open_store(settings.db_url)
    secret = web_config.secret_key or security.load_secret_key(settings.home)

    app = FastAPI(
        title="optout: National data opt-out",
        version=__version__,
        description="The same operations as the web pages, for scripts. Authenticate with "
        "`Authorization: Bearer <token>` (create a token on the API tokens page).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by routes/api_docs.py, signed in
        dependencies=[Depends(csrf_protect)],
    )
    app.state.settings = settings
    app.state.store = store
    app.state.web_config = web_config
    app.state.csrf = security.CsrfSigner(secret)
    app.state.login_throttle = security.LoginThrottle(
        web_config.login_attempts_per_ip, web_config.login_window_seconds
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        app.include_router(router)
    app.state.page_paths = {
        getattr(r, "path", "")
        for router in ROUTERS
        for r in router.routes
        if "GET" in (getattr(r, "methods", None) or ())
    }
    _error_handlers(app)

    async def too_large(scope: Any, limit: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        mb = max(1, limit // (1024 * 1024))
        message = (
            f"The file is too large. Files must be {mb} MB or smaller. Ask your administrator to raise "
            "OPTOUT_WEB_MAX_UPLOAD_MB if you need to send a larger extract."
        )
        if str(scope.get("path", "")).startswith("/api"):
            import json

            body = json.dumps({"error": "too-large", "message": message, "limit_bytes": limit}).encode()
            return 413, [(b"content-type", b"application/json")], body
        request = Request(scope)
        response = render(
            request,
            "errors/error.html",
            {
                "heading": "The file is too large",
                "lines": [message],
                "back_href": _referer_path(request),
                "back_text": "Go back and choose another file",
            },
            status_code=413,
        )
        return (
            413,
            [(k, v) for k, v in response.raw_headers if k != b"content-length"]
            + [(b"content-length", str(len(response.body)).encode())],
            bytes(response.body),
        )

    async def server_error(scope: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if str(scope.get("path", "")).startswith("/api"):
            return (
                500,
                [(b"content-type", b"application/json")],
                b'{"error": "internal", "message": "internal error"}',
            )
        body = _bug_page(Request(scope))
        return (
            500,
            [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())],
            body,
        )

    app.add_middleware(
        security.SecurityMiddleware,
        server_error=server_error,
        cookie_secure=web_config.cookie_secure,
        max_form_bytes=web_config.max_form_bytes,
        max_upload_bytes=web_config.max_upload_bytes,
        too_large=too_large,
    )
    return app


def _referer_path(request: Request) -> str:
    """The path of the Referer when it is this site's, else /."""
    from urllib.parse import urlsplit

    ref = request.headers.get("referer", "")
    parts = urlsplit(ref)
    if parts.netloc and parts.netloc != request.headers.get("host"):
        return "/"
    path = parts.path or "/"
    return path if path.startswith("/") and not path.startswith("//") else "/"


def _bug_page(request: Request) -> bytes:
    """The 500 page: nothing about the error (it may quote anything); works without the store."""
    try:
        return bytes(
            render(
                request,
                "errors/error.html",
                {
                    "heading": "Sorry, there is a problem with the service",
                    "lines": ["Try again later. If it keeps happening, tell your administrator."],
                },
                status_code=500,
            ).body
        )
    except Exception:  # the store itself may be what failed
        return (
            b"<!DOCTYPE html><html lang='en'><title>Sorry, there is a problem with the service</title>"
            b"<h1>Sorry, there is a problem with the service</h1><p>Try again later.</p></html>"
        )


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote

        target = "/login" if exc.next_path in ("/", "") else f"/login?next={quote(exc.next_path, safe='/')}"
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(Unauthorised)
    async def _unauthorised(request: Request, exc: Unauthorised) -> Response:
        return JSONResponse(
            {"error": "unauthorised", "message": "send a valid API token: Authorization: Bearer <token>"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        from optout.web.accounts import ROLE_LABELS

        who = ", ".join(ROLE_LABELS.get(r, r) for r in exc.roles) or "an administrator"
        message = f"Only these roles can do this: {who}."
        if is_api(request):
            return JSONResponse({"error": "forbidden", "message": message}, status_code=403)
        return render(
            request,
            "errors/error.html",
            {
                "heading": "You do not have permission to do this",
                "lines": [message, "If you need to, ask your administrator to change your role."],
            },
            status_code=403,
        )

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        return render(
            request,
            "errors/error.html",
            {
                "heading": "Your form could not be sent",
                "lines": [
                    "The page was open too long, or you signed in or out in another tab, so nothing was "
                    "changed.",
                    "Go back, reload the page and try again.",
                ],
                "back_href": _referer_path(request),
                "back_text": "Go back",
            },
            status_code=403,
        )

    @app.exception_handler(OptoutError)
    async def _optout_error(request: Request, exc: OptoutError) -> Response:
        status = _STATUS.get(exc.kind, 400)
        if is_api(request):
            return JSONResponse(mask_nested(exc.to_dict()), status_code=status)
        return render(
            request,
            "errors/error.html",
            {
                "heading": "Page not found" if status == 404 else "There is a problem",
                "lines": [mask(exc.message)],
                "hint": mask(exc.hint) if exc.hint else None,
                "back_href": _referer_path(request),
                "back_text": "Go back",
            },
            status_code=status,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if is_api(request):
            return JSONResponse(
                {"error": "http", "message": str(exc.detail)},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        if exc.status_code == 404:
            return render(
                request,
                "errors/error.html",
                {
                    "heading": "Page not found",
                    "lines": [
                        "If you typed the web address, check it is correct.",
                        "If you pasted the web address, check you copied the entire address.",
                    ],
                },
                status_code=404,
            )
        return render(
            request,
            "errors/error.html",
            {"heading": "There is a problem", "lines": [str(exc.detail)]},
            status_code=exc.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # never echo the input back: it may be anything someone typed or uploaded
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) for e in exc.errors()})
        if is_api(request):
            return JSONResponse(
                {"error": "invalid", "message": "the request is not valid", "fields": fields}, status_code=422
            )
        return render(
            request,
            "errors/error.html",
            {
                "heading": "There is a problem",
                "lines": [
                    "Something in the form was missing or not valid: " + (", ".join(fields) or "the form")
                ],
                "back_href": _referer_path(request),
                "back_text": "Go back",
            },
            status_code=400,
        )
