"""tunelab.tasks.token_classification.reading: each NER input format, and each user mistake as one
DataError line naming the file, the line and the fix."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from tunelab.errors import DataError
from tunelab.tasks.token_classification.reading import (
    Sentence,
    check_labels,
    read_conll,
    read_jsonl_spans,
    read_jsonl_tokens,
    to_iob2,
)

CONLL = """\
-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def jsonl(path: Path, *records: object) -> Path:
    return write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def error_of(fn, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --- formats --------------------------------------------------------------------------------------


def test_conll_skips_docstart_breaks_on_blank_lines_and_keeps_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "train.txt", CONLL)
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [
        ["EU", "rejects", "German", "call"],
        ["Peter", "Blackburn"],
        ["BRUSSELS"],
    ]
    assert [s.tags for s in sentences] == [
        ["B-ORG", "O", "B-MISC", "O"],
        ["B-PER", "I-PER"],
        ["B-LOC"],
    ]
    assert sentences[0].lines == [3, 4, 5, 6]
    assert sentences[2].line == 13
    assert sentences[1].source == str(path)


def test_conll_tag_column_is_chosen_by_index(tmp_path: Path) -> None:
    path = write(tmp_path / "train.txt", CONLL)
    chunks = read_conll(path, tag_column=2)
    assert chunks[0].tags == ["B-NP", "B-VP", "B-NP", "I-NP"]
    assert read_conll(path, tag_column=3)[0].tags == read_conll(path)[0].tags


def test_conll_reads_tabs_crlf_a_bom_and_gb18030(tmp_path: Path) -> None:
    crlf = write(tmp_path / "a.txt", "\ufeffEU\tB-ORG\r\nrejects\tO\r\n\r\nhi\tO\r\n")
    assert [s.tokens for s in read_conll(crlf)] == [["EU", "rejects"], ["hi"]]
    chinese = write(tmp_path / "zh.txt", "北京 B-LOC\n是 O\n".encode("gb18030"))
    assert read_conll(chinese, encoding="gb18030")[0].tokens == ["北京", "是"]


def test_jsonl_tokens(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "train.jsonl",
        {"tokens": ["EU", "rejects", "German"], "tags": ["B-ORG", "O", "B-MISC"]},
        {"tokens": ["北", "京"], "tags": ["B-LOC", "I-LOC"]},
    )
    sentences = read_jsonl_tokens(path)
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German"], ["北", "京"]]
    assert sentences[1].tags == ["B-LOC", "I-LOC"]
    assert sentences[1].lines == [2, 2]


def test_jsonl_spans_become_bio_tags_with_character_offsets(tmp_path: Path) -> None:
    text = "Peter Blackburn visited the U.S. on Monday."
    path = jsonl(
        tmp_path / "train.jsonl",
        {
            "text": text,
            "spans": [{"start": 28, "end": 32, "label": "LOC"}, {"start": 0, "end": 15, "label": "PER"}],
        },
        {"text": "我住在北京。", "spans": [{"start": 3, "end": 5, "label": "LOC"}]},
        {"text": "nothing here"},
    )
    first, chinese, plain = read_jsonl_spans(path)
    # "U.S." is one word, as CoNLL-2003 writes it (test_ner_task: ..._one_word_at_predict_time).
    assert first.tokens == ["Peter", "Blackburn", "visited", "the", "U.S.", "on", "Monday", "."]
    assert first.tags == ["B-PER", "I-PER", "O", "O", "B-LOC", "O", "O", "O"]
    assert first.text == text
    assert first.offsets is not None
    assert [text[s:e] for s, e in first.offsets] == first.tokens
    assert chinese.tokens == ["我", "住", "在", "北", "京", "。"]
    assert chinese.tags == ["O", "O", "O", "B-LOC", "I-LOC", "O"]
    assert plain.tags == ["O", "O"]
    assert plain.lines == [3, 3]


