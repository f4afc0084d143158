"""Metering decided by the app's own routes, and the key checked before a route reads its body.

1. The middleware metered with patterns of its own: ``users/.+`` (``.`` stops at a newline) let a
   ranking for the user id ``x\\ny`` through unbilled and unmetered, its quota reservation held "in
   flight" until it expired. Metering now matches the path with the routes' own regexes.
2. FastAPI reads and parses a route's body before it resolves the key dependency: a keyless 1 MB
   body cost its parse before the 401. ``KeyCheck`` answers without reading it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from serve_api import error
from test_serve_app import FakePredictor, settings
from test_serve_recommend import Api, open_api

from tunelab.serve.access import AccessError
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.limits import Quota

PREDICT = "/v1/models/topics/predict"


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    opened: list[Iterator[Api]] = []

    def make(**overrides: Any) -> Api:
        opened.append(open_api(tmp_path, **overrides))
        return next(opened[-1])

    yield make
    for gen in opened:
        next(gen, None)


def usage_texts(api: Api, token: str) -> int:
    return int(api.client.get("/v1/usage", headers=api.headers(token)).json()["texts"])


# -- 1. metering follows the routes ------------------------------------------------------------------


def test_every_metered_template_is_a_route_of_the_app(make_api: Callable[..., Api]) -> None:
    """A renamed route would silently stop being metered: each template must be served."""
    from tunelab.serve.observe import METERED_ROUTES, RouteTable  # here: the rest runs on older code

    table = RouteTable.of(make_api().app)
    assert table is not None
    assert set(METERED_ROUTES) <= {entry.template for entry in table.entries}


def test_a_ranking_for_a_user_id_with_a_line_break_is_billed_and_settles_its_quota(
    make_api: Callable[..., Api],
) -> None:
    api = make_api()
    _, small = api.state.access.create_key("small", rate=None, quota=Quota.parse("3/day"))
    for _ in range(3):
        r = api.rank("x%0Ay", token=small)
        assert r.status_code == 200 and r.json()["user_id"] == "x\ny", r.text
    rows = [row for row in api.rows() if row.key_name == "small"]
    assert [(row.app, row.model, row.texts, row.status) for row in rows] == [
        ("recommend", "movies", 1, 200)
    ] * 3
    assert usage_texts(api, small) == 3
    refused = api.rank("u1", token=small)
    assert refused.status_code == 429
    assert "in flight" not in error(refused)["message"]  # every reservation was settled by its row
    assert 'tunelab_app_requests_total{app="recommend",bot="movies",key="small",status="200"} 3.0' in (
        api.metrics()
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/v1/apps/recommend/movies/users/a%0Ab", None, ("recommend", "movies", 200)),
        ("GET", "/v1/apps/recommend/movies/users/%0A", None, ("recommend", "movies", 422)),  # blank id
        ("GET", "/v1/apps/recommend/movies/users/", None, ("recommend", "movies", 422)),  # empty id
        ("GET", "/v1/apps/recommend/mo%0Avies/users/u1", None, ("recommend", "_other", 404)),
        ("POST", "/v1/apps/recommend/mo%0Avies/items", {"item_id": "i", "fields": {"title": "t"}}, None),
        ("POST", "/v1/apps/recommend/mo%0Avies/events", {"events": []}, None),
        ("POST", "/v1/apps/support/b%0Aot/messages", {"text": "hi"}, ("support", "_other", 404)),
        ("POST", "/v1/apps/monitor/m%0Aon/documents", {"documents": []}, None),
        ("POST", "/v1/models/to%0Apics/predict", {"texts": ["a"]}, (None, "_other", 404)),
    ],
)
def test_a_line_break_in_any_path_parameter_of_a_metered_route_writes_one_row(
    make_api: Callable[..., Api], method: str, path: str, body: Any, expected: tuple[Any, ...] | None
) -> None:
    api = make_api()
    r = api.client.request(method, path, json=body, headers=api.headers(api.token))
    rows = [(row.app, row.model, row.status) for row in api.rows()]
    if expected is None:  # an unknown name (404) or a body the app refuses (422): one row either way
        assert len(rows) == 1 and rows[0][1] == "_other" and rows[0][2] == r.status_code, (rows, r.text)
    else:
        assert rows == [expected], (rows, r.text)


# -- 2. the key before the body ---------------------------------------------------------------------


class Body:
    """A streamed request body that records whether the server read it."""

    def __init__(self, data: bytes) -> None:
        self.data, self.consumed = data, False  # not "read": httpx takes that for a file

    def __iter__(self) -> Iterator[bytes]:
        self.consumed = True
        yield self.data


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[Callable[..., tuple[TestClient, Any]]]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> tuple[TestClient, Any]:
        data_dir = tmp_path / str(len(clients))
        data_dir.mkdir()
        served = [ServedModel("topics", "1", FakePredictor(), "runs/fake")]
        app = create_app(settings(data_dir, **overrides), served, loader=FakePredictor)
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client.__enter__())
        return client, app

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def metrics(client: TestClient, app: Any) -> str:
    _, admin = app.state.tunelab.access.create_key(f"root{id(client)}", rate=None, quota=None, admin=True)
    return client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text


@pytest.mark.parametrize("kind", ["missing", "malformed", "unknown", "revoked"])
def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(
    open_server: Callable[..., tuple[TestClient, Any]], kind: str
) -> None:
    client, app = open_server()
    access = app.state.tunelab.access
    token = {"missing": None, "malformed": "nonsense", "unknown": "tl_abcdefgh_" + "x" * 43}.get(kind)
    if kind == "revoked":
        record, token = access.create_key("gone", rate=None, quota=None)
        access.revoke_key(record.key_id)
    with pytest.raises(AccessError) as usual:  # what the route's key dependency answers
        access.authenticate(token)
    body = Body(b'{"texts": [' + b'"pizza", ' * 200 + b'"pizza"]}')
    headers = {"Content-Type": "application/json"} | ({"X-API-Key": token} if token else {})
    r = client.post(PREDICT, content=body, headers=headers)
    assert not body.consumed
    assert r.status_code == usual.value.status and r.json() == usual.value.to_body()
    assert r.headers.get("WWW-Authenticate") == usual.value.headers().get("WWW-Authenticate")
    assert r.headers["X-Request-ID"]
    assert access.store.usage() == []
    text = metrics(client, app)
    assert f'tunelab_refused_requests_total{{reason="{usual.value.code}"}} 1.0' in text
    status = usual.value.status
    assert f'tunelab_http_requests_total{{route="/v1/models/{{name}}/predict",status="{status}"}} 1.0' in text


def test_keyless_malformed_json_and_admin_bodies_are_401_unread(
    open_server: Callable[..., tuple[TestClient, Any]],
) -> None:
    client, _ = open_server()
    for path in (PREDICT, "/v1/keys"):
        body = Body(b'{"texts": [')
        r = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert (r.status_code, error(r)["code"], body.consumed) == (401, "missing_key", False)


def test_a_body_declared_over_max_body_is_still_413_first(
    open_server: Callable[..., tuple[TestClient, Any]],
) -> None:
    client, _ = open_server()
    r = client.post(PREDICT, json={"texts": ["pizza " * 400]})
    assert r.status_code == 413 and error(r)["code"] == "body_too_large"


def test_a_valid_key_is_checked_before_and_again_after_its_body_and_its_request_goes_on(
    open_server: Callable[..., tuple[TestClient, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app = open_server()
    access = app.state.tunelab.access
    _, token = access.create_key("acme", rate=None, quota=None)
    calls: list[str | None] = []
    real = access.authenticate

    def counting(given: str | None) -> Any:
        calls.append(given)
        return real(given)

    monkeypatch.setattr(access, "authenticate", counting)
    body = Body(b'{"texts": ["pizza"]}')
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    r = client.post(PREDICT, content=body, headers=headers)
    assert r.status_code == 200 and body.consumed, r.text
    assert calls == [token, token]  # before the body (KeyCheck) and after it (a revoke meanwhile)
    [row] = access.store.usage()
    assert (row.key_name, row.status, row.texts) == ("acme", 200, 1)
    calls.clear()
    assert client.get("/v1/usage", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert calls == [token]  # no body: KeyCheck's look-up is the request's


class RevokingBody(Body):
    """A body whose upload goes on after the key is revoked (between its two chunks)."""

    def __init__(self, data: bytes, revoke: Callable[[], None]) -> None:
        super().__init__(data)
        self.revoke = revoke

    def __iter__(self) -> Iterator[bytes]:
        self.consumed = True
        half = len(self.data) // 2
        yield self.data[:half]
        self.revoke()
        yield self.data[half:]


@pytest.mark.parametrize("path", [PREDICT, "/v1/keys"])
def test_a_key_revoked_while_its_body_uploads_is_refused(
    open_server: Callable[..., tuple[TestClient, Any]], path: str
) -> None:
    """KeyCheck's look-up came before the upload: an admin key revoked meanwhile created a new admin
    key, and a predict was billed to the revoked key."""
    client, app = open_server()
    access = app.state.tunelab.access
    record, token = access.create_key("ops", rate=None, quota=None, admin=True)
    data = b'{"texts": ["pizza"]}' if path == PREDICT else b'{"name": "backdoor", "admin": true}'
    body = RevokingBody(data, lambda: access.revoke_key(record.key_id))
    r = client.post(path, content=body, headers={"X-API-Key": token, "Content-Type": "application/json"})
    assert (r.status_code, error(r)["code"]) == (403, "revoked_key"), r.text
    assert [k.name for k in access.store.list_keys()] == ["ops"]
    assert access.store.usage() == []  # refused: nothing billed


def test_without_auth_a_keyless_request_is_read_and_answered(
    open_server: Callable[..., tuple[TestClient, Any]],
) -> None:
    client, _ = open_server(require_keys=False)
    body = Body(b'{"texts": ["pizza"]}')
    r = client.post(PREDICT, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and body.consumed, r.text
    bad = client.post(PREDICT, json={"texts": ["pizza"]}, headers={"X-API-Key": "nonsense"})
    assert bad.status_code == 401 and error(bad)["code"] == "invalid_key"
