"""Metering review: quotas while usage rows fail, replaced keys, NLI tokens, listings' rate, rankings.

Each test failed before its fix:

- a state-changing request answered 2xx without its usage row counted nothing against the quota,
  so while rows could not be written a key on 3 events a day recorded 8 (and any number);
- a key replacing a revoked one of the same name started its quota from zero without a word;
- a served zero-shot NLI model billed each text's single encoding, not the (text, hypothesis)
  pairs it read, one per label (about 20 times fewer tokens for 10 labels);
- the apps' listings (``GET /v1/apps/recommend``, ``/support``, ``/monitor``) took no rate;
- ``tunelab_recommend_rankings_total`` counted a ranking whose answer became a 503.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_serve_access import Clocks, make_access, new_caller, ok, refusal
from test_serve_app import settings
from test_serve_recommend import Api, open_api, standin

from tunelab.cli.main import main
from tunelab.serve.limits import Quota, Rate
from tunelab.serve.store import StoreError, open_store

NOT_WRITTEN = "usage rows are not being written"


def fail_usage_writes(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The usage table cannot be written (disk full, a lock held past the busy timeout)."""

    def failing(rec: Any) -> None:
        raise StoreError("SQLite database: database or disk is full")

    monkeypatch.setattr(store, "record_usage", failing)


@pytest.fixture
def movies(tmp_path: Path) -> Iterator[tuple[Api, Any]]:
    recommender = standin(u1=["alien"])
    for api in open_api(tmp_path, [("movies", recommender)]):
        yield api, recommender


# -- 1. a quota holds while usage rows cannot be written ------------------------------------------


