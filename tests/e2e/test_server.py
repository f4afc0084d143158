"""``tunelab serve`` in a subprocess over real HTTP, with the default SQLite store: keys, limits,
errors, a version switch under load, exact usage under 32 concurrent clients, metrics, shutdown."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_helpers import ServerProcess, predict_many, run_cli

pytestmark = pytest.mark.e2e

KEYS: dict[str, dict[str, Any]] = {
    "acme": {},
    "load": {},
    "temp": {},
    "cli-revoked": {},
    "slow": {"rate": "1/min"},
    "small": {"quota": "3/day"},
    # test_every_predict_request_was_metered's own keys: every test uses keys no other test changes
    "meter": {},
    "meter-quota": {"quota": "1/day"},
}


@pytest.fixture(scope="module")
def server(
    tiny_run: Path, server_factory: Callable[..., ServerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server for the module. Tests run in any order (pytest-randomly) or alone (-k), so none
    relies on another's requests, and each changes only keys and models that no other test uses."""
    data_dir = tmp_path_factory.mktemp("serve-sqlite")
    created = run_cli("keys", "create", "--name", "root", "--admin", "--json", "--data-dir", str(data_dir))
    assert created.returncode == 0, created.stderr
    server = server_factory(
        [f"topics={tiny_run}", f"switch={tiny_run}"],
        keys=KEYS,
        data_dir=data_dir,
        args=(
            *("--max-texts", "8", "--max-chars", "200", "--max-body", "16KB", "--max-wait-ms", "2"),
            *("--model-root", str(tiny_run.parent)),  # where tiny_export is written, beside the run
        ),
    )
    server.tokens["root"] = json.loads(created.stdout)["token"]
    yield server
    # Whatever ran, in whatever order: the server stops cleanly and no request left a traceback.
    assert server.stop() == 0 and "Traceback" not in server.log(), server.log()[-3000:]


def post(
    server: ServerProcess, key: str | None, body: Any, model: str = "topics", **kw: Any
) -> httpx.Response:
    headers = {**(server.headers(key) if key else {}), **kw.pop("headers", {})}
    if not isinstance(body, dict | list):  # raw bytes, or an iterator of chunks (sent chunked)
        headers.setdefault("Content-Type", "application/json")
        return httpx.post(
            f"{server.url}/v1/models/{model}/predict", content=body, headers=headers, timeout=30, **kw
        )
    return httpx.post(f"{server.url}/v1/models/{model}/predict", json=body, headers=headers, timeout=30, **kw)


