"""The routes of the exercise: index (status, stats, unauthorized, forbidden), users, and the
session login/logout, over Watchword's users and sessions.

Routes never read credentials: ``before_request`` (in ``app.py``) has already asked the
strategy and hands over ``Call.user``.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from watchword.domain.audit import AuditType
from watchword.domain.clock import as_utc
from watchword.domain.errors import (
    Conflict,
    InvalidEmail,
    InvalidInput,
    RateLimited,
    RegistrationClosed,
)
from watchword.domain.users import MAX_NAME_LENGTH, User, normalize_email
from watchword.web.compat_v1.auth import Auth, plausible_id, request_context
from watchword.web.compat_v1.responses import error, jsonify, message
from watchword.web.compat_v1.session_auth import SessionAuth

if TYPE_CHECKING:
    from watchword.services.container import Container

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"
PAGE = 500


@dataclass(frozen=True, slots=True)
class Call:
    """One request as a view sees it: who ``before_request`` found, and the path's values."""

    request: Request
    container: Container
    auth: Auth | None
    user: User | None
    params: dict[str, str] = field(default_factory=dict)
    # The exercise's own rule (any signed-in user may change anyone): a teaching mode.
    exercise: bool = False


View: TypeAlias = Callable[[Call], Awaitable[Response]]


def user_json(user: User) -> dict[str, Any]:
    """``User.to_json()``: these six keys, UTC second-precision timestamps, no password."""
    return {
        "created_at": as_utc(user.created_at).strftime(TIMESTAMP_FORMAT),
        "email": user.email,
        "first_name": user.first_name,
        "id": user.id,
        "last_name": user.last_name,
        "updated_at": as_utc(user.updated_at).strftime(TIMESTAMP_FORMAT),
    }


def _utf8(value: str) -> bool:
    """JSON can carry lone surrogates, which no store or hasher accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def json_body(request: Request) -> Any:
    """``request.get_json()`` with Flask's rules: a JSON media type and a parsable body, else
    None (``"Wrong format"``)."""
    mimetype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not (
        mimetype == "application/json"
        or (mimetype.startswith("application/") and mimetype.endswith("+json"))
    ):
        return None
    body = await request.body()
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


async def form_body(request: Request) -> FormData:
    """``request.form``: urlencoded or multipart fields; anything else (or a broken body) is
    an empty form."""
    try:
        return await request.form()
    except (HTTPException, MultiPartException, ValueError):
        return FormData()


# -- index ------------------------------------------------------------------------------------


async def status(call: Call) -> Response:
    return jsonify({"status": "OK"})


async def stats(call: Call) -> Response:
    return jsonify({"users": await call.container.db.users.count()})


async def unauthorized(call: Call) -> Response:
    return error(401)


async def forbidden(call: Call) -> Response:
    return error(403)


# -- users ------------------------------------------------------------------------------------


async def _user(call: Call, user_id: str) -> User | None:
    if not plausible_id(user_id):
        return None
    return await call.container.db.users.get(user_id)


async def list_users(call: Call) -> Response:
    users: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = await call.container.db.users.page(limit=PAGE, offset=offset)
        users.extend(user_json(u) for u in page)
        if len(page) < PAGE:
            return jsonify(users)
        offset += PAGE


async def get_user(call: Call) -> Response:
    user_id = call.params["user_id"]
    if user_id == "me":
        return jsonify(user_json(call.user)) if call.user is not None else error(404)
    user = await _user(call, user_id)
    return jsonify(user_json(user)) if user is not None else error(404)


def may_change(call: Call, target: User) -> bool:
    """One user changes or deletes another only with the ``admin`` scope (what the caller's
    roles grant now), so /api/v1 cannot be used to take over /v1 accounts. Oneself is fine;
    the exercise's any-user rule only in its teaching mode."""
    if call.exercise:
        return True
    caller = call.user
    if caller is None:
        return False  # the open mode: nobody is signed in
    if caller.id == target.id:
        return True
    return "admin" in call.container.scope_policy.scopes_for_roles(caller.roles)


async def delete_user(call: Call) -> Response:
    user = await _user(call, call.params["user_id"])
    if user is None:
        return error(404)
    if not may_change(call, user):
        return error(403)
    container = call.container
    await container.accounts.delete_user(
        user.id,
        request_context(call.request, container),
        actor_id=call.user.id if call.user else None,
        surface="api/v1",
    )
    return jsonify({})


def _optional_name(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _utf8(value):
        raise InvalidInput(f"{key} must be a string.")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise InvalidInput(f"{key} must not contain control characters.")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"{key} is at most {MAX_NAME_LENGTH} characters.")
    return value


