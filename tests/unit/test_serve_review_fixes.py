"""Serving review fixes through the in-process app (fake predictor, real SQLite store): the key's
rate comes first, /v1/usage is rate-limited and bounded, a request larger than the whole quota is
a 413, a redirect bills nothing, and versions follow the served-name rule."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_serve_security import App, open_app

from tunelab.serve.http_protocol import UVICORN_OPTIONS
from tunelab.serve.limits import Quota


@pytest.fixture
def api(tmp_path: Path) -> Iterator[App]:
    yield from open_app(tmp_path)


def test_requests_refused_before_admission_still_take_the_keys_rate(api: App) -> None:
    """An unknown model or a text over the size limit was answered (and written as a usage row)
    however fast a key sent them: the rate was only taken at admission."""
    _, token = api.access.create_key("slow", rate="1/min", quota=None)
    assert api.predict({"texts": ["a"]}, token, "nope").status_code == 404
    again = [
        api.predict({"texts": ["a"]}, token, "nope").status_code,
        api.predict({"texts": ["x" * 51]}, token).status_code,  # over max_chars_per_text=50: a 422
        api.predict({"texts": ["a"]}, token).status_code,
    ]
    assert again == [429, 429, 429]


def test_usage_takes_the_keys_rate_and_a_bounded_window(api: App) -> None:
    _, token = api.access.create_key("reader", rate="1/min", quota=None)
    headers = api.headers(token)
    first = api.client.get("/v1/usage", headers=headers)
    assert first.status_code == 200
    assert first.json()["since"] is not None  # the last 31 days, not every row the key ever had
    assert api.client.get("/v1/usage", headers=headers).status_code == 429
    wide = api.client.get(
        "/v1/usage", params={"since": "2020-01-01T00:00:00", "until": "2026-01-01T00:00:00"},
        headers=api.headers(api.token),
    )  # fmt: skip
    assert wide.status_code == 422 and "at most 366" in wide.json()["error"]["message"]


def test_usage_near_year_one_and_an_empty_window(api: App) -> None:
    """until in year 1 without since: a month before it overflowed into a 500; since after until
    answered zeros where `tunelab usage` refuses it."""
    headers = api.headers(api.token)
    early = api.client.get("/v1/usage", params={"until": "0001-01-10T00:00:00"}, headers=headers)
    assert early.status_code == 200, early.text
    backwards = api.client.get(
        "/v1/usage", params={"since": "2030-01-01T00:00:00", "until": "2020-01-01T00:00:00"}, headers=headers
    )
    assert backwards.status_code == 422 and "must be before until" in backwards.json()["error"]["message"]


def test_a_request_larger_than_the_whole_quota_is_413_without_retry_after(api: App) -> None:
    """It was a 429 with Retry-After: waiting for the reset could never let it through."""
    _, token = api.access.create_key("tiny", rate=None, quota=Quota.parse("3/day"))
    r = api.predict({"texts": ["a", "b", "c", "d"]}, token)
    assert r.status_code == 413 and r.json()["error"]["code"] == "over_quota_size"
    assert "Retry-After" not in r.headers
    assert api.predict({"texts": ["a", "b", "c"]}, token).status_code == 200


def test_a_trailing_slash_writes_no_usage_row(api: App) -> None:
    """/predict/ answered 307 with a usage row, and the followed request wrote a second one."""
    before = len(api.access.store.usage())
    r = api.client.post("/v1/models/topics/predict/", json={"texts": ["a"]}, headers=api.headers(api.token),
                        follow_redirects=False)  # fmt: skip
    assert r.status_code == 404
    assert len(api.access.store.usage()) == before


def test_a_trailing_slash_is_no_keyless_refusal(api: App, caplog: pytest.LogCaptureFixture) -> None:
    """A valid key's /predict/ (a 307 before any key is read) was counted in
    tunelab_refused_requests_total{reason="unauthenticated"} and logged as a refusal without a key."""
    with caplog.at_level(logging.INFO, logger="tunelab.serve.access"):
        r = api.client.post("/v1/models/topics/predict/", json={"texts": ["a"]},
                            headers=api.headers(api.token), follow_redirects=False)  # fmt: skip
    assert r.status_code == 404
    metrics = api.client.get("/metrics", headers=api.headers(api.admin)).text
    assert 'tunelab_refused_requests_total{reason="unauthenticated"} 0.0' in metrics
    assert not [rec for rec in caplog.records if "without a valid key" in rec.getMessage()]


@pytest.mark.parametrize("field", ["rate", "quota"])
def test_an_empty_rate_or_quota_over_http_is_refused_not_unlimited(api: App, field: str) -> None:
    """{"rate": ""} was falsy: the key was created unlimited, without a word."""
    r = api.client.post("/v1/keys", json={"name": "x", field: ""}, headers=api.headers(api.admin))
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert message.startswith(f"{field} ''") and "\n" not in message, message
    assert "x" not in [k.name for k in api.access.list_keys()]


@pytest.mark.parametrize("version", ["a/b", "x\ny", ""])
def test_a_version_loaded_over_http_follows_the_served_name_rule(api: App, version: str) -> None:
    body: dict[str, Any] = {"path": "/srv/secret/runs/topics", "version": version}
    r = api.client.post("/v1/models/topics/versions", json=body, headers=api.headers(api.admin))
    assert r.status_code == 422


def test_an_empty_version_is_refused_in_the_body_and_the_query_alike(api: App) -> None:
    """The body's "" served the active version; ?version= was a 404 for version ''."""
    body = api.predict({"texts": ["a"], "version": ""}, api.token)
    query = api.client.post("/v1/models/topics/predict?version=", json={"texts": ["a"]},
                            headers=api.headers(api.token))  # fmt: skip
    assert (body.status_code, query.status_code) == (422, 422)


