"""The FastAPI app: routers, error handlers, middleware and the lifespan that opens the store.

``create_app`` takes models that are already loaded (the CLI loads them before binding the port,
so a bad path fails fast) and builds one self-contained app: its own registry, metrics registry
and store, so tests can build many in one process.

    app = create_app(ServeSettings(), [ServedModel("intents", "1", tunelab.load("runs/a"), "runs/a")])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from tunelab.serve.batcher import MicroBatcher
from tunelab.serve.bots import BotRegistry
from tunelab.serve.deps import ServeState
from tunelab.serve.error_handlers import install_error_handlers
from tunelab.serve.metrics import ServeMetrics
from tunelab.serve.observe import ObserveMiddleware
from tunelab.serve.registry import ModelRegistry
from tunelab.serve.request_limits import BodySizeLimit
from tunelab.serve.routes import health, keys, models, predict, support, usage
from tunelab.serve.settings import ServeSettings

DESCRIPTION = """Predict with fine-tuned tunelab models.

Send `Authorization: Bearer <token>` (or `X-API-Key: <token>`) with every request; create keys
with `tunelab keys create --name acme --rate 20/s --quota 100000/month`. Errors are JSON:
`{"error": {"code": ..., "message": ...}}`; every answer carries an `X-Request-ID`.
"""


DOCS_ASSETS = "/docs-assets"  # Swagger UI and ReDoc scripts, served by this app


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
    def make_batcher(name: str, version: str, predictor: Any) -> MicroBatcher:
        return MicroBatcher(
            predictor,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            on_batch=metrics.batch_observer(name, version),
            name=f"{name}@{version}",
        )

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
) -> FastAPI:
    """Build the app.

    Args:
        settings: limits, batching and storage settings.
        served: loaded models; per name the last one listed is active unless ``active`` says otherwise.
        loader: how ``POST /v1/models/{name}/versions`` loads a folder (default ``tunelab.load``).
        access, store: an already open ``AccessControl`` and its store (tests); by default the
            lifespan opens ``settings.db`` / ``settings.data_dir`` and closes it on shutdown.
        bots: loaded support bots (``tunelab.apps.support.bot.Bot``), served under their names.
    """
    if loader is None:
        from tunelab.predict import load as loader
    metrics = ServeMetrics()
    registry = build_registry(settings, metrics, loader)
    for model in served:
        registry.add(model.name, model.version, model.predictor, source=model.source)
    for name, version in (active or {}).items():
        registry.set_active(name, version)  # fails naming what is loaded
    bot_registry = BotRegistry(bots, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms)
    state = ServeState(
        settings=settings, registry=registry, metrics=metrics, store=store, access=access, bots=bot_registry
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = state.access is None
        if opened:
            from tunelab.serve.access import AccessControl
            from tunelab.serve.store import open_store

            state.store = await run_in_threadpool(open_store, settings.db, settings.data_dir)
            state.access = AccessControl(state.store)
        _start_support(state)
        registry.start()
        try:
            yield
        finally:
            await registry.close()
            await _close_support(state)
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
    )
    app.state.tunelab = state
    install_error_handlers(app)
    api = APIRouter(prefix="/v1")
    for module in (predict, models, keys, usage, support):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
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


def _version() -> str:
    from tunelab import __version__

    return __version__


__all__ = ["ServedModel", "build_registry", "create_app"]
