"""What a caller without a valid key can cost, who sees what, and exact quota accounting, through
the HTTP app in process (``TestClient``) with a fake predictor and a real SQLite store."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_serve_app import FakeEncoded, FakePredictor, Server, settings

from tunelab.serve import observe
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.limits import Quota


class App(Server):
    """``test_serve_app.Server`` with ``token`` positional: ``None`` sends no key."""

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def predict(self, body: Any, token: str | None, model: str = "topics") -> Any:
        return self.client.post(f"/v1/models/{model}/predict", json=body, headers=self.headers(token))


def open_app(tmp_path: Path, predictor: Any = None, **overrides: Any) -> Iterator[App]:
    """Serves ``topics`` (``predictor``, default a ``FakePredictor``) and ``other`` (a ``FakePredictor``)."""
    served = [
        ServedModel("topics", "1", predictor or FakePredictor(), "/srv/secret/runs/topics"),
        ServedModel("other", "1", FakePredictor(), "/srv/secret/runs/other"),
    ]
    data_dir = tmp_path / uuid.uuid4().hex[:8]  # a database of its own, beside other apps of the test
    data_dir.mkdir()
    app = create_app(settings(data_dir, **overrides), served, loader=FakePredictor)
    with TestClient(app, raise_server_exceptions=False) as client:
        access = app.state.tunelab.access
        _, admin = access.create_key("root", rate=None, quota=None, admin=True)
        _, token = access.create_key("acme", rate=None, quota=None)
        yield App(client, app, token, admin)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[App]:
    yield from open_app(tmp_path)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """``make_app(predictor=None, **settings)``: an app like ``api``, closed at the end of the test."""
    opened: list[Iterator[App]] = []

    def make(predictor: Any = None, **overrides: Any) -> App:
        opened.append(open_app(tmp_path, predictor, **overrides))
        return next(opened[-1])

    yield make
    for gen in opened:
        next(gen, None)


# -- quota accounting is exact (issue 8, item 4) ---------------------------------------------------------


class GatedPredictor(FakePredictor):
    """Holds a forward with a text containing "hold" until ``gate`` is set, so those requests stay
    admitted and in flight; other texts pass."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def predict_encoded(self, enc: FakeEncoded, *args: Any, **kw: Any) -> list[dict[str, Any]]:
        if any("hold" in text for text in enc.texts):
            assert self.gate.wait(60), "the test never opened the gate"
        return super().predict_encoded(enc, *args, **kw)


class Ledger:
    """An outside account of admitted texts: every successful ``admit`` adds its texts in flight,
    every ``record`` takes them out (into ``committed`` on 200). ``peak`` is the most ever admitted
    at one moment (committed + in flight)."""

    def __init__(self, access: Any) -> None:
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = {}
        self.committed = 0
        self.peak = 0
        admit, record = access.admit, access.record

        def admit_and_count(caller: Any, texts: int, *, request_id: str | None = None, **more: Any) -> Any:
            rid = admit(caller, texts, request_id=request_id, **more)
            with self.lock:
                self.in_flight[request_id or str(rid)] = texts
                self.peak = max(self.peak, self.committed + sum(self.in_flight.values()))
            return rid

        def record_and_count(**kw: Any) -> None:
            record(**kw)
            with self.lock:
                texts = self.in_flight.pop(kw["request_id"], 0)
                if kw["status"] == 200:
                    self.committed += texts

        access.admit, access.record = admit_and_count, record_and_count

    def admitted(self) -> int:
        with self.lock:
            return len(self.in_flight)


