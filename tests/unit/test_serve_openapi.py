"""The OpenAPI schema is a complete contract: security schemes (the /docs Authorize button), and
every status each operation can answer with its ``ErrorBody``; declaring the schemes changed no
answer (the access layer still writes the 401 body and its WWW-Authenticate header)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tunelab.serve.app import create_app
from tunelab.serve.settings import ServeSettings

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
# What each operation must declare beyond its success status (the fuzzer holds answers to these).
JSON_ROUTE = {400, 401, 403, 404, 413, 415, 422, 429, 503}  # a JSON body, the key's rate, a named thing
EXPECTED = {
    # 413 and 415 on every operation: the body-size and Content-Encoding checks run before any route
    ("post", "/v1/models/{name}/predict"): {400, 401, 403, 404, 413, 415, 422, 429, 503},
    ("get", "/v1/models"): {401, 403, 413, 415, 503},
    ("get", "/v1/models/{name}"): {401, 403, 404, 413, 415, 422, 503},
    ("post", "/v1/models/{name}/versions"): {400, 401, 403, 404, 409, 413, 415, 422, 503},
    ("post", "/v1/models/{name}/activate"): {400, 401, 403, 404, 409, 413, 415, 422, 503},
    ("delete", "/v1/models/{name}/versions/{version}"): {401, 403, 404, 409, 413, 415, 422, 503},
    ("get", "/v1/keys"): {401, 403, 413, 415, 503},
    ("post", "/v1/keys"): {400, 401, 403, 409, 413, 415, 422, 503},
    ("delete", "/v1/keys/{name}"): {401, 403, 404, 413, 415, 422, 503},
    ("get", "/v1/usage"): {401, 403, 413, 415, 422, 429, 503},  # 429: the key's rate applies to it
    # 429 on the apps' listings too: every app route takes the key's rate
    ("get", "/v1/apps/support"): {401, 403, 413, 415, 429, 503},
    ("post", "/v1/apps/support/{bot}/messages"): {400, 401, 403, 404, 413, 415, 422, 429, 503},
    # 429 on the ticket routes and the monitor reads: they take the key's rate first, as predict does
    ("get", "/v1/apps/support/tickets"): {401, 403, 413, 415, 422, 429, 503},
    ("get", "/v1/apps/support/tickets/{ticket_id}"): {401, 403, 404, 413, 415, 422, 429, 503},
    ("post", "/v1/apps/support/tickets/{ticket_id}/claim"): {*JSON_ROUTE, 409},
    ("post", "/v1/apps/support/tickets/{ticket_id}/resolve"): {*JSON_ROUTE, 409},
    ("get", "/v1/apps/monitor"): {401, 403, 413, 415, 429, 503},
    ("post", "/v1/apps/monitor/{name}/documents"): {400, 401, 403, 404, 413, 415, 422, 429, 503},
    ("get", "/v1/apps/monitor/{name}/trend"): {401, 403, 404, 413, 415, 422, 429, 503},
    ("get", "/v1/apps/monitor/{name}/alerts"): {401, 403, 404, 413, 415, 422, 429, 503},
    ("get", "/v1/apps/recommend"): {401, 403, 413, 415, 429, 503},
    ("get", "/v1/apps/recommend/{name}/users/{user_id}"): {401, 403, 404, 413, 415, 422, 429, 503},
    ("post", "/v1/apps/recommend/{name}/items"): {400, 401, 403, 404, 409, 413, 415, 422, 429, 503},
    ("post", "/v1/apps/recommend/{name}/events"): {400, 401, 403, 404, 413, 415, 422, 429, 503},
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(ServeSettings(data_dir=tmp_path, db=None))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def test_security_schemes_are_declared_for_bearer_and_x_api_key(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {**schemes["HTTPBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["APIKeyHeader"] == {**schemes["APIKeyHeader"], "type": "apiKey", "in": "header"}
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_every_v1_operation_needs_a_key_and_declares_its_errors(
    spec: dict[str, Any], method: str, path: str
) -> None:
    op = spec["paths"][path][method]
    assert op["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]
    errors = {int(s) for s in op["responses"] if int(s) >= 400}
    assert errors == EXPECTED[(method, path)]
    for status in errors:
        response = op["responses"][str(status)]
        assert response["content"]["application/json"]["schema"] == ERROR_BODY, (path, status)
        assert response["description"], (path, status)
    assert "500" not in op["responses"]


def test_401_and_429_declare_their_headers(spec: dict[str, Any]) -> None:
    predict = spec["paths"]["/v1/models/{name}/predict"]["post"]["responses"]
    assert predict["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert predict["429"]["headers"]["Retry-After"]["required"] is True


def test_public_probes_need_no_key(spec: dict[str, Any]) -> None:
    for path in ("/healthz", "/readyz"):
        assert "security" not in spec["paths"][path]["get"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}, {"X-API-Key": "  "}],
)
def test_declared_schemes_do_not_answer_for_the_access_layer(
    client: TestClient, headers: dict[str, str]
) -> None:
    r = client.get("/v1/usage", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["error"]["code"] == "missing_key"
    assert set(r.json()) == {"error"}


def test_a_key_in_either_header_still_authenticates(client: TestClient) -> None:
    access = client.app.state.tunelab.access  # type: ignore[attr-defined]
    _, token = access.create_key("acme", rate=None, quota=None)
    for headers in ({"Authorization": f"Bearer {token}"}, {"X-API-Key": token}, {"X-API-Key": f" {token} "}):
        r = client.get("/v1/usage", headers=headers)
        assert r.status_code == 200, (headers, r.text)
        assert r.json()["key"]["name"] == "acme"


def test_the_predict_body_schema_says_what_the_server_takes(spec: dict[str, Any]) -> None:
    """Texts that are blank, or a body with both or neither of texts and pairs, are refused by the
    server; the schema says so too, so generated clients and the fuzzer send bodies that reach the
    model (before, about 90% of schema-valid bodies were 422s)."""
    body = spec["components"]["schemas"]["PredictRequest"]
    branches = body["oneOf"]
    assert sorted(b["required"] for b in branches) == [["pairs"], ["texts"]]
    text_items = body["properties"]["texts"]["anyOf"][0]["items"]
    pair_items = body["properties"]["pairs"]["anyOf"][0]["items"]["prefixItems"]
    for item in (text_items, *pair_items):
        assert item["minLength"] == 1
        assert re.search(item["pattern"], " \t\n") is None
        assert re.search(item["pattern"], " x ") is not None


@pytest.mark.parametrize(
    "body",
    [{"texts": [" \t"]}, {"pairs": [["a", " "]]}, {"texts": ["a"], "pairs": [["a", "b"]]}, {"top_k": 1}],
)
def test_bodies_the_schema_forbids_are_refused(client: TestClient, body: dict[str, Any]) -> None:
    _, token = client.app.state.tunelab.access.create_key("k", rate=None, quota=None)
    r = client.post("/v1/models/m/predict", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422, r.text
