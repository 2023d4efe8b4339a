"""Settings: one object, read from ``WATCHWORD_*`` environment variables."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./watchword.db"
DRIVER_ALIASES = (
    ("sqlite://", "sqlite+aiosqlite://"),
    ("postgresql://", "postgresql+asyncpg://"),
    ("postgres://", "postgresql+asyncpg://"),
)

# Roles grant scopes. Every user holds the implicit role "user".
DEFAULT_ROLE_SCOPES: dict[str, list[str]] = {
    "user": ["openid", "profile", "email", "sessions", "api-keys", "signing-keys", "realtime"],
    "admin": ["admin", "realtime:publish", "realtime:presence", "revocations:read"],
    # Services that verify Watchword tokens themselves follow the revocation feed.
    "service": ["revocations:read"],
}


def load_roles_file(path: str) -> dict[str, list[str]]:
    """``[roles]`` of a TOML file: ``admin = ["admin", "realtime:publish"]``."""
    import tomllib

    from watchword.domain.errors import InvalidInput
    from watchword.domain.scopes import parse_scope
    from watchword.domain.users import validate_roles

    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read roles file {path}: {exc}") from exc
    roles = data.get("roles")
    if not isinstance(roles, dict) or not roles:
        raise ValueError(f"roles file {path} needs a non-empty [roles] table")
    result: dict[str, list[str]] = {}
    for role, scopes in roles.items():
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ValueError(f"role {role!r}: scopes must be a list of strings")
        try:
            validate_roles([role])
            result[role] = sorted(parse_scope(scopes))
        except InvalidInput as exc:
            raise ValueError(f"roles file {path}: {exc.message}") from exc
    return result


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.replace(",", " ").split() if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WATCHWORD_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    secret_key: str | None = Field(default=None, repr=False)
    secret_key_file: str = "watchword.secret"

    # Where the server listens; set by `watchword serve` so cookie defaults can follow it.
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None

    open_registration: bool = True
    password_min_length: int = Field(default=8, ge=1)
    password_max_length: int = Field(default=1024, ge=8, le=65536)
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_memory_kib: int = Field(default=19456, ge=19456)
    argon2_parallelism: int = Field(default=1, ge=1)
    hashing_concurrency: int = Field(default=2, ge=1)

    cookie_name: str = "watchword_session"
    cookie_secure: bool | None = None
    session_idle_timeout: int = Field(default=1800, ge=60)
    session_lifetime: int = Field(default=43200, ge=60)
    session_touch_interval: int = Field(default=60, ge=1)
    max_sessions_per_user: int = Field(default=0, ge=0)
    session_limit_policy: Literal["evict-oldest", "reject"] = "evict-oldest"
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    login_rate_limit_account: str = "10/minute"
    login_rate_limit_ip: str = "60/minute"
    # Deprecated: "every peer is a trusted proxy". Use WATCHWORD_TRUSTED_PROXIES.
    trust_forwarded_for: bool = False
    # The client's address: only a TCP peer in these addresses or networks (comma-separated)
    # may say who the client is, in X-Forwarded-For or Forwarded (RFC 7239).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Logs of `watchword serve` (its --log-level, --log-format and --no-access-log set these).
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True
    # Seconds an idle keep-alive connection stays open. Longer than any proxy's or client
    # pool's own idle expiry (nginx upstream 60 s, httpx 5 s): whoever holds a pooled
    # connection must drop it first, or a request sent as the server closes it is lost.
    keepalive_timeout: int = Field(default=75, ge=1, le=3600)

    session_cache_size: int = Field(default=100_000, ge=1)
    session_cache_ttl: float = Field(default=30.0, gt=0)
    sweep_interval: float = Field(default=300.0, gt=0)
    control_poll_interval: float = Field(default=1.0, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    db_timeout: float = Field(default=5.0, gt=0)

    role_scopes: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_ROLE_SCOPES))

    # -- tokens ---------------------------------------------------------------
    access_token_ttl: int = Field(default=600, ge=30, le=86_400)
    # Upper bound for tokens issued with their own ``ttl`` (client credentials).
    access_token_max_ttl: int = Field(default=3600, ge=30, le=86_400)
    access_token_audience: str = Field(default="watchword", min_length=1, max_length=200)
    jwt_algorithm: Literal["EdDSA", "ES256", "RS256"] = "EdDSA"
    jwt_leeway: int = Field(default=10, ge=0, le=300)
    max_token_bytes: int = Field(default=8192, ge=1024, le=65_536)
    refresh_reuse_grace: int = Field(default=10, ge=0, le=300)
    # Automatic signing-key rotation period in seconds; 0 leaves rotation to the CLI.
    signing_key_rotation: int = Field(default=30 * 86_400, ge=0)
    token_cache_size: int = Field(default=100_000, ge=1)
    revocation_stream_ping: float = Field(default=15.0, gt=0)

    # -- machines: API keys, clients, signatures ------------------------------
    # API keys, signing keys and opaque tokens: hot-path cache and coalesced last-used writes.
    machine_cache_size: int = Field(default=100_000, ge=1)
    machine_cache_ttl: float = Field(default=30.0, gt=0)
    credential_touch_interval: int = Field(default=60, ge=1)
    # Lifetime of client-credentials access tokens (JWT and opaque).
    client_token_ttl: int = Field(default=900, ge=30, le=86_400)
    # RFC 9421: accepted distance of ``created`` from now, in both directions (seconds).
    signature_window: int = Field(default=300, ge=1, le=3600)
    # Failed machine-credential attempts per client address, and per key or client id.
    credential_fail_limit_ip: str = "60/minute"
    credential_fail_limit_credential: str = "20/minute"
    # A TOML file with a [roles] table (role = ["scope", ...]) replacing role_scopes.
    roles_file: str | None = None

    @model_validator(mode="after")
    def _load_roles_file(self) -> Settings:
        if self.roles_file:
            self.role_scopes = load_roles_file(self.roles_file)
        return self

    # -- realtime gateway -------------------------------------------------------
    realtime_max_connections_per_user: int = Field(default=100, ge=1)
    realtime_max_message_bytes: int = Field(default=65_536, ge=256, le=4_194_304)
    realtime_max_event_bytes: int = Field(default=65_536, ge=256, le=4_194_304)
    realtime_rate_limit: float = Field(default=20.0, gt=0)  # client messages per second
    realtime_rate_burst: int = Field(default=40, ge=1)
    realtime_send_queue: int = Field(default=256, ge=1)  # messages per connection
    realtime_max_subscriptions: int = Field(default=100, ge=1)
    realtime_ping_interval: float = Field(default=25.0, gt=0)
    realtime_pong_timeout: float = Field(default=10.0, gt=0)
    realtime_auth_timeout: float = Field(default=5.0, gt=0)
    realtime_ticket_ttl: int = Field(default=30, ge=1, le=600)
    realtime_max_tickets: int = Field(default=100_000, ge=1)
    realtime_refresh_window: float = Field(default=60.0, gt=0)
    # A connection must present a fresh credential at least this often (0: the credential's
    # own expiry is the only limit).
    realtime_credential_max_age: float = Field(default=0.0, ge=0)
    realtime_sweep_interval: float = Field(default=1.0, gt=0)
    realtime_history_size: int = Field(default=10_000, ge=0)
    realtime_close_timeout: float = Field(default=5.0, gt=0)
    # permessage-deflate on sockets: saves bandwidth, costs a zlib state (~100+ KiB) per socket.
    realtime_compression: bool = False

    # -- cluster: Redis and failure handling ------------------------------------
    # Every Redis key and bus channel starts with this prefix (several clusters, one Redis).
    redis_prefix: str = Field(default="watchword", min_length=1, max_length=64)
    # "none": a store check that needs Redis fails closed (503) while it is down;
    # "database": session checks read PostgreSQL/SQLite directly instead.
    redis_fallback: Literal["none", "database"] = "none"
    redis_max_connections: int = Field(default=64, ge=2)
    redis_socket_timeout: float = Field(default=2.0, gt=0)
    redis_connect_timeout: float = Field(default=2.0, gt=0)
    redis_health_check_interval: float = Field(default=10.0, ge=0)
    # A session cached in Redis is re-read from the database at least this often.
    redis_session_ttl: int = Field(default=30, ge=1, le=3600)
    bus_reconnect_max_delay: float = Field(default=5.0, gt=0)
    # Set by `serve --workers N` without Redis: the supervisor's Unix socket that relays the
    # bus between the workers (not meant to be set by hand).
    worker_bus: str | None = None

    # -- pages: sign-in, account and admin pages served by the package --------------------
    # WATCHWORD_UI=false serves no pages (GET / stays a JSON 404); the title names the product.
    ui: bool = True
    ui_title: str = Field(default="Watchword", min_length=1, max_length=60)

    # -- account lifecycle: mail, verification, password reset --------------------------
    # smtp://user:pass@host:port, smtp+starttls://..., smtps://...; unset: mail stays in the
    # outbox (`watchword mail list`).
    smtp_url: str | None = Field(default=None, repr=False)
    mail_from: str = "Watchword <watchword@localhost>"
    smtp_timeout: float = Field(default=10.0, gt=0)
    mail_poll_interval: float = Field(default=5.0, gt=0)
    mail_retry_base: float = Field(default=10.0, gt=0)  # first retry; doubles up to the max
    mail_retry_max: float = Field(default=3600.0, gt=0)
    # OpenID Connect Back-Channel Logout: the outbox's floor poll (a revoked session wakes
    # the sender at once), the apps' answer timeout, and the retry backoff.
    backchannel_logout_poll_interval: float = Field(default=1.0, gt=0)
    backchannel_logout_timeout: float = Field(default=5.0, gt=0)
    backchannel_logout_retry_base: float = Field(default=2.0, gt=0)
    backchannel_logout_retry_max: float = Field(default=600.0, gt=0)
    email_verification_ttl: int = Field(default=86_400, ge=60)
    password_reset_ttl: int = Field(default=1800, ge=60)
    require_verified_email: bool = False
    verification_rate_limit: str = "5/hour"  # new verification mails per account
    password_reset_rate_limit_address: str = "5/hour"
    password_reset_rate_limit_account: str = "5/hour"
    password_reset_rate_limit_ip: str = "30/hour"
    # Step-up: changing how the account signs in needs a sign-in at most this many seconds old.
    reauth_max_age: int = Field(default=300, ge=1)
    # Second factors (TOTP, recovery codes): how long a sign-in waits for the second factor.
    mfa_challenge_ttl: int = Field(default=300, ge=10, le=3600)
    # Passkeys: how long a WebAuthn ceremony's challenge can be answered (once).
    passkey_challenge_ttl: int = Field(default=180, ge=10, le=900)
    # Routes that need one of these roles refuse a session signed in without a second factor.
    mfa_required_roles: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("mfa_required_roles", mode="before")
    @classmethod
    def _mfa_roles(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("smtp://", "smtp+starttls://", "smtps://")):
            raise ValueError("an SMTP URL starts with smtp://, smtp+starttls:// or smtps://")
        return value

    @field_validator(
        "verification_rate_limit",
        "password_reset_rate_limit_address",
        "password_reset_rate_limit_account",
        "password_reset_rate_limit_ip",
    )
    @classmethod
    def _account_rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate such as '5/hour'") from exc
        return value

    # contract: the client_id (RFC 9068 section 2.2) that user access tokens name
    first_party_client_id: str = Field(default="watchword", min_length=1, max_length=255)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if value.startswith(("redis+cluster://", "rediss+cluster://")):
            from watchword.stores.redis.client import parse_cluster_url

            parse_cluster_url(value)  # seeds as host:port, no database but 0
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "a Redis URL starts with redis://, rediss://, unix://, or redis+cluster:// "
                "(rediss+cluster://) for a Redis Cluster"
            )
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _redis_prefix(cls, value: str) -> str:
        if not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("the Redis prefix is letters, digits, '-', '_' or '.'")
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _trusted_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for entry in value:
                try:
                    ipaddress.ip_network(str(entry), strict=False)
                except ValueError as exc:
                    raise ValueError(f"{entry!r} is not an IP address or network") from exc
        return value

    @cached_property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in self.trusted_proxies)

    @property
    def https_public_url(self) -> bool:
        return bool(self.public_url and self.public_url.lower().startswith("https://"))

    @field_validator("cookie_name")
    @classmethod
    def _cookie_name(cls, value: str) -> str:
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError("cookie name must be letters, digits, '-', '_' or '.'")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # The usual spellings name the drivers Watchword ships with.
        for plain, driver in DRIVER_ALIASES:
            if value.startswith(plain):
                value = driver + value[len(plain) :]
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must be a sqlite+aiosqlite:///PATH or postgresql+asyncpg://... URL")
        return value

    @field_validator("login_rate_limit_account", "login_rate_limit_ip")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate such as '10/minute'") from exc
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def bound_to_localhost(self) -> bool:
        if self.host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def secure_cookies(self) -> bool:
        """HTTPS cookies: the public URL's scheme decides (a loopback bind behind a TLS proxy
        is the usual deployment); without one, on except for a server bound to loopback.
        ``WATCHWORD_COOKIE_SECURE`` overrides both."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        if self.public_url:
            return self.https_public_url
        return not self.bound_to_localhost

    @property
    def effective_cookie_name(self) -> str:
        # The __Host- prefix pins the cookie to this origin, HTTPS and Path=/.
        if self.secure_cookies and not self.cookie_name.startswith("__Host-"):
            return "__Host-" + self.cookie_name
        return self.cookie_name

    @property
    def issuer(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.secure_cookies else "http"
        return f"{scheme}://{self.host}:{self.port}"


def masked_url(url: str) -> str:
    """A store URL with its password masked, for errors, logs and health answers."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
