"""Prometheus metrics. Counters live at module level: one registry per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LOGINS = Counter("watchword_logins_total", "Sign-in attempts by result", ["result"])
AUTH_REJECTED = Counter(
    "watchword_auth_rejected_total", "Requests whose credential was refused", ["code"]
)
SESSION_CACHE_HITS = Gauge("watchword_session_cache_hits", "Session cache hits since start")
SESSION_CACHE_MISSES = Gauge("watchword_session_cache_misses", "Session cache misses since start")
SESSION_CACHE_SIZE = Gauge("watchword_session_cache_entries", "Sessions held in the cache")
REVOKED_SESSIONS = Gauge("watchword_revoked_sessions", "Session ids in the revocation set")
CONTROL_FEED_UP = Gauge("watchword_control_feed_up", "1 when the control feed is readable")
