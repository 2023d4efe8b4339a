"""``BasicAuth``: RFC 7617 credentials, step by step as the exercise names them (0x01 6-12).

Every malformed header ends as ``None`` (so ``before_request`` answers 403), never as an
exception: bad base64, bytes that are not UTF-8, no ``:``, absurd sizes. Passwords are checked
against Watchword's argon2id hashes in a worker thread, and failures spend the account's
sign-in budget like a failed login.
"""

from __future__ import annotations

import base64

from starlette.requests import HTTPConnection

from watchword.domain.errors import InvalidEmail
from watchword.domain.users import User, normalize_email
from watchword.web.compat_v1.auth import Auth

SCHEME = "Basic "
# Far above any real header (email 254 + password 1024 characters, base64'd), far below harm.
MAX_ENCODED_LENGTH = 8192


class BasicAuth(Auth):
    """The user named by an ``Authorization: Basic`` header, if the password is right."""

    def extract_base64_authorization_header(self, authorization_header: object) -> str | None:
        """The part after ``Basic `` (case-sensitive scheme, one space), or None."""
        if not isinstance(authorization_header, str) or not authorization_header.startswith(SCHEME):
            return None
        return authorization_header[len(SCHEME) :]

    def decode_base64_authorization_header(self, base64_authorization_header: object) -> str | None:
        """The decoded UTF-8 text, or None for anything that is not base64 of UTF-8."""
        if (
            not isinstance(base64_authorization_header, str)
            or len(base64_authorization_header) > MAX_ENCODED_LENGTH
        ):
            return None
        try:
            return base64.b64decode(base64_authorization_header).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII input
            return None

    def extract_user_credentials(
        self, decoded_base64_authorization_header: object
    ) -> tuple[str | None, str | None]:
        """(email, password) split at the first ``:`` (passwords may contain ``:``)."""
        decoded = decoded_base64_authorization_header
        if not isinstance(decoded, str) or ":" not in decoded:
            return None, None
        email, password = decoded.split(":", 1)
        return email, password

    async def user_object_from_credentials(
        self, user_email: object, user_pwd: object
    ) -> User | None:
        """The enabled user with this email and password, or None."""
        if not isinstance(user_email, str) or not isinstance(user_pwd, str):
            return None
        try:
            email = normalize_email(user_email)
        except InvalidEmail:
            return None
        accounts = self.container.accounts
        if len(user_pwd) > accounts.password_policy.max_length:
            return None  # no Watchword password is this long
        # The account's budget only: Basic sends the password on every request, so the
        # per-address login budget would throttle an honest client.
        await self.container.throttle.check(account=email, ip=None)
        user = await self.container.db.users.get_by_email(email)
        ok = await accounts.verify_password(user.password_hash if user else None, user_pwd)
        if user is None or not ok:
            await self.container.throttle.failed(account=email)
            return None
        if user.disabled:
            return None
        if await self.container.mfa.is_on(user.id):
            return None  # no challenge step here: a password alone is not enough
        return user

    async def current_user(self, request: HTTPConnection | None = None) -> User | None:
        """header -> base64 -> text -> (email, password) -> user."""
        encoded = self.extract_base64_authorization_header(self.authorization_header(request))
        decoded = self.decode_base64_authorization_header(encoded)
        email, password = self.extract_user_credentials(decoded)
        return await self.user_object_from_credentials(email, password)