async def create_user(call: Call) -> Response:
    data = await json_body(call.request)
    if not isinstance(data, dict):
        return message("Wrong format", 400)
    email = data.get("email", "")
    if email is None or email == "":
        return message("email missing", 400)
    password = data.get("password", "")
    if password is None or password == "":
        return message("password missing", 400)
    try:
        if not isinstance(email, str) or not _utf8(email):
            raise InvalidEmail()
        if not isinstance(password, str) or not _utf8(password):
            raise InvalidInput("The password must be a string.")
        user = await call.container.accounts.register(
            email=email,
            password=password,
            first_name=_optional_name(data, "first_name"),
            last_name=_optional_name(data, "last_name"),
            ctx=request_context(call.request, call.container),
            # Anyone may call this route in the open mode: then the server's registration
            # setting applies, as on POST /v1/users.
            self_service=call.user is None,
        )
    except (InvalidInput, Conflict, RegistrationClosed) as exc:
        return message(f"Can't create User: {exc.message}", 400)
    return jsonify(user_json(user), 201)


async def update_user(call: Call) -> Response:
    user = await _user(call, call.params["user_id"])
    if user is None:
        return error(404)
    if not may_change(call, user):
        return error(403)
    data = await json_body(call.request)
    if not isinstance(data, dict):
        return message("Wrong format", 400)
    try:
        changes = {
            key: value
            for key in ("first_name", "last_name")
            if (value := _optional_name(data, key)) is not None
        }
    except InvalidInput:
        return message("Wrong format", 400)
    container = call.container
    updated = await container.db.users.update(
        user.id, changes, container.clock.now(), origin=container.sessions.node_id
    )
    if updated is None:
        return error(404)
    container.sessions.cache.drop_user(user.id)
    await container.sessions.announce_user_changed(user.id, disabled=updated.disabled)
    return jsonify(user_json(updated))


# -- session login / logout -------------------------------------------------------------------


async def login(call: Call) -> Response:
    """Form fields ``email`` and ``password``; the user JSON and the session cookie."""
    auth = call.auth
    assert isinstance(auth, SessionAuth)
    form = await form_body(call.request)
    email, password = form.get("email"), form.get("password")
    await form.close()  # uploaded files, if any, are spooled to disk
    if not isinstance(email, str) or email == "":
        return message("email missing", 400)
    if not isinstance(password, str) or password == "":
        return message("password missing", 400)
    container = call.container
    ctx = request_context(call.request, container)
    try:
        normalized = normalize_email(email)
    except InvalidEmail:
        return message("no user found for this email", 404)
    try:
        await container.throttle.check(account=normalized, ip=ctx.ip)
    except RateLimited as exc:
        await container.auditor.record(AuditType.LOGIN_RATE_LIMITED, ctx, email=normalized)
        return message("Too many requests", 429, {"Retry-After": str(exc.retry_after)})
    user = await container.db.users.get_by_email(normalized)
    too_long = len(password) > container.accounts.password_policy.max_length
    ok = not too_long and await container.accounts.verify_password(
        user.password_hash if user else None, password
    )
    if user is None or not ok:
        await container.throttle.failed(account=normalized)
        await container.auditor.record(
            AuditType.LOGIN_FAILED,
            ctx,
            user_id=user.id if user else None,
            email=normalized,
            reason="bad_password" if user else "unknown_email",
            surface="api/v1",
        )
        if user is None:
            return message("no user found for this email", 404)
        return message("wrong password", 401)
    if user.disabled:
        await container.auditor.record(
            AuditType.LOGIN_FAILED, ctx, user_id=user.id, reason="disabled", surface="api/v1"
        )
        return error(403)
    if await container.mfa.is_on(user.id):
        # This surface has no challenge step: a password alone must not open a session of an
        # account with a second factor.
        await container.auditor.record(
            AuditType.LOGIN_FAILED, ctx, user_id=user.id, reason="mfa_required", surface="api/v1"
        )
        return error(403)
    try:
        session_id = await auth.create_session(user.id, ctx=ctx, login=True)
    except Conflict as exc:  # the account's session limit, with the "reject" policy
        return message(exc.message, 409)
    if session_id is None:  # deleted while signing in
        return message("no user found for this email", 404)
    response = jsonify(user_json(user))
    # Flask's plain ``set_cookie(name, value)``: exactly "name=value; Path=/".
    response.headers.append("set-cookie", f"{auth.settings.session_name}={session_id}; Path=/")
    return response


async def logout(call: Call) -> Response:
    auth = call.auth
    assert isinstance(auth, SessionAuth)
    if not await auth.destroy_session(call.request):
        return error(404)
    return jsonify({})
