"""One key per company across the ways international news writes its name (a reviewer found
``Acme Pty Ltd``, ``Acme GmbH & Co. KG``, ``Samsung Electronics Co.,Ltd.``, ``The Acme Group`` and
``Acme´s`` each followed under a key of its own beside ``acme``)."""

from __future__ import annotations

import pytest

from tunelab.apps.monitor import normalise_company


@pytest.mark.parametrize(
    "name",
    [
        "Acme Pty Ltd",
        "Acme Pvt Ltd",
        "Acme Private Limited",
        "Acme GmbH & Co. KG",
        "Acme KG",
        "Acme A/S",
        "Acme K.K.",
        "Acme SAS",
        "Acme Oy",
        "Acme Bhd",
        "Acme Berhad",
        "Acme Tbk",
        "Acme Co.,Ltd.",
        "The Acme Group",
        "Acme´s",
        "Acme‘s",
        "Acmeʼs",
    ],
)
def test_legal_forms_articles_and_apostrophes_of_international_news_give_the_bare_key(name: str) -> None:
    assert normalise_company(name) == "acme"


def test_an_ampersand_and_the_word_and_are_one_key() -> None:
    assert normalise_company("Procter & Gamble Co.") == normalise_company("Procter and Gamble")
    assert normalise_company("Procter & Gamble Co.") == "procter and gamble"
    # "&" inside a word is part of the name
    assert normalise_company("AT&T Inc.") == "at&t"
    assert normalise_company("S&P Global") == "s&p global"


def test_words_that_are_forms_only_beside_a_form_stay_where_they_end_a_name() -> None:
    assert normalise_company("Acme Private") == "acme private"  # a division's name, no legal form after it
    assert normalise_company("Ben and Jerry") == "ben and jerry"
    assert normalise_company("The") == "the"  # an article alone is a name
    assert normalise_company("Co") == "co"


@pytest.mark.parametrize(
    "name",
    ["Acme GmbH & Co. KG", "Samsung Electronics Co.,Ltd.", "The Acme Group", "Procter & Gamble", "Acme´s"],
)
def test_every_new_key_normalises_to_itself(name: str) -> None:
    key = normalise_company(name)
    assert key is not None and normalise_company(key) == key