def code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def test_predicts_with_a_valid_key(server: ServerProcess) -> None:
    r = post(server, "acme", {"texts": ["football match with my team", "pizza and cheese for dinner"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [res["label"] for res in body["results"]] == ["sports", "food"]
    assert body["model"] == "topics" and body["version"] == "1" and body["format"] == "torch"
    assert body["usage"]["texts"] == 2 and body["usage"]["tokens"] > 4
    [row] = [row for row in server.usage_rows("acme") if row.request_id == r.headers["x-request-id"]]
    assert (row.status, row.texts, row.tokens) == (200, 2, body["usage"]["tokens"])


def test_serve_says_which_database_and_model_roots_it_uses(server: ServerProcess, tiny_run: Path) -> None:
    assert f"database: SQLite {server.data_dir / 'tunelab.db'}\n" in server.log()
    assert f"model roots (admin loads): {tiny_run.parent}\n" in server.log()


def test_auth_failures(server: ServerProcess) -> None:
    assert code(post(server, None, {"texts": ["pizza"]})) == "missing_key"
    bad = post(
        server, None, {"texts": ["pizza"]}, headers={"Authorization": "Bearer tl_aaaaaaaa_" + "b" * 43}
    )
    assert bad.status_code == 401 and code(bad) == "invalid_key"
    assert post(server, None, {"texts": ["pizza"]}, headers={"X-API-Key": "nope"}).status_code == 401


def test_a_key_revoked_while_the_server_runs_is_refused(server: ServerProcess) -> None:
    assert post(server, "temp", {"texts": ["pizza"]}).status_code == 200
    revoked = httpx.delete(f"{server.url}/v1/keys/temp", headers=server.headers("root"), timeout=30)
    assert revoked.status_code == 200
    r = post(server, "temp", {"texts": ["pizza"]})
    assert r.status_code == 403 and code(r) == "revoked_key"
    # Revoked from another process (the CLI) works the same: the server reads the shared database.
    assert post(server, "cli-revoked", {"texts": ["pizza"]}).status_code == 200
    done = run_cli("keys", "revoke", "cli-revoked", "--data-dir", str(server.data_dir))
    assert done.returncode == 0, done.stderr
    assert post(server, "cli-revoked", {"texts": ["pizza"]}).status_code == 403


def test_rate_limit_and_quota_are_429_with_retry_after(server: ServerProcess) -> None:
    assert post(server, "slow", {"texts": ["pizza"]}).status_code == 200
    r = post(server, "slow", {"texts": ["pizza"]})
    assert r.status_code == 429 and code(r) == "rate_limited" and 1 <= int(r.headers["retry-after"]) <= 60
    assert post(server, "small", {"texts": ["pizza", "snow"]}).status_code == 200
    r = post(server, "small", {"texts": ["pizza", "snow"]})
    assert r.status_code == 429 and code(r) == "quota_exceeded" and int(r.headers["retry-after"]) >= 1


def test_malformed_json_and_schema_errors(server: ServerProcess) -> None:
    r = post(server, "acme", b'{"texts": ["pizza"')
    assert (
        r.status_code == 400 and code(r) == "malformed_json" and "character" in r.json()["error"]["message"]
    )
    r = post(server, "acme", {"texts": ["pizza", ""]})
    assert r.status_code == 422 and "texts[1]" in r.json()["error"]["message"]


def test_size_limits(server: ServerProcess) -> None:
    r = post(server, "acme", {"texts": ["pizza"] * 9})
    assert r.status_code == 413 and "max_texts_per_request=8" in r.json()["error"]["message"]
    r = post(server, "acme", {"texts": ["pizza", "x" * 201]})
    assert r.status_code == 422 and "texts[1]" in r.json()["error"]["message"]
    assert "max_chars_per_text=200" in r.json()["error"]["message"]
    big = json.dumps({"texts": ["pizza " * 3000]}).encode()
    r = post(server, "acme", big)
    assert r.status_code == 413 and "max_body_bytes=16000" in r.json()["error"]["message"]

    def chunked() -> Any:
        for i in range(0, len(big), 1024):
            yield big[i : i + 1024]

    r = post(server, "acme", chunked())
    assert r.status_code == 413 and code(r) == "body_too_large"


def test_a_huge_body_is_refused_without_being_read(server: ServerProcess) -> None:
    """Content-Length says 500 MB; the server answers 413 at once, having read nothing."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            "POST /v1/models/topics/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {server.tokens['acme']}\r\nContent-Length: 500000000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"texts": [')
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413") and "max_body_bytes" in answer


def test_unknown_model_is_404(server: ServerProcess) -> None:
    r = post(server, "acme", {"texts": ["pizza"]}, model="nope")
    assert r.status_code == 404 and code(r) == "unknown_model"
    assert "switch, topics" in r.json()["error"]["message"]


def test_loading_from_outside_the_model_roots_is_refused(server: ServerProcess, tiny_run: Path) -> None:
    for path in ("/etc", f"{tiny_run.parent}/../../..", str(tiny_run.parent) + "-elsewhere"):
        r = httpx.post(
            f"{server.url}/v1/models/switch/versions",
            json={"path": path},
            headers=server.headers("root"),
            timeout=30,
        )
        assert r.status_code == 403 and code(r) == "path_not_allowed", r.text
        assert os.path.realpath(tiny_run.parent) in r.json()["error"]["message"]


def test_version_switch_under_concurrent_load_fails_no_request(
    server: ServerProcess, tiny_export: Path
) -> None:
    """16 clients hammer 'switch' while v2 (the ONNX int8 export) loads and becomes active, and
    v1 (PyTorch eager) is retired once drained: no request fails, both versions answer."""
    stop = threading.Event()
    results: list[tuple[int, str, str | None]] = []
    load = threading.Thread(
        target=lambda: results.extend(
            predict_many(server, key="acme", model="switch", clients=16, until=stop)
        )
    )
    load.start()
    try:
        time.sleep(1.0)
        admin = server.headers("root")
        r = httpx.post(
            f"{server.url}/v1/models/switch/versions",
            json={"path": str(tiny_export), "version": "2", "activate": True},
            headers=admin,
            timeout=120,
        )
        assert r.status_code == 201, r.text
        assert r.json()["active"] == "2" and r.json()["format"] == "onnx-int8"
        time.sleep(1.0)
        retired = httpx.delete(f"{server.url}/v1/models/switch/versions/1", headers=admin, timeout=60)
        assert retired.status_code == 200 and [v["version"] for v in retired.json()["versions"]] == ["2"]
        time.sleep(0.5)
    finally:
        stop.set()
        load.join(120)
    statuses = Counter(status for status, _, _ in results)
    versions = Counter(version for _, _, version in results)
    assert statuses == {200: len(results)}, statuses
    assert versions["1"] > 0 and versions["2"] > 0, versions


def test_usage_rows_equal_the_requests_of_32_concurrent_clients(server: ServerProcess) -> None:
    before = server.metrics()
    results = predict_many(server, key="load", model="topics", clients=32, requests_each=8)
    assert len(results) == 32 * 8 and Counter(s for s, _, _ in results) == {200: 256}
    rows = server.usage_rows("load")
    assert sorted(row.request_id for row in rows) == sorted(rid for _, rid, _ in results)
    assert all(row.status == 200 and row.model == "topics" for row in rows)
    # The CLI's billing export says the same.
    export = run_cli("usage", "--key", "load", "--csv", "--data-dir", str(server.data_dir))
    assert export.returncode == 0, export.stderr
    assert len(export.stdout.strip().splitlines()) == 1 + 256
    after = server.metrics()
    series = 'tunelab_requests_total{key="load",model="topics",status="200",version="1"}'
    assert after[series] - before.get(series, 0) == 256
    texts = 'tunelab_texts_total{key="load",model="topics",version="1"}'
    assert after[texts] == sum(row.texts for row in rows)


def test_models_health_docs(server: ServerProcess) -> None:
    models = httpx.get(f"{server.url}/v1/models", headers=server.headers("acme")).json()["models"]
    assert {m["name"] for m in models} == {"topics", "switch"}
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/docs").status_code == 200
    before = httpx.get(f"{server.url}/v1/usage", headers=server.headers("acme")).json()
    assert post(server, "acme", {"texts": ["pizza"]}).status_code == 200
    usage = httpx.get(f"{server.url}/v1/usage", headers=server.headers("acme")).json()
    assert usage["key"]["name"] == "acme" and usage["requests"] == before["requests"] + 1


def test_metrics_need_an_admin_key_on_the_api_port_and_none_on_the_metrics_port(
    server: ServerProcess,
) -> None:
    """The metrics name keys (customers): only an admin key reads them on the API port; Prometheus
    scrapes the --metrics-port listener, which only the monitoring network should reach."""
    assert post(server, "acme", {"texts": ["pizza"]}).status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers=server.headers("acme")).status_code == 403
    admin = httpx.get(f"{server.url}/metrics", headers=server.headers("root"))
    assert admin.status_code == 200 and 'key="acme"' in admin.text
    scraped = httpx.get(server.metrics_url)
    assert scraped.status_code == 200 and 'key="acme"' in scraped.text


def test_every_predict_request_was_metered(server: ServerProcess) -> None:
    """A request with a valid key, whatever the status (200, 400, 404, 413, 422, 429), has one row:
    one request of each, sent here, is found by its request id; and rows equal the metrics' count.
    (Requests without a valid key are refusals, not billed: see test_serve_security.py.)"""
    assert post(server, "meter-quota", {"texts": ["pizza"]}).status_code == 200  # its quota: 1 text
    sent = {
        200: post(server, "meter", {"texts": ["pizza"]}),
        400: post(server, "meter", b'{"texts": ['),
        404: post(server, "meter", {"texts": ["pizza"]}, model="nope"),
        413: post(server, "meter", {"texts": ["pizza"] * 9}),
        422: post(server, "meter", {"texts": [""]}),
        429: post(server, "meter-quota", {"texts": ["pizza"]}),
    }
    assert {status: r.status_code for status, r in sent.items()} == {status: status for status in sent}
    rows = server.usage_rows()
    by_id = {row.request_id: row.status for row in rows}
    assert {status: by_id.get(r.headers["x-request-id"]) for status, r in sent.items()} == {
        status: status for status in sent
    }
    # A row is written before its answer leaves, the metrics after it (and the --metrics-port
    # thread does not wait for the event loop): poll until the last ones are counted.
    deadline = time.monotonic() + 5.0
    while True:
        rows = server.usage_rows()
        metrics = server.metrics()
        requests = sum(v for k, v in metrics.items() if k.startswith("tunelab_requests_total{"))
        if requests == len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert requests == len(rows)
    assert len({row.request_id for row in rows}) == len(rows)


def test_sigterm_stops_the_server_gracefully(
    tiny_run: Path, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """A server of its own: stopping the module's would fail every test that runs after this one."""
    server = server_factory([f"topics={tiny_run}"], keys={"acme": {}}, data_dir=tmp_path / "serve")
    assert post(server, "acme", {"texts": ["pizza"]}).status_code == 200
    assert server.stop() == 0
    assert "Traceback" not in server.log()
