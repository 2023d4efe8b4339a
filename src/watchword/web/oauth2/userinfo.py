"""``GET/POST /oauth2/userinfo`` (OpenID Connect Core 1.0 section 5.3): the claims an app's
access token opens (``openid`` for ``sub``, ``profile`` and ``email`` for more)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from watchword.domain.principal import Principal
from watchword.domain.tokens import invalid_token
from watchword.services.app_tokens import AppTokens
from watchword.web.deps import container_of, require

router = APIRouter(prefix="/oauth2", tags=["oauth2"])

reader = require("openid")


async def _claims(request: Request, principal: Principal) -> JSONResponse:
    if principal.user_id is None:
        raise invalid_token("UserInfo answers for a person's access token, not a client's.")
    user = principal.user
    if user is None:
        user = await container_of(request).accounts.get_user(principal.user_id)
    body: dict[str, Any] = {"sub": user.id, **AppTokens.identity_claims(user, principal.scopes)}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/userinfo", summary="OpenID Connect UserInfo")
async def userinfo(request: Request, principal: Principal = Depends(reader)) -> JSONResponse:
    return await _claims(request, principal)


@router.post("/userinfo", summary="OpenID Connect UserInfo (POST)")
async def userinfo_post(request: Request, principal: Principal = Depends(reader)) -> JSONResponse:
    return await _claims(request, principal)
