"""``GET /v1/usage`` reads since/until as ``tunelab usage`` does: ISO 8601, naive = UTC.

Typed ``datetime``, the query took digits as epoch seconds: ``since=20260301&until=20260401`` was
a 100-second window in 1970 answered 200 with every count zero; and an offset's unencoded ``+``
(a space once the URL is read) was a 422 that did not say why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_serve_security import App, open_app


@pytest.fixture
def api(tmp_path: Path) -> Iterator[App]:
    yield from open_app(tmp_path)


def _refusal(api: App, params: dict[str, str]) -> dict[str, str]:
    r = api.client.get("/v1/usage", params=params, headers=api.headers(api.token))
    assert r.status_code == 422, r.text
    return r.json()["error"]


def test_eight_digits_are_refused_as_ambiguous_naming_the_iso_date(api: App) -> None:
    error = _refusal(api, {"since": "20260301", "until": "2026-04-01"})
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("query.since: ")
    assert "ambiguous" in error["message"] and "2026-03-01" in error["message"]
    until = _refusal(api, {"since": "2026-03-01", "until": "20260401"})["message"]
    assert until.startswith("query.until: ") and "2026-04-01" in until


def test_other_digits_are_not_epoch_seconds(api: App) -> None:
    """As ``tunelab usage --since`` refuses them: no epoch times, in seconds or milliseconds."""
    for digits in ("1772323200", "1772323200000", "99999999"):
        message = _refusal(api, {"since": digits})["message"]
        assert message.startswith("query.since: ") and "ISO 8601" in message, message


def test_a_plus_sent_unencoded_is_named(api: App) -> None:
    """``?since=2026-03-02T09:30:00+01:00`` typed in a URL arrives with a space for the '+'."""
    r = api.client.get("/v1/usage?since=2026-03-02T09:30:00+01:00", headers=api.headers(api.token))
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert message.startswith("query.since: ") and "'+' in a URL" in message
    assert "%2B" in message and "with Z" in message
    assert "'+' in a URL" in _refusal(api, {"until": "2026-03-02 09:30 01:00"})["message"]
    # a space between date and time is ISO 8601 (as the CLI reads it), not a lost '+'
    assert "'+' in a URL" not in _refusal(api, {"since": "2026-03-02 09:30 tomorrow"})["message"]


_UTC = "+00:00"


@pytest.mark.parametrize(
    ("since", "until", "window"),
    [
        ("2026-03-02T09:30:00Z", "2026-03-03T00:00:00Z", ("2026-03-02T09:30:00", "2026-03-03T00:00:00")),
        ("2026-03-02T09:30:00+01:00", "2026-03-03", ("2026-03-02T08:30:00", "2026-03-03T00:00:00")),
        ("2026-03-01", "2026-04-01T00:00:00", ("2026-03-01T00:00:00", "2026-04-01T00:00:00")),
        ("2026-03-02 09:30", "2026-03-02T10:30:00.25-02:00",
         ("2026-03-02T09:30:00", "2026-03-02T12:30:00.250000")),
    ],
)  # fmt: skip
def test_iso_times_give_the_window_they_did(
    api: App, since: str, until: str, window: tuple[str, str]
) -> None:
    """The window pydantic's datetime gave these (naive = UTC), in UTC."""
    r = api.client.get("/v1/usage", params={"since": since, "until": until}, headers=api.headers(api.token))
    assert r.status_code == 200, r.text
    assert (r.json()["since"], r.json()["until"]) == (window[0] + _UTC, window[1] + _UTC)


def test_a_plus_encoded_as_2b_is_an_offset(api: App) -> None:
    r = api.client.get("/v1/usage?since=2026-03-02T09:30:00%2B01:00", headers=api.headers(api.token))
    assert r.status_code == 200, r.text
    assert r.json()["since"] == "2026-03-02T08:30:00+00:00"


def test_the_parameters_are_documented_as_iso_strings(api: App) -> None:
    spec = api.client.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/v1/usage"]["get"]["parameters"]}
    for name in ("since", "until"):
        schema = params[name]["schema"]
        assert {"type": "string"} in schema.get("anyOf", [schema]), schema
        assert "format" not in str(schema) and "ISO 8601" in params[name]["description"]
