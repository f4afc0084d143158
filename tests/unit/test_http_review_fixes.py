"""HTTP review fixes through the in-process app (fake predictor, real SQLite store): a JSON body sent
without a JSON Content-Type is the README's 415, a compressed body is refused (and metered as a
413 is), a trailing slash is a JSON 404 naming the path that has a route (no redirect), a 405
lists every method of its path, the probes answer HEAD, every operation declares 413 and 415, and
the README says which POSTs are safe to retry."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_serve_security import App, open_app

README = Path(__file__).resolve().parents[2] / "README.md"
PREDICT = "/v1/models/topics/predict"
BODY = json.dumps({"texts": ["a"]}).encode()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[App]:
    yield from open_app(tmp_path)


def post(api: App, path: str, body: bytes, token: str | None, **headers: str) -> Any:
    return api.client.post(
        path, content=body, headers={**api.headers(token), **headers}, follow_redirects=False
    )


# -- 1. a JSON body without a JSON Content-Type is a 415 -------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        (None, "(no Content-Type sent)"),  # requests.post(url, data=json.dumps(...))
        ("text/json", "(got 'text/json')"),
        ("application/jsonfoo", "(got 'application/jsonfoo')"),
    ],
)
def test_a_json_body_not_sent_as_json_is_415_naming_the_content_type(
    api: App, content_type: str | None, said: str
) -> None:
    """They were 422 "body: Input should be a valid dictionary...", not the README's 415."""
    headers = {"Content-Type": content_type} if content_type else {}
    r = post(api, PREDICT, BODY, api.token, **headers)
    assert r.status_code == 415, r.text
    error = r.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["message"] == f"send the body as JSON with 'Content-Type: application/json' {said}"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/vnd.acme+JSON"])
def test_a_body_sent_as_json_keeps_its_schema_errors(api: App, content_type: str) -> None:
    ok = post(api, PREDICT, BODY, api.token, **{"Content-Type": content_type})
    wrong_shape = post(api, PREDICT, b"[1]", api.token, **{"Content-Type": content_type})
    assert ok.status_code == 200, ok.text
    assert wrong_shape.status_code == 422 and wrong_shape.json()["error"]["code"] == "invalid_request"


def test_no_body_at_all_keeps_its_422_field_required(api: App) -> None:
    r = api.client.post(PREDICT, headers=api.headers(api.token))
    assert r.status_code == 422 and r.json()["error"]["message"] == "body: Field required"


# -- 2. Content-Encoding ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "body"),
    # mtime=0: gzip stamps the current second into its header, and a parameter's bytes become the
    # test's id, so two xdist workers importing this file a second apart collected different tests
    # and the whole run stopped before a test ran (CI, stop 50).
    [("gzip", gzip.compress(BODY, mtime=0)), ("br", BODY), ("identity, gzip", gzip.compress(BODY, mtime=0))],
    ids=["gzip", "br", "identity-then-gzip"],
)
def test_a_compressed_body_is_415_and_metered_as_a_413_is(api: App, encoding: str, body: bytes) -> None:
    """gzip was a 400 "not UTF-8 text"; br on a plain body was served as if it were not there."""
    before = len(api.access.store.usage())
    r = post(
        api, PREDICT, body, api.token, **{"Content-Type": "application/json", "Content-Encoding": encoding}
    )
    assert r.status_code == 415, r.text
    assert r.json()["error"] == {
        "code": "unsupported_media_type",
        "message": f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed",
    }
    rows = api.access.store.usage()[before:]
    assert [(row.key_name, row.model, row.status) for row in rows] == [("acme", "topics", 415)]


def test_an_identity_content_encoding_is_served(api: App) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "identity"}
    assert post(api, PREDICT, BODY, api.token, **headers).status_code == 200


def test_a_keyless_compressed_body_costs_a_constant(api: App) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    for i in range(3):
        r = post(api, f"/v1/models/random{i}/predict", gzip.compress(BODY), None, **headers)
        assert r.status_code == 415
    assert api.access.store.usage() == []
    metrics = api.client.get("/metrics", headers=api.headers(api.admin)).text
    assert "random" not in metrics
    assert 'tunelab_refused_requests_total{reason="unauthenticated"} 3.0' in metrics