def test_entities_under_another_tools_key_are_refused_not_read_as_none(tmp_path: Path) -> None:
    """doccano's "label" (and "entities") were read as no entity: eval reported F1 0 silently."""
    path = jsonl(
        tmp_path / "doccano.jsonl",
        {"text": "Peter visited Paris .", "spans": [{"start": 0, "end": 5, "label": "PER"}]},
        {"text": "Anna left Rome .", "label": [[10, 14, "LOC"]]},
    )
    with pytest.raises(
        DataError, match=r'doccano\.jsonl line 2: entities under "label", but this reader takes "spans"'
    ):
        read_jsonl_spans(path)


def test_entities_as_tunelab_predict_writes_them_are_refused_not_read_as_gold(tmp_path: Path) -> None:
    """``predict --output`` of an NER run writes ``entities``; read as gold (a short-lived alias for
    "spans"), ``eval`` of a file predicted from texts alone scored the model against itself (100%).
    Refused naming the key: relabelled by a person, it is renamed "spans" on purpose."""
    predicted = {"text": "EU", "label": "ORG", "start": 0, "end": 2, "score": 0.98}
    path = jsonl(tmp_path / "predicted.jsonl", {"text": "EU rejects German call", "entities": [predicted]})
    with pytest.raises(DataError, match=r'entities under "entities", but this reader takes "spans"'):
        read_jsonl_spans(path)


# --- schemes --------------------------------------------------------------------------------------


def test_iob1_is_converted_to_iob2_and_iob2_is_kept(tmp_path: Path) -> None:
    # IOB1: an entity starts with I-, B- only separates two adjacent entities of one type.
    iob1 = write(tmp_path / "iob1.txt", "Peter I-PER\nBlackburn I-PER\nJohn B-PER\nsaid O\nEU I-ORG\n")
    assert read_conll(iob1)[0].tags == ["B-PER", "I-PER", "B-PER", "O", "B-ORG"]
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    assert to_iob2(iob2) == iob2
    assert to_iob2(["B-PER", "I-LOC"]) == ["B-PER", "B-LOC"]  # a type change starts an entity


# --- errors ---------------------------------------------------------------------------------------


def test_conll_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", "EU NNP B-ORG\nrejects O\n")
    message = error_of(read_conll, path)
    assert f"{path} line 2:" in message
    assert "2 columns, but line 1 has 3" in message
    one = write(tmp_path / "one.txt", "EU\n")
    assert f"{one} line 1: 1 column" in error_of(read_conll, one)


def test_conll_tag_column_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path / "t.txt", "EU B-ORG\n")
    assert "tag_column=5 but the line has 2 columns" in error_of(read_conll, path, tag_column=5)
    assert "are the same column" in error_of(read_conll, path, tag_column=0)


def test_tag_outside_the_scheme_names_file_and_line(tmp_path: Path) -> None:
    conll = write(tmp_path / "t.txt", "EU B-ORG\nrejects O\n\nBob S-PER\n")
    message = error_of(read_conll, conll)
    assert f"{conll} line 4: tag 'S-PER'" in message
    assert "B-TYPE" in message
    pos = write(tmp_path / "pos.txt", CONLL)
    assert f"{pos} line 3: tag 'NNP'" in error_of(read_conll, pos, tag_column=1)
    tokens = jsonl(
        tmp_path / "t.jsonl", {"tokens": ["a"], "tags": ["O"]}, {"tokens": ["Bob"], "tags": ["PER"]}
    )
    assert f"{tokens} line 2: tag 'PER' in tags[0]" in error_of(read_jsonl_tokens, tokens)


def test_jsonl_tokens_and_tags_of_different_lengths(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "t.jsonl", {"tokens": ["EU", "rejects"], "tags": ["B-ORG"]})
    assert f"{path} line 1: 2 tokens but 1 tags" in error_of(read_jsonl_tokens, path)


