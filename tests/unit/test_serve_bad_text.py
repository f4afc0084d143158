"""One text the tokenizer cannot take never fails other clients' requests (a real tiny model).

A lone UTF-16 surrogate (``"\\ud800"``) is valid JSON, but no tokenizer takes it: it is refused
with a 422 naming the text before it reaches a shared batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tunelab
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.settings import ServeSettings

BAD_BODIES = {
    "texts": b'{"texts": ["fine", "a \\ud800 b"]}',
    "pairs": b'{"pairs": [["fine", "\\udfff"]]}',
}


@pytest.fixture(scope="module")
def client(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    out = tmp_path_factory.mktemp("bad-text")
    overrides = [
        f"data.train={labelled_csvs[0]}",
        f"model.name={tiny_bert}",
        f"output_dir={out}",
        "model.max_length=32",
        "train.batch_size=8",
        "train.epochs=1",
        "train.patience=null",
        "name=topics",
    ]
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    # A long batch wait, so requests sent together share a batch.
    settings = ServeSettings(data_dir=out, db=None, require_keys=False, max_wait_ms=300)
    app = create_app(settings, [ServedModel("topics", "1", tunelab.load(run), str(run))])
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def post(client: TestClient, body: bytes) -> Any:
    headers = {"Content-Type": "application/json"}
    return client.post("/v1/models/topics/predict", content=body, headers=headers)


@pytest.mark.parametrize(("field", "where"), [("texts", "texts[1]"), ("pairs", "pairs[0][1]")])
def test_a_lone_surrogate_is_422_naming_the_text(client: TestClient, field: str, where: str) -> None:
    r = post(client, BAD_BODIES[field])
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and f"body.{field}" in err["message"]
    assert where in err["message"] and "not valid Unicode" in err["message"]


def test_concurrent_good_requests_succeed_beside_a_bad_one(client: TestClient) -> None:
    bodies = [b'{"texts": ["football match %d", "pizza dinner"]}' % i for i in range(8)]
    bodies.insert(3, BAD_BODIES["texts"])
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: post(client, body), bodies))
    statuses = [r.status_code for r in answers]
    expected = [422 if i == 3 else 200 for i in range(len(bodies))]
    assert statuses == expected, [r.text for r in answers if r.status_code not in (200, 422)]
    assert all(len(r.json()["results"]) == 2 for i, r in enumerate(answers) if i != 3)