def test_a_compressed_body_is_refused_on_a_route_without_a_body_too(api: App) -> None:
    r = api.client.get("/healthz", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"


# -- 3. a trailing slash is a 404, not a redirect ---------------------------------------------------


def test_a_trailing_slash_is_a_json_404_naming_the_path_without_it(
    api: App, caplog: pytest.LogCaptureFixture
) -> None:
    """It was Starlette's 307 to an absolute http:// Location (behind a TLS proxy: a downgrade that
    the POST body, key and all, was re-sent to)."""
    headers = {**api.headers(api.token), "X-Forwarded-Proto": "https"}
    before = len(api.access.store.usage())
    with caplog.at_level(logging.INFO, logger="tunelab.serve.access"):
        r = api.client.post(f"{PREDICT}/", json={"texts": ["a"]}, headers=headers, follow_redirects=False)
        listing = api.client.get("/v1/models/", headers=headers, follow_redirects=False)
    assert (r.status_code, listing.status_code) == (404, 404)
    assert "location" not in r.headers and "location" not in listing.headers
    assert r.json()["error"] == {
        "code": "not_found",
        "message": f"no route POST {PREDICT}/ (without the trailing slash: {PREDICT}; see /docs)",
    }
    assert listing.json()["error"]["message"] == (
        "no route GET /v1/models/ (without the trailing slash: /v1/models; see /docs)"
    )
    assert len(api.access.store.usage()) == before
    assert not [rec for rec in caplog.records if "without a valid key" in rec.getMessage()]


def test_an_unknown_path_with_a_trailing_slash_gets_no_hint(api: App) -> None:
    r = api.client.get("/v1/nothing/", headers=api.headers(api.token), follow_redirects=False)
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "no route GET /v1/nothing/ (see /docs)"


# -- 4. 405's Allow and HEAD on the probes ----------------------------------------------------------


def test_a_405_allows_every_method_its_path_is_served_with(api: App) -> None:
    """PATCH /v1/keys said "Allow: POST" though GET /v1/keys is served too."""
    r = api.client.patch("/v1/keys", headers=api.headers(api.admin))
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"
    assert r.json()["error"]["code"] == "method_not_allowed"
    models = api.client.delete("/v1/models", headers=api.headers(api.admin))
    assert models.status_code == 405 and models.headers["Allow"] == "GET"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_the_probes_answer_head_without_a_body(api: App, path: str) -> None:
    """Load balancers and uptime checks send HEAD: it was a 405."""
    r = api.client.head(path)
    assert r.status_code == 200 and r.content == b""
    assert api.client.post(path).headers["Allow"] == "GET, HEAD"


def test_head_on_readyz_says_not_ready_as_get_does(api: App) -> None:
    api.app.state.tunelab.registry.names = lambda: []  # type: ignore[method-assign]
    assert (api.client.get("/readyz").status_code, api.client.head("/readyz").status_code) == (503, 503)


def test_the_head_probes_stay_out_of_the_schema(api: App) -> None:
    spec = api.client.get("/openapi.json").json()
    for path in ("/healthz", "/readyz"):
        assert set(spec["paths"][path]) == {"get"}


# -- 5. which POSTs are safe to retry (README) ------------------------------------------------------


def _readme_row(endpoint: str) -> str:
    return next(line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith(endpoint))


def test_the_readme_says_how_retried_posts_are_billed() -> None:
    documents = _readme_row("| `POST /v1/apps/monitor/{name}/documents`")
    items = _readme_row("| `POST /v1/apps/recommend/{name}/items`")
    events = _readme_row("| `POST /v1/apps/recommend/{name}/events`")
    assert "duplicates included" in documents and "billed again" in documents
    assert "safe to retry" in items and "`item_exists`" in items
    assert "not idempotent" in events and "billed again" in events


# -- 6. 413 and 415 on every operation --------------------------------------------------------------


def test_every_operation_declares_413_and_415(api: App) -> None:
    """GET /healthz with a body over --max-body is a 413 too; the schema listed it on none of them."""
    spec = api.client.get("/openapi.json").json()
    operations = [(m, p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    assert ("get", "/healthz") in [(m, p) for m, p, _ in operations]
    for method, path, op in operations:
        for status in ("413", "415"):
            declared = op["responses"].get(status)
            assert declared is not None, (method, path, status)
            assert declared["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"
            }
    healthz = spec["paths"]["/healthz"]["get"]["responses"]
    assert healthz["413"]["description"] == "body over the server's --max-body"
    assert "Content-Encoding" in healthz["415"]["description"]


def test_a_large_body_on_healthz_is_the_declared_413(tmp_path: Path) -> None:
    small = open_app(tmp_path, max_body_bytes=64)
    api = next(small)
    try:
        r = api.client.request("GET", "/healthz", content=b"x" * 100)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    finally:
        next(small, None)


def test_a_keyed_request_answered_before_its_key_is_read_is_not_said_to_have_none(
    api: App, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid key's compressed GET /v1/models was logged as one of the "refused requests without a
    valid key": answered before the key is read, the log cannot know the key, and says so."""
    with caplog.at_level(logging.INFO, logger="tunelab.serve.access"):
        r = api.client.get("/v1/models", headers={**api.headers(api.token), "Content-Encoding": "gzip"})
    assert r.status_code == 415
    lines = [rec.getMessage() for rec in caplog.records if "status 415=1" in rec.getMessage()]
    assert len(lines) == 1 and "answered before the key was read" in lines[0], lines