def test_jsonl_tokens_missing_field_or_bad_json(tmp_path: Path) -> None:
    missing = jsonl(tmp_path / "m.jsonl", {"tokens": ["EU"]})
    assert f'{missing} line 1: "tags" must be a list of strings, got nothing' in error_of(
        read_jsonl_tokens, missing
    )
    broken = write(tmp_path / "b.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n\n{"tokens": [\n')
    assert f"{broken} line 3: not valid JSON" in error_of(read_jsonl_tokens, broken)


def test_span_outside_the_text(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "s.jsonl",
        {"text": "EU rejects", "spans": []},
        {"text": "EU rejects", "spans": [{"start": 3, "end": 40, "label": "ORG"}]},
    )
    message = error_of(read_jsonl_spans, path)
    assert f"{path} line 2: spans[0] 3-40 'ORG' is outside the text (0-10 characters)" in message


def test_span_overlapping_another(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "s.jsonl",
        {
            "text": "New York City",
            "spans": [{"start": 0, "end": 8, "label": "LOC"}, {"start": 4, "end": 13, "label": "LOC"}],
        },
    )
    message = error_of(read_jsonl_spans, path)
    assert f"{path} line 1: span 4-13 'LOC' ('York City') overlaps span 0-8 'LOC'" in message


def test_span_not_on_token_boundaries(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "s.jsonl", {"text": "New York City", "spans": [{"start": 0, "end": 7, "label": "LOC"}]}
    )
    message = error_of(read_jsonl_spans, path)
    assert f"{path} line 1: span 0-7 'LOC' ('New Yor') does not start and end on token boundaries" in message
    assert "'York'" in message


def test_a_span_may_end_inside_a_word_kept_whole_at_a_hyphen_or_dot(tmp_path: Path) -> None:
    """Hyphenated words and "Inc." are one word since CoNLL-2003 writes them so; a span file
    annotating "Google" inside "Google-owned" or "Acme Inc" without its dot was still valid before,
    so those words are split at the span's ends, and only there."""
    text = "The Google-owned Acme Inc. bought Anglo-Dutch assets"
    path = jsonl(
        tmp_path / "s.jsonl",
        {
            "text": text,
            "spans": [{"start": 4, "end": 10, "label": "ORG"}, {"start": 17, "end": 25, "label": "ORG"}],
        },
    )
    (sentence,) = read_jsonl_spans(path)
    assert sentence.tokens == [
        "The",
        "Google",
        "-",
        "owned",
        "Acme",
        "Inc",
        ".",
        "bought",
        "Anglo-Dutch",
        "assets",
    ]
    assert sentence.tags == ["O", "B-ORG", "O", "O", "B-ORG", "I-ORG", "O", "O", "O", "O"]
    assert [text[s:e] for s, e in sentence.offsets or []] == sentence.tokens


def test_numbers_inside_hyphenated_words_stay_whole_and_no_character_is_lost(tmp_path: Path) -> None:
    """ "2-2.5" came out "2-2", ".", "5"; an entity ending inside "Python-3.10" lost the "3" (a piece
    running past the word's end was dropped)."""
    from tunelab.tasks.token_classification.reading import word_offsets

    text = "rates rose 2-2.5 percent"
    assert [text[s:e] for s, e in word_offsets(text)] == ["rates", "rose", "2-2.5", "percent"]
    path = jsonl(
        tmp_path / "s.jsonl",
        {"text": "Python-3.10 is out", "spans": [{"start": 0, "end": 6, "label": "MISC"}]},
    )
    (sentence,) = read_jsonl_spans(path)
    assert sentence.tokens == ["Python", "-", "3.10", "is", "out"]
    assert [e - s for s, e in sentence.offsets or []] == [6, 1, 4, 2, 3]


def test_a_span_cutting_into_a_hyphenated_part_is_still_refused(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "s.jsonl", {"text": "Google-owned firm", "spans": [{"start": 0, "end": 3, "label": "ORG"}]}
    )
    assert "does not start and end on token boundaries (it cuts into 'Google')" in error_of(
        read_jsonl_spans, path
    )


def test_span_malformed(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "s.jsonl", {"text": "EU", "spans": [{"start": "0", "end": 2, "label": "ORG"}]})
    assert f'{path} line 1: spans[0]: "start" must be a character offset' in error_of(read_jsonl_spans, path)


def test_labels_not_in_training_are_named(tmp_path: Path) -> None:
    train = read_conll(write(tmp_path / "train.txt", "EU B-ORG\nPeter B-PER\n"))
    dev_path = write(tmp_path / "dev.txt", "EU B-ORG\n\nParis B-LOC\nBob B-PERS\nLyon B-LOC\n")
    message = error_of(check_labels, train, read_conll(dev_path), "data.validation")
    assert message.startswith("data.validation: entity types not in the training data:")
    assert f"'LOC' ({dev_path} line 3)" in message
    assert f"'PERS' ({dev_path} line 4)" in message
    assert "the training data has ORG, PER" in message
    check_labels(train, read_conll(write(tmp_path / "ok.txt", "Bob B-PER\n")), "data.test")


def test_missing_file_and_wrong_encoding(tmp_path: Path) -> None:
    assert "file not found" in error_of(read_conll, tmp_path / "nope.txt")
    latin = write(tmp_path / "l.txt", "EU B-ORG\n\ncafé O\n".encode("latin-1"))
    assert f"{latin} line 3: not valid utf-8" in error_of(read_conll, latin)
    assert "no sentences" in error_of(read_conll, write(tmp_path / "e.txt", "-DOCSTART- O\n\n"))


# --- the real data --------------------------------------------------------------------------------


def test_reads_the_real_conll2003_train_file(shared_data: Path) -> None:
    """Counts from ../shared/data/conll2003/SOURCE.md: 14,041 sentences, 203,621 tokens."""
    path = shared_data / "conll2003" / "train.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    sentences = read_conll(path)
    assert len(sentences) == 14041
    assert sum(len(s.tokens) for s in sentences) == 203621
    starts = [t for s in sentences for t in s.tags if t.startswith("B-")]
    assert {k: starts.count(f"B-{k}") for k in ("PER", "LOC", "ORG", "MISC")} == {
        "PER": 6600,
        "LOC": 7140,
        "ORG": 6321,
        "MISC": 3438,
    }
    assert all(isinstance(s, Sentence) and len(s.tokens) == len(s.tags) for s in sentences)


@pytest.mark.parametrize("suffix", [".conll", ".jsonl"])
def test_auto_encoding_reads_gb18030_ner_files(tmp_path: Path, suffix: str) -> None:
    """``data.encoding=auto`` is documented for every data file, NER ones included."""
    from tunelab.config import DataConfig
    from tunelab.tasks import get_task

    if suffix == ".conll":
        content = "北\tB-LOC\n京\tI-LOC\n好\tO\n\n上\tB-LOC\n海\tI-LOC\n"
    else:
        content = '{"text": "北京好", "spans": [{"start": 0, "end": 2, "label": "LOC"}]}\n'
    train = tmp_path / f"train{suffix}"
    train.write_bytes(content.encode("gb18030"))
    data = DataConfig(train=str(train), dev=str(train), task="token_classification", encoding="auto")
    splits = get_task("token_classification").load_splits(data)
    assert "B-LOC" in splits.labels.names
    assert "".join(splits.train.sentences[0].tokens) in ("北京好", "北京 好")


# --- review fixes: token column, split of scored span files, joiners, span messages ----------------

GERMEVAL = (
    "1\tSchartau\tB-PER\tO\n2\tsagte\tO\tO\n3\tin\tO\tO\n4\tBerlin\tB-LOC\tO\n\n1\tEr\tO\tO\n2\tging\tO\tO\n"
)


def test_conll_token_column_reads_the_words_of_a_numbered_file(tmp_path: Path) -> None:
    """GermEval-2014 / CoNLL-U-derived files number the tokens in column 0: the words are column 1."""
    path = write(tmp_path / "germeval.tsv", GERMEVAL)
    sentences = read_conll(path, tag_column=2, token_column=1)
    assert [s.tokens for s in sentences] == [["Schartau", "sagte", "in", "Berlin"], ["Er", "ging"]]
    assert sentences[0].tags == ["B-PER", "O", "O", "B-LOC"]
    assert read_conll(path, tag_column=2, token_column=-3)[0].tokens == sentences[0].tokens


def test_conll_comment_lines_before_a_sentence_are_skipped(tmp_path: Path) -> None:
    """GermEval-2014 starts each sentence with '#<TAB>url [date]', CoNLL-U with '# key = value'."""
    germeval = "#\thttp://de.wikipedia.org/wiki/Manfred_Korfmann [2009-10-17]\n" + GERMEVAL.replace(
        "\n\n", "\n\n#\thttp://de.wikipedia.org/wiki/Er [2009-10-18]\n"
    )
    path = write(tmp_path / "germeval.tsv", germeval)
    sentences = read_conll(path, tag_column=2, token_column=1)
    assert [s.tokens for s in sentences] == [["Schartau", "sagte", "in", "Berlin"], ["Er", "ging"]]
    assert sentences[1].line == 8
    conllu = "# sent_id = 1\n# text = EU rejects\nEU B-ORG\nrejects O\n"
    assert read_conll(write(tmp_path / "u.txt", conllu))[0].tokens == ["EU", "rejects"]
    # a '#' token with its tag has the token lines' columns: it stays a token, first in a sentence too
    hashtag = write(tmp_path / "tweets.txt", "# O\nEU B-ORG\n\nwow O\n# O\n")
    assert [s.tokens for s in read_conll(hashtag)] == [["#", "EU"], ["wow", "#"]]


def test_a_token_column_of_token_numbers_is_refused(tmp_path: Path) -> None:
    """Read from column 0, GermEval trained on "1", "2", "3", ... with no error."""
    path = write(tmp_path / "germeval.tsv", GERMEVAL)
    message = error_of(read_conll, path, tag_column=2)
    assert f"{path} line 1: column 0 holds token numbers; set data.token_column" in message
    # numbers as words in some sentences only are words
    mixed = write(tmp_path / "mixed.txt", "1 O\n2 O\n\nEU B-ORG\nrises O\n")
    assert [s.tokens for s in read_conll(mixed)] == [["1", "2"], ["EU", "rises"]]


def test_token_column_out_of_range_or_on_the_tags_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "train.txt", "\nEU NNP B-ORG\n")
    assert f"{path} line 2: token_column=3 but the line has 3 columns" in error_of(
        read_conll, path, token_column=3
    )
    same = error_of(read_conll, path, token_column=-1, tag_column=2)
    assert f"{path} line 2: tag_column=2 and token_column=-1 are the same column" in same


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Schiff\u00adfahrt und Ber\u00adlin", ["Schiff\u00adfahrt", "und", "Ber\u00adlin"]),
        (
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 ok",
            ["\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "ok"],
        ),
        ("a\u200db c\u2060d", ["a\u200db", "c\u2060d"]),
        ("Anglo-\u00adDutch", ["Anglo", "-", "\u00ad", "Dutch"]),
        ("\u00adfoo bar\u00ad x", ["\u00ad", "foo", "bar", "\u00ad", "x"]),
        ("北\u200d京", ["北", "\u200d", "京"]),
    ],
)
def test_soft_hyphens_and_zero_width_joiners_stay_inside_their_word(text: str, words: list[str]) -> None:
    """A soft hyphen, ZWNJ, ZWJ or word joiner between two word characters split the word at predict
    time ("Schiff", "\\u00ad", "fahrt"); at a word's edge, or between CJK characters, it does not join."""
    from tunelab.tasks.token_classification.encoding import split_words

    found, offsets = split_words(text)
    assert found == words and [text[s:e] for s, e in offsets] == words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        # NFD Japanese: "で" is "て" + U+3099, "パ" "ハ" + U+309A; each base with its marks is a word
        (
            unicodedata.normalize("NFD", "東京でがくせいが働く"),
            ["東", "京", "て\u3099", "か\u3099", "く", "せ", "い", "か\u3099", "働", "く"],
        ),
        (
            unicodedata.normalize("NFD", "ガイドブック"),
            ["カ\u3099", "イ", "ト\u3099", "フ\u3099", "ッ", "ク"],
        ),
        # a Latin word after decomposed kana is a word of its own, as NFC splits it
        (unicodedata.normalize("NFD", "パンでabc"), ["ハ\u309a", "ン", "て\u3099", "abc"]),
        ("\u00e9\u0301李四", ["\u00e9\u0301", "李", "四"]),
        # a decomposed accent, Hindi's vowel signs: the word goes on after the mark, as before
        ("cafe\u0301 au lait", ["cafe\u0301", "au", "lait"]),
        (
            unicodedata.normalize("NFD", "Ångström Ünited"),
            [unicodedata.normalize("NFD", "Ångström"), "U\u0308nited"],
        ),
        ("राजेश ok", ["राजेश", "ok"]),
    ],
)
def test_a_combining_mark_never_glues_a_chinese_or_japanese_character_on(text: str, words: list[str]) -> None:
    """After a mark, the next letter was joined on whatever it was: decomposed (NFD) Japanese split
    as "でがく", "が働", "ドブッ", and "é\u0301李" was one word, where the text composed (NFC)
    gives each CJK character a word of its own."""
    from tunelab.tasks.token_classification.encoding import split_words

    found, offsets = split_words(text)
    assert found == words and [text[s:e] for s, e in offsets] == words
    composed = [unicodedata.normalize("NFC", w) for w in words]
    assert composed == split_words(unicodedata.normalize("NFC", text))[0]  # NFD splits as NFC does


