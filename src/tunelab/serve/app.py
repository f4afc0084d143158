"""The FastAPI app: routers, error handlers, middleware and the lifespan that opens the store.

``create_app`` takes models that are already loaded (the CLI loads them before binding the port,
so a bad path fails fast) and builds one self-contained app: its own registry, metrics registry
and store, so tests can build many in one process.

    app = create_app(ServeSettings(), [ServedModel("intents", "1", tunelab.load("runs/a"), "runs/a")])
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from tunelab.serve.adapters import BasePool, shared_backend
from tunelab.serve.batcher import MicroBatcher
from tunelab.serve.bots import BotRegistry
from tunelab.serve.deps import REPORTS_AT_ONCE, KeyCheck, ServeState
from tunelab.serve.error_handlers import install_error_handlers
from tunelab.serve.in_flight import InFlightTexts
from tunelab.serve.metrics import ServeMetrics
from tunelab.serve.monitors import MonitorRegistry
from tunelab.serve.observe import ObserveMiddleware
from tunelab.serve.recommenders import RecommenderRegistry
from tunelab.serve.registry import ModelRegistry
from tunelab.serve.request_limits import BodySizeLimit
from tunelab.serve.responses import EVERY_OPERATION
from tunelab.serve.routes import health, keys, models, monitor, predict, recommend, support, usage
from tunelab.serve.settings import ServeSettings

DESCRIPTION = """Predict with fine-tuned tunelab models.

