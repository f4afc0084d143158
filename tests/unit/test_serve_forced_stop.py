"""A forced stop of ``tunelab serve`` (uvicorn's second Ctrl-C while it waits for requests to end).

uvicorn then cancels the requests still running: each reached its client as a plain-text
"Internal Server Error", wrote "Exception in ASGI application" and a traceback into the log, left
no usage row (usage rows no longer matched requests), and the lifespan's cancelled shutdown logged
a three-part traceback; the command exited 0 as after a clean stop.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from test_serve_app import FakePredictor, settings
from test_serve_app_cli import restore_logging  # noqa: F401 -- a fixture
from test_serve_security import GatedPredictor

from tunelab.cli.main import main
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.http_protocol import UVICORN_OPTIONS


class EnteredPredictor(GatedPredictor):
    """A ``GatedPredictor`` that says when a held forward has begun."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()

    def predict_encoded(self, enc: Any, *args: Any, **kw: Any) -> Any:
        if any("hold" in text for text in enc.texts):
            self.entered.set()
        return super().predict_encoded(enc, *args, **kw)


@pytest.mark.parametrize("stop", ["forced", "graceful wait run out"])
def test_a_request_cut_off_by_the_stop_is_a_metered_json_503(
    stop: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A second Ctrl-C, or one Ctrl-C or SIGTERM whose graceful wait ran out (uvicorn cancels the
    request then too, and the lifespan's shutdown runs): the same JSON 503, metered."""
    predictor = EnteredPredictor()
    served = [ServedModel("topics", "1", predictor, "runs/x")]
    app = create_app(settings(tmp_path), served, loader=FakePredictor)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **UVICORN_OPTIONS)
    config.timeout_graceful_shutdown = 0.5
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    answers: list[httpx.Response] = []
    try:
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        access = app.state.tunelab.access
        _, token = access.create_key("acme", rate=None, quota=None)

        def ask() -> None:
            answers.append(
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/models/topics/predict",
                    json={"texts": ["hold this"]},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
            )

        client = threading.Thread(target=ask)
        with caplog.at_level(logging.INFO):
            client.start()
            assert predictor.entered.wait(30)
            server.should_exit = True  # what uvicorn's first Ctrl-C or SIGTERM sets
            server.force_exit = stop == "forced"  # and its second Ctrl-C
            client.join(30)  # answered while the forward it was waiting for still runs
            predictor.gate.set()  # the forward ends: the server's shutdown can close its batcher
            thread.join(30)
    finally:
        predictor.gate.set()
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()
    [answer] = answers
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "shutting_down"
    assert "send the request again" in answer.json()["error"]["message"]
    assert app.state.tunelab.cut_off == 1
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == []
    assert "cut off by the server's stop: answered 503" in caplog.text
    from tunelab.serve.store import open_store

    store = open_store(None, tmp_path)
    try:
        assert [(row.key_name, row.status) for row in store.usage()] == [("acme", 503)]
    finally:
        store.close()


@pytest.mark.parametrize(("signalled", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_serve_exits_130_or_143_and_counts_the_requests_the_stop_cut_off(
    signalled: str,
    status: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,  # noqa: F811
) -> None:
    import signal

    import tunelab.inference

    def forced(app: Any, **kw: Any) -> None:
        app.state.tunelab.cut_off = 2  # as the middleware counts them
        if signalled == "SIGTERM":
            raise SystemExit(0)  # serve's SIGTERM handler, once uvicorn has stopped

    monkeypatch.setattr(tunelab.inference, "load", FakePredictor)
    monkeypatch.setattr(uvicorn, "run", forced)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # leave pytest's SIGTERM handler alone
    assert main(["serve", "m=fake", "--data-dir", str(tmp_path / "data")]) == status
    err = capsys.readouterr().err
    assert "stopped: 2 requests still running were answered 503 (shutting_down)" in err
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)  # a clean stop
    assert main(["serve", "m=fake", "--data-dir", str(tmp_path / "data")]) == 0
    assert "stopped:" not in capsys.readouterr().err