def test_a_span_after_decomposed_kana_is_on_token_boundaries(tmp_path: Path) -> None:
    """Was refused: "does not start and end on token boundaries (it cuts into 'がト' 'ヨ' 'タ')".
    Offsets stay those of the text as given (not normalised): トヨタ is characters 4-7 of NFD."""
    text = unicodedata.normalize("NFD", "昨日がトヨタに行った")
    assert text[4:7] == "トヨタ" and len(text) == 11
    path = jsonl(tmp_path / "s.jsonl", {"text": text, "spans": [{"start": 4, "end": 7, "label": "ORG"}]})
    for gold_cuts in (True, False):
        (sentence,) = read_jsonl_spans(path, gold_cuts=gold_cuts)
        assert sentence.tokens == ["昨", "日", "か\u3099", "ト", "ヨ", "タ", "に", "行", "っ", "た"]
        assert sentence.tags == ["O", "O", "O", "B-ORG", "I-ORG", "I-ORG", "O", "O", "O", "O"]
        assert sentence.offsets is not None and sentence.offsets[2:4] == [(2, 4), (4, 5)]


@pytest.mark.parametrize(
    ("text", "start", "end", "expected"),
    [
        ("I love New York ", 7, 16, "has trailing whitespace; give start 7, end 15 ('New York') instead"),
        ("I love New York", 6, 15, "has leading whitespace; give start 7, end 15 ('New York') instead"),
        ("I love  New York  x", 6, 18, "has leading and trailing whitespace; give start 8, end 16"),
        ("I love   x", 7, 9, "is only whitespace; remove it"),
    ],
)
def test_a_span_with_whitespace_at_its_edges_is_told_so(
    tmp_path: Path, text: str, start: int, end: int, expected: str
) -> None:
    """Was "does not start and end on token boundaries (it cuts into ...)", naming no whitespace."""
    path = jsonl(
        tmp_path / "s.jsonl", {"text": text, "spans": [{"start": start, "end": end, "label": "LOC"}]}
    )
    message = error_of(read_jsonl_spans, path)
    assert f"{path} line 1: span {start}-{end} 'LOC'" in message and expected in message


