"""The HTTP app in process (``TestClient``) with a fake predictor and a real SQLite store:
routing, schemas, limits, error bodies, usage rows, metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tunelab.errors import RunError
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.limits import Quota, Rate
from tunelab.serve.schemas import ClassificationResult, EntityResult, PredictResponse
from tunelab.serve.settings import ServeSettings
from tunelab.tasks import get_task

KEYWORDS = {"pizza": "food", "goal": "sports", "rain": "weather"}


@dataclass
class FakeEncoded:
    texts: list[str]

    @property
    def lengths(self) -> list[int]:
        return [len(t.split()) + 2 for t in self.texts]

    def __len__(self) -> int:
        return len(self.texts)


class FakePredictor:
    """Labels a text by a keyword; ``explode`` in a text raises, like a broken model would."""

    format = "torch"
    task = get_task("single_label")
    task_name = "single_label"
    labels = SimpleNamespace(names=["food", "sports", "weather"])

    def __init__(self, tag: str = "fake") -> None:
        if "missing" in tag:
            raise RunError(f"{tag}: no such run folder (`tunelab runs` lists the runs)")
        self.run = SimpleNamespace(name=tag)

    def encode(self, texts: list[str]) -> FakeEncoded:
        return FakeEncoded(list(texts))

    def predict_encoded(
        self, enc: FakeEncoded, texts: list[str], *, top_k: int = 3, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        assert len(texts) == len(enc)  # the texts the batch was encoded from, for the task's decode
        out = []
        for text in enc.texts:
            if "explode" in text:
                raise RuntimeError(f"model blew up on {text!r}")
            label = next((v for k, v in KEYWORDS.items() if k in text), "food")
            others = [n for n in self.labels.names if n != label]
            ranked = [{"label": label, "score": 0.8}] + [{"label": n, "score": 0.1} for n in others]
            out.append({"label": label, "score": 0.8, "top_k": ranked[:top_k]})
        return out


@dataclass
class Server:
    client: TestClient
    app: FastAPI
    token: str
    admin: str

    @property
    def access(self) -> Any:
        return self.app.state.tunelab.access

    def rows(self) -> list[Any]:
        return self.access.store.usage()

    def predict(self, body: Any, *, token: str | None = "default", model: str = "topics", **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'default' else token}"
        return self.client.post(f"/v1/models/{model}/predict", json=body, headers=headers, **kw)


def settings(tmp_path: Path, **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "db": None,
        "max_texts_per_request": 4,
        "max_chars_per_text": 50,
        "max_body_bytes": 2048,
        "max_wait_ms": 1,
    }
    return ServeSettings(**(values | overrides))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    app = create_app(
        settings(tmp_path), [ServedModel("topics", "1", FakePredictor(), "runs/fake")], loader=FakePredictor
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        access = app.state.tunelab.access
        _, admin = access.create_key("root", rate=None, quota=None, admin=True)
        _, token = access.create_key("acme", rate=None, quota=None)
        yield Server(client, app, token, admin)


def error(response: Any) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


# -- predict -----------------------------------------------------------------------------------------


def test_predict_answers_each_text_and_records_one_usage_row(server: Server) -> None:
    r = server.predict({"texts": ["pizza tonight", "what a goal", "rain again"], "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["version"], body["format"], body["task"]) == (
        "topics",
        "1",
        "torch",
        "single_label",
    )
    assert [res["label"] for res in body["results"]] == ["food", "sports", "weather"]
    assert all(len(res["top_k"]) == 2 for res in body["results"])
    assert body["usage"] == {"texts": 3, "tokens": 4 + 5 + 4}
    rid = r.headers["X-Request-ID"]
    [row] = server.rows()
    assert (row.request_id, row.key_name, row.model, row.version, row.status) == (
        rid,
        "acme",
        "topics",
        "1",
        200,
    )
    assert (row.texts, row.tokens) == (3, 13)


def test_x_api_key_header_is_accepted(server: Server) -> None:
    r = server.predict({"texts": ["pizza"]}, token=None, headers={"X-API-Key": server.token})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("token", "code"),
    [(None, "missing_key"), ("tl_abcdefgh_" + "x" * 43, "invalid_key"), ("nonsense", "invalid_key")],
)
def test_missing_or_invalid_keys_get_401_and_no_usage_row(
    server: Server, token: str | None, code: str
) -> None:
    r = server.predict({"texts": ["pizza"]}, token=token)
    assert r.status_code == 401 and error(r)["code"] == code and r.headers["X-Request-ID"]
    assert server.rows() == []  # never authenticated: nothing billed (counted in tunelab_refused_requests)


def test_a_revoked_key_gets_403(server: Server) -> None:
    assert server.predict({"texts": ["pizza"]}).status_code == 200
    revoke = server.client.delete("/v1/keys/acme", headers={"Authorization": f"Bearer {server.admin}"})
    assert revoke.status_code == 200 and revoke.json()["revoked_at"]
    r = server.predict({"texts": ["pizza"]})
    assert r.status_code == 403 and error(r)["code"] == "revoked_key"


def test_malformed_json_is_a_400_naming_the_position(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    r = server.client.post("/v1/models/topics/predict", content=b'{"texts": ["a",]}', headers=headers)
    assert r.status_code == 400
    err = error(r)
    assert err["code"] == "malformed_json" and "character 15" in err["message"]
    assert server.rows()[0].status == 400


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({}, "body.texts"),
        ({"texts": "pizza"}, "body.texts"),
        ({"texts": []}, "body.texts"),
        ({"texts": ["pizza", "   "]}, "texts[1] is empty"),
        ({"texts": ["pizza", 3]}, "body.texts.1"),
        ({"texts": ["pizza"], "top_k": 0}, "body.top_k"),
        ({"texts": ["pizza"], "colour": "red"}, "body.colour"),
    ],
)
def test_schema_problems_are_422_with_the_field_path(server: Server, body: Any, where: str) -> None:
    r = server.predict(body)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and where in err["message"], err
    assert err["details"][0]["loc"][0] == "body"


def test_a_body_of_many_wrong_items_is_refused_at_the_first_over_the_cap_with_few_details(
    tmp_path: Path,
) -> None:
    """A 1 MB body of 500,000 numbers made 500,000 schema errors and a 47 MB answer, 12 s of the
    event loop every other client waited through: lists stop at MAX_LIST_ITEMS and the answer
    lists at most MAX_DETAILS errors (its message still counts them all)."""
    from tunelab.serve.error_handlers import MAX_DETAILS
    from tunelab.serve.schemas import MAX_LIST_ITEMS

    app = create_app(
        settings(tmp_path, max_body_bytes=1024 * 1024),
        [ServedModel("topics", "1", FakePredictor(), "runs/fake")],
        loader=FakePredictor,
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        _, token = app.state.tunelab.access.create_key("acme", rate=None, quota=None)
        post = lambda body: client.post(  # noqa: E731
            "/v1/models/topics/predict", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        over = post({"texts": [1] * (MAX_LIST_ITEMS + 1)})
        assert over.status_code == 422
        assert [d["type"] for d in error(over)["details"]] == ["too_long"]  # type: ignore[index]
        many = post({"texts": [1] * 3000})
        assert many.status_code == 422
        assert len(error(many)["details"]) == MAX_DETAILS  # type: ignore[arg-type]
        assert "(and 2999 more)" in error(many)["message"]


def test_too_many_texts_is_413_naming_the_limit(server: Server) -> None:
    r = server.predict({"texts": ["pizza"] * 5})
    assert r.status_code == 413
    err = error(r)
    assert err["code"] == "too_many_texts" and "max_texts_per_request=4" in err["message"]
    assert (server.rows()[0].status, server.rows()[0].texts) == (413, 5)


def test_a_long_text_is_422_naming_its_index_and_the_limit(server: Server) -> None:
    r = server.predict({"texts": ["pizza", "x" * 51]})
    assert r.status_code == 422
    err = error(r)
    assert (
        err["code"] == "text_too_long"
        and "texts[1]" in err["message"]
        and "max_chars_per_text=50" in err["message"]
    )


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(server: Server) -> None:
    big = json.dumps({"texts": ["pizza " * 400]}).encode()
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    declared = server.client.post("/v1/models/topics/predict", content=big, headers=headers)
    assert declared.status_code == 413
    assert error(declared)["code"] == "body_too_large" and "max_body_bytes=2048" in error(declared)["message"]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    streamed = server.client.post("/v1/models/topics/predict", content=chunks(), headers=headers)
    assert streamed.status_code == 413 and "max_body_bytes=2048" in error(streamed)["message"]
    # Both are metered, and attributed to the key even though the route never ran.
    assert [(row.status, row.key_name) for row in server.rows()] == [(413, "acme"), (413, "acme")]


def test_unknown_model_or_version_is_404_naming_what_is_served(server: Server) -> None:
    r = server.predict({"texts": ["pizza"]}, model="nope")
    assert r.status_code == 404
    assert error(r)["code"] == "unknown_model" and "served: topics" in error(r)["message"]
    r = server.predict({"texts": ["pizza"], "version": "9"})
    assert (
        r.status_code == 404 and error(r)["code"] == "unknown_version" and "loaded: 1" in error(r)["message"]
    )
    # Both are metered; a name that is not served is stored as _other (callers choose it).
    assert [row.model for row in server.rows()] == ["_other", "topics"]


def test_a_model_failure_is_a_json_500_with_the_request_id_and_no_traceback(server: Server) -> None:
    r = server.predict({"texts": ["please explode"]})
    assert r.status_code == 500
    err = error(r)
    assert err["code"] == "internal_error" and r.headers["X-Request-ID"] in err["message"]
    assert "Traceback" not in r.text and "explode" not in r.text
    assert server.rows()[0].status == 500
    assert server.predict({"texts": ["pizza"]}).status_code == 200  # the batcher survives


def test_rate_limit_is_429_with_retry_after(server: Server) -> None:
    _, slow = server.access.create_key("slow", rate=Rate.parse("1/min"), quota=None)
    assert server.predict({"texts": ["pizza"]}, token=slow).status_code == 200
    r = server.predict({"texts": ["pizza"]}, token=slow)
    assert r.status_code == 429 and error(r)["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_quota_is_429_and_counts_only_answered_texts(server: Server) -> None:
    _, small = server.access.create_key("small", rate=None, quota=Quota.parse("3/day"))
    assert server.predict({"texts": ["pizza"] * 5}, token=small).status_code == 413  # not counted
    assert server.predict({"texts": ["pizza", "goal"]}, token=small).status_code == 200
    r = server.predict({"texts": ["rain", "rain"]}, token=small)
    assert r.status_code == 429 and error(r)["code"] == "quota_exceeded" and "Retry-After" in r.headers
    assert server.predict({"texts": ["rain"]}, token=small).status_code == 200


def test_every_predict_request_has_exactly_one_row(server: Server) -> None:
    statuses = [
        server.predict({"texts": ["pizza"]}).status_code,
        server.predict({"texts": ["pizza"]}, token=None).status_code,
        server.predict({"texts": []}).status_code,
        server.predict({"texts": ["pizza"]}, model="nope").status_code,
        server.client.get("/v1/models", headers={"Authorization": f"Bearer {server.token}"}).status_code,
    ]
    assert statuses == [200, 401, 422, 404, 200]
    # The 401 was never authenticated and GET /v1/models is not metered.
    assert sorted(row.status for row in server.rows()) == [200, 404, 422]


# -- models, versions -------------------------------------------------------------------------------


def test_models_lists_versions_and_the_active_one(server: Server) -> None:
    r = server.client.get("/v1/models", headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 200
    [model] = r.json()["models"]
    assert (model["name"], model["active"], model["labels"], model["task"]) == (
        "topics",
        "1",
        3,
        "single_label",
    )
    assert model["versions"][0]["run"] == "fake" and model["versions"][0]["source"] is None  # admin only
    admin = server.client.get("/v1/models", headers={"Authorization": f"Bearer {server.admin}"})
    assert admin.json()["models"][0]["versions"][0]["source"] == "runs/fake"
    assert server.client.get("/v1/models").status_code == 401


def test_admin_loads_activates_pins_and_retires_versions(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.admin}"}
    r = server.client.post(
        "/v1/models/topics/versions", json={"path": "runs/v2", "activate": False}, headers=admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["active"] == "1" and [v["version"] for v in r.json()["versions"]] == ["1", "2"]
    assert server.predict({"texts": ["pizza"]}).json()["version"] == "1"
    assert server.predict({"texts": ["pizza"]}, params={"version": "2"}).json()["version"] == "2"
    r = server.client.post("/v1/models/topics/activate", json={"version": "2"}, headers=admin)
    assert r.status_code == 200 and r.json()["active"] == "2"
    assert server.predict({"texts": ["pizza"]}).json()["version"] == "2"
    assert server.predict({"texts": ["pizza"], "version": "1"}).json()["version"] == "1"
    busy = server.client.delete("/v1/models/topics/versions/2", headers=admin)
    assert busy.status_code == 409 and "active" in error(busy)["message"]
    gone = server.client.delete("/v1/models/topics/versions/1", headers=admin)
    assert gone.status_code == 200 and [v["version"] for v in gone.json()["versions"]] == ["2"]
    assert server.predict({"texts": ["pizza"], "version": "1"}).status_code == 404
    # A new name starts a new model.
    r = server.client.post("/v1/models/other/versions", json={"path": "runs/o"}, headers=admin)
    assert r.status_code == 201 and r.json()["name"] == "other" and r.json()["active"] == "1"


def test_loading_a_bad_path_is_a_400_and_changes_nothing(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.admin}"}
    r = server.client.post("/v1/models/topics/versions", json={"path": "runs/missing"}, headers=admin)
    assert r.status_code == 400 and "runs/missing: no such run folder" in error(r)["message"]
    r = server.client.post(
        "/v1/models/topics/versions", json={"path": "runs/v1", "version": "1"}, headers=admin
    )
    assert r.status_code == 409 and "already has version '1'" in error(r)["message"]
    models = server.client.get("/v1/models", headers=admin).json()["models"]
    assert [v["version"] for v in models[0]["versions"]] == ["1"]


def test_model_admin_needs_an_admin_key(server: Server) -> None:
    user = {"Authorization": f"Bearer {server.token}"}
    r = server.client.post("/v1/models/topics/activate", json={"version": "1"}, headers=user)
    assert r.status_code == 403 and error(r)["code"] == "admin_required"


# -- keys, usage ------------------------------------------------------------------------------------


def test_admin_creates_lists_and_revokes_keys(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.admin}"}
    r = server.client.post(
        "/v1/keys", json={"name": "beta", "rate": "5/s", "quota": "100/day"}, headers=admin
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert (created["name"], created["rate"], created["quota"], created["admin"]) == (
        "beta",
        "5/s",
        "100/day",
        False,
    )
    assert server.predict({"texts": ["pizza"]}, token=created["token"]).status_code == 200
    listed = server.client.get("/v1/keys", headers=admin).json()["keys"]
    assert {k["name"] for k in listed} == {"root", "acme", "beta"} and all("token" not in k for k in listed)
    dup = server.client.post("/v1/keys", json={"name": "beta"}, headers=admin)
    assert dup.status_code == 409 and error(dup)["code"] == "duplicate_key"
    bad = server.client.post("/v1/keys", json={"name": "gamma", "rate": "fast"}, headers=admin)
    assert bad.status_code == 422 and "rate 'fast'" in error(bad)["message"]
    assert server.client.delete("/v1/keys/nobody", headers=admin).status_code == 404
    user = {"Authorization": f"Bearer {server.token}"}
    assert server.client.get("/v1/keys", headers=user).status_code == 403


def test_usage_shows_the_callers_own_requests(server: Server) -> None:
    server.predict({"texts": ["pizza", "goal"]})
    server.predict({"texts": []})
    r = server.client.get("/v1/usage", headers={"Authorization": f"Bearer {server.token}"})
    assert r.status_code == 200
    body = r.json()
    assert body["key"]["name"] == "acme" and body["requests"] == 2 and body["texts"] == 2
    assert body["by_status"] == {"200": 1, "422": 1}
    assert server.client.get("/v1/usage").status_code == 401
    # dates at the calendar's edge that leave it in UTC: a 500 before
    auth = {"Authorization": f"Bearer {server.token}"}
    for field, value in (("since", "0001-01-01T00:00:00+01:00"), ("until", "9999-12-31T23:59:59-01:00")):
        r = server.client.get("/v1/usage", params={field: value}, headers=auth)
        assert r.status_code == 422 and f"{field}: " in r.json()["error"]["message"], r.text


# -- health, metrics, docs, routing --------------------------------------------------------------------


def test_health_and_readiness(server: Server) -> None:
    assert server.client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = server.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"


def test_metrics_count_requests_latency_batches_and_errors(server: Server) -> None:
    server.predict({"texts": ["pizza", "goal"]})
    server.predict({"texts": ["pizza"]}, token=None)
    text = server.client.get("/metrics", headers={"Authorization": f"Bearer {server.admin}"}).text
    assert 'tunelab_requests_total{key="acme",model="topics",status="200",version="1"} 1.0' in text
    assert 'tunelab_refused_requests_total{reason="missing_key"} 1.0' in text  # no model label
    assert 'status="401"' not in text.split("tunelab_http_requests")[0]
    assert 'tunelab_request_latency_seconds_count{model="topics",version="1"} 1.0' in text
    assert 'tunelab_batch_size_sum{model="topics",version="1"} 2.0' in text
    assert 'tunelab_texts_total{key="acme",model="topics",version="1"} 2.0' in text
    assert 'tunelab_tokens_total{key="acme",model="topics",version="1"} 6.0' in text


def test_openapi_documents_the_routes(server: Server) -> None:
    spec = server.client.get("/openapi.json").json()
    assert {"/v1/models/{name}/predict", "/v1/models", "/v1/keys", "/v1/usage", "/healthz", "/readyz"} <= set(
        spec["paths"]
    )
    assert "PredictRequest" in spec["components"]["schemas"]
    assert server.client.get("/docs").status_code == 200


def test_predict_response_has_one_result_schema_per_task(server: Server) -> None:
    spec = server.client.get("/openapi.json").json()
    results = spec["components"]["schemas"]["PredictResponse"]["properties"]["results"]
    shapes = {option["items"]["$ref"].rsplit("/", 1)[-1] for option in results["anyOf"]}
    assert shapes == {"ClassificationResult", "EntityResult"}
    entity = {"text": "Acme", "label": "ORG", "start": 0, "end": 4, "score": 0.98}
    body = {"model": "m", "version": "1", "format": "torch", "usage": {"texts": 1, "tokens": 3}}
    ner = PredictResponse.model_validate(
        body | {"task": "token_classification", "results": [{"entities": [entity]}]}
    )
    assert isinstance(ner.results[0], EntityResult) and ner.results[0].entities[0].end == 4
    answer = server.predict({"texts": ["pizza"]}).json()
    classified = PredictResponse.model_validate(answer)
    assert isinstance(classified.results[0], ClassificationResult)


def test_unknown_routes_and_methods_answer_json(server: Server) -> None:
    r = server.client.get("/v2/nothing")
    assert r.status_code == 404 and error(r)["code"] == "not_found" and r.headers["X-Request-ID"]
    r = server.client.get("/v1/models/topics/predict")
    assert r.status_code == 405 and error(r)["code"] == "method_not_allowed"


def test_without_auth_requests_pass_and_are_metered_without_a_key(tmp_path: Path) -> None:
    app = create_app(
        settings(tmp_path, require_keys=False), [ServedModel("topics", "1", FakePredictor(), "x")]
    )
    with TestClient(app) as client:
        r = client.post("/v1/models/topics/predict", json={"texts": ["pizza"]})
        assert r.status_code == 200
        [row] = app.state.tunelab.access.store.usage()
        assert (row.key_id, row.status) == (None, 200)
        assert client.get("/v1/keys").status_code == 401  # admin routes still need a key


@pytest.fixture
def log_stream() -> Iterator[Any]:
    """Route logging through ``configure_logging`` into a string, and put things back after."""
    import io
    import logging

    from tunelab.serve.logging_setup import configure_logging

    root = logging.getLogger()
    saved = list(root.handlers), root.level, logging.getLogger("tunelab").level

    def setup(level: str) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(level=level, mask=True).setStream(stream)  # type: ignore[attr-defined]
        return stream

    yield setup
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("tunelab").setLevel(saved[2])


@pytest.mark.parametrize("level", ["info", "debug"])
def test_texts_are_logged_only_at_debug_and_masked(server: Server, log_stream: Any, level: str) -> None:
    stream = log_stream(level)
    assert (
        server.predict({"texts": ["pizza for jo@example.com, card 4111 1111 1111 1111"]}).status_code == 200
    )
    assert server.predict({"texts": ["explode at +44 20 7946 0958"]}).status_code == 500
    out = stream.getvalue()
    assert "POST /v1/models/topics/predict 200" in out and "key=acme" in out  # the access log
    # Request ids are random hex and may hold any run of digits ("...b77946e5..."): leave them out
    # of the search for leaked card and phone digits.
    out_without_ids = re.sub(r"\bid=[0-9a-f]{32}\b", "id=<request-id>", out)
    assert "jo@example.com" not in out and "4111" not in out_without_ids and "7946" not in out_without_ids
    assert ("<email>" in out) == (level == "debug")
    assert "<phone>" in out  # the 500's traceback quotes the text, masked


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [("POST", b"{bad", 400), ("GET", None, 405), ("POST", b'{"texts": ["' + b"x" * 4000 + b'"]}', 413)],
)
def test_a_request_refused_before_its_key_was_read_counts_against_the_rate(
    tmp_path: Path, method: str, body: bytes | None, status: int
) -> None:
    """Malformed JSON, a wrong method and a body over --max-body are answered before the route
    reads the key: a key at 1/min could send them at any speed, each a usage row."""
    served = [ServedModel("topics", "1", FakePredictor(), "runs/fake")]
    app = create_app(settings(tmp_path), served, loader=FakePredictor)
    with TestClient(app, raise_server_exceptions=False) as client:
        _, token = app.state.tunelab.access.create_key("acme", rate=Rate.parse("1/min"), quota=None)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = "/v1/models/topics/predict"
        assert client.request(method, url, content=body, headers=headers).status_code == status
        after = client.post(url, json={"texts": ["pizza"]}, headers=headers)
        assert after.status_code == 429 and error(after)["code"] == "rate_limited"


def test_a_line_break_in_the_path_cannot_forge_a_log_line(server: Server, log_stream: Any) -> None:
    """``%0a`` in a URL arrives decoded: printed as it was, the path started a new line of the
    server's log that looked like the server's own, with and without a key."""
    stream = log_stream("info")
    forged = "x%0aFORGED WARNING tunelab.serve: database dropped"
    server.client.get(f"/v1/models/{forged}/predict")  # no key: the refusal line
    server.client.get(f"/v1/models/{forged}", headers={"Authorization": f"Bearer {server.token}"})
    # with a key, the model name in the access line comes from the path too
    server.client.post(f"/v1/models/{forged}/predict", json={"texts": ["a"]},
                       headers={"Authorization": f"Bearer {server.token}"})  # fmt: skip
    lines = stream.getvalue().splitlines()
    assert sum("\\nFORGED" in line for line in lines) >= 3, lines
    assert not any(line.startswith("FORGED") for line in lines), lines


def test_a_body_not_sent_as_json_is_415_saying_how(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/x-www-form-urlencoded"}
    r = server.client.post("/v1/models/topics/predict", content=b'{"texts": ["pizza"]}', headers=headers)
    assert r.status_code == 415 and "Content-Type: application/json" in error(r)["message"]


def test_single_label_results_carry_no_multi_label_fields(server: Server) -> None:
    result = server.predict({"texts": ["pizza"]}).json()["results"][0]
    assert set(result) == {"label", "score", "top_k"}
