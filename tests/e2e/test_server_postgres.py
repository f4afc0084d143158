"""The same server against a real PostgreSQL (the ``postgres_url`` fixture starts a throwaway one,
or skips saying why): keys, revocation, and usage rows exactly equal to 32 clients' requests."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from serve_helpers import ServerProcess, predict_many

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pg_server(
    tiny_run: Path,
    postgres_url: str,
    server_factory: Callable[..., ServerProcess],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    """One server for the module; its tests run in any order or alone. The database is shared
    with other tests in the session: unique key names keep rows apart."""
    suffix = uuid.uuid4().hex[:6]
    names = {role: f"e2e-{role}-{suffix}" for role in ("root", "load", "gone")}
    server = server_factory(
        [f"topics={tiny_run}"],
        keys={names["root"]: {"admin": True}, names["load"]: {}, names["gone"]: {}},
        data_dir=tmp_path_factory.mktemp("serve-postgres"),
        db=postgres_url,
    )
    yield server, names
    # Whatever ran, in whatever order: the server stops cleanly and no request left a traceback.
    assert server.stop() == 0 and "Traceback" not in server.log(), server.log()[-3000:]


def test_postgres_server_is_ready_and_refuses_bad_keys(
    pg_server: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, names = pg_server
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["checks"]["database"] == "ok"
    r = httpx.post(f"{server.url}/v1/models/topics/predict", json={"texts": ["pizza"]})
    assert r.status_code == 401
    url = f"{server.url}/v1/models/topics/predict"
    assert (
        httpx.post(url, json={"texts": ["pizza"]}, headers=server.headers(names["gone"])).status_code == 200
    )
    revoke = httpx.delete(f"{server.url}/v1/keys/{names['gone']}", headers=server.headers(names["root"]))
    assert revoke.status_code == 200
    assert (
        httpx.post(url, json={"texts": ["pizza"]}, headers=server.headers(names["gone"])).status_code == 403
    )


def test_postgres_usage_rows_equal_the_requests_of_32_concurrent_clients(
    pg_server: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, names = pg_server
    results = predict_many(server, key=names["load"], model="topics", clients=32, requests_each=8)
    assert Counter(status for status, _, _ in results) == {200: 256}
    rows = server.usage_rows(names["load"])
    assert sorted(row.request_id for row in rows) == sorted(rid for _, rid, _ in results)
    assert sum(row.texts for row in rows) == sum(1 + n % 2 for n in range(8)) * 32
    metrics = server.metrics()
    assert (
        metrics[f'tunelab_requests_total{{key="{names["load"]}",model="topics",status="200",version="1"}}']
        == 256
    )
