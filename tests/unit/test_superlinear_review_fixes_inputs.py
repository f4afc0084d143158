"""User strings that took super-linear time: a monitor document's time, a logged text masked for
an account number, a delimited file's sample sniffed, an NER entity normalised to a company key.

Where no deterministic property shows the fix (a regex's backtracking), the call runs under an
alarm of 5 s: the old code took 15 s or more on these inputs, the new one milliseconds.
"""

from __future__ import annotations

import csv
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_monitor_app import FakeSentiment
from test_serve_monitor import Api, open_api

from tunelab.apps.monitor import Classifier, documents, parse_document, parse_time
from tunelab.apps.monitor import classify as classify_module
from tunelab.apps.monitor.classify import normalise_company
from tunelab.apps.monitor.documents import MAX_KEY_CHARS
from tunelab.data import sniff
from tunelab.data.sniff import sniff_file, sniff_text
from tunelab.serve.masking import ACCOUNT, mask_pii
from tunelab.serve.monitor_schemas import DOCUMENT_SCHEMA


def within_5_seconds(call: Callable[[], Any]) -> Any:
    """``call()``, failing the test when it runs past 5 s (re's matching loop honours signals)."""

    def overtime(*_: Any) -> None:
        raise TimeoutError("still running after 5 s: super-linear in the input's length")

    previous = signal.signal(signal.SIGALRM, overtime)
    signal.setitimer(signal.ITIMER_REAL, 5)
    try:
        return call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- 1. a document's time ---------------------------------------------------------------------------


def test_a_time_string_over_64_characters_is_refused_before_parsing_in_one_short_line() -> None:
    with pytest.raises(ValueError) as info:
        parse_time("1" * 5_000 + "x")
    message = str(info.value)
    assert message == (
        "time '11111111111111111111'... is not epoch seconds nor ISO 8601: it has 5,001 characters, "
        "over the limit of 64"
    )
    assert len(message) < 200 and "\n" not in message


def test_a_time_of_64_characters_padded_with_spaces_is_still_read() -> None:
    padded = " " * 100 + "2026-03-02T09:30:00.123456+01:00" + " " * 100
    assert parse_time(padded).isoformat() == "2026-03-02T08:30:00.123456+00:00"
    assert parse_time("  1772443800.5 ").timestamp() == 1772443800.5


def test_the_epoch_pattern_fails_a_long_run_of_digits_in_linear_time() -> None:
    assert within_5_seconds(lambda: documents._EPOCH_TEXT.fullmatch("1" * 50_000 + "x")) is None
    for text in ("12", "12.", "12.5", ".5", "-3", "-.5"):
        assert documents._EPOCH_TEXT.fullmatch(text), text
    for text in (".", "-", "1.2.3", "1e5", "--1"):
        assert documents._EPOCH_TEXT.fullmatch(text) is None, text


@pytest.mark.parametrize(
    "time",
    [
        "y" * 60,  # not ISO 8601
        "2026-03-02T09:30:00 " + "9" * 40,  # not ISO 8601 either
        [0] * 1000,  # neither text nor a number
        {"a": "b" * 1000},
    ],
)
def test_every_time_error_shows_the_value_shortened(time: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_document({"id": "a", "time": time, "text": "x"})
    message = str(info.value)
    assert "characters)" in message and len(message) < 200, message


def test_the_document_schema_says_the_longest_time() -> None:
    assert DOCUMENT_SCHEMA["properties"]["time"]["anyOf"][0]["maxLength"] == documents.MAX_TIME_CHARS


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from open_api(tmp_path)


def test_a_long_time_over_http_is_a_short_422_naming_the_document(api: Api) -> None:
    r = api.send([{"id": "a", "time": "1" * 5_000 + "x", "text": "hello"}])
    assert r.status_code == 422, r.text
    assert len(r.content) < 600, r.content[:300]
    assert "documents[0]: document 'a': time '1111" in r.text and "over the limit of 64" in r.text


# -- 2. account numbers in logged text ---------------------------------------------------------------


def test_masking_a_word_account_then_many_spaces_is_linear() -> None:
    text = "account" + " " * 40_000 + "x"
    assert within_5_seconds(lambda: mask_pii(text)) == text


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("account  :  12345678", "account  :  "),
        ("acct # : 0012-3456-78", "acct # : "),
        ("Konto Nr.:12345678", "Konto Nr.:"),
        ("a/c no. # 87654321", "a/c no. # "),
        ("account number\t\t87654321", "account number\t\t"),
        ("ACCOUNT#87654321", "ACCOUNT#"),
    ],
)
def test_account_numbers_are_masked_as_before(text: str, prefix: str) -> None:
    assert mask_pii(text) == prefix + ACCOUNT


# -- 3. sniffing a file's separator ------------------------------------------------------------------

UNBALANCED = "text,label\n" + 'a,"b\n' * 13_000


def test_the_sniffer_sees_only_the_first_lines_of_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = csv.Sniffer.sniff

    def spy(self: csv.Sniffer, sample: str, delimiters: str | None = None) -> Any:
        seen.append(sample)
        return real(self, sample, delimiters)

    monkeypatch.setattr(csv.Sniffer, "sniff", spy)
    assert sniff_text("text,label\n" + 'a,"b\n' * 2_000, ",", truncated=False) == ","
    long_lines = "text,label\n" + ("x" * 300 + ',"b\n') * 200
    assert sniff_text(long_lines, ",", truncated=True) == ","
    assert len(seen) == 2
    assert all(len(s) <= 8 * 1024 and len(s.splitlines()) <= 50 for s in seen), [len(s) for s in seen]
    assert seen[1].endswith(',"b')  # whole lines: the last, cut short, is left out


def test_a_file_of_unbalanced_quotes_is_sniffed_from_its_whole_sample(tmp_path: Path) -> None:
    f = tmp_path / "quotes.csv"
    f.write_text(UNBALANCED, encoding="utf-8")
    assert within_5_seconds(lambda: sniff_file(f, "utf-8", ",")) == ","
    # the Sniffer's guess is still checked on the whole sample: line 62 has no semicolon
    mixed = "h1;h2,h3\n" + "a;b,c\n" * 60 + "x,y\n"
    assert not sniff.consistent(mixed, ";") and sniff.consistent(mixed, ",")
    assert sniff_text(mixed, ",") == ","


# -- 4. company names from NER -----------------------------------------------------------------------


def test_normalising_a_long_run_of_punctuation_is_linear() -> None:
    assert within_5_seconds(lambda: normalise_company("a" + "-" * 50_000 + "a")) == "a" + "-" * 50_000 + "a"
    assert normalise_company("__Acme--") == "acme" and normalise_company("«Globex»,") == "globex"
    assert normalise_company("-.-") is None


class LongEntityNER:
    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
        runaway = "Acme Inc's " * 1_000
        return [{"entities": [{"text": runaway, "label": "ORG"}, {"text": "Acme Corp.", "label": "ORG"}]}]


def test_an_entity_far_over_the_key_limit_is_skipped_before_normalising(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lengths: list[int] = []

    def spy(name: str, aliases: dict[str, str] | None = None) -> str | None:
        lengths.append(len(name))
        return normalise_company(name, aliases)

    monkeypatch.setattr(classify_module, "normalise_company", spy)
    classifier = Classifier(FakeSentiment(), ner=LongEntityNER())
    assert classifier._companies(["Acme Corp. news"]) == [("acme",)]
    assert lengths == [len("Acme Corp.")]
    assert max(lengths) <= 4 * MAX_KEY_CHARS
