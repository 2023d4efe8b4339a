"""Health, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from watchword.domain.errors import StoreUnavailable
from watchword.web import metrics
from watchword.web.deps import container_of

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


HEALTHY = b'{"status":"ok"}'  # what FastAPI renders for the route above


async def healthz_endpoint(request: Request) -> Response:
    """The same answer as a plain Starlette endpoint (web/hotpath.py serves it)."""
    return Response(HEALTHY, media_type="application/json")


@router.get("/readyz", summary="Every store this node needs is reachable")
async def readyz(request: Request, verbose: int = 0) -> JSONResponse:
    container = container_of(request)
    checks: dict[str, dict[str, object]] = {}
    try:
        await container.db.ping()
        checks["database"] = {"ok": True}
    except StoreUnavailable as exc:
        checks["database"] = {"ok": False, "error": exc.message}
    checks["bus"] = {"ok": container.bus.healthy}
    checks["control_feed"] = {"ok": container.control.feed_healthy}
    # -- cluster: Redis, and the bus in detail ----------------------------------
    if container.cluster.enabled:
        checks["redis"] = await container.cluster.probe_redis()
        checks["bus"] = container.cluster.bus_state()
    # Without "required" a check must pass; Redis with the database fallback need not.
    ready = all(bool(c["ok"]) or not c.get("required", True) for c in checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "unavailable"}
    if verbose:
        body["checks"] = checks
        body["node"] = {
            "id": container.control.node_id,
            "session_cache_entries": len(container.session_cache),
            "revoked_sessions": len(container.control.revoked),
        }
        body["cluster"] = await container.cluster.view()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def prometheus(request: Request) -> Response:
    container = container_of(request)
    metrics.SESSION_CACHE_HITS.set(container.session_cache.hits)
    metrics.SESSION_CACHE_MISSES.set(container.session_cache.misses)
    metrics.SESSION_CACHE_SIZE.set(len(container.session_cache))
    metrics.REVOKED_SESSIONS.set(len(container.control.revoked))
    metrics.CONTROL_FEED_UP.set(1 if container.control.feed_healthy else 0)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
