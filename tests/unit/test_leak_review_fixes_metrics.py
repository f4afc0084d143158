"""A retired model version's series leave ``/metrics`` (they grew with every load/unload cycle)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_serve_app import FakePredictor, Server, settings

from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.metrics import ServeMetrics


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    served = [
        ServedModel("topics", "1", FakePredictor(), "runs/fake"),
        ServedModel("other", "1", FakePredictor(), "runs/fake"),
    ]
    app = create_app(settings(tmp_path), served, loader=FakePredictor)
    with TestClient(app, raise_server_exceptions=False) as client:
        access = app.state.tunelab.access
        _, admin = access.create_key("root", rate=None, quota=None, admin=True)
        _, token = access.create_key("acme", rate=None, quota=None)
        yield Server(client, app, token, admin)


def metrics(server: Server) -> str:
    return server.client.get("/metrics", headers={"Authorization": f"Bearer {server.admin}"}).text


def series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def cycle(server: Server, model: str, version: str) -> None:
    """Load ``version`` active, answer with it, roll back to 1 and delete it, as the reviewer did."""
    admin = {"Authorization": f"Bearer {server.admin}"}
    body = {"path": f"runs/{version}", "version": version, "activate": True}
    assert server.client.post(f"/v1/models/{model}/versions", json=body, headers=admin).status_code == 201
    for _ in range(3):
        assert server.predict({"texts": ["pizza"]}, model=model).json()["version"] == version
    assert 'version="' + version + '"' in metrics(server)
    r = server.client.post(f"/v1/models/{model}/activate", json={"version": "1"}, headers=admin)
    assert r.status_code == 200
    assert server.client.delete(f"/v1/models/{model}/versions/{version}", headers=admin).status_code == 200


def test_deleting_a_version_removes_its_series_and_keeps_the_served_ones(server: Server) -> None:
    server.predict({"texts": ["pizza"]})
    server.predict({"texts": ["goal"]}, model="other")
    cycle(server, "topics", "w1")
    text = metrics(server)
    assert not [line for line in series(text) if 'version="w1"' in line]
    # the active version's series and the other model's stay
    assert 'tunelab_requests_total{key="acme",model="topics",status="200",version="1"} 1.0' in text
    assert 'tunelab_batch_size_count{model="topics",version="1"} 1.0' in text
    assert 'tunelab_requests_total{key="acme",model="other",status="200",version="1"} 1.0' in text
    assert 'tunelab_texts_total{key="acme",model="other",version="1"} 1.0' in text


def test_retiring_another_models_version_keeps_a_models_series(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.admin}"}
    r = server.client.post(
        "/v1/models/topics/versions",
        json={"path": "runs/v2", "version": "2", "activate": False},
        headers=admin,
    )
    assert r.status_code == 201
    server.predict({"texts": ["pizza"]}, params={"version": "2"})
    cycle(server, "other", "2")  # the same version name, of another model
    text = metrics(server)
    assert 'tunelab_requests_total{key="acme",model="topics",status="200",version="2"} 1.0' in text
    assert 'tunelab_batch_size_count{model="topics",version="2"} 1.0' in text
    assert 'tunelab_texts_total{key="acme",model="topics",version="2"} 1.0' in text
    assert not [line for line in series(text) if 'model="other"' in line and 'version="2"' in line]


def test_load_unload_cycles_level_off(server: Server) -> None:
    cycle(server, "topics", "w0")
    baseline = len(series(metrics(server)))
    for n in range(1, 4):
        cycle(server, "topics", f"w{n}")
    after = metrics(server)
    assert len(series(after)) == baseline
    assert not re.search(r'version="w\d"', after)


def test_a_version_loaded_again_keeps_counting_under_its_name(server: Server) -> None:
    cycle(server, "topics", "w1")
    admin = {"Authorization": f"Bearer {server.admin}"}
    body = {"path": "runs/w1", "version": "w1", "activate": False}
    assert server.client.post("/v1/models/topics/versions", json=body, headers=admin).status_code == 201
    server.predict({"texts": ["pizza"]}, params={"version": "w1"})
    text = metrics(server)
    assert 'tunelab_requests_total{key="acme",model="topics",status="200",version="w1"} 1.0' in text
    assert 'tunelab_batch_size_count{model="topics",version="w1"} 1.0' in text


def test_a_request_observed_after_its_version_was_retired_does_not_bring_its_series_back() -> None:
    m = ServeMetrics()
    m.batch_observer("topics", "1")
    m.batch_observer("topics", "2")(4)
    m.observe_predict(model="topics", version="2", key="acme", status=200, seconds=0.1, texts=4, tokens=9)
    m.retire_version("topics", "2")
    # its answer went out before the retire, its metrics after (the usage row came between)
    m.observe_predict(model="topics", version="2", key="acme", status=200, seconds=0.1, texts=4, tokens=9)
    text = m.render().decode()
    assert 'version="2"' not in text
    assert 'tunelab_requests_total{key="acme",model="topics",status="200",version="-"} 1.0' in text
    assert 'tunelab_batch_size_count{model="topics",version="1"} 0.0' in text