@pytest.mark.parametrize("body", [b'{"texts":["\xff\xfe"]}', b'{"texts":' + b"[" * 2000])
def test_a_body_json_cannot_parse_at_all_is_named_malformed_json(api: App, body: bytes) -> None:
    """Bytes that are not UTF-8, or nesting past the parser's depth, were a bare 'bad_request:
    There was an error parsing the body'."""
    r = api.client.post(
        "/v1/models/topics/predict",
        content=body,
        headers={**api.headers(api.token), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json" and "UTF-8" in r.json()["error"]["message"]


def test_a_client_that_leaves_is_not_computed_for_or_billed(tmp_path: Path) -> None:
    """Under uvicorn a client's timeout did not cancel the route: every abandoned request still
    ran through the model and was written as a billed 200 against the quota."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn
    from test_serve_app import FakePredictor, settings

    from tunelab.serve.app import ServedModel, create_app

    class Slow(FakePredictor):
        calls = 0

        def predict_encoded(self, enc: Any, *args: Any, **kw: Any) -> Any:
            type(self).calls += 1
            time.sleep(0.6)
            return super().predict_encoded(enc, *args, **kw)

    app = create_app(settings(tmp_path, max_batch=1), [ServedModel("topics", "1", Slow(), "runs/x")],
                     loader=FakePredictor)  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **UVICORN_OPTIONS)
    server = uvicorn.Server(config)  # the protocol serve runs
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        access = app.state.tunelab.access
        key, token = access.create_key("gone", rate=None, quota=Quota.parse("100/day"))
        url = f"http://127.0.0.1:{port}/v1/models/topics/predict"

        def ask(i: int) -> None:
            with pytest.raises(httpx.TimeoutException):
                httpx.post(url, json={"texts": [f"text {i}"]}, headers={"Authorization": f"Bearer {token}"},
                           timeout=0.2)  # fmt: skip

        clients = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        deadline = time.monotonic() + 10
        while len(access.store.usage()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # what the model would still have run by now
        rows = access.store.usage()
        # every request that reached the route (on a loaded machine one may not even connect)
        assert rows and [r.status for r in rows] == [499] * len(rows)
        assert Slow.calls <= 1  # the one already running when its client left; the rest skipped
        day = access._now().replace(hour=0, minute=0, second=0, microsecond=0)
        assert access.store.texts_used(key.key_id, day) == 0
    finally:
        server.should_exit = True
        thread.join(10)


def test_keyless_requests_to_public_pages_are_not_logged_one_line_each(api: App, caplog) -> None:
    """GET /docs, /openapi.json and /redoc without a key logged an INFO line each: a flood anyone
    could send, where the README promises keyless requests one line per interval."""
    import logging

    with caplog.at_level(logging.INFO, logger="tunelab.serve.access"):
        for path in ("/docs", "/openapi.json", "/redoc") * 5:
            assert api.client.get(path).status_code == 200
    assert not [r for r in caplog.records if r.name == "tunelab.serve.access" and r.levelno >= logging.INFO]
    with caplog.at_level(logging.INFO, logger="tunelab.serve.access"):
        assert api.predict({"texts": ["a"]}, api.token).status_code == 200
    assert any("predict 200" in r.getMessage() for r in caplog.records)  # keyed requests still are


def test_a_keys_texts_in_flight_are_capped_and_other_keys_go_on(tmp_path: Path) -> None:
    """First come, first served, one key's big requests filled the queue and another key's
    1-text request waited seconds behind them; now past --max-in-flight a key gets a 429."""
    import threading
    import time

    from test_serve_security import GatedPredictor

    gated = GatedPredictor()
    opened = open_app(tmp_path, gated, max_in_flight_per_key=4)
    api = next(opened)
    try:
        _, busy = api.access.create_key("busy", rate=None, quota=None)
        held: list[int] = []
        first = threading.Thread(
            target=lambda: held.append(
                api.predict({"texts": ["hold a", "hold b", "hold c"]}, busy).status_code
            )
        )
        first.start()
        deadline = time.monotonic() + 30
        while api.app.state.tunelab.in_flight.held_total() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        over = api.predict({"texts": ["a", "b"]}, busy, model="other")  # 3 + 2 > 4, any model
        assert over.status_code == 429 and over.json()["error"]["code"] == "too_many_in_flight"
        assert "Retry-After" in over.headers
        assert api.predict({"texts": ["a"]}, busy, model="other").status_code == 200  # 3 + 1 fits
        assert api.predict({"texts": ["a", "b"]}, api.token, model="other").status_code == 200  # another key
    finally:
        gated.gate.set()
    first.join(60)
    assert held == [200]
    assert api.app.state.tunelab.in_flight.held_total() == 0  # nothing left counted
    assert api.predict({"texts": ["a", "b", "c", "d"]}, busy, model="other").status_code == 200
    opened.close()


def test_another_keys_text_runs_in_the_next_batch_not_behind_a_keys_queue(tmp_path: Path) -> None:
    """First come, first served, a key's one text waited behind every batch another key had queued
    (up to --max-in-flight texts); now each key has a lane and batches take the lanes in turn."""
    import threading
    import time

    from test_serve_security import GatedPredictor

    class Recording(GatedPredictor):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[list[str]] = []

        def predict_encoded(self, enc: Any, *args: Any, **kw: Any) -> list[dict[str, Any]]:
            out = super().predict_encoded(enc, *args, **kw)
            self.batches.append(list(enc.texts))
            return out

    model = Recording()
    opened = open_app(tmp_path, model, max_batch=1)
    api = next(opened)
    state = api.app.state.tunelab
    _, busy = api.access.create_key("busy", rate=None, quota=None)
    answers: list[int] = []

    def send(texts: list[str], token: str) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: answers.append(api.predict({"texts": texts}, token).status_code)
        )
        thread.start()
        return thread

    def wait_for_held(n: int) -> None:
        deadline = time.monotonic() + 30
        while state.in_flight.held_total() < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state.in_flight.held_total() >= n

    try:
        threads = [send(["hold a", "a1", "a2", "a3"], busy)]
        wait_for_held(4)  # "hold a" is running (held at the gate), a1-a3 queued behind it
        threads.append(send(["b"], api.token))
        wait_for_held(5)
        time.sleep(0.05)  # b is in its lane
    finally:
        model.gate.set()
    for thread in threads:
        thread.join(60)
    assert answers == [200, 200]
    assert model.batches == [["hold a"], ["b"], ["a1"], ["a2"], ["a3"]]
    opened.close()


def test_bodies_that_fail_the_schema_take_the_keys_rate_too(api: App) -> None:
    """FastAPI checks the body before the route runs, so `top_k: 0` or an empty texts list never
    reached the route's rate check: a key could send them at any speed, each a usage row."""
    _, token = api.access.create_key("schema", rate="1/min", quota=None)
    assert api.predict({"texts": ["a"], "top_k": 0}, token).status_code == 422
    later = [
        api.predict({"texts": ["a"], "top_k": 0}, token).status_code,
        api.predict({"texts": []}, token).status_code,
        api.client.post(
            "/v1/models/topics/predict?version=", json={"texts": ["a"]}, headers=api.headers(token)
        ).status_code,
    ]
    assert later == [429, 429, 429]


def test_a_client_that_leaves_while_uploading_is_a_499_not_malformed_json() -> None:
    """FastAPI answers a ClientDisconnect while reading the body as 'There was an error parsing the
    body', which the malformed-JSON wording would have blamed on the body."""
    import asyncio
    import json

    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request

    from tunelab.serve.error_handlers import _http

    request = Request({"type": "http", "method": "POST", "path": "/v1/models/topics/predict", "headers": []})
    try:
        try:
            raise ClientDisconnect()
        except ClientDisconnect as cause:
            raise HTTPException(status_code=400, detail="There was an error parsing the body") from cause
    except HTTPException as exc:
        response = asyncio.run(_http(request, exc))
    assert response.status_code == 499
    assert json.loads(response.body)["error"]["code"] == "client_closed"


def test_a_recommender_rebuilt_under_the_server_logs_once_not_a_traceback_per_event(caplog) -> None:
    import logging

    from tunelab.errors import RunError
    from tunelab.serve.recommenders import ServedRecommender

    class Replaced:
        items = ("i1",)

        def record_event(self, **event: Any) -> None:
            raise RunError("/srv/recs/shop was rebuilt or moved since this recommender was loaded")

    served = ServedRecommender("shop", Replaced(), "/srv/recs/shop")
    events = [{"user_id": "u", "item_id": "i1"}] * 5
    with caplog.at_level(logging.ERROR):
        first = served._record_events(events)
        second = served._record_events(events)
    assert [o.code for o in first + second] == ["internal_error"] * 10
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None and "rebuilt" in errors[0].getMessage()


def test_cancelling_the_handler_retrieves_its_works_outcome() -> None:
    """When the route itself was cancelled, the cancelled work's exception was never retrieved,
    and asyncio logged 'Task exception was never retrieved' when it was collected."""
    import asyncio
    import contextlib
    import gc

    from tunelab.serve.disconnect import unless_client_leaves

    reported: list[str] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx["message"]))

        async def work() -> None:
            try:
                await asyncio.sleep(10)
            finally:
                raise RuntimeError("the model failed while being cancelled")

        async def receive() -> dict:
            await asyncio.Event().wait()  # the client never leaves
            return {}

        handler = asyncio.ensure_future(unless_client_leaves(receive, work()))
        await asyncio.sleep(0.01)
        handler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await handler
        await asyncio.sleep(0.01)
        gc.collect()
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert not [m for m in reported if "never retrieved" in m]