def test_events_answered_without_usage_rows_still_count_against_the_quota(
    movies: tuple[Api, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    api, recommender = movies
    access = api.state.access
    _, token = access.create_key("small", rate=None, quota=Quota.parse("3/day"))
    with monkeypatch.context() as patch:
        fail_usage_writes(access.store, patch)
        with caplog.at_level(logging.WARNING, logger="tunelab.serve"):
            statuses = [
                api.events([{"user_id": f"new{i}", "item_id": "alien"}], token=token).status_code
                for i in range(8)
            ]
    # The first 3 were stored and answered (a retry would store them twice); the 4th on are over
    # the quota. Their refusal's own row cannot be written either, so the middleware answers 503.
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [503] * 5, statuses  # refused: nothing stored, nothing answered 2xx
    assert [u for u in recommender.users if u.startswith("new")] == ["new0", "new1", "new2"]
    # One WARNING for the key in this window, besides each request's own ERROR line
    warnings = [r for r in caplog.records if NOT_WRITTEN in r.getMessage()]
    assert len(warnings) == 1 and "'small'" in warnings[0].getMessage()
    # Rows are written again: the key is refused as over its quota, and its usage says so
    r = api.events([{"user_id": "new9", "item_id": "alien"}], token=token)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
    quota = api.client.get("/v1/usage", headers=api.headers(token)).json()["quota"]
    assert quota["used"] == 3 and quota["remaining"] == 0


def test_unrecorded_texts_survive_a_reload_of_the_count_and_end_with_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clocks = Clocks(datetime(2026, 11, 30, 23, 59, 0, tzinfo=UTC))  # a minute before a new day
    store = open_store(None, tmp_path)
    try:
        access = make_access(store, clocks)
        caller = new_caller(access, quota="3/day")
        access.admit(caller, 2, request_id="stored")
        with monkeypatch.context() as patch:
            fail_usage_writes(store, patch)
            with pytest.raises(StoreError):
                access.record(
                    caller=caller,
                    model="movies",
                    version=None,
                    texts=2,
                    tokens=0,
                    status=200,
                    latency_ms=1.0,
                    request_id="stored",
                    app="recommend",
                    sent_without_row=True,
                )
            # A request whose answer is withheld (a 503 instead) counts nothing, as before
            access.admit(caller, 1, request_id="withheld")
            with pytest.raises(StoreError):
                ok(access, caller, 1, "withheld")
        clocks.advance(access.quota_refresh_s + 1)  # the count is read from the database again
        assert refusal(access.admit, caller, 2, request_id="over").status == 429
        access.admit(caller, 1, request_id="last")
        ok(access, caller, 1, "last")
        assert refusal(access.admit, caller, 1, request_id="full").status == 429
        clocks.advance(60)  # a new day: the old one's unrecorded texts count no more
        access.admit(caller, 3, request_id="new-day")
    finally:
        store.close()


# -- 2. a replacement key starts its own quota, and says so ----------------------------------------


def test_creating_a_key_named_as_a_revoked_one_notes_that_its_quota_starts_from_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = str(tmp_path / "keys.db")
    create = ["keys", "create", "--name", "acme", "--quota", "4/day", "--db", db]
    with caplog.at_level(logging.WARNING):
        assert main(create) == 0
        assert main(["keys", "revoke", "acme", "--db", db]) == 0
        assert not [r for r in caplog.records if "replaces a revoked key" in r.getMessage()]
        assert main(create) == 0
    notes = [r.getMessage() for r in caplog.records if "replaces a revoked key" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "'acme'" in notes[0] and "4/day" in notes[0] and "tunelab usage --key acme" in notes[0]


# -- 3. zero-shot NLI bills the tokens its model read ----------------------------------------------


def test_a_served_nli_zero_shot_model_bills_every_pair_it_read(tmp_path: Path) -> None:
    from tunelab.models.tiny import save_tiny_bert
    from tunelab.serve.app import ServedModel, create_app
    from tunelab.zeroshot import zero_shot_predictor

    nli = save_tiny_bert(tmp_path / "nli", labels=["contradiction", "neutral", "entailment"])
    labels = {f"l{i}": f"the customer asks about topic {i} of the bank" for i in range(10)}
    predictor = zero_shot_predictor(labels, nli=str(nli))
    model = predictor.backend.scorer.model
    read: list[int] = []
    forward = model.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        read.append(int(kwargs["attention_mask"].sum()))
        return forward(*args, **kwargs)

    model.forward = counting
    texts = ["my new card has not arrived", "top up failed"]
    single = sum(predictor.encode(texts).text_lengths)
    app = create_app(settings(tmp_path, require_keys=False), [ServedModel("zs", "1", predictor, "memory")])
    with TestClient(app) as client:
        r = client.post("/v1/models/zs/predict", json={"texts": texts})
        rows = app.state.tunelab.store.usage()
    assert r.status_code == 200, r.text
    assert r.json()["usage"] == {"texts": 2, "tokens": sum(read)}
    assert [row.tokens for row in rows] == [sum(read)]
    assert sum(read) > 10 * single  # each text read with each of 10 hypotheses


# -- 4. the apps' listings take the key's rate -----------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/apps/recommend", "/v1/apps/support", "/v1/apps/monitor"])
def test_an_apps_listing_takes_the_keys_rate(movies: tuple[Api, Any], path: str) -> None:
    api, _ = movies
    _, slow = api.state.access.create_key("slow", rate=Rate.parse("1/min"), quota=None)
    first = api.client.get(path, headers=api.headers(slow))
    second = api.client.get(path, headers=api.headers(slow))
    assert first.status_code == 200, first.text
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limited"
    assert int(second.headers["Retry-After"]) >= 1


# -- 5. the rankings metric counts delivered rankings only -----------------------------------------


def rankings(api: Api) -> list[str]:
    return [
        line for line in api.metrics().splitlines() if line.startswith("tunelab_recommend_rankings_total")
    ]


def test_a_ranking_withheld_for_its_usage_row_is_not_counted_as_served(
    movies: tuple[Api, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = movies
    with monkeypatch.context() as patch:
        fail_usage_writes(api.state.access.store, patch)
        assert api.rank("u1").status_code == 503
    assert rankings(api) == []
    assert api.rank("u1").status_code == 200
    assert api.rank("stranger").json()["fallback"] is True
    assert sorted(rankings(api)) == [
        'tunelab_recommend_rankings_total{fallback="false",recommender="movies"} 1.0',
        'tunelab_recommend_rankings_total{fallback="true",recommender="movies"} 1.0',
    ]
