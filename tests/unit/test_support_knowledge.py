"""The support bot's knowledge base: reading passages, the embedding index, search, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tunelab
from tunelab.apps.support.knowledge import MAX_PASSAGE_WORDS, KnowledgeIndex, read_passages
from tunelab.errors import DataError

FAQ_MD = """# Cards

## How long does a new card take to arrive?
A new card arrives within 5 working days of ordering it.
If it has not arrived after 10 days, order a replacement in the app.

## I forgot my PIN
You can see your PIN in the app under Card settings, after confirming your identity.

## Exchange rates
We convert foreign currency payments at the interbank rate plus 0.5% on weekends.
"""


def test_markdown_sections_become_passages_with_titles_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "faq.md"
    path.write_text(FAQ_MD, encoding="utf-8")
    passages = read_passages(path)
    assert [p.title for p in passages] == [
        "How long does a new card take to arrive?",
        "I forgot my PIN",
        "Exchange rates",
    ]
    assert passages[0].text.startswith("A new card arrives within 5 working days")
    assert "order a replacement" in passages[0].text
    assert passages[0].source == f"{path}:4"


def test_a_long_markdown_section_is_cut_at_paragraph_breaks(tmp_path: Path) -> None:
    paragraph = " ".join(["word"] * 80)
    path = tmp_path / "long.md"
    path.write_text("# Long\n\n" + "\n\n".join([paragraph] * 5) + "\n", encoding="utf-8")
    passages = read_passages(path)
    assert len(passages) >= 3 and all(len(p.text.split()) <= MAX_PASSAGE_WORDS for p in passages)
    assert sum(len(p.text.split()) for p in passages) == 400  # nothing lost


def test_csv_and_jsonl_knowledge_files(tmp_path: Path) -> None:
    csv_path = tmp_path / "faq.csv"
    csv_path.write_text(
        'question,answer\n"Lost card?","Freeze it in the app, then order a new one."\n', "utf-8"
    )
    jsonl_path = tmp_path / "faq.jsonl"
    jsonl_path.write_text('{"title": "汇率", "text": "周末按银行间汇率加收0.5%。"}\n\n', encoding="utf-8")
    (from_csv,) = read_passages(csv_path)
    assert (from_csv.title, from_csv.text, from_csv.source) == (
        "Lost card?",
        "Freeze it in the app, then order a new one.",
        f"{csv_path}:2",
    )
    (from_jsonl,) = read_passages(jsonl_path)
    assert (from_jsonl.title, from_jsonl.text) == ("汇率", "周末按银行间汇率加收0.5%。")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.md", b"\n\n", r"empty.md: no passages \(the knowledge file is empty\)"),
        ("latin.md", "# Fees\n\nZürich\n".encode("latin-1"), r"latin.md: line 3 is not UTF-8"),
        ("bad.jsonl", b'{"text": "ok"}\n{"text": \n', r"bad.jsonl: line 2 is not JSON"),
        ("notext.jsonl", b'{"title": "x"}\n', r'notext.jsonl: line 1 needs a non-empty "text"'),
        ("cols.csv", b"q,a\nx,y\n", r"cols.csv: needs a text \(or answer\) column; it has q, a"),
        ("faq.pdf", b"%PDF", r"faq.pdf: knowledge files are .md"),
        # an empty row was skipped without a word; a repeated one listed twice in replies
        ("gap.csv", b"title,text\na,Freeze it.\nb,\n", r"gap.csv: line 3: the text is empty"),
        (
            "twice.csv",
            b"title,text\na,Freeze it.\nb,freeze  it.\n",
            r"twice.csv:3: the same text as .*twice.csv:2",
        ),
        ("twice.jsonl", b'{"text": "x"}\n{"text": "x"}\n', r"twice.jsonl:2: the same text as"),
        # an unclosed quote: csv.Error without the file ("unexpected Error")
        ("quote.csv", b'text\n"unclosed' + b"y" * 200_000 + b"\n", r"quote.csv: line \d+: not readable CSV"),
        ("title.jsonl", b'{"text": "x", "title": 3}\n', r'title.jsonl: line 1: "title" must be a string'),
    ],
)
def test_bad_knowledge_files_fail_in_one_line(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        read_passages(path)
    assert "\n" not in str(caught.value)


def test_search_finds_the_passage_a_paraphrase_asks_for_and_survives_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "faq.md"
    path.write_text(FAQ_MD, encoding="utf-8")
    index = KnowledgeIndex.build(read_passages(path))
    queries = {
        "still waiting for the card I ordered": "How long does a new card take to arrive?",
        "what is my pin number": "I forgot my PIN",
        "which rate do you use to convert dollars on a Saturday": "Exchange rates",
    }
    for query, title in queries.items():
        hits = index.search(query, k=2)
        assert hits[0].passage.title == title, (query, [h.passage.title for h in hits])
        assert hits[0].score > hits[1].score
    folder = index.save(tmp_path / "bot" / "knowledge")
    index.save(folder)  # replacing an existing index
    loaded = KnowledgeIndex.load(folder)
    assert loaded.passages == index.passages and loaded.model == "minilm-l6"
    assert [h.passage for h in loaded.search("forgot pin")] == [h.passage for h in index.search("forgot pin")]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["knowledge"]  # no temp folders left


def test_embed_is_public_and_unit_length() -> None:
    vectors = tunelab.embed(["card not arrived", "where is my card", "exchange rate on weekends"])
    assert vectors.shape == (3, 384)
    assert abs(float(vectors[0] @ vectors[0]) - 1.0) < 1e-5
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])


def test_a_folder_that_is_not_an_index_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a knowledge index"):
        KnowledgeIndex.load(tmp_path)


def test_passages_carry_their_intent_tag_in_every_format(tmp_path: Path) -> None:
    md = tmp_path / "faq.md"
    md.write_text(
        "# Card arrival\nintent: card_arrival\n\nCards arrive in 5 days.\n\n"
        "# PIN\n\nintent: forgot_pin\nSee the app.\n\n# Untagged\nintent is not a tag here: words.\n",
        encoding="utf-8",
    )
    assert [(p.title, p.intent, p.text) for p in read_passages(md)] == [
        ("Card arrival", "card_arrival", "Cards arrive in 5 days."),
        ("PIN", "forgot_pin", "See the app."),
        ("Untagged", None, "intent is not a tag here: words."),
    ]
    csv_path = tmp_path / "faq.csv"
    csv_path.write_text("title,text,intent\nLost?,Freeze it.,lost_card\nFees?,None.,\n", encoding="utf-8")
    assert [p.intent for p in read_passages(csv_path)] == ["lost_card", None]
    jsonl = tmp_path / "faq.jsonl"
    jsonl.write_text('{"text": "a", "intent": "x"}\n{"text": "b"}\n', encoding="utf-8")
    assert [p.intent for p in read_passages(jsonl)] == ["x", None]
    jsonl.write_text('{"text": "a", "intent": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r'faq.jsonl: line 1: "intent" must be a string'):
        read_passages(jsonl)


def test_exact_search_below_the_ann_threshold_and_hnsw_above_it_agree(tmp_path: Path) -> None:
    path = tmp_path / "faq.md"
    path.write_text(FAQ_MD, encoding="utf-8")
    passages = read_passages(path)
    exact = KnowledgeIndex.build(passages)
    ann = KnowledgeIndex.build(passages, ann_min_passages=2)  # lowered: 3 passages take the HNSW path
    assert (exact.search_kind, ann.search_kind) == ("exact", "hnsw")
    queries = ["still waiting for my new card", "forgot pin", "weekend exchange rate"]
    for got, want in zip(ann.search_many(queries, k=3), exact.search_many(queries, k=3), strict=True):
        assert [h.passage for h in got] == [h.passage for h in want]
        assert [round(h.score, 4) for h in got] == [round(h.score, 4) for h in want]
    loaded = KnowledgeIndex.load(ann.save(tmp_path / "knowledge"))
    assert loaded.search_kind == "hnsw" and (tmp_path / "knowledge" / KnowledgeIndex.ANN).is_file()
    assert [h.passage for h in loaded.search("forgot pin")] == [h.passage for h in exact.search("forgot pin")]
    assert not (tmp_path / "exact").exists()
    assert KnowledgeIndex.load(exact.save(tmp_path / "exact")).search_kind == "exact"
    assert not (tmp_path / "exact" / KnowledgeIndex.ANN).exists()


def test_jsonl_takes_answer_and_question_as_the_csv_does(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text('{"question": "How?", "answer": "Like so."}\n', encoding="utf-8")
    (passage,) = read_passages(path)
    assert (passage.title, passage.text) == ("How?", "Like so.")


def test_a_damaged_index_fails_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "faq.md"
    path.write_text(FAQ_MD, encoding="utf-8")
    folder = KnowledgeIndex.build(read_passages(path)).save(tmp_path / "knowledge")
    meta = folder / KnowledgeIndex.META
    meta.write_text(meta.read_text(encoding="utf-8").replace('"model"', '"modell"'), encoding="utf-8")
    with pytest.raises(DataError, match=r"not a knowledge index \(KeyError\); build it again"):
        KnowledgeIndex.load(folder)


def test_a_bot_file_without_text_and_label_columns_says_to_rename_them(tmp_path) -> None:
    """The data layer's advice said "set data.label_column", an option build, tune and eval lack
    (the bundled sample's column is "category")."""
    from tunelab.apps.support.rows import read_labelled
    from tunelab.errors import DataError

    path = tmp_path / "dev.csv"
    path.write_text("text,category\nwhere is my card,card_arrival\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"need columns 'text' and 'label' .*'category'.*rename the columns"
    ) as info:
        read_labelled(path)
    assert "data.label_column" not in str(info.value)


def test_a_bot_file_with_the_intent_runs_own_columns_is_read_with_them(tmp_path) -> None:
    """``build --dev`` of the sample's ``test.csv`` (``text,category``, the columns the demo run
    trained with) was refused, and the examples' build command needed a copy renamed by sed."""
    from types import SimpleNamespace

    from tunelab.apps.support.rows import read_labelled, run_columns_of
    from tunelab.errors import DataError

    path = tmp_path / "dev.csv"
    path.write_text("text,category\nwhere is my card,card_arrival\n", encoding="utf-8")
    predictor = SimpleNamespace(
        config=SimpleNamespace(data=SimpleNamespace(text_column="text", label_column="category"))
    )
    rows = read_labelled(path, run_columns_of(predictor))
    assert (rows.texts, rows.labels) == (["where is my card"], ["card_arrival"])
    other = tmp_path / "other.csv"
    other.write_text("message,intent\nwhere is my card,card_arrival\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"need columns 'text' and 'label' or the intent run's 'text' and 'category'"
    ):
        read_labelled(other, run_columns_of(predictor))


def test_a_markdown_intent_tag_may_hold_spaces(tmp_path: Path) -> None:
    """`intent: lost card` fell through into the passage's text (shown to customers as the answer's
    first line) and left the passage untagged: intent labels may hold spaces, as in CSV and JSONL."""
    md = tmp_path / "faq.md"
    md.write_text(
        "# Lost card\nintent: lost card  \n\nIf your card is lost, freeze it in the app.\n\n"
        "# Fees\n  Intent:   fees and charges\nNo monthly fee.\n",
        encoding="utf-8",
    )
    assert [(p.title, p.intent, p.text) for p in read_passages(md)] == [
        ("Lost card", "lost card", "If your card is lost, freeze it in the app."),
        ("Fees", "fees and charges", "No monthly fee."),
    ]


LONG = "Our bank offers many services to all of its customers who have questions. " * 18 + (
    "To reset your PIN at a cash machine, insert the card, choose Settings, then Change PIN."
)


def test_a_paragraph_or_row_longer_than_the_limit_is_cut_at_sentence_ends(tmp_path: Path) -> None:
    """One 346-word paragraph (or CSV or JSONL row) was one passage, embedded from its first 256
    tokens: a question about its last sentence found another section. Now every piece is within
    ``MAX_PASSAGE_WORDS``, cut between sentences, and keeps its title, source and intent tag."""
    md = tmp_path / "faq.md"
    md.write_text(f"# General\nintent: pin\n\n{LONG}\n\n# Hours\n\nNine to five.\n", encoding="utf-8")
    csv_path = tmp_path / "faq.csv"
    csv_path.write_text(f'title,text,intent\nGeneral,"{LONG}",pin\nHours,Nine to five.,\n', encoding="utf-8")
    jsonl = tmp_path / "faq.jsonl"
    jsonl.write_text(
        json.dumps({"title": "General", "text": LONG, "intent": "pin"})
        + "\n"
        + json.dumps({"title": "Hours", "text": "Nine to five."})
        + "\n",
        encoding="utf-8",
    )
    for path in (md, csv_path, jsonl):
        passages = read_passages(path)
        general = [p for p in passages if p.title == "General"]
        assert len(general) == 2, path
        assert all(len(p.text.split()) <= MAX_PASSAGE_WORDS for p in general)
        assert general[0].text.endswith("questions.") and general[1].text.endswith("Change PIN.")
        assert " ".join(p.text for p in general).split() == LONG.split()  # nothing lost or added
        assert {(p.intent, p.source) for p in general} == {("pin", general[0].source)}
        assert [p.text for p in passages if p.title == "Hours"] == ["Nine to five."]


def test_chinese_text_and_a_sentence_over_the_limit_are_cut_too(tmp_path: Path) -> None:
    sentence = "我们的银行为所有客户提供很多服务。"  # 17 characters, each a word
    md = tmp_path / "faq.md"
    md.write_text(f"# 总则\n\n{sentence * 30}\n", encoding="utf-8")
    passages = read_passages(md)
    assert len(passages) == 3 and all(len(p.text) <= MAX_PASSAGE_WORDS for p in passages)
    assert all(p.text.startswith("我们") and p.text.endswith("。") for p in passages)  # between sentences
    assert "".join(p.text for p in passages) == sentence * 30
    words = tmp_path / "words.jsonl"
    text = " ".join(f"w{i}" for i in range(450))  # no sentence end
    words.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    pieces = [p.text for p in read_passages(words)]
    assert [len(p.split()) for p in pieces] == [200, 200, 50] and " ".join(pieces) == text


def test_a_long_numbered_list_is_cut_between_its_items_with_its_line_breaks_kept(tmp_path: Path) -> None:
    """Cut at every ". " and joined with spaces, a long answer lost its line breaks, and a list's
    "13." landed in one passage and its item in the next."""
    steps = "To close your account follow these steps:\n" + "\n".join(
        f"{i}. Open the app, tap Menu, choose Settings, then Accounts, and confirm it for card {i}."
        for i in range(1, 21)
    )
    path = tmp_path / "faq.jsonl"
    path.write_text(json.dumps({"title": "Closing", "text": steps}) + "\n", encoding="utf-8")
    pieces = [p.text for p in read_passages(path)]
    assert len(pieces) > 1 and "\n".join(pieces) == steps  # nothing lost, every line break kept
    for piece in pieces[1:]:
        assert piece.split(".", 1)[0].isdigit()  # each later piece starts at an item's number


def test_a_reason_tells_a_confidence_from_a_threshold_it_is_just_under() -> None:
    """A hand-off's reason read "intent X at 0.01 below 0.01" for 0.0129 under a tuned 0.012988."""
    from tunelab.apps.support.bot import told_apart

    assert told_apart(0.0129, 0.012988) == ("0.0129", "0.0130")
    assert told_apart(0.93, 0.9) == ("0.93", "0.90")  # two places where they tell them apart
    assert told_apart(0.5, 0.5) == ("0.50", "0.50")
    assert told_apart(0.129999999, 0.13) == ("0.129999999", "0.13")  # past six places: every digit