def test_a_slow_load_does_not_hold_up_another_models_rollback() -> None:
    """load() held the registry's lock for the whole load: an activate of another model (a
    rollback) waited until the unrelated load finished."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from tunelab.serve.registry import ModelRegistry

    release = threading.Event()

    def loader(path: str) -> Any:
        assert release.wait(10)
        return SimpleNamespace(path=path)

    def batcher(*_: Any) -> Any:
        async def close() -> None:
            return None

        return SimpleNamespace(start=lambda: None, close=close)

    async def main() -> None:
        registry = ModelRegistry(batcher, loader=loader)
        registry.add("topics", "1", SimpleNamespace(), source="a")
        registry.add("topics", "2", SimpleNamespace(), source="b")
        loading = asyncio.create_task(registry.load("other", "runs/o"))
        await asyncio.sleep(0.05)
        assert registry.next_version("other") == "2"  # version 1 is taken by the load in progress
        try:
            rolled = await asyncio.wait_for(registry.activate("topics", "1"), 2)  # not after the load
        finally:
            release.set()
        assert rolled.version == "1" and registry.active("topics") == "1"
        assert (await loading).version == "1" and registry.active("other") == "1"

    asyncio.run(main())


def test_usage_reports_hold_at_most_two_database_connections_at_once(api: App) -> None:
    """Each /v1/usage aggregate held a database connection for its whole run: four at once took
    PostgreSQL's whole pool, and every other client's key check waited for one."""
    import threading
    import time

    from tunelab.serve.deps import REPORTS_AT_ONCE

    lock, release = threading.Lock(), threading.Event()
    running, most = [0], [0]
    summary = api.access.usage_summary

    def slow(*args: Any, **kwargs: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            assert release.wait(10)
            return summary(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    api.access.usage_summary = slow
    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(
                api.client.get("/v1/usage", headers=api.headers(api.token)).status_code
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    # Wait for the two to be in (a fixed 0.5 s sleep left 1.28x margin on a loaded machine), then
    # leave room for a third to get in if the limit let it.
    deadline = time.monotonic() + 30
    while most[0] < REPORTS_AT_ONCE and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    try:
        assert most[0] == REPORTS_AT_ONCE == 2
        assert api.predict({"texts": ["a"]}, api.token).status_code == 200  # others go on meanwhile
    finally:
        release.set()
        for t in threads:
            t.join(30)
    assert answers == [200] * 4


def test_usage_without_until_names_the_end_of_its_window(api: App) -> None:
    """ "until" was null: the default since came from "now", which the answer did not say."""
    from datetime import datetime, timedelta

    answer = api.client.get("/v1/usage", headers=api.headers(api.token)).json()
    since, until = datetime.fromisoformat(answer["since"]), datetime.fromisoformat(answer["until"])
    assert until - since == timedelta(days=31)
