"""Prometheus metrics of one app, in its own ``CollectorRegistry``.

A per-app registry (not the process-wide default) lets tests build many apps in one process
without "duplicated timeseries" errors, and keeps ``/metrics`` to what this server measures.

Label values come only from the server, never from a caller: model names and versions that are
served (any other name asked for is ``OTHER``), names of authenticated keys, statuses and route
templates. Every label set is kept for the life of the process, so a caller who could choose label
values could grow ``/metrics`` (and Prometheus) without bound. Requests refused by the key check,
or whose key could not be looked up, are counted in ``tunelab_refused_requests`` by reason alone.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tunelab.errors import ConfigError

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
OTHER = "_other"  # the model label of a predict request for a name that is not served
REFUSAL_REASONS = ("missing_key", "invalid_key", "revoked_key", "unauthenticated", "store_unavailable")
WEBHOOK_OUTCOMES = ("delivered", "failed", "gave_up")  # gave_up: the last attempt allowed failed


class ServeMetrics:
    """The counters and histograms the middleware, routes and batchers update."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tunelab_requests",
            "Predict requests by outcome",
            ["model", "version", "key", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tunelab_request_latency_seconds",
            "Predict request latency, arrival to response",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tunelab_batch_size",
            "Texts per model forward that succeeded (a failed batch's retries are counted, it is not)",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "tunelab_errors", "Predict requests answered >= 400", ["model", "status"], registry=r
        )
        self.texts = Counter("tunelab_texts", "Texts predicted", ["model", "version", "key"], registry=r)
        self.tokens = Counter("tunelab_tokens", "Tokens predicted", ["model", "version", "key"], registry=r)
        self.http = Counter("tunelab_http_requests", "All HTTP requests", ["route", "status"], registry=r)
        self.in_flight = Gauge("tunelab_in_flight_requests", "Requests being answered", registry=r)
        self.refused = Counter(
            "tunelab_refused_requests",
            "Requests without a valid key, by reason: refused by the key check (missing_key, "
            "invalid_key, revoked_key), a predict request answered before it (unauthenticated), or "
            "one whose key could not be looked up, the database being unavailable (store_unavailable)",
            ["reason"],
            registry=r,
        )
        for reason in REFUSAL_REASONS:
            self.refused.labels(reason)  # present at 0, so a scrape sees every reason from the start
        # Applications (support bots, monitors, recommenders): their own series, so an app named like a model
        # never shares one with it; ``bot`` is the app's served instance (a bot's or a monitor's
        # name) or OTHER, like ``model`` above.
        self.app_requests = Counter(
            "tunelab_app_requests",
            "Application requests by outcome",
            ["app", "bot", "key", "status"],
            registry=r,
        )
        self.app_latency = Histogram(
            "tunelab_app_request_latency_seconds",
            "Application request latency, arrival to response",
            ["app", "bot"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.app_replies = Counter(
            "tunelab_app_replies",
            "Support bot replies by kind (answer, knowledge, handoff)",
            ["app", "bot", "kind"],
            registry=r,
        )
        self.webhook = Counter(
            "tunelab_webhook_deliveries",
            "Hand-off webhook attempts by outcome (delivered, failed and retried later, gave_up)",
            ["outcome"],
            registry=r,
        )
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook.labels(outcome)
        # Sentiment monitors: ``monitor`` is a served monitor's name, nothing else.
        self.monitor_documents = Counter(
            "tunelab_monitor_documents",
            "Documents a served monitor ingested (HTTP and followed sources), by outcome: stored, "
            "duplicate (an id stored before: not counted again), skipped (a followed or folder source's "
            "malformed line)",
            ["monitor", "outcome"],
            registry=r,
        )
        self.monitor_alerts = Counter(
            "tunelab_monitor_alerts", "Alerts a served monitor opened", ["monitor"], registry=r
        )
        self.alert_webhook = Counter(
            "tunelab_alert_webhook_deliveries",
            "Monitor alert webhook attempts by outcome (delivered, failed and retried later; never given up)",
            ["outcome"],
            registry=r,
        )
        for outcome in WEBHOOK_OUTCOMES[:2]:
            self.alert_webhook.labels(outcome)

        # Recommenders: ``recommender`` is a served one's name, nothing else; never a user's id.
        self.recommend_rankings = Counter(
            "tunelab_recommend_rankings",
            "Rankings a served recommender answered, by fallback (true: an unknown user got popular items)",
            ["recommender", "fallback"],
            registry=r,
        )
        self.recommend_items = Counter(
            "tunelab_recommend_items", "Items added to a served recommender", ["recommender"], registry=r
        )
        self.recommend_events = Counter(
            "tunelab_recommend_events",
            "Events sent to a served recommender, by outcome: recorded, unknown_item, invalid_event, "
            "internal_error",
            ["recommender", "outcome"],
            registry=r,
        )

    def observe_predict(
        self, *, model: str, version: str, key: str, status: int, seconds: float, texts: int, tokens: int
    ) -> None:
        self.requests.labels(model, version, key, str(status)).inc()
        self.latency.labels(model, version).observe(seconds)
        if status >= 400:
            self.errors.labels(model, str(status)).inc()
        elif texts:
            self.texts.labels(model, version, key).inc(texts)
            self.tokens.labels(model, version, key).inc(tokens)

    def observe_app(
        self, *, app: str, bot: str, key: str, status: int, seconds: float, kind: str | None
    ) -> None:
        self.app_requests.labels(app, bot, key, str(status)).inc()
        self.app_latency.labels(app, bot).observe(seconds)
        if status == 200 and kind:
            self.app_replies.labels(app, bot, kind).inc()

    def observe_refusal(self, reason: str) -> None:
        self.refused.labels(reason if reason in REFUSAL_REASONS else "unauthenticated").inc()

    def batch_observer(self, model: str, version: str):
        hist = self.batch_size.labels(model, version)
        return hist.observe

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsListener:
    """The ``--metrics-port`` listener: ``/metrics`` without a key, on its own port (a thread).

    Prometheus' convention for internal scraping: the metrics carry key (customer) names, so they
    live on a port that only the monitoring network reaches, not on the API port.
    """

    def __init__(self, metrics: ServeMetrics, host: str, port: int) -> None:
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "pick a free port, different from --port"
            ) from None
        self.host, self.port = host, int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> MetricsListener:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["OTHER", "REFUSAL_REASONS", "WEBHOOK_OUTCOMES", "MetricsListener", "ServeMetrics"]
