"""SQL adapters of the machine-credential stores (``stores/machines.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from watchword.domain.apikeys import ApiKey, credential_revoked
from watchword.domain.clients import (
    ClientType,
    GrantType,
    OAuthClient,
    OpaqueToken,
    TokenFormat,
    client_changed,
)
from watchword.domain.errors import Conflict, NotFound
from watchword.domain.signatures import SignatureAlgorithm, SigningKey
from watchword.stores.sql import tables as t
from watchword.stores.sql.database import record_control
from watchword.stores.sql.engine import guarded, write_transaction

if TYPE_CHECKING:
    from watchword.stores.machines import MachineStores


def _api_key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        public_id=row.public_id,
        user_id=row.user_id,
        name=row.name,
        secret_hash=row.secret_hash,
        scopes=frozenset(row.scopes or ()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _signing_key(row: Row[Any]) -> SigningKey:
    return SigningKey(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        algorithm=SignatureAlgorithm(row.algorithm),
        material=row.material,
        scopes=frozenset(row.scopes or ()),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _client(row: Row[Any]) -> OAuthClient:
    return OAuthClient(
        id=row.id,
        name=row.name,
        secret_hash=row.secret_hash,
        scopes=frozenset(row.scopes or ()),
        token_format=TokenFormat(row.token_format),
        created_at=row.created_at,
        disabled=bool(row.disabled),
        client_type=ClientType(row.client_type),
        grant_types=frozenset(GrantType(g) for g in row.grant_types or ()),
        redirect_uris=tuple(row.redirect_uris or ()),
        first_party=bool(row.first_party),
        backchannel_logout_uri=row.backchannel_logout_uri,
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris or ()),
        id_token_signed_response_alg=row.id_token_alg,
    )


def _opaque(row: Row[Any]) -> OpaqueToken:
    return OpaqueToken(
        id=row.id,
        token_hash=row.token_hash,
        client_id=row.client_id,
        scopes=frozenset(row.scopes or ()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class SqlApiKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def create(self, key: ApiKey) -> None:
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(
                    insert(t.api_keys).values(
                        id=key.id,
                        public_id=key.public_id,
                        user_id=key.user_id,
                        name=key.name,
                        secret_hash=key.secret_hash,
                        scopes=sorted(key.scopes),
                        created_at=key.created_at,
                        expires_at=key.expires_at,
                        last_used_at=key.last_used_at,
                        revoked_at=key.revoked_at,
                    )
                )
        except IntegrityError as exc:
            raise Conflict("The API key could not be stored (duplicate id or no owner).") from exc

    @guarded
    async def get(self, key_id: str) -> ApiKey | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(t.api_keys).where(t.api_keys.c.id == key_id))).first()
        return _api_key(row) if row else None

    @guarded
    async def get_by_public_id(self, public_id: str) -> ApiKey | None:
        query = select(t.api_keys).where(t.api_keys.c.public_id == public_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _api_key(row) if row else None

    @guarded
    async def list_for_user(self, user_id: str) -> list[ApiKey]:
        query = (
            select(t.api_keys)
            .where(t.api_keys.c.user_id == user_id, t.api_keys.c.revoked_at.is_(None))
            .order_by(t.api_keys.c.created_at.desc(), t.api_keys.c.id)
        )
        async with self._engine.connect() as conn:
            return [_api_key(row) for row in await conn.execute(query)]

    @guarded
    async def revoke(
        self, key_id: str, now: datetime, *, origin: str, user_id: str | None = None
    ) -> ApiKey | None:
        condition = and_(t.api_keys.c.id == key_id, t.api_keys.c.revoked_at.is_(None))
        if user_id is not None:
            condition = and_(condition, t.api_keys.c.user_id == user_id)
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    update(t.api_keys)
                    .where(condition)
                    .values(revoked_at=now)
                    .returning(*t.api_keys.c)
                )
            ).first()
            if row is None:
                return None
            key = _api_key(row)
            await record_control(
                conn,
                [credential_revoked("api_key", key.public_id, key.user_id, key_id=key.id)],
                now,
                origin,
            )
        return key

    @guarded
    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        if not last_used:
            return
        async with write_transaction(self._engine) as conn:
            for key_id, used in last_used.items():
                await conn.execute(
                    update(t.api_keys)
                    .where(
                        t.api_keys.c.id == key_id,
                        or_(t.api_keys.c.last_used_at.is_(None), t.api_keys.c.last_used_at < used),
                    )
                    .values(last_used_at=used)
                )


class SqlSigningKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def create(self, key: SigningKey) -> None:
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(
                    insert(t.signing_keys).values(
                        id=key.id,
                        user_id=key.user_id,
                        name=key.name,
                        algorithm=key.algorithm.value,
                        material=key.material,
                        scopes=sorted(key.scopes),
                        created_at=key.created_at,
                        last_used_at=key.last_used_at,
                        revoked_at=key.revoked_at,
                    )
                )
        except IntegrityError as exc:
            raise Conflict(
                "The signing key could not be stored (duplicate id or no owner)."
            ) from exc

    @guarded
    async def get(self, key_id: str) -> SigningKey | None:
        query = select(t.signing_keys).where(t.signing_keys.c.id == key_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _signing_key(row) if row else None

    @guarded
    async def list_for_user(self, user_id: str) -> list[SigningKey]:
        query = (
            select(t.signing_keys)
            .where(t.signing_keys.c.user_id == user_id, t.signing_keys.c.revoked_at.is_(None))
            .order_by(t.signing_keys.c.created_at.desc(), t.signing_keys.c.id)
        )
        async with self._engine.connect() as conn:
            return [_signing_key(row) for row in await conn.execute(query)]

    @guarded
    async def revoke(
        self, key_id: str, now: datetime, *, origin: str, user_id: str | None = None
    ) -> SigningKey | None:
        condition = and_(t.signing_keys.c.id == key_id, t.signing_keys.c.revoked_at.is_(None))
        if user_id is not None:
            condition = and_(condition, t.signing_keys.c.user_id == user_id)
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    update(t.signing_keys)
                    .where(condition)
                    .values(revoked_at=now)
                    .returning(*t.signing_keys.c)
                )
            ).first()
            if row is None:
                return None
            key = _signing_key(row)
            await record_control(
                conn, [credential_revoked("signing_key", key.id, key.user_id)], now, origin
            )
        return key

    @guarded
    async def touch(self, last_used: Mapping[str, datetime]) -> None:
        if not last_used:
            return
        c = t.signing_keys.c
        async with write_transaction(self._engine) as conn:
            for key_id, used in last_used.items():
                await conn.execute(
                    update(t.signing_keys)
                    .where(c.id == key_id, or_(c.last_used_at.is_(None), c.last_used_at < used))
                    .values(last_used_at=used)
                )


class SqlClientStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def create(self, client: OAuthClient) -> None:
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(
                    insert(t.oauth_clients).values(
                        id=client.id,
                        name=client.name,
                        secret_hash=client.secret_hash,
                        scopes=sorted(client.scopes),
                        token_format=client.token_format.value,
                        created_at=client.created_at,
                        disabled=client.disabled,
                        client_type=client.client_type.value,
                        grant_types=sorted(g.value for g in client.grant_types),
                        redirect_uris=list(client.redirect_uris),
                        first_party=client.first_party,
                        backchannel_logout_uri=client.backchannel_logout_uri,
                        post_logout_redirect_uris=list(client.post_logout_redirect_uris),
                        id_token_alg=client.id_token_signed_response_alg,
                    )
                )
        except IntegrityError as exc:
            raise Conflict("A client with this id already exists.") from exc

    @guarded
    async def get(self, client_id: str) -> OAuthClient | None:
        query = select(t.oauth_clients).where(t.oauth_clients.c.id == client_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _client(row) if row else None

    @guarded
    async def page(self, *, limit: int = 100, offset: int = 0) -> list[OAuthClient]:
        query = (
            select(t.oauth_clients)
            .order_by(t.oauth_clients.c.created_at, t.oauth_clients.c.id)
            .limit(limit)
            .offset(offset)
        )
        async with self._engine.connect() as conn:
            return [_client(row) for row in await conn.execute(query)]

    @guarded
    async def set_disabled(
        self, client_id: str, disabled: bool, now: datetime, *, origin: str
    ) -> OAuthClient | None:
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    update(t.oauth_clients)
                    .where(t.oauth_clients.c.id == client_id)
                    .values(disabled=disabled)
                    .returning(*t.oauth_clients.c)
                )
            ).first()
            if row is None:
                return None
            if disabled:
                await conn.execute(
                    update(t.opaque_tokens)
                    .where(
                        t.opaque_tokens.c.client_id == client_id,
                        t.opaque_tokens.c.revoked_at.is_(None),
                    )
                    .values(revoked_at=now)
                )
            await record_control(conn, [client_changed(client_id, disabled=disabled)], now, origin)
        return _client(row)

    @guarded
    async def set_secret(self, client_id: str, secret_hash: str) -> OAuthClient | None:
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    update(t.oauth_clients)
                    .where(t.oauth_clients.c.id == client_id)
                    .values(secret_hash=secret_hash)
                    .returning(*t.oauth_clients.c)
                )
            ).first()
        return _client(row) if row else None


class SqlOpaqueTokenStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @guarded
    async def create(self, token: OpaqueToken) -> None:
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(
                    insert(t.opaque_tokens).values(
                        id=token.id,
                        token_hash=token.token_hash,
                        client_id=token.client_id,
                        scopes=sorted(token.scopes),
                        created_at=token.created_at,
                        expires_at=token.expires_at,
                        revoked_at=token.revoked_at,
                    )
                )
        except IntegrityError as exc:
            raise NotFound("No such client.") from exc

    @guarded
    async def get_by_hash(self, token_hash: str) -> OpaqueToken | None:
        query = select(t.opaque_tokens).where(t.opaque_tokens.c.token_hash == token_hash)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _opaque(row) if row else None

    @guarded
    async def revoke(self, token_id: str, now: datetime, *, origin: str) -> OpaqueToken | None:
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    update(t.opaque_tokens)
                    .where(t.opaque_tokens.c.id == token_id, t.opaque_tokens.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                    .returning(*t.opaque_tokens.c)
                )
            ).first()
            if row is None:
                return None
            token = _opaque(row)
            await record_control(
                conn, [credential_revoked("opaque_token", token.token_hash, None)], now, origin
            )
        return token

    @guarded
    async def clear_expired(self, now: datetime) -> int:
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                delete(t.opaque_tokens).where(t.opaque_tokens.c.expires_at < now)
            )
        return int(result.rowcount or 0)


class SqlMachineStores:
    def __init__(self, engine: AsyncEngine) -> None:
        self.api_keys = SqlApiKeyStore(engine)
        self.signing_keys = SqlSigningKeyStore(engine)
        self.clients = SqlClientStore(engine)
        self.opaque_tokens = SqlOpaqueTokenStore(engine)


if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import create_async_engine

    _check: MachineStores = SqlMachineStores(create_async_engine("sqlite+aiosqlite://"))
