"""Prometheus metrics. Counters live at module level: one registry per process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LOGINS = Counter("watchword_logins_total", "Sign-in attempts by result", ["result"])
AUTH_REJECTED = Counter(
    "watchword_auth_rejected_total", "Requests whose credential was refused", ["code"]
)
SESSION_CACHE_HITS = Gauge("watchword_session_cache_hits", "Session cache hits since start")
SESSION_CACHE_MISSES = Gauge("watchword_session_cache_misses", "Session cache misses since start")
SESSION_CACHE_SIZE = Gauge("watchword_session_cache_entries", "Sessions held in the cache")
REVOKED_SESSIONS = Gauge("watchword_revoked_sessions", "Session ids in the revocation set")
CONTROL_FEED_UP = Gauge("watchword_control_feed_up", "1 when the control feed is readable")
# Stalls seen from inside the server (web/loop_lag.py): a slow p99 measured outside with no
# lag here was not the event loop's.
LOOP_LAG = Histogram(
    "watchword_event_loop_lag_seconds",
    "How late a timer ran on the event loop",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
GC_FROZEN = Counter(
    "watchword_gc_frozen_objects_total",
    "Objects frozen out of the garbage collector after the full collections that kept them",
)
GC_COMPACTIONS = Counter(
    "watchword_gc_compactions_total", "Frozen objects unfrozen and collected again"
)
LOOP_LAG_MAX = Gauge("watchword_event_loop_lag_max_seconds", "The longest lag seen since start")
