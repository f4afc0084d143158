"""``/healthz`` (the process answers), ``/readyz`` (models loaded, database reachable), ``/metrics``
(admin key; ``--metrics-port`` serves it without one on a separate listener).

The probes also answer ``HEAD`` (the GET's status, no body), which load balancers and uptime
checks send; those operations stay out of the OpenAPI schema, where they would only repeat the GET.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tunelab.serve.deps import Admin, State
from tunelab.serve.responses import AUTH, error_responses
from tunelab.serve.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: 200 whenever the event loop answers."""
    return Health(status="ok")


@router.head("/healthz", include_in_schema=False)
async def healthz_head() -> Response:
    """Liveness for a HEAD probe: 200, no body."""
    return Response(status_code=200)


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(state: State) -> Response:
    """Readiness: 200 only when a model, bot, monitor or recommender is loaded and the database answers."""
    checks: dict[str, str] = {}
    names = state.registry.names()
    checks["models"] = f"{len(names)} loaded" if names else "none loaded"
    if state.bots:
        checks["bots"] = f"{len(state.bots)} loaded"
    healthy_monitors = len(state.monitors)
    if state.monitors:
        checks["monitors"] = f"{len(state.monitors)} loaded"
        for name in await _monitors_own_databases_down(state):
            checks[f"monitor {name} database"] = "unreachable (the reason is in the server log)"
            healthy_monitors -= 1
    if state.recommenders:
        checks["recommenders"] = f"{len(state.recommenders)} loaded"
    if state.access is None:
        checks["database"] = "not open"
    else:
        try:
            await run_in_threadpool(state.store.ping)  # a real round trip
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready; the reason goes to the log only
            # The reason may name user@host:port/db, so it goes to the log; rate-limited, since
            # the probes go on every few seconds for as long as the database is down.
            state.readiness_log.warning("failed_probes", "readiness: the database is unreachable: %s", exc)
            checks["database"] = "unreachable (the reason is in the server log)"
    ready = bool(names or state.bots or healthy_monitors or state.recommenders) and checks["database"] == "ok"
    body = Health(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


async def _monitors_own_databases_down(state: State) -> list[str]:
    """The served monitors with a ``store:`` of their own that does not answer a ping.

    Only the service database was pinged: a server whose one monitor's database was down answered
    ready (200) while every request to that monitor was a 503, so a load balancer kept sending it
    traffic. A monitor down counts as not loaded: ready needs something else that serves.
    """
    down = []
    for served in state.monitors.all():
        if served.config.store is None or served.monitor is None:
            continue  # in the service database, pinged above; or not opened yet
        try:
            await run_in_threadpool(served.monitor.store.ping)
        except Exception as exc:
            state.readiness_log.warning(
                "failed_monitor_probes",
                "readiness: monitor %s: its database is unreachable: %s",
                served.name,
                exc,
            )
            down.append(served.name)
    return down


@router.head("/readyz", include_in_schema=False)
async def readyz_head(state: State) -> Response:
    """Readiness for a HEAD probe: the status GET /readyz answers (200 or 503), no body."""
    answer = await readyz(state)
    return Response(status_code=answer.status_code)


@router.get("/metrics", response_class=Response, responses=error_responses(*AUTH))
async def metrics(state: State, admin: Admin) -> Response:
    """Prometheus text format: requests, latency and batch-size histograms, errors, texts, tokens.

    Needs an admin key (the metrics name keys, i.e. customers); ``--metrics-port`` serves the same
    text without a key on a separate port for Prometheus to scrape.
    """
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
