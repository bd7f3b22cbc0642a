"""The OpenAPI document (``/api/openapi.json``, bearer token) and a readable list (``/api-docs``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from optout.web.accounts import User
from optout.web.deps import current_user, render

router = APIRouter()


@router.get("/api/openapi.json", include_in_schema=False)
def openapi(request: Request, user: User = Depends(current_user)) -> Response:
    return JSONResponse(request.app.openapi())


@router.get("/api-docs", include_in_schema=False)
def api_docs(request: Request, user: User = Depends(current_user)) -> Response:
    schema: dict[str, Any] = request.app.openapi()
    operations = []
    for path, methods in sorted(schema.get("paths", {}).items()):
        for method, op in methods.items():
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "tag": (op.get("tags") or ["other"])[0],
                }
            )
    return render(
        request, "api_docs.html", {"operations": operations, "version": schema.get("info", {}).get("version")}
    )