@pytest.mark.parametrize("label", ["B-PER", "I-PER", "S-PER", "E-LOC", "L-ORG", "U-MISC"])
def test_a_span_label_written_as_a_tag_is_refused(tmp_path: Path, label: str) -> None:
    """ "B-PER" was taken as the entity type: the tags became B-B-PER, I-B-PER."""
    path = jsonl(tmp_path / "s.jsonl", {"text": "Hi Anna", "spans": [{"start": 3, "end": 7, "label": label}]})
    message = error_of(read_jsonl_spans, path)
    assert f"{path} line 1: spans[0]" in message
    assert f"give the entity type ({label[2:]}), not a BIO tag" in message
    assert read_jsonl_spans(
        jsonl(tmp_path / "ok.jsonl", {"text": "Hi Anna", "spans": [{"start": 3, "end": 7, "label": "BPER"}]})
    )[0].tags == ["O", "B-BPER"]


def test_a_scored_span_file_is_split_as_predict_splits_it(tmp_path: Path) -> None:
    """Dev/test/eval span files were cut at the gold entities' edges, which predict never does: F1
    credited "Google" inside "Google-owned", an entity predict cannot return. Uncut, a word takes
    the entity its first character is in."""
    from tunelab.tasks.token_classification.encoding import split_words

    text = "The Google-owned Acme Inc. bought Anglo-Dutch assets"
    path = jsonl(
        tmp_path / "s.jsonl",
        {
            "text": text,
            "spans": [
                {"start": 4, "end": 10, "label": "ORG"},  # Google, inside Google-owned
                {"start": 17, "end": 25, "label": "ORG"},  # Acme Inc, without its dot
                {"start": 40, "end": 45, "label": "MISC"},  # Dutch, inside Anglo-Dutch
            ],
        },
    )
    (trained,) = read_jsonl_spans(path)  # training keeps the cuts
    assert trained.tokens[1:4] == ["Google", "-", "owned"]
    (scored,) = read_jsonl_spans(path, gold_cuts=False)
    assert scored.tokens == split_words(text)[0]
    assert scored.offsets == split_words(text)[1]
    assert list(zip(scored.tokens, scored.tags, strict=True)) == [
        ("The", "O"),
        ("Google-owned", "B-ORG"),
        ("Acme", "B-ORG"),
        ("Inc.", "I-ORG"),
        ("bought", "O"),
        ("Anglo-Dutch", "O"),
        ("assets", "O"),
    ]
    # spans are checked the same way: one cutting into a plain word is still refused
    bad = jsonl(
        tmp_path / "b.jsonl", {"text": "Google-owned", "spans": [{"start": 0, "end": 3, "label": "ORG"}]}
    )
    assert "it cuts into 'Google'" in error_of(read_jsonl_spans, bad, gold_cuts=False)


def test_an_entity_starting_inside_a_word_tags_its_later_words() -> None:
    from tunelab.tasks.token_classification.reading import _word_tags

    # "foo-Bar baz qux": entity "Bar baz" starts inside "foo-Bar"
    words = [(0, 7), (8, 11), (12, 15)]
    assert _word_tags(words, [(4, 11, "X")]) == ["O", "B-X", "O"]
    assert _word_tags(words, [(0, 3, "X"), (8, 15, "Y")]) == ["B-X", "B-Y", "I-Y"]
    assert _word_tags(words, []) == ["O", "O", "O"]


def test_a_jsonl_record_with_neither_layout_names_both(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "t.jsonl", {"sentence": "Hi Anna", "label": "x"})
    message = error_of(read_jsonl_tokens, path)
    assert f"{path} line 1: keys 'sentence', 'label'; NER data needs tokens and tags" in message
    assert "or text and spans" in message
