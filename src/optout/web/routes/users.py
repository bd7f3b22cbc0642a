"""(being built: see optout/web/README.md)"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from optout.web.accounts import User
from optout.web.deps import current_user, render

router = APIRouter()


@router.get("/users", include_in_schema=False)
def page(request: Request, user: User = Depends(current_user)) -> Response:
    return render(request, "stub.html", {"heading": "users"})
