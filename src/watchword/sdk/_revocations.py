"""Revocations pushed to the verifier: the in-memory list, and the feeds that fill it.

A ``RevocationSource`` consumes some feed (the server's SSE stream; a shared Redis bus could be
another) and reports to a ``RevocationSink``: a snapshot of the current revocations at connect,
then each revocation as it happens, and whether the feed is up. The verifier owns the sink (a
``RevocationList``) and refuses any token whose ``sid`` or ``jti`` it holds. Entries are kept
only until every token they could match has expired, so the list stays small.

The SSE feed (``GET {issuer}/v1/revocations/stream``)::

    event: snapshot
    data: {"sessions": {"<sid>": <until>}, "jtis": {"<jti>": <until>}, "cursor": <int>}

    event: revoked
    id: <int>
    data: {"kind": "session" | "jti", "id": "...", "until": <epoch seconds>}

    event: revoked_subject
    id: <int>
    data: {"kind": "client" | "user", "id": "...", "issued_before": <epoch s>, "until": <epoch s>}

The snapshot may also hold ``"clients"`` and ``"users"``: ``{"<id>": {"issued_before": <epoch
s>, "until": <epoch s>}}``. A disabled client, or a disabled or deleted user, revokes every
token issued to it at or before ``issued_before``.

    : ping                                   (every 15 s)

A dropped connection is reopened with jittered exponential backoff and ``Last-Event-ID``; the
server replays what was missed or sends a fresh snapshot. A stream that says something the
source cannot read is dropped and reopened *without* ``Last-Event-ID``, so the next snapshot
covers whatever was lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import socket
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError

__all__ = ["RevocationList", "RevocationSink", "RevocationSource", "SSERevocationSource"]

logger = logging.getLogger("watchword.sdk")

Credential = str | Callable[[], str]


@runtime_checkable
class RevocationSink(Protocol):
    """What a source reports to. Implementations must be safe to call from any thread."""

    def apply_snapshot(self, sessions: Mapping[str, float], jtis: Mapping[str, float]) -> None:
        """Every revocation still in force, as ``{id: until}``; merged, never forgetting one."""
        ...

    def revoke(self, kind: str, ident: str, until: float) -> None:
        """One revocation: ``kind`` is ``"session"`` (a ``sid``) or ``"jti"``."""
        ...

    def feed_up(self) -> None:
        """The feed is connected and in sync (a snapshot was applied or a stream resumed)."""
        ...

    def feed_down(self, silent_for: float = 0.0) -> None:
        """The feed is lost; its last sign of life was ``silent_for`` seconds ago."""
        ...


def report_refused(sink: RevocationSink, why: str) -> None:
    """Tell a sink that can hear it that the server refused the feed (401/403)."""
    refused = getattr(sink, "feed_refused", None)
    if callable(refused):
        refused(why)


def report_subject(
    sink: RevocationSink, kind: str, ident: str, issued_before: float, until: float
) -> None:
    """A disabled client or a disabled or deleted user, to a sink that can hold it."""
    revoke_subject = getattr(sink, "revoke_subject", None)
    if callable(revoke_subject):
        revoke_subject(kind, ident, issued_before, until)


@runtime_checkable
class RevocationSource(Protocol):
    """A revocation feed. ``run`` is called in a thread, ``arun`` as an asyncio task; each
    reconnects by itself until stopped (``stop`` set) or cancelled, and never raises."""

    def run(self, sink: RevocationSink, stop: threading.Event) -> None: ...

    async def arun(self, sink: RevocationSink) -> None: ...


class RevocationList:
    """The revoked session ids and token ids, with the health of the feed that fills them."""

    def __init__(self, clock: Callable[[], float], retention_slack: float = 60.0) -> None:
        self._clock = clock
        self._slack = retention_slack
        self.sessions: dict[str, float] = {}
        self.jtis: dict[str, float] = {}
        # (kind "client" | "user", id) -> (issued_before, until)
        self.subjects: dict[tuple[str, str], tuple[float, float]] = {}
        self.refused: str | None = None
        self.settled = threading.Event()  # synced once, or refused
        self._healthy = False
        self._last_good: float | None = None
        self._next_prune = 0.0
        self.synced = threading.Event()

    # -- the sink side ------------------------------------------------------------------------

    def apply_snapshot(self, sessions: Mapping[str, float], jtis: Mapping[str, float]) -> None:
        for sid, until in sessions.items():
            self._put(self.sessions, sid, until)
        for jti, until in jtis.items():
            self._put(self.jtis, jti, until)
        self._prune()

    def revoke(self, kind: str, ident: str, until: float) -> None:
        self._put(self.sessions if kind == "session" else self.jtis, ident, until)
        self._prune()

    def revoke_subject(self, kind: str, ident: str, issued_before: float, until: float) -> None:
        before, kept = self.subjects.get((kind, ident), (-math.inf, -math.inf))
        self.subjects[(kind, ident)] = (max(before, issued_before), max(kept, until))
        self._prune()

    def feed_refused(self, why: str) -> None:
        self.refused = why
        self.feed_down()
        self.settled.set()

    def feed_up(self) -> None:
        self._healthy = True
        self.refused = None
        self._last_good = self._clock()
        self.synced.set()
        self.settled.set()

    def feed_down(self, silent_for: float = 0.0) -> None:
        if self._healthy:
            self._healthy = False
            self._last_good = self._clock() - max(0.0, silent_for)

    # -- the verifier side --------------------------------------------------------------------

    def revoked(
        self,
        sid: str | None,
        jti: str,
        *,
        subject: str | None = None,
        client_id: str | None = None,
        issued_at: float | None = None,
    ) -> str | None:
        """Why this token is revoked (``"session"``, ``"token"``, ``"client"``, ``"user"``),
        or None. A client token's ``client_id`` names its client; a user token's
        ``subject`` (with a ``sid``) names its user."""
        if sid is not None and sid in self.sessions:
            return "session"
        if jti in self.jtis:
            return "token"
        if self.subjects and issued_at is not None:
            if client_id is not None and self._issued_before("client", client_id, issued_at):
                return "client"
            if (
                subject is not None
                and (sid is not None or client_id is None)
                and self._issued_before("user", subject, issued_at)
            ):
                return "user"
        return None

    def _issued_before(self, kind: str, ident: str, issued_at: float) -> bool:
        entry = self.subjects.get((kind, ident))
        return entry is not None and issued_at <= entry[0]

    @property
    def healthy(self) -> bool:
        """True while the feed is connected and in sync."""
        return self._healthy

    @property
    def staleness(self) -> float:
        """0 while the feed is up; seconds since its last sign of life when down; ``inf``
        before it was ever in sync."""
        if self._healthy:
            return 0.0
        if self._last_good is None:
            return math.inf
        return max(0.0, self._clock() - self._last_good)

    def _put(self, table: dict[str, float], ident: str, until: float) -> None:
        if until > table.get(ident, -math.inf):
            table[ident] = until

    def _prune(self) -> None:
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + 30.0
        horizon = now - self._slack
        for table in (self.sessions, self.jtis):
            for ident, until in list(table.items()):
                if until < horizon:
                    table.pop(ident, None)
        for key, (_, until) in list(self.subjects.items()):
            if until < horizon:
                self.subjects.pop(key, None)


class FeedError(Exception):
    """The stream said something this source cannot trust; reconnect for a new snapshot."""


class FeedRefused(Exception):
    """The server did not open a stream (status or content type); resume later as before."""


class SSERevocationSource:
    """The Watchword server's revocation stream over Server-Sent Events.

    ``credential`` is a bearer credential holding ``revocations:read`` (an API key or a client
    token), or a callable returning one: it is called again at every reconnect, so it may
    rotate. Example::

        source = SSERevocationSource(
            "https://auth.example.com/v1/revocations/stream", credential=os.environ["WW_KEY"]
        )
        verifier = Verifier(issuer="https://auth.example.com", revocations=source)
    """

    def __init__(
        self,
        url: str,
        credential: Credential,
        *,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        read_timeout: float = 45.0,
        connect_timeout: float = 10.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if read_timeout <= 0 or backoff_initial < 0 or backoff_max < backoff_initial:
            raise ValueError("timeouts must be positive and backoff_max >= backoff_initial")
        self.url = url
        self._credential = credential
        self._http = http_client
        self._ahttp = async_http_client
        self._timeout = httpx.Timeout(connect_timeout, read=read_timeout)
        self._read_timeout = read_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rng = rng
        self.last_event_id: str | None = None
        self.connections = 0
        self.failures = 0  # in a row; back to 0 once a stream is in sync
        self.last_error: str | None = None
        self._server_retry: float | None = None
        self._response: httpx.Response | None = None

    # -- thread ---------------------------------------------------------------------------------

    def run(self, sink: RevocationSink, stop: threading.Event) -> None:
        owned = self._http is None
        client = self._http or httpx.Client(timeout=self._timeout)
        delay = self._backoff_initial
        try:
            while not stop.is_set():
                synced = False
                try:
                    synced = self._stream(client, sink, stop)
                except httpx.ReadTimeout:
                    self._lost(sink, "no data within the read timeout", self._read_timeout)
                except Exception as exc:  # a feed must outlive any single failure
                    if stop.is_set():
                        break
                    self._lost(sink, self._describe(exc), 0.0, exc)
                else:
                    if stop.is_set():
                        break
                    self._lost(sink, "the server closed the stream", 0.0)
                delay = self._backoff_initial if synced else min(self._backoff_max, delay * 2)
                if stop.wait(self._jittered(delay)):
                    break
        finally:
            if owned:
                client.close()

    def _stream(self, client: httpx.Client, sink: RevocationSink, stop: threading.Event) -> bool:
        synced = False
        with client.stream("GET", self.url, headers=self._headers(), timeout=self._timeout) as r:
            self._response = r
            try:
                if r.status_code != 200:
                    r.read()
                resumed = self._opened(r, sink)
                synced = resumed
                for sse in EventSource(r).iter_sse():
                    synced = self._event(sse, sink) or synced
                    if stop.is_set():
                        break
            finally:
                self._response = None
        return synced

    def interrupt(self) -> None:
        """Close the stream a thread is blocked on, so ``run`` notices its stop event now."""
        response = self._response
        if response is None:
            return
        try:
            # httpx exposes the connection's socket (the "network_stream" extension): shutting
            # it down ends the blocked read at once, where closing the response would not.
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            else:
                response.close()
        except Exception:  # best effort: the thread also stops at its next event or ping
            logger.debug("revocation feed: interrupting the stream failed", exc_info=True)

    # -- asyncio --------------------------------------------------------------------------------

    async def arun(self, sink: RevocationSink) -> None:
        owned = self._ahttp is None
        client = self._ahttp or httpx.AsyncClient(timeout=self._timeout)
        delay = self._backoff_initial
        try:
            while True:
                synced = False
                try:
                    synced = await self._astream(client, sink)
                except httpx.ReadTimeout:
                    self._lost(sink, "no data within the read timeout", self._read_timeout)
                except Exception as exc:  # a feed must outlive any single failure
                    self._lost(sink, self._describe(exc), 0.0, exc)
                else:
                    self._lost(sink, "the server closed the stream", 0.0)
                delay = self._backoff_initial if synced else min(self._backoff_max, delay * 2)
                await asyncio.sleep(self._jittered(delay))
        finally:
            if owned:
                await client.aclose()

    async def _astream(self, client: httpx.AsyncClient, sink: RevocationSink) -> bool:
        synced = False
        async with client.stream(
            "GET", self.url, headers=self._headers(), timeout=self._timeout
        ) as response:
            if response.status_code != 200:
                await response.aread()
            synced = self._opened(response, sink)
            async for sse in EventSource(response).aiter_sse():
                synced = self._event(sse, sink) or synced
        return synced

    # -- shared -------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        credential = self._credential() if callable(self._credential) else self._credential
        headers = {
            "Authorization": f"Bearer {credential}",
            "Accept": "text/event-stream",
            "Cache-Control": "no-store",
        }
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def _opened(self, response: httpx.Response, sink: RevocationSink) -> bool:
        """Checks the answer; True when it resumes a stream we were in sync with."""
        self.connections += 1
        if response.status_code in (401, 403):
            why = (
                f"the server refused the revocation feed's credential (HTTP "
                f"{response.status_code}{_error_code(response)}): it must be a valid API key "
                "or client token holding the revocations:read scope"
            )
            report_refused(sink, why)
            raise FeedRefused(why)
        if response.status_code != 200:
            raise FeedRefused(f"the revocation stream answered HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if content_type != "text/event-stream":
            raise FeedRefused(f"the revocation stream answered {content_type or 'no'} content")
        if self.last_event_id is not None:
            sink.feed_up()
            self.failures = 0
            return True
        return False

    def _event(self, sse: ServerSentEvent, sink: RevocationSink) -> bool:
        """Applies one event; True once the stream is in sync."""
        if sse.retry is not None:
            self._server_retry = min(self._backoff_max, max(0.0, sse.retry / 1000))
        if sse.event == "snapshot":
            data = self._json(sse.data)
            sessions = _until_map(data.get("sessions", {}), "sessions")
            jtis = _until_map(data.get("jtis", {}), "jtis")
            cursor = data.get("cursor")
            if cursor is not None and (not isinstance(cursor, int) or isinstance(cursor, bool)):
                raise FeedError("the snapshot's cursor is not an integer")
            sink.apply_snapshot(sessions, jtis)
            for table_kind, name in (("client", "clients"), ("user", "users")):
                for subject, bounds in _subject_map(data.get(name, {}), name).items():
                    report_subject(sink, table_kind, subject, *bounds)
            self.failures = 0
            event_id = sse.id or (str(cursor) if cursor is not None else None)
            self.last_event_id = event_id or None
            sink.feed_up()
            return True
        if sse.event == "revoked":
            data = self._json(sse.data)
            kind, ident, until = data.get("kind"), data.get("id"), data.get("until")
            if kind not in ("session", "jti") or not isinstance(ident, str) or not ident:
                raise FeedError("a revoked event without a valid kind and id")
            sink.revoke(kind, ident, _until(until))
            if sse.id:
                self.last_event_id = sse.id
            return False
        if sse.event == "revoked_subject":
            data = self._json(sse.data)
            subject_kind, named = data.get("kind"), data.get("id")
            if subject_kind not in ("client", "user") or not isinstance(named, str) or not named:
                raise FeedError("a revoked_subject event without a valid kind and id")
            report_subject(
                sink,
                str(subject_kind),
                named,
                _until(data.get("issued_before")),
                _until(data.get("until")),
            )
            if sse.id:
                self.last_event_id = sse.id
            return False
        return False

    def _json(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FeedError("an event whose data is not JSON") from exc
        if not isinstance(data, dict):
            raise FeedError("an event whose data is not a JSON object")
        return data

    def _lost(
        self, sink: RevocationSink, why: str, silent_for: float, exc: BaseException | None = None
    ) -> None:
        sink.feed_down(silent_for)
        self.last_error = why
        self.failures += 1
        if isinstance(exc, FeedError):
            # We may have missed a revocation we cannot name: start over from a snapshot.
            self.last_event_id = None
        level = logging.WARNING if self.failures % 10 == 1 else logging.DEBUG
        logger.log(level, "revocation feed %s: %s; reconnecting", self.url, why)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, FeedError | FeedRefused | SSEError):
            return str(exc)
        return f"{type(exc).__name__}: {exc}"

    def _jittered(self, delay: float) -> float:
        base = self._server_retry if self._server_retry is not None else delay
        base = max(base, delay)
        return base / 2 + self._rng() * base / 2


def _until(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FeedError("a revocation without a numeric 'until'")
    return float(value)


def _error_code(response: httpx.Response) -> str:
    """``, invalid_api_key`` from a JSON error body, or nothing."""
    try:
        code = response.json().get("error")
    except Exception:
        return ""
    return f", {code}" if isinstance(code, str) and code.isidentifier() else ""


def _subject_map(value: object, name: str) -> dict[str, tuple[float, float]]:
    if not isinstance(value, dict):
        raise FeedError(f"the snapshot's {name} is not an object")
    result: dict[str, tuple[float, float]] = {}
    for ident, entry in value.items():
        if not isinstance(ident, str) or not ident or not isinstance(entry, dict):
            raise FeedError(f"the snapshot's {name} has an invalid entry")
        result[ident] = (_until(entry.get("issued_before")), _until(entry.get("until")))
    return result


def _until_map(value: object, name: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise FeedError(f"the snapshot's {name} is not an object")
    result: dict[str, float] = {}
    for ident, until in value.items():
        if not isinstance(ident, str) or not ident:
            raise FeedError(f"the snapshot's {name} has an empty id")
        result[ident] = _until(until)
    return result


if TYPE_CHECKING:  # mypy checks that the implementations keep their protocols
    _source: type[RevocationSource] = SSERevocationSource
    _sink: type[RevocationSink] = RevocationList
