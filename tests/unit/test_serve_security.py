"""What a caller without a valid key can cost, who sees what, and exact quota accounting, through
the HTTP app in process (``TestClient``) with a fake predictor and a real SQLite store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_serve_app import FakeEncoded, FakePredictor, settings

from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.limits import Quota


@dataclass
class App:
    client: TestClient
    app: FastAPI
    token: str
    admin: str

    @property
    def access(self) -> Any:
        return self.app.state.tunelab.access

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
    app = create_app(settings(tmp_path, **overrides), served, loader=FakePredictor)
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

    def predict_encoded(self, enc: FakeEncoded, **kw: Any) -> list[dict[str, Any]]:
        if any("hold" in text for text in enc.texts):
            assert self.gate.wait(60), "the test never opened the gate"
        return super().predict_encoded(enc, **kw)


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

        def admit_and_count(caller: Any, texts: int, *, request_id: str | None = None) -> Any:
            rid = admit(caller, texts, request_id=request_id)
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
