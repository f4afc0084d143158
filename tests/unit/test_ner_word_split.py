"""Raw text is split into words the way CoNLL-2003 (and the Penn Treebank) writes them: a model trained
on CoNLL returned "O", "'", "Brien" for O'Brien and "S&" for S&P at predict time, since predict split
its text otherwise than the file's tokens (3,297 of the training file's 14,041 sentences re-split
differently, 200 of them inside an entity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.tasks.token_classification.encoding import split_words
from tunelab.tasks.token_classification.reading import read_jsonl_spans, word_offsets


def words(text: str) -> list[str]:
    """The words of ``text``, checked to be what their offsets slice out of it."""
    found, offsets = split_words(text)
    assert [text[s:e] for s, e in offsets] == found
    assert offsets == word_offsets(text)
    return found


def spans_file(path: Path, text: str, *spans: tuple[int, int, str]) -> Path:
    record = {"text": text, "spans": [{"start": s, "end": e, "label": label} for s, e, label in spans]}
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Acme's shares", ["Acme", "'s", "shares"]),
        ("SCHUMACHER'S WIN", ["SCHUMACHER", "'S", "WIN"]),
        ("It doesn't work", ["It", "does", "n't", "work"]),
        ("I did n't feel good .", ["I", "did", "n't", "feel", "good", "."]),  # CoNLL's own spacing
        ("can't, won't, DON'T", ["ca", "n't", ",", "wo", "n't", ",", "DO", "N'T"]),
        (
            "they're, we'll, I've, I'm, he'd",
            ["they", "'re", ",", "we", "'ll", ",", "I", "'ve", ",", "I", "'m", ",", "he", "'d"],
        ),
        ("you\u2019re O\u2019Brien\u2019s", ["you", "\u2019re", "O\u2019Brien", "\u2019s"]),
        ("Rene\u0301e's", ["Rene\u0301e", "'s"]),  # a decomposed accent stays in its word
    ],
)
def test_clitics_are_words_of_their_own_with_their_apostrophe(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("O'Brien's serve", ["O'Brien", "'s", "serve"]),
        ("O'Neal said", ["O'Neal", "said"]),
        ("Shi'ite and al-Gama'a", ["Shi'ite", "and", "al-Gama'a"]),
        ("S&P cut AT&T to AA", ["S&P", "cut", "AT&T", "to", "AA"]),
        ("Seasongood & Mayer", ["Seasongood", "&", "Mayer"]),
        ("D'Amato", ["D'Amato"]),
        ("o'clock rock'n'roll", ["o'clock", "rock'n'roll"]),
    ],
)
def test_an_apostrophe_or_ampersand_inside_a_name_keeps_it_whole(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # quotes and a plural possessive stay apart from their word, as before
        ("'quoted' text", ["'", "quoted", "'", "text"]),
        ("the players' union", ["the", "players", "'", "union"]),
        # a French or Italian elision stays apart: the entity is "Europe", not "l'Europe"
        ("l'Europe et d'Italia, qu'il", ["l", "'", "Europe", "et", "d", "'", "Italia", ",", "qu", "'", "il"]),
        ("dell'Italia", ["dell", "'", "Italia"]),
        # no clitic at the start of a Dutch name
        ("'s-Hertogenbosch", ["'", "s-Hertogenbosch"]),
        # "2+2" has a number before the sign, "end.5" a word before the dot
        ("2+2 end.5", ["2", "+", "2", "end", ".", "5"]),
        ("costs $5, AUS$ 3", ["costs", "$", "5", ",", "AUS", "$", "3"]),
        # a number ending a sentence keeps its full stop apart
        ("He finished 2. Then he left", ["He", "finished", "2", ".", "Then", "he", "left"]),
        ("foo_bar-baz snake_case", ["foo_bar", "-", "baz", "snake_case"]),
    ],
)
def test_other_text_splits_as_before(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Turnover was US$ 275 million", ["Turnover", "was", "US$", "275", "million"]),
        (
            "C$5 and HK$ 3, NZ$ 1, S$ 2, A$ 9",
            ["C$", "5", "and", "HK$", "3", ",", "NZ$", "1", ",", "S$", "2", ",", "A$", "9"],
        ),
    ],
)
def test_currency_prefixes_are_one_word(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-- Sarajevo newsroom", ["--", "Sarajevo", "newsroom"]),
        ("linked yet--how", ["linked", "yet", "--", "how"]),
        ("a rule ------ and ... or ..", ["a", "rule", "------", "and", "...", "or", ".."]),
    ],
)
def test_runs_of_dashes_and_dots_are_one_word(text: str, expected: list[str]) -> None:
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DETROIT 44 82 .349 28 1/2", ["DETROIT", "44", "82", ".349", "28", "1/2"]),
        ("at 5-1/2 on 22/11/96, 1996/97", ["at", "5-1/2", "on", "22/11/96", ",", "1996/97"]),
        ("his 2,282nd game, 1,250M", ["his", "2,282nd", "game", ",", "1,250M"]),
        ("Newsroom +44 171", ["Newsroom", "+44", "171"]),
    ],
)
def test_fractions_signed_and_bare_decimals_are_one_word(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_a_list_items_number_at_a_line_start_keeps_its_dot() -> None:
    assert words("1. Pivotal 100-30\n2. Eveningperformance") == [
        "1.",
        "Pivotal",
        "100-30",
        "2.",
        "Eveningperformance",
    ]
    assert words("10= Martina Ertl") == ["10=", "Martina", "Ertl"]


def test_an_abbreviation_is_whole_in_a_hyphenated_word_and_before_a_clitic() -> None:
    assert words("a U.S.-led plan") == ["a", "U.S.-led", "plan"]
    assert words("Microsoft Corp.'s Windows") == ["Microsoft", "Corp.", "'s", "Windows"]
    assert words("Ameritech Corp. , BellSouth") == ["Ameritech", "Corp.", ",", "BellSouth"]


def test_halfwidth_katakana_is_split_per_character_as_fullwidth_is() -> None:
    from tunelab.data.scripts import count_words

    assert words("ﾄﾖﾀ トヨタ") == ["ﾄ", "ﾖ", "ﾀ", "ト", "ヨ", "タ"]
    # a halfwidth voiced sound mark (a letter, not a combining mark) stays on its kana
    assert words("ｶﾞｿﾘﾝ") == ["ｶﾞ", "ｿ", "ﾘ", "ﾝ"]
    assert count_words("ﾄﾖﾀ") == 3  # as before: the unspaced class already held halfwidth forms


def test_the_earlier_rules_still_hold() -> None:
    assert words("Anglo-Dutch U.S. 1,000.50 M. Smith Inc. bought") == [
        "Anglo-Dutch",
        "U.S.",
        "1,000.50",
        "M.",
        "Smith",
        "Inc.",
        "bought",
    ]
    assert words("राजेश 我住在北京 Schiff\u00adfahrt") == [
        "राजेश",
        "我",
        "住",
        "在",
        "北",
        "京",
        "Schiff\u00adfahrt",
    ]


def test_a_span_ending_before_a_clitic_reads(tmp_path: Path) -> None:
    path = spans_file(tmp_path / "s.jsonl", "Acme's shares", (0, 4, "ORG"))
    (sentence,) = read_jsonl_spans(path)
    assert sentence.tokens == ["Acme", "'s", "shares"]
    assert sentence.tags == ["B-ORG", "O", "O"]
    path = spans_file(tmp_path / "p.jsonl", "O'Brien's serve", (0, 7, "PER"))
    (sentence,) = read_jsonl_spans(path)
    assert sentence.tokens == ["O'Brien", "'s", "serve"]
    assert sentence.tags == ["B-PER", "O", "O"]


def test_a_span_ending_inside_a_word_kept_whole_splits_it_for_training(tmp_path: Path) -> None:
    """The new whole words are cut where a training span file's entity starts or ends inside them,
    as hyphenated words are; predict (and a scored file) keeps them whole."""
    path = spans_file(tmp_path / "s.jsonl", "US$ 5 for AT&T", (0, 2, "LOC"), (10, 12, "ORG"))
    (trained,) = read_jsonl_spans(path)
    assert trained.tokens == ["US", "$", "5", "for", "AT", "&", "T"]
    assert trained.tags == ["B-LOC", "O", "O", "O", "B-ORG", "O", "O"]
    (scored,) = read_jsonl_spans(path, gold_cuts=False)
    assert scored.tokens == ["US$", "5", "for", "AT&T"]
    assert scored.tags == ["B-LOC", "O", "O", "B-ORG"]


# Sentences of CoNLL-2003's English training file (eng.train), tokens as the file has them.
CONLL_SENTENCES = [
    "Nicolas Lapentti ( Ecuador ) vs. Alex O'Brien ( U.S. )",
    '" Multi-layers kept management at a distance from its customers , " O\'Neal said .',
    "LAST S&P SIGN DATE SUB DATE 5 .",
    "BRIGHT-BELGIANS SPEED AFTER SCHUMACHER 'S WIN .",
    "Only France and Britain backed Fischler 's proposal .",
    "I did n't feel good .",
    "We think it 'll work really well . \"",
    "We 've got to make up some ground . \"",
    "Turnover was US$ 275 million .",
    "( A$ 1 = US$ 0.79 )",
    "The budget deficit was A$ 10.3 billion in 1995/96 .",
    "Shr C$ 0.04 C$ 0.08",
    "-- Sarajevo newsroom , +387-71-663-864 .",
    "DETROIT 44 82 .349 28 1/2",
    "2. Martens",
    "A U.S.-led air force in southern Turkey",
]


@pytest.mark.parametrize("sentence", CONLL_SENTENCES)
def test_real_conll_sentences_split_into_their_own_tokens(sentence: str) -> None:
    tokens = sentence.split(" ")
    assert words(sentence) == tokens


def test_entity_offsets_are_documented_as_code_points() -> None:
    from tunelab.serve.schemas import Entity

    properties = Entity.model_json_schema()["properties"]
    for key in ("start", "end"):
        assert "code points" in properties[key]["description"]
        assert "UTF-16" in properties[key]["description"]