Send `Authorization: Bearer <token>` (or `X-API-Key: <token>`) with every request; create keys
with `tunelab keys create --name acme --rate 20/s --quota 100000/month`. Errors are JSON:
`{"error": {"code": ..., "message": ...}}`; every answer carries an `X-Request-ID`.
"""


DOCS_ASSETS = "/docs-assets"  # Swagger UI and ReDoc scripts, served by this app
# How long a stop's shutdown waits for the requests it cut off to send and meter their 503s
# before the store it opened is closed (each takes a usage-row write: milliseconds)
FORCED_STOP_WAIT_S = 5.0


@dataclass(frozen=True)
class ServedModel:
    """A loaded predictor and where it is served: ``name`` at ``version``."""

    name: str
    version: str
    predictor: Any
    source: str


def build_registry(
    settings: ServeSettings, metrics: ServeMetrics, loader: Callable[[str], Any] | None = None
) -> ModelRegistry:
    def make_batcher(name: str, version: str, predictor: Any) -> Any:
        observe = metrics.batch_observer(name, version)
        backend = shared_backend(predictor)
        if backend is not None:  # an adapter on a shared base: its group's batcher, shared
            return backend.host.pool.batcher(predictor, make_shared, on_batch=observe)
        return MicroBatcher(
            predictor,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            on_batch=observe,
            name=f"{name}@{version}",
        )

    def make_shared(host: Any, name: str) -> MicroBatcher:
        return MicroBatcher(host, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms, name=name)

    return ModelRegistry(make_batcher, loader)


def create_app(
    settings: ServeSettings,
    served: Iterable[ServedModel] = (),
    *,
    active: dict[str, str] | None = None,
    loader: Callable[[str], Any] | None = None,
    access: Any = None,
    store: Any = None,
    bots: Iterable[Any] = (),
    monitors: Iterable[Any] = (),
    recommenders: Iterable[Any] = (),
) -> FastAPI:
    """Build the app.

    Args:
        settings: limits, batching and storage settings.
        served: loaded models; per name the last one listed is active unless ``active`` says otherwise.
        loader: how ``POST /v1/models/{name}/versions`` loads a folder (default: a new
            ``BasePool``'s ``load``: adapter runs attach to a base already loaded by it; the CLI
            passes the pool it loaded ``served`` with, so admin loads share their bases too).
        access, store: an already open ``AccessControl`` and its store (tests); by default the
            lifespan opens ``settings.db`` / ``settings.data_dir`` and closes it on shutdown.
        bots: loaded support bots (``tunelab.apps.support.bot.Bot``), served under their names.
        monitors: ``(MonitorConfig, Classifier)`` pairs of sentiment monitors, served under their
            config's names. Their ``Monitor`` objects are made on ``store`` when it is given (so
            the CLI fails in one line before binding the port), else when the lifespan opens one
            (a monitor store then: ``tunelab.apps.monitor.open_monitor_store``).
        recommenders: loaded recommenders (``tunelab.apps.recommend.Recommender``) as
            ``(name, recommender)`` or ``(name, recommender, folder)``, served under ``name``; each
            keeps its own items and events (its folder), so they need nothing from ``store``.
    """
    if loader is None:
        loader = BasePool().load
    metrics = ServeMetrics()
    registry = build_registry(settings, metrics, loader)
    for model in served:
        registry.add(model.name, model.version, model.predictor, source=model.source)
    for name, version in (active or {}).items():
        registry.set_active(name, version)  # fails naming what is loaded
    bot_registry = BotRegistry(bots, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)
    # Usage reports and monitor reads share one limit: each holds a pooled connection for its query.
    long_reads = asyncio.Semaphore(REPORTS_AT_ONCE)
    monitor_registry = MonitorRegistry(
        monitors, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms, reads=long_reads
    )
    recommender_registry = RecommenderRegistry(recommenders)  # a duplicate name fails in one line
    if monitor_registry and store is not None:
        monitor_registry.open(store, alert_webhook=settings.alert_webhook)
    state = ServeState(
        settings=settings,
        registry=registry,
        metrics=metrics,
        store=store,
        access=access,
        bots=bot_registry,
        monitors=monitor_registry,
        recommenders=recommender_registry,
        in_flight=InFlightTexts(settings.max_in_flight_per_key),
        reports=long_reads,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = state.access is None
        if opened:
            from tunelab.serve.access import AccessControl

            state.store = await run_in_threadpool(_open_store, settings, bool(monitor_registry))
            state.access = AccessControl(state.store)
            if monitor_registry and not monitor_registry.opened:
                await run_in_threadpool(
                    monitor_registry.open, state.store, alert_webhook=settings.alert_webhook
                )
        _start_support(state)
        _start_monitors(state)
        recommender_registry.start()
        registry.start()
        forced = False
        try:
            yield
        except asyncio.CancelledError:
            # A forced stop (a second Ctrl-C): uvicorn skips the lifespan's shutdown and the event
            # loop's teardown cancels this task and the workers the closes below wait for, which
            # uvicorn logged as a three-part traceback. Each part is closed all the same (a batcher
            # takes its cancelled worker as stopped); `serve` says the stop (exit status 130).
            forced = True
        finally:
            closes = (
                registry.close,
                functools.partial(_close_support, state),
                functools.partial(_close_monitors, state),
                recommender_registry.close,
            )
            for close in closes:
                with contextlib.suppress(asyncio.CancelledError) if forced else contextlib.nullcontext():
                    await close()
            # Requests cancelled by the stop (a forced one, or uvicorn's 30 s graceful wait run
            # out) answer and meter their 503s before the store they write to is closed.
            if state.running:
                deadline = time.monotonic() + FORCED_STOP_WAIT_S
                while state.running and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
            if opened:
                state.store.close()
                state.access = None

    # /docs and /redoc from assets shipped in the fastapi-offline wheel, not a CDN: our users'
    # servers often have no internet, and a CDN-loaded Swagger UI is a blank page there.
    app = FastAPIOffline(
        title="tunelab",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        # /predict/ is the JSON 404 naming /predict, not Starlette's 307: its Location is built from
        # the request's scheme (http:// behind a TLS proxy on another host), and a 307 re-sends the
        # POST body, key and all, to it.
        redirect_slashes=False,
        responses=EVERY_OPERATION,  # 413 and 415 (middleware around every route), declared once
    )
    app.state.tunelab = state
    install_error_handlers(app)
    api = APIRouter(prefix="/v1")
    for module in (predict, models, keys, usage, support, monitor, recommend):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    # Innermost first: the key is checked before a route reads its body, after a body declared over
    # --max-body was refused (a constant either way); ObserveMiddleware, added last, is outermost.
    app.add_middleware(KeyCheck, state=state)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ObserveMiddleware, state=state)  # added last: outermost
    return app


def _start_support(state: ServeState) -> None:
    """Bots' batchers, the conversation purger and the webhook worker (on the open store)."""
    from tunelab.serve.conversations import Conversations

    state.conversations = Conversations(state.store, state.settings)
    state.bots.start()
    if state.bots:  # a server without bots has no conversations to purge
        state.conversations.start()
    if state.settings.handoff_webhook:
        from tunelab.serve.webhook import WebhookWorker

        state.webhook = WebhookWorker(state.store, state.settings, metrics=state.metrics)
        state.webhook.start()  # also delivers what an earlier run left in the outbox


