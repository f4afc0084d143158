"""Bodies a broken or hostile client sends (a review with a real server; the parser's own limits are
in test_serve_request_heads.py).

- A rate, burst or quota of hundreds or thousands of digits was a 500 with a traceback over HTTP
  (``int()``'s 4,300-digit limit, or a float's infinity) and "unexpected ValueError" from `keys create`.
- A body holding an integer of over 4,300 digits was "not UTF-8 text, or nested too deeply".
- A recommender item's field of JSON ``Infinity`` or ``NaN`` was added with the text "inf".
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_serve_security import App, open_app

from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.serve.limits import MAX_COUNT, Quota, Rate
from tunelab.serve.recommend_schemas import ItemIn

HUGE = "1" + "0" * 5000


@pytest.fixture
def api(tmp_path: Path) -> Iterator[App]:
    yield from open_app(tmp_path, max_body_bytes=64 * 1024)  # room for 5,000 digits


@pytest.mark.parametrize(
    ("text", "what"),
    [
        (f"{HUGE}/month", "quota"),
        (f"{MAX_COUNT + 1:_}/day", "quota"),
        ("1" + "0" * 400 + "/s", "rate"),
        (f"{HUGE}/s", "rate"),
        (f"20/s:{HUGE}", "rate burst"),
    ],
    ids=["quota-5000-digits", "quota-one-over", "rate-400-digits", "rate-5000-digits", "burst-5000-digits"],
)
def test_a_count_past_the_cap_is_a_one_line_refusal(text: str, what: str) -> None:
    parse = Quota.parse if what == "quota" else Rate.parse
    with pytest.raises(ConfigError) as caught:
        parse(text)
    message = str(caught.value)
    assert message.startswith(f"{what} '") and f"use at most {MAX_COUNT:,}" in message
    assert len(message) < 200  # the value is shown shortened, not 5,000 digits


def test_counts_up_to_the_cap_are_taken() -> None:
    assert Quota.parse(f"{MAX_COUNT:,}/month").limit == MAX_COUNT
    assert Rate.parse(f"{MAX_COUNT}/s:{MAX_COUNT}").burst == MAX_COUNT
    assert Quota.parse("000000000000000000005/day").limit == 5  # leading zeros are no size


def test_over_http_it_is_a_422_naming_the_field(api: App) -> None:
    for body in ({"name": "k1", "quota": f"{HUGE}/month"}, {"name": "k2", "rate": f"20/s:{HUGE}"}):
        r = api.client.post("/v1/keys", json=body, headers=api.headers(api.admin))
        assert r.status_code == 422, r.text
        assert "use at most 1,000,000,000,000" in r.text


def test_keys_create_refuses_it_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["keys", "create", "--name", "k9", "--quota", f"{HUGE}/month", "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: quota '") and "use at most" in err and "unexpected" not in err


def test_an_over_long_integer_in_a_body_is_named_as_such(api: App) -> None:
    body = '{"texts": ["a"], "top_k": ' + "9" * 4301 + "}"
    r = api.client.post(
        "/v1/models/topics/predict",
        content=body,
        headers={**api.headers(api.token), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "malformed_json",
        "message": "malformed JSON: a number in the body has more than 4,300 digits; send a shorter one",
    }
    r = api.client.post(
        "/v1/models/topics/predict",
        content=b'{"texts": ["\xff"]}',
        headers={**api.headers(api.token), "Content-Type": "application/json"},
    )
    assert "not UTF-8 text" in r.json()["error"]["message"]  # the other causes keep their message


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN"])
def test_a_recommender_field_that_is_not_a_finite_number_is_refused(value: str) -> None:
    raw = json.loads('{"item_id": "z0", "fields": {"title": ' + value + "}}")
    with pytest.raises(ValidationError, match="field 'title' must be a finite number or text"):
        ItemIn.model_validate(raw)
    assert ItemIn.model_validate({"item_id": "z1", "fields": {"year": 1.5e300}}).fields == {"year": 1.5e300}