def in_threads(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once (a barrier releases them together) and return their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_concurrent_requests_of_every_outcome_never_admit_past_the_quota(
    make_app: Callable[..., App],
) -> None:
    """Three 2-text requests fill a 6-text quota and stay in flight; meanwhile 2-text requests
    answered 404 (model, version), 413, 422 and 429 must release none of their reservations, so
    three more 2-text requests are refused; at the end exactly the texts of the 200s are counted.
    (Requests that must be refused go to the ungated model ``other``, so a wrong admission shows as
    a quick 200, not as a wait behind the held batch.)"""
    gated = GatedPredictor()
    api = make_app(gated)
    small, token = api.access.create_key("small", rate=None, quota=Quota.parse("6/day"))
    ledger = Ledger(api.access)
    two = ["pizza", "goal"]

    def ask(body: dict[str, Any], model: str = "topics") -> Callable[[], int]:
        return lambda: api.predict(body, token, model=model).status_code

    try:
        first: list[Any] = []
        held = {"texts": ["hold pizza", "hold goal"]}
        filling = threading.Thread(target=lambda: first.extend(in_threads(*[ask(held)] * 3)))
        filling.start()
        deadline = time.monotonic() + 60
        while ledger.admitted() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.admitted() == 3, "the first three requests were not admitted"

        refused = in_threads(
            ask({"texts": two}, model="nope"),  # 404 unknown model
            ask({"texts": two, "version": "9"}, model="other"),  # 404 unknown version
            ask({"texts": two * 3}, model="other"),  # 413: 6 texts, max_texts_per_request=4
            ask({"texts": ["pizza", "x" * 51]}, model="other"),  # 422: text over max_chars_per_text=50
            ask({"texts": two}, model="other"),  # 429: quota full (in flight)
        )
        assert refused == [404, 404, 413, 422, 429]
        late = in_threads(*[ask({"texts": two}, model="other")] * 3)
        assert late == [429, 429, 429]  # nothing above was released by another request's row
    finally:
        gated.gate.set()  # also when an assertion above failed: let the held requests end
    filling.join(120)
    assert first == [200, 200, 200]
    assert ledger.peak <= 6
    day = api.access._now().replace(hour=0, minute=0, second=0, microsecond=0)
    assert api.access.store.texts_used(small.key_id, day) == 6
    assert ledger.committed == 6 and ledger.in_flight == {}
    assert api.predict({"texts": ["rain"]}, token, model="other").status_code == 429  # all 6 counted


# -- a request without a valid key costs a constant (issue 8, item 1) -------------------------------------


def metrics_text(api: App) -> str:
    r = api.client.get("/metrics", headers=api.headers(api.admin))
    assert r.status_code == 200, r.text
    return r.text


def keyless_request(api: App, i: int) -> int:
    """Request ``i`` of a flood: no key, a malformed one, a well-formed unknown one, or a body that
    fails before the key check, always to a fresh random model name."""
    name = f"m{uuid.uuid4().hex}"
    url = f"/v1/models/{name}/predict"
    kind = i % 5
    if kind == 0:
        return api.client.post(url, json={"texts": ["pizza"]}).status_code
    if kind == 1:
        return api.client.post(url, json={"texts": ["pizza"]}, headers=api.headers("nonsense")).status_code
    if kind == 2:
        forged = f"tl_{uuid.uuid4().hex[:8]}_" + "x" * 43
        return api.client.post(url, json={"texts": ["pizza"]}, headers=api.headers(forged)).status_code
    if kind == 3:
        headers = {"Content-Type": "application/json"}
        return api.client.post(url, content=b'{"texts": [', headers=headers).status_code
    return api.client.post(url, json={"texts": ["pizza " * 400]}).status_code  # over max_body_bytes


def test_keyless_requests_to_random_models_write_no_rows_and_no_series(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """2,000 requests without a valid key, each to a new model name: the usage table stays empty,
    ``/metrics`` stays the same size, and the log gets one line, not 2,000."""
    # The whole test in one interval (raising=False: the test also runs, and fails, without it).
    monkeypatch.setattr(observe, "REFUSAL_LOG_INTERVAL_S", 3600.0, raising=False)
    api = make_app()
    with caplog.at_level(logging.INFO, logger="tunelab.serve.access"):
        for i in range(10):  # every kind twice, and a scrape: the series that exist from now on
            keyless_request(api, i)
        metrics_text(api)
        before = metrics_text(api)
        statuses = Counter(keyless_request(api, i) for i in range(2000))
        after = metrics_text(api)
    # The key is checked before the body is read: bad JSON without a key is a 401 (it was a 400)
    assert statuses == {401: 1600, 413: 400}
    assert api.access.store.usage() == []  # nothing billed, nothing written
    assert len(after) <= len(before) + 100  # only counter values grew (a few digits)
    assert "_other" not in after and 'model="m' not in after
    assert 'tunelab_refused_requests_total{reason="missing_key"} 804.0' in after
    assert 'tunelab_refused_requests_total{reason="invalid_key"} 804.0' in after
    assert 'tunelab_refused_requests_total{reason="unauthenticated"} 402.0' in after
    lines = [r.getMessage() for r in caplog.records if r.name == "tunelab.serve.access"]
    refused = [line for line in lines if "without a valid key" in line]
    assert len(refused) == 1 and "missing_key=1" in refused[0]
    assert all("/metrics" in line for line in lines if line not in refused)  # nothing else per request


def test_keyless_requests_answered_before_the_key_check_share_the_refusal_log_line(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Unknown routes and bad bodies without a key were logged one INFO line each, with the whole
    path (418 KB for 200 requests)."""
    monkeypatch.setattr(observe, "REFUSAL_LOG_INTERVAL_S", 3600.0, raising=False)
    api = make_app()
    with caplog.at_level(logging.INFO, logger="tunelab.serve.access"):
        for i in range(100):
            assert (
                api.client.get(f"/x{i}/" + "A" * 4000, headers={"Authorization": "Bearer nope"}).status_code
                == 404
            )
            assert api.client.post(
                "/v1/keys", content=b"{bad", headers={"Content-Type": "application/json"}
            ).status_code in (400, 401)
    lines = [r.getMessage() for r in caplog.records if r.name == "tunelab.serve.access"]
    assert len(lines) <= 2, lines[:3]
    assert all(len(line) < 600 for line in lines)


def test_refusal_log_is_rate_limited_and_sums_up_what_it_skipped(caplog: pytest.LogCaptureFixture) -> None:
    from tunelab.serve.observe import RefusalLog

    now = [0.0]
    refusals = RefusalLog(logging.getLogger("tunelab.test.refusals"), interval_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="tunelab.test.refusals"):
        for i in range(1000):
            now[0] = i * 0.015  # 1000 refusals in 15 s
            refusals.refused("missing_key" if i % 2 else "invalid_key", "POST", "/v1/x", 401, f"id{i}")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "invalid_key=1;" in lines[0] and "id0" in lines[0]
    assert "in the last 10s" in lines[1] and "invalid_key=333, missing_key=334" in lines[1]


def test_refusals_by_a_revoked_key_are_counted_without_a_row(api: App) -> None:
    record, token = api.access.create_key("gone", rate=None, quota=None)
    api.access.revoke_key(record.key_id)
    assert api.predict({"texts": ["pizza"]}, token, model="anything").status_code == 403
    assert api.client.get("/v1/models", headers=api.headers(token)).status_code == 403
    assert api.access.store.usage() == []
    assert 'tunelab_refused_requests_total{reason="revoked_key"} 2.0' in metrics_text(api)


def test_authenticated_requests_for_unknown_models_share_one_label(api: App) -> None:
    for i in range(20):
        assert api.predict({"texts": ["pizza"]}, api.token, model=f"nope{i}").status_code == 404
    assert api.predict({"texts": ["pizza"]}, api.token).status_code == 200
    text = metrics_text(api)
    assert 'tunelab_requests_total{key="acme",model="_other",status="404",version="-"} 20.0' in text
    assert 'tunelab_requests_total{key="acme",model="topics",status="200",version="1"} 1.0' in text
    assert "nope" not in text
    assert len(api.access.store.usage()) == 21  # an authenticated key's requests are all billed


def test_without_auth_anonymous_requests_are_metered_but_bad_keys_are_not(
    make_app: Callable[..., App],
) -> None:
    api = make_app(require_keys=False)
    assert api.predict({"texts": ["pizza"]}, None).status_code == 200
    assert api.predict({"texts": ["pizza"]}, None, model="random-name").status_code == 404
    assert api.predict({"texts": ["pizza"]}, "nonsense", model="random-2").status_code == 401
    rows = api.access.store.usage()
    assert sorted((row.status, row.key_id) for row in rows) == [(200, None), (404, None)]
    text = metrics_text(api)
    assert 'tunelab_requests_total{key="-",model="_other",status="404",version="-"} 1.0' in text
    assert "random" not in text


def test_without_auth_keyless_refusals_of_key_routes_are_counted_and_logged_once(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Under ``--no-auth`` the routes that still take a key (``/v1/usage``, ``/v1/keys``) refused a
    keyless request with 401 ``missing_key``, but it was not counted as a refusal and each one wrote
    its own INFO line: anyone who could reach the port wrote the log at will."""
    monkeypatch.setattr(observe, "REFUSAL_LOG_INTERVAL_S", 3600.0, raising=False)
    api = make_app(require_keys=False)
    with caplog.at_level(logging.INFO, logger="tunelab.serve.access"):
        codes = [api.client.get("/v1/usage").status_code for _ in range(20)]
        codes += [api.client.get("/v1/keys").status_code for _ in range(20)]
    assert set(codes) == {401}
    assert api.access.store.usage() == []  # no row for a refused request
    assert 'tunelab_refused_requests_total{reason="missing_key"} 40.0' in metrics_text(api)
    lines = [r.getMessage() for r in caplog.records if r.name == "tunelab.serve.access"]
    assert len(lines) == 1 and "without a valid key" in lines[0], lines[:3]


def test_usage_rows_never_store_a_model_name_that_is_not_served(make_app: Callable[..., App]) -> None:
    """With ``--no-auth``, anonymous and keyed requests to 60 random model names are all metered,
    but the usage table holds one name for them all (``_other``), beside the served ones."""
    api = make_app(require_keys=False)
    for i in range(60):
        token = api.token if i % 2 else None
        assert api.predict({"texts": ["pizza"]}, token, model=f"r{uuid.uuid4().hex}").status_code == 404
    assert api.predict({"texts": ["pizza"]}, None).status_code == 200
    rows = api.access.store.usage()
    assert len(rows) == 61  # every request is still metered
    assert Counter(row.model for row in rows) == {"_other": 60, "topics": 1}


# -- /metrics names keys: admin key on the API port, or the --metrics-port listener (issue 8, item 3) ----


def test_metrics_on_the_api_port_need_an_admin_key(api: App) -> None:
    assert api.predict({"texts": ["pizza"]}, api.token).status_code == 200
    assert api.client.get("/metrics").status_code == 401
    user = api.client.get("/metrics", headers=api.headers(api.token))
    assert user.status_code == 403 and user.json()["error"]["code"] == "admin_required"
    assert "tunelab_" not in user.text
    admin = api.client.get("/metrics", headers=api.headers(api.admin))
    assert admin.status_code == 200 and 'key="acme"' in admin.text


def test_without_auth_metrics_still_need_an_admin_key(make_app: Callable[..., App]) -> None:
    api = make_app(require_keys=False)
    assert api.client.get("/metrics").status_code == 401


def test_the_metrics_port_serves_metrics_without_a_key(api: App) -> None:
    import httpx

    from tunelab.serve.metrics import MetricsListener

    assert api.predict({"texts": ["pizza"]}, api.token).status_code == 200
    with MetricsListener(api.app.state.tunelab.metrics, "127.0.0.1", 0) as listener:
        scraped = httpx.get(listener.url, timeout=10)
        assert scraped.status_code == 200
        assert (
            'tunelab_requests_total{key="acme",model="topics",status="200",version="1"} 1.0' in scraped.text
        )
    with pytest.raises(httpx.TransportError):
        httpx.get(listener.url, timeout=2)  # closed with the server


def test_a_taken_metrics_port_fails_in_one_line(api: App) -> None:
    import socket

    from tunelab.errors import ConfigError
    from tunelab.serve.metrics import MetricsListener

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}"):
            MetricsListener(api.app.state.tunelab.metrics, "127.0.0.1", port)


def test_serve_metrics_port_flag(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from tunelab.cli import serve_cmd
    from tunelab.cli.main import main

    parser = argparse.ArgumentParser()
    serve_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "runs/a", "--metrics-port", "9100"])
    settings = serve_cmd.build_settings(args)
    assert (settings.metrics_port, settings.metrics_host) == (9100, "127.0.0.1")  # type: ignore[attr-defined]
    assert main(["serve", "runs/a", "--port", "9100", "--metrics-port", "9100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --metrics-port 9100: use another port than --port"]
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--metrics-port" in capsys.readouterr().out


# -- no internals in error bodies (issue 8, item 5) -------------------------------------------------------

PG_URL = "postgresql://billing_admin:hunter2@db.internal:6543/billing"
PG_SECRETS = ("billing_admin", "hunter2", "db.internal", "6543", "billing", "10.1.2.3", "password")


def dead_postgres() -> Any:
    """A ``PostgresStore`` whose every transaction fails as psycopg fails when the server is away:
    its ``StoreError`` names ``user@host:port/dbname``, as the real one does."""
    import psycopg

    from tunelab.serve.store.postgres import PostgresStore, describe_url

    class DeadPool:
        def connection(self) -> Any:
            raise psycopg.OperationalError(
                'connection to server at "db.internal" (10.1.2.3), port 6543 failed: FATAL:  '
                'password authentication failed for user "billing_admin"'
            )

    store = PostgresStore.__new__(PostgresStore)
    store.url, store.where, store._errors, store._pool = (
        PG_URL,
        describe_url(PG_URL),
        psycopg.Error,
        DeadPool(),
    )
    return store


def test_a_database_error_never_returns_its_connection_string(
    api: App, caplog: pytest.LogCaptureFixture
) -> None:
    state = api.app.state.tunelab
    saved = state.store, api.access.store
    state.store = api.access.store = dead_postgres()
    try:
        with caplog.at_level(logging.INFO, logger="tunelab.serve"):
            answers = [
                api.client.get("/v1/usage", headers=api.headers(api.token)),
                api.predict({"texts": ["pizza"]}, api.token),
                api.client.get("/v1/keys", headers=api.headers(api.admin)),
                api.client.get("/readyz"),
            ]
    finally:
        state.store, api.access.store = saved
    assert [r.status_code for r in answers] == [503, 503, 503, 503]
    for r in answers[:3]:
        err = r.json()["error"]
        assert err["code"] == "store_unavailable" and r.headers["X-Request-ID"] in err["message"]
    assert answers[3].json()["checks"]["database"].startswith("unreachable")
    for r in answers:
        leaked = [s for s in (*PG_SECRETS, "Error", "psycopg", "PostgreSQL") if s in r.text]
        assert leaked == [], r.text
    assert "billing_admin@db.internal:6543/billing" in caplog.text  # the operator still learns where


def test_failed_readiness_probes_do_not_flood_the_log(api: App, caplog: pytest.LogCaptureFixture) -> None:
    """While the database is down, probes every second for a minute log one line; the next line,
    a minute on, says how many probes failed meanwhile."""
    state = api.app.state.tunelab
    now = [0.0]
    state.readiness_log.clock = lambda: now[0]
    saved = state.store
    state.store = dead_postgres()
    try:
        with caplog.at_level(logging.INFO, logger="tunelab.serve"):
            for second in range(60):
                now[0] = float(second)
                assert api.client.get("/readyz").status_code == 503
            first = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
            now[0] = 61.0
            assert api.client.get("/readyz").status_code == 503
    finally:
        state.store = saved
    lines = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(first) == 1 and "db.internal" in first[0] and "failed_probes=1;" in first[0]
    assert len(lines) == 2 and "failed_probes=60 in the last 61s" in lines[1]
    assert api.client.get("/readyz").status_code == 200


def test_model_sources_are_shown_to_admin_keys_only(api: App, make_app: Callable[..., App]) -> None:
    for token in (api.token, api.admin):
        listed = api.client.get("/v1/models", headers=api.headers(token))
        one = api.client.get("/v1/models/topics", headers=api.headers(token))
        assert listed.status_code == one.status_code == 200
        sources = [m["source"] for m in listed.json()["models"]] + [one.json()["source"]]
        sources += [v["source"] for m in listed.json()["models"] + [one.json()] for v in m["versions"]]
        if token == api.admin:
            assert sorted(set(sources)) == ["/srv/secret/runs/other", "/srv/secret/runs/topics"]
        else:
            assert set(sources) == {None} and "/srv/secret" not in listed.text + one.text
    anonymous = make_app(require_keys=False).client.get("/v1/models")
    assert anonymous.status_code == 200 and "/srv/secret" not in anonymous.text


class BrokenModel(FakePredictor):
    """Raises tunelab's own errors, with a server path in the message, on texts that ask for it."""

    def predict_encoded(self, enc: FakeEncoded, *args: Any, **kw: Any) -> list[dict[str, Any]]:
        from tunelab.errors import ConfigError, RunError

        if any("corrupt" in t for t in enc.texts):
            raise RunError("/srv/secret/runs/topics/weights/model.safetensors: truncated file")
        if any("misconfigured" in t for t in enc.texts):
            raise ConfigError("/srv/secret/runs/topics/config.json: model.pooling 'max' is not known")
        return super().predict_encoded(enc, *args, **kw)


@pytest.mark.parametrize("text", ["corrupt pizza", "misconfigured pizza", "explode pizza"])
def test_an_error_inside_a_model_reaches_the_client_as_a_bare_500(
    make_app: Callable[..., App], text: str, caplog: pytest.LogCaptureFixture
) -> None:
    api = make_app(BrokenModel())
    with caplog.at_level(logging.INFO, logger="tunelab.serve"):
        r = api.predict({"texts": [text]}, api.token)
    assert r.status_code == 500, r.text
    err = r.json()["error"]
    assert err == {
        "code": "internal_error",
        "message": f"internal server error (request id {r.headers['X-Request-ID']})",
    }
    for internal in ("/srv/secret", "truncated", "pooling", "Traceback", "Error", text):
        assert internal not in r.text
    assert r.headers["X-Request-ID"] in caplog.text and "Traceback" in caplog.text  # logged, in full
    assert api.predict({"texts": ["pizza"]}, api.token).status_code == 200  # the model still serves
    [failed, _] = sorted(api.access.store.usage(), key=lambda row: -row.status)
    assert failed.status == 500