async def _close_support(state: ServeState) -> None:
    await state.bots.close()
    if state.webhook is not None:
        await state.webhook.close()
        state.webhook = None
    if state.conversations is not None:
        await state.conversations.close()


def _open_store(settings: ServeSettings, monitors: bool) -> Any:
    """The server's store; with monitors, one that also has the monitor's tables."""
    if monitors:
        from tunelab.apps.monitor import open_monitor_store

        return open_monitor_store(settings.db, settings.data_dir)
    from tunelab.serve.store import open_store

    return open_store(settings.db, settings.data_dir)


def _start_monitors(state: ServeState) -> None:
    """Monitors' batchers and followers, their metrics, and the alert webhook (on the open stores)."""
    monitors = state.monitors
    if not monitors:
        return
    from tunelab.apps.monitor.webhook import AlertTarget, AlertWebhook

    settings, metrics = state.settings, state.metrics
    targets = [
        AlertTarget(m.monitor.store, m.name, m.webhook) for m in monitors.all() if m.webhook is not None
    ]
    if targets:
        state.alert_webhook = AlertWebhook(
            targets,
            secret=settings.webhook_secret,
            timeout_s=settings.webhook_timeout_s,
            backoff_s=settings.webhook_backoff_s,
            max_backoff_s=settings.webhook_max_backoff_s,
            poll_s=settings.webhook_poll_s,
            metrics=metrics,
        )
        state.alert_webhook.start()  # also delivers what an earlier run left pending
    loop = asyncio.get_running_loop()
    worker = state.alert_webhook

    def on_ingest(served: Any, results: list[Any]) -> None:
        """After a stored batch, in the thread that stored it: count, and wake the webhook."""
        stored = sum(r.stored for r in results)
        duplicates = sum(r.duplicates for r in results)
        skipped = sum(r.skipped for r in results)
        opened = sum(len(r.alerts) for r in results)
        if stored:
            metrics.monitor_documents.labels(served.name, "stored").inc(stored)
        if duplicates:
            metrics.monitor_documents.labels(served.name, "duplicate").inc(duplicates)
        if skipped:
            metrics.monitor_documents.labels(served.name, "skipped").inc(skipped)
        if opened:
            metrics.monitor_alerts.labels(served.name).inc(opened)
            if worker is not None and served.webhook is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed while a follower stopped
                    loop.call_soon_threadsafe(worker.wake)

    monitors.start(on_ingest, follow=settings.follow_sources)


async def _close_monitors(state: ServeState) -> None:
    # The webhook first: its POST in flight is recorded in a monitor's store, which closing the
    # monitors closes (a monitor with its own ``store:``). What the followers ingest while they
    # stop waits, pending, for the next start.
    if state.alert_webhook is not None:
        await state.alert_webhook.close()
        state.alert_webhook = None
    await state.monitors.close()


def _version() -> str:
    from tunelab import __version__

    return __version__


__all__ = ["ServedModel", "build_registry", "create_app"]
