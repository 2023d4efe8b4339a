"""Self-service registration."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from watchword.services.context import RequestContext
from watchword.web.deps import check_origin, container_of, context
from watchword.web.routes.schemas import Registration

router = APIRouter(prefix="/v1", tags=["users"])


@router.post("/users", status_code=201, summary="Register an account")
async def register(
    body: Registration, request: Request, ctx: RequestContext = Depends(context)
) -> JSONResponse:
    check_origin(request)
    user = await container_of(request).accounts.register(
        email=body.email,
        password=body.password,
        first_name=body.first_name,
        last_name=body.last_name,
        ctx=ctx,
    )
    content: dict[str, Any] = {"user": user.public()}
    return JSONResponse(content, status_code=201)
