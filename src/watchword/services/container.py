"""Wiring: builds every service from one ``Settings``. The only place that knows them all."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from watchword.bus.base import EventBus
from watchword.config import Settings
from watchword.domain.clock import Clock, Randomness, SystemClock, SystemRandomness
from watchword.domain.masterkey import MasterKey
from watchword.domain.passwords import PasswordHasher, PasswordPolicy
from watchword.domain.scopes import ScopePolicy
from watchword.domain.sessions import SessionPolicy
from watchword.domain.signatures import SignaturePolicy
from watchword.domain.webauthn import RelyingParty
from watchword.services.accounts import AccountService
from watchword.services.apikeys import ApiKeyService
from watchword.services.app_tokens import ID_TOKEN_TTL, AppTokens
from watchword.services.audit import Auditor
from watchword.services.authorization import Authorization
from watchword.services.backchannel import BackchannelLogout
from watchword.services.clients import ClientService
from watchword.services.cluster import Cluster, make_bus, rate_limit_storage
from watchword.services.control import ControlPlane, RevokedSessions
from watchword.services.credential_guard import CredentialThrottle
from watchword.services.factor_reset import FactorResetService
from watchword.services.introspection import TokenIntrospection
from watchword.services.keys import KeyService
from watchword.services.lifecycle import AccountLifecycle
from watchword.services.mail import MailComposer, MailSender, SmtpTarget
from watchword.services.mfa import MfaService
from watchword.services.passkeys import PasskeyService
from watchword.services.ratelimit import LoginThrottle, RateLimiter
from watchword.services.secrets_file import resolve_secret_key
from watchword.services.session_cache import SessionCache
from watchword.services.sessions import FLUSH_INTERVAL, SessionService
from watchword.services.signing import SigningService
from watchword.services.stepup import StepUp
from watchword.services.tokens import TokenService
from watchword.stores.accounts import account_stores_for
from watchword.stores.app_grants import app_grant_stores_for
from watchword.stores.base import Database
from watchword.stores.machines import machine_stores_for
from watchword.stores.nonces import MemoryNonceStore, NonceStore
from watchword.stores.sql import SqlDatabase
from watchword.stores.tokens import token_stores_for

# A revoked session id stays in the in-memory set this long at most; tokens issued for the
# session cannot outlive it (later: the access-token lifetime plus leeway).
DEFAULT_REVOCATION_RETENTION = 3600.0


class Container:
    def __init__(
        self,
        settings: Settings,
        *,
        db: Database | None = None,
        bus: EventBus | None = None,
        clock: Clock | None = None,
        randomness: Randomness | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.randomness = randomness or SystemRandomness()
        self.master_key = MasterKey(resolve_secret_key(settings))
        self.db: Database = db or SqlDatabase(
            settings.database_url, pool_size=settings.db_pool_size, timeout=settings.db_timeout
        )
        # cluster: with WATCHWORD_REDIS_URL, Redis in front of session lookups
        self.cluster = Cluster(
            settings,
            now=lambda: self.clock.now().timestamp(),
            key_fingerprint=self.master_key.derive("cluster-fingerprint", 8).hex(),
        )
        if db is None:
            self.db = self.cluster.wrap_database(self.db)
        self.bus: EventBus = bus or make_bus(settings)
        self.hasher = hasher or PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self.scope_policy = ScopePolicy(settings.role_scopes)
        self.auditor = Auditor(self.db.audit, self.clock)
        self.control = ControlPlane(
            bus=self.bus,
            feed=self.db.control,
            clock=self.clock,
            poll_interval=settings.control_poll_interval,
            # no access token of a session outlives its lifetime plus the leeway.
            revoked=RevokedSessions(
                retention=float(settings.access_token_ttl + settings.jwt_leeway)
            ),
        )
        self.session_cache = SessionCache(
            max_size=settings.session_cache_size, ttl=settings.session_cache_ttl
        )
        self.sessions = SessionService(
            db=self.db,
            clock=self.clock,
            randomness=self.randomness,
            policy=SessionPolicy(
                idle_timeout=timedelta(seconds=settings.session_idle_timeout),
                lifetime=timedelta(seconds=settings.session_lifetime),
                touch_interval=timedelta(seconds=settings.session_touch_interval),
            ),
            scope_policy=self.scope_policy,
            control=self.control,
            cache=self.session_cache,
            auditor=self.auditor,
            max_per_user=settings.max_sessions_per_user,
            limit_policy=settings.session_limit_policy,
        )
        limits_uri, limits_options = rate_limit_storage(settings)
        # One limiter (one storage, one Redis pool in a cluster) for every throttle.
        self.rate_limiter = RateLimiter(storage_uri=limits_uri, storage_options=limits_options)
        self.throttle = LoginThrottle(
            limiter=self.rate_limiter,
            per_account=settings.login_rate_limit_account,
            per_ip=settings.login_rate_limit_ip,
        )
        self.accounts = AccountService(
            db=self.db,
            clock=self.clock,
            randomness=self.randomness,
            hasher=self.hasher,
            password_policy=PasswordPolicy(
                min_length=settings.password_min_length, max_length=settings.password_max_length
            ),
            sessions=self.sessions,
            throttle=self.throttle,
            auditor=self.auditor,
            open_registration=settings.open_registration,
            hashing_concurrency=settings.hashing_concurrency,
        )
        self.csrf_key = self.master_key.derive("csrf")
        # -- tokens -------------------------------------------------------------
        self.token_stores = token_stores_for(self.db)
        self.keys = KeyService(
            store=self.token_stores.keys,
            master_key=self.master_key,
            clock=self.clock,
            randomness=self.randomness,
            control=self.control,
            algorithm=settings.jwt_algorithm,
            max_token_lifetime=timedelta(
                seconds=max(settings.access_token_ttl, settings.access_token_max_ttl)
                + settings.jwt_leeway
            ),
            rotation_interval=settings.signing_key_rotation,
        )
        self.tokens = TokenService(
            db=self.db,
            stores=self.token_stores,
            keys=self.keys,
            sessions=self.sessions,
            control=self.control,
            auditor=self.auditor,
            scope_policy=self.scope_policy,
            master_key=self.master_key,
            clock=self.clock,
            randomness=self.randomness,
            issuer=settings.issuer,
            audience=settings.access_token_audience,
            ttl=settings.access_token_ttl,
            max_ttl=settings.access_token_max_ttl,
            leeway=settings.jwt_leeway,
            max_token_bytes=settings.max_token_bytes,
            reuse_grace=settings.refresh_reuse_grace,
            cache_size=settings.token_cache_size,
            user_cache_ttl=settings.session_cache_ttl,
            touch_interval=float(settings.session_touch_interval),
            poll_interval=settings.control_poll_interval,
            first_party_client_id=settings.first_party_client_id,
        )
        # -- machines -----------------------------------------------------------
        self.machines = machine_stores_for(self.db)
        self.credential_throttle = CredentialThrottle(
            limiter=self.rate_limiter,
            per_ip=settings.credential_fail_limit_ip,
            per_credential=settings.credential_fail_limit_credential,
        )
        if self.cluster.redis is not None and self.cluster.options is not None:
            from watchword.stores.redis.nonces import RedisNonceStore

            self.nonces: NonceStore = RedisNonceStore(self.cluster.redis, self.cluster.options)
        else:
            self.nonces = MemoryNonceStore()
        self.api_keys = ApiKeyService(
            db=self.db,
            store=self.machines.api_keys,
            scope_policy=self.scope_policy,
            cache_size=settings.machine_cache_size,
            cache_ttl=settings.machine_cache_ttl,
            touch_interval=settings.credential_touch_interval,
            clock=self.clock,
            randomness=self.randomness,
            control=self.control,
            auditor=self.auditor,
            throttle=self.credential_throttle,
        )
        self.signing = SigningService(
            db=self.db,
            store=self.machines.signing_keys,
            nonces=self.nonces,
            master_key=self.master_key,
            scope_policy=self.scope_policy,
            policy=SignaturePolicy(window_seconds=settings.signature_window),
            cache_size=settings.machine_cache_size,
            cache_ttl=settings.machine_cache_ttl,
            touch_interval=settings.credential_touch_interval,
            clock=self.clock,
            randomness=self.randomness,
            control=self.control,
            auditor=self.auditor,
            throttle=self.credential_throttle,
        )
        self.clients = ClientService(
            clients=self.machines.clients,
            tokens=self.machines.opaque_tokens,
            token_ttl=settings.client_token_ttl,
            cache_size=settings.machine_cache_size,
            cache_ttl=settings.machine_cache_ttl,
            clock=self.clock,
            randomness=self.randomness,
            control=self.control,
            auditor=self.auditor,
            throttle=self.credential_throttle,
        )
        self.clients.access_tokens = self.tokens  # RFC 9068 tokens for clients that want JWTs
        self.tokens.client_enabled = self.clients.is_enabled  # a disabled client's JWTs stop
        self.introspection = TokenIntrospection(
            db=self.db,
            clock=self.clock,
            tokens=self.tokens,
            refresh_tokens=self.token_stores.refresh,
            sessions=self.sessions,
            api_keys=self.api_keys,
            clients=self.clients,
            auditor=self.auditor,
            issuer=settings.issuer,
            audience=settings.access_token_audience,
        )
        # -- realtime -----------------------------------------------------------
        # -- cluster ------------------------------------------------------------
        self.cluster.attach(
            db=self.db, bus=self.bus, control=self.control, local_cache=self.session_cache
        )
        # -- account lifecycle: mail outbox, verification, password reset ----------------
        self.account_stores = account_stores_for(self.db)
        self.mail_sender = MailSender(
            outbox=self.account_stores.outbox,
            clock=self.clock,
            target=SmtpTarget.parse(settings.smtp_url) if settings.smtp_url else None,
            sender=settings.mail_from,
            timeout=settings.smtp_timeout,
            poll_interval=settings.mail_poll_interval,
            retry_base=settings.mail_retry_base,
            retry_max=settings.mail_retry_max,
        )
        self.lifecycle = AccountLifecycle(
            stores=self.account_stores,
            accounts=self.accounts,
            sessions=self.sessions,
            composer=MailComposer(
                title=settings.ui_title,
                public_url=settings.issuer,
                clock=self.clock,
                randomness=self.randomness,
            ),
            sender=self.mail_sender,
            auditor=self.auditor,
            limiter=self.rate_limiter,
            login_throttle=self.throttle,
            clock=self.clock,
            randomness=self.randomness,
            verification_ttl=settings.email_verification_ttl,
            reset_ttl=settings.password_reset_ttl,
            verification_rate=settings.verification_rate_limit,
            reset_rate_address=settings.password_reset_rate_limit_address,
            reset_rate_account=settings.password_reset_rate_limit_account,
            reset_rate_ip=settings.password_reset_rate_limit_ip,
        )
        self.accounts.require_verified_email = settings.require_verified_email
        self.step_up = StepUp(
            store=self.account_stores.session_auth,
            db=self.db,
            accounts=self.accounts,
            throttle=self.throttle,
            auditor=self.auditor,
            clock=self.clock,
            max_age=settings.reauth_max_age,
            announce=self.lifecycle.announce,
            shown_ttl=settings.session_cache_ttl,
        )
        self.tokens.session_claims = self.step_up.token_claims  # amr, auth_time, acr
        # -- second factors: TOTP and recovery codes -------------------------------------
        self.mfa = MfaService(
            store=self.account_stores.mfa,
            accounts=self.accounts,
            master_key=self.master_key,
            throttle=self.throttle,
            auditor=self.auditor,
            clock=self.clock,
            issuer=settings.ui_title,
            challenge_ttl=settings.mfa_challenge_ttl,
            announce=self.lifecycle.announce,
        )
        self.passkeys = PasskeyService(
            store=self.account_stores.passkeys,
            accounts=self.accounts,
            relying_party=RelyingParty(public_url=settings.issuer, name=settings.ui_title),
            throttle=self.throttle,
            auditor=self.auditor,
            clock=self.clock,
            randomness=self.randomness,
            challenge_ttl=settings.passkey_challenge_ttl,
            announce=self.lifecycle.announce,
        )
        self.mfa.passkeys = self.passkeys
        self.factor_reset = FactorResetService(
            store=self.account_stores.mfa,
            lifecycle=self.lifecycle,
            sessions=self.sessions,
            auditor=self.auditor,
            clock=self.clock,
        )
        self.step_up.passkey = self.passkeys.step_up
        self.accounts.second_factor = self.mfa.challenge_for
        self.step_up.second_factor = self.mfa.step_up_amr
        # -- OpenID Connect: apps that sign people in -------------------------------------
        self.app_stores = app_grant_stores_for(self.db)
        # ID tokens are RS256 (what every relying party verifies), with their own key beside
        # the access-token key; both are in the JWKS.
        self.id_token_keys = KeyService(
            store=self.app_stores.id_token_keys,
            master_key=self.master_key,
            clock=self.clock,
            randomness=self.randomness,
            control=self.control,
            algorithm="RS256",
            max_token_lifetime=timedelta(seconds=ID_TOKEN_TTL + settings.jwt_leeway),
            rotation_interval=settings.signing_key_rotation,
        )
        self.clients.id_token_algorithms = frozenset({"RS256", settings.jwt_algorithm})
        self.authorization = Authorization(
            clients=self.clients,
            grants=self.app_stores.grants,
            consents=self.app_stores.consents,
            auditor=self.auditor,
            clock=self.clock,
            randomness=self.randomness,
            issuer=settings.issuer,
        )
        self.app_tokens = AppTokens(
            tokens=self.tokens,
            id_keys=self.id_token_keys,
            sessions=self.sessions,
            grants=self.app_stores.grants,
            consents=self.app_stores.consents,
            refresh=self.token_stores.refresh,
            scope_policy=self.scope_policy,
            auditor=self.auditor,
            clock=self.clock,
            randomness=self.randomness,
            issuer=settings.issuer,
        )
        self.introspection.app_refresh = self.app_tokens.revoke_refresh
        self.backchannel = BackchannelLogout(
            outbox=self.app_stores.logout_outbox,
            clients=self.clients,
            id_keys=self.id_token_keys,
            access_keys=self.keys,
            clock=self.clock,
            issuer=settings.issuer,
            timeout=settings.backchannel_logout_timeout,
            poll_interval=settings.backchannel_logout_poll_interval,
            retry_base=settings.backchannel_logout_retry_base,
            retry_max=settings.backchannel_logout_retry_max,
        )
        self.backchannel.after_sweep = self.app_tokens.sweep  # unredeemed codes
        # A node writes a cookie session's last-seen time at most once per touch interval
        # and flushes queued touches every FLUSH_INTERVAL, so the stored time can trail the
        # real last use by up to both; one more flush covers a write in flight. Only a
        # session idle past that margin is surely over, never one still in use.
        idle_margin = timedelta(seconds=settings.session_touch_interval + 2 * FLUSH_INTERVAL)
        self.backchannel.end_expired = partial(
            self.app_tokens.end_with_expired_sessions, idle_margin
        )
        self._started = False

    async def start(self) -> None:
        """Background work of a serving node: bus, control feed, touches, sweeping."""
        await self.bus.start()
        await self.control.start()
        await self.keys.start()  # tokens: a signing key exists before serving
        await self.id_token_keys.start()
        await self.tokens.start()
        await self.cluster.start()
        self.sessions.start(sweep_interval=self.settings.sweep_interval)
        self.api_keys.start()  # machines: coalesced last-used writes
        self.signing.start()
        await self.clients.start(sweep_interval=self.settings.sweep_interval)
        self.mail_sender.start()  # account lifecycle: delivers the outbox
        self.backchannel.start()  # OpenID Connect: logout tokens to the apps
        self._started = True

    async def stop(self) -> None:
        if self._started:
            await self.tokens.stop()  # tokens: ends revocation streams first
            await self.keys.stop()
            await self.id_token_keys.stop()
            await self.sessions.stop()
            await self.api_keys.stop()
            await self.signing.stop()
            await self.clients.stop()
            await self.mail_sender.stop()
            await self.backchannel.stop()
            await self.control.stop()
            await self.bus.close()
        await self.cluster.stop()
        await self.db.close()
