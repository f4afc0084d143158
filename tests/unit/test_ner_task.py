"""tunelab.tasks.token_classification: splits, sub-token alignment, windows, metrics, entities with
character offsets, the loss and the stock Hugging Face token classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tunelab.config import DataConfig
from tunelab.data.encoding import collate
from tunelab.data.labels import LabelMap
from tunelab.errors import ConfigError, DataError
from tunelab.tasks.token_classification.data import NerDataset
from tunelab.tasks.token_classification.encoding import IGNORE
from tunelab.tasks.token_classification.metrics import entity_scores, error_analysis
from tunelab.tasks.token_classification.task import TokenClassificationTask

TASK = TokenClassificationTask()
CONLL = (
    "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\n\nParis B-LOC\nis O\nbig O\n"
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tunelab.models import resolve_model

    return AutoTokenizer.from_pretrained(str(resolve_model("minilm-l6").path))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def splits_of(tmp_path: Path, **fields: object):
    return TASK.load_splits(DataConfig(**fields))  # type: ignore[arg-type]


def logits_for(enc, word_tags: list[list[str]], names: list[str], *, sure: float = 5.0) -> np.ndarray:
    """(N, T, L) logits whose argmax at each labelled sub-token is the given tag of its word."""
    width = max(enc.lengths)
    out = np.zeros((len(enc), width, len(names)), dtype=np.float32)
    for w, (s, words) in enumerate(zip(enc.extra["sample"], enc.extra["words"], strict=True)):
        for j, word in enumerate(words):
            if word >= 0:
                out[w, j, names.index(word_tags[s][word])] = sure
    return out


# --- data -----------------------------------------------------------------------------------------


def test_load_splits_reads_conll_builds_the_tag_map_and_carves_a_seeded_dev_split(tmp_path: Path) -> None:
    train = write(tmp_path / "train.conll", (CONLL + "\n") * 5)
    splits = splits_of(tmp_path, train=str(train), dev_size=0.2)
    assert splits.labels.names == [
        "B-LOC",
        "B-MISC",
        "B-ORG",
        "B-PER",
        "I-LOC",
        "I-MISC",
        "I-ORG",
        "I-PER",
        "O",
    ]
    assert splits.labels.task == "token_classification"
    assert (len(splits.train), len(splits.dev), splits.test) == (12, 3, None)
    assert splits.dev.source == f"{train} (dev split)"
    again = splits_of(tmp_path, train=str(train), dev_size=0.2)
    assert [s.tokens for s in again.dev.sentences] == [s.tokens for s in splits.dev.sentences]
    first = splits.train.sentences[0]
    assert splits.train.labels[0] == [splits.labels.id_of(t) for t in first.tags]
    assert "3 sentences" in splits.notes[-1] and "LOC, MISC, ORG, PER" in splits.notes[0]


def test_tag_column_and_iob1_are_applied(tmp_path: Path) -> None:
    train = write(
        tmp_path / "train.txt", "Peter NNP I-PER\nBlackburn NNP I-PER\nsaid VBD O\n\nEU NNP I-ORG\n"
    )
    splits = splits_of(tmp_path, train=str(train), dev_size=0.0, tag_column=2)
    assert [s.tags for s in splits.train.sentences] == [["B-PER", "I-PER", "O"], ["B-ORG"]]
    with pytest.raises(DataError, match="tag 'NNP' in column 1"):
        splits_of(tmp_path, train=str(train), dev_size=0.0, tag_column=1)


def test_jsonl_spans_and_tokens_are_told_apart_by_their_first_record(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    spans.write_text(
        json.dumps(
            {"text": "我住在北京。", "spans": [{"start": 3, "end": 5, "label": "LOC"}]}, ensure_ascii=False
        )
        + "\n",
        encoding="utf-8",
    )
    tokens = tmp_path / "tokens.jsonl"
    tokens.write_text(
        json.dumps({"tokens": ["Acme", "hires"], "tags": ["B-ORG", "O"]}) + "\n", encoding="utf-8"
    )
    zh = splits_of(tmp_path, train=str(spans), dev_size=0.0)
    assert zh.train.sentences[0].tags == ["O", "O", "O", "B-LOC", "I-LOC", "O"]
    assert zh.train.texts == ["我住在北京。"]
    en = splits_of(tmp_path, train=str(tokens), dev_size=0.0)
    assert en.train.sentences[0].tags == ["B-ORG", "O"]


def test_a_dev_tag_not_in_training_names_the_file_and_line(tmp_path: Path) -> None:
    train = write(tmp_path / "train.txt", CONLL)
    dev = write(tmp_path / "dev.txt", "EU B-ORG\n\nBob B-PERS\nsaid O\n")
    with pytest.raises(DataError) as info:
        splits_of(tmp_path, train=str(train), dev=str(dev))
    assert f"'PERS' ({dev} line 3)" in str(info.value)
    assert str(info.value).startswith("data.dev: entity types not in the training data")
    labels = splits_of(tmp_path, train=str(train), dev_size=0.0).labels
    with pytest.raises(DataError, match=rf"'PERS' \({dev} line 3\).*the run's training data has LOC, MISC"):
        TASK.read_labelled(dev, DataConfig(), labels, field="--data")


def test_unreadable_formats_and_empty_training_data(tmp_path: Path) -> None:
    csv = write(tmp_path / "train.csv", "text,label\n")
    with pytest.raises(DataError, match=r"cannot read NER data from a \.csv file.*data\.format=conll"):
        splits_of(tmp_path, train=str(csv))
    only_o = write(tmp_path / "o.txt", "a O\nb O\n")
    with pytest.raises(DataError, match="no entities, every tag is O"):
        splits_of(tmp_path, train=str(only_o))
    tiny = write(tmp_path / "one.txt", "EU B-ORG\n")
    with pytest.raises(DataError, match=r"too few sentences \(1\) for a 10% dev split"):
        splits_of(tmp_path, train=str(tiny))


# --- alignment and windows ------------------------------------------------------------------------


def test_first_sub_token_of_each_word_is_labelled_the_rest_ignored(tokenizer, tmp_path: Path) -> None:
    train = write(tmp_path / "t.txt", "Johannesburg B-LOC\nwelcomes O\nZweibrücken B-ORG\n")
    splits = splits_of(tmp_path, train=str(train), dev_size=0.0)
    enc = TASK.encode(tokenizer, splits.train, max_length=64)
    pieces = tokenizer.convert_ids_to_tokens(enc.input_ids[0])
    names = splits.labels.names
    labelled = [(p, names[y]) for p, y in zip(pieces, enc.labels[0], strict=True) if y != IGNORE]
    assert [name for _, name in labelled] == ["B-LOC", "O", "B-ORG"]
    assert [p for p, _ in labelled] == [
        tokenizer.tokenize(w)[0] for w in ("Johannesburg", "welcomes", "Zweibrücken")
    ]
    assert pieces[0] == "[CLS]" and enc.labels[0][0] == IGNORE and enc.labels[0][-1] == IGNORE
    assert len(pieces) > 5  # Zweibrücken has more sub-tokens, all ignored


def test_a_long_sentence_becomes_overlapping_windows_and_every_word_is_predicted_once(tokenizer) -> None:
    from tunelab.tasks.token_classification.encoding import encode_words, merge_windows

    words = [f"word{i}" if i % 2 else "Johannesburg" for i in range(300)]
    enc = encode_words(tokenizer, [words, ["short"]], max_length=32, stride=8, tags=[list(range(300)), [0]])
    windows = [w for w, s in enumerate(enc.extra["sample"]) if s == 0]
    assert len(windows) > 10 and max(enc.lengths) <= 32
    # Every word is labelled, with its own tag, in at least one window; none is cut off.
    seen = {}
    for w in windows:
        for j, word in enumerate(enc.extra["words"][w]):
            if word >= 0:
                assert enc.labels[w][j] == word
                seen.setdefault(word, []).append((w, j))
    assert sorted(seen) == list(range(300))
    assert any(len(places) > 1 for places in seen.values())  # the stride shares words between windows
    # Window w predicts tag w: the merged tag says which window each word was taken from.
    probs = np.zeros((len(enc), max(enc.lengths), len(enc.input_ids)), dtype=np.float32)
    for w in range(len(enc)):
        probs[w, :, w] = 1.0
    (tags, scores), (short_tags, _) = merge_windows(probs, enc)
    assert len(tags) == 300 and (tags >= 0).all() and (scores == 1.0).all()
    for word, places in seen.items():

        def room(place: tuple[int, int]) -> float:
            w, j = place
            left = j if enc.extra["cut_left"][w] else np.inf
            right = len(enc.input_ids[w]) - 1 - j if enc.extra["cut_right"][w] else np.inf
            return min(left, right)

        assert tags[word] == max(places, key=room)[0]  # the window where the word is most central
    assert short_tags.tolist() == [len(enc) - 1]


def test_a_sentencepiece_word_is_labelled_on_the_piece_after_a_bare_boundary_marker() -> None:
    from transformers import PreTrainedTokenizerFast

    from tunelab.tasks.token_classification.encoding import encode_words

    path = (
        Path(__import__("semantra_multilingual").__file__).parent
        / "assets/multilingual-e5-small/tokenizer.json"
    )
    if not path.is_file():
        pytest.skip(f"{path} not found")
    sp = PreTrainedTokenizerFast(tokenizer_file=str(path))
    enc = encode_words(sp, [["我", "住", "在", "北", "京"]], max_length=64, stride=8, tags=[[0, 0, 0, 1, 2]])
    pieces = sp.convert_ids_to_tokens(enc.input_ids[0])
    labelled = [p for p, y in zip(pieces, enc.labels[0], strict=True) if y != IGNORE]
    assert "▁" in pieces  # the tokenizer does give bare markers here ...
    assert [p.lstrip("▁") for p in labelled] == ["我", "住", "在", "北", "京"]
    assert "▁" not in labelled  # ... and they are never the labelled piece


def test_json_spans_become_sub_token_labels(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    text = "Angela Merkel visited São Paulo."
    path.write_text(
        json.dumps(
            {
                "text": text,
                "spans": [{"start": 0, "end": 13, "label": "PER"}, {"start": 22, "end": 31, "label": "LOC"}],
            }
        )
        + "\n",
        encoding="utf-8",
    )
    splits = splits_of(tmp_path, train=str(path), dev_size=0.0)
    enc = TASK.encode(tokenizer, splits.train, max_length=64)
    pieces = tokenizer.convert_ids_to_tokens(enc.input_ids[0])
    names = splits.labels.names
    labelled = [(p, names[y]) for p, y in zip(pieces, enc.labels[0], strict=True) if y != IGNORE]
    first = [tokenizer.tokenize(w)[0] for w in ("Angela", "Merkel", "visited", "São", "Paulo", ".")]
    assert labelled == list(zip(first, ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"], strict=True))


# --- predictions ----------------------------------------------------------------------------------


LABELS = ["B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER", "O"]


def test_an_initial_before_a_name_is_one_word_as_conll_writes_it() -> None:
    """CoNLL-2003 writes "M." as one word; split into "M" and ".", a model trained on it tagged
    "M" and "Smith" as two people."""
    from tunelab.tasks.token_classification.encoding import split_words

    words, _ = split_words("M. Smith met J. F. Kennedy at Plan B. Then")
    assert words == ["M.", "Smith", "met", "J.", "F.", "Kennedy", "at", "Plan", "B.", "Then"]
    assert split_words("It was plan b. then")[0][-3:] == ["b", ".", "then"]  # not before a capital


def test_abbreviations_and_numbers_are_one_word_at_predict_time(tokenizer) -> None:
    """CoNLL-2003 writes "U.S." and "1,000.50" as one word, so a model trained on it tags them as
    one; split into "U", ".", "S", "." the entity came out as "U" alone."""
    from tunelab.tasks.token_classification.encoding import split_words

    text = "The U.S. paid 1,000.50 dollars at 10:30, e.g. to Mr. Smith."
    words, _ = split_words(text)
    assert words == ["The", "U.S.", "paid", "1,000.50", "dollars", "at", "10:30", ",", "e.g.", "to",
                     "Mr.", "Smith", "."]  # fmt: skip
    tags = ["O", "B-LOC", "O", "O", "O", "O", "O", "O", "O", "O", "O", "B-PER", "O"]
    enc = TASK.encode_texts(tokenizer, [text], None, max_length=48)
    result = TASK.decode(logits_for(enc, [tags], LABELS), enc, [text], LabelMap(LABELS, task=TASK.name),
                         threshold=None, top_k=1)[0]  # fmt: skip
    assert [(e["text"], e["label"]) for e in result["entities"]] == [("U.S.", "LOC"), ("Smith", "PER")]


def test_hyphenated_words_and_known_abbreviations_are_one_word_as_conll_writes_them(tokenizer) -> None:
    """CoNLL-2003 writes "Anglo-Dutch", "1-0", "Inc." and "St." as one word each; split at the hyphen
    a model trained on it tagged "Anglo" and "Dutch" as two entities. A full stop after an ordinary
    word ("home.") is still its own word."""
    from tunelab.tasks.token_classification.encoding import split_words

    text = "Anglo-Dutch Unilever Inc. won 1-0 in St. Louis vs. Acme Corp. at home."
    words, _ = split_words(text)
    assert words == ["Anglo-Dutch", "Unilever", "Inc.", "won", "1-0", "in", "St.", "Louis", "vs.",
                     "Acme", "Corp.", "at", "home", "."]  # fmt: skip
    tags = ["B-MISC", "B-ORG", "I-ORG", "O", "O", "O", "B-LOC", "I-LOC", "O", "B-ORG", "I-ORG", "O", "O", "O"]
    enc = TASK.encode_texts(tokenizer, [text], None, max_length=64)
    labels = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    result = TASK.decode(logits_for(enc, [tags], labels), enc, [text], LabelMap(labels, task=TASK.name),
                         threshold=None, top_k=1)[0]  # fmt: skip
    assert [(e["text"], e["label"]) for e in result["entities"]] == [
        ("Anglo-Dutch", "MISC"), ("Unilever Inc.", "ORG"), ("St. Louis", "LOC"), ("Acme Corp.", "ORG")
    ]  # fmt: skip


def test_entities_have_character_offsets_into_the_original_text(tokenizer) -> None:
    from tunelab.tasks.token_classification.encoding import split_words

    texts = ["   Angela   Merkel  visited\tSão Paulo!", "我住在北京市。", "Zoë 👋 met ACME"]
    tags = [
        ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"],
        ["O", "O", "O", "B-LOC", "I-LOC", "I-LOC", "O"],
        ["B-PER", "O", "O", "B-ORG"],
    ]
    assert [len(split_words(t)[0]) for t in texts] == [len(t) for t in tags]
    enc = TASK.encode_texts(tokenizer, texts, None, max_length=32)
    logits = logits_for(enc, tags, LABELS)
    results = TASK.decode(logits, enc, texts, LabelMap(LABELS, task=TASK.name), threshold=None, top_k=3)
    got = [[(e["text"], e["label"], e["start"], e["end"]) for e in r["entities"]] for r in results]
    assert got == [
        [("Angela   Merkel", "PER", 3, 18), ("São Paulo", "LOC", 28, 37)],
        [("北京市", "LOC", 3, 6)],
        [("Zoë", "PER", 0, 3), ("ACME", "ORG", 10, 14)],
    ]
    for text, result in zip(texts, results, strict=True):
        for e in result["entities"]:
            assert text[e["start"] : e["end"]] == e["text"] and 0.9 < e["score"] <= 1.0
    from tunelab.serve.schemas import EntityResult

    assert TASK.result_schema is EntityResult
    EntityResult.model_validate(results[0])


def test_a_stray_inside_tag_starts_an_entity_and_scores_are_means(tokenizer) -> None:
    text = "Paris Hilton and Lyon"
    enc = TASK.encode_texts(tokenizer, [text], None, max_length=32)
    logits = logits_for(enc, [["I-PER", "I-PER", "O", "I-LOC"]], LABELS)
    # Make "Hilton" less sure: its probability drops, the entity's score is the mean of both words.
    w, j = next((w, j) for w, row in enumerate(enc.extra["words"]) for j, word in enumerate(row) if word == 1)
    logits[w, j, LABELS.index("I-PER")] = 1.0
    result = TASK.decode(logits, enc, [text], LabelMap(LABELS, task=TASK.name), threshold=None, top_k=1)[0]
    assert [(e["text"], e["label"]) for e in result["entities"]] == [("Paris Hilton", "PER"), ("Lyon", "LOC")]
    sure = np.exp(5.0) / (np.exp(5.0) + 6)
    unsure = np.exp(1.0) / (np.exp(1.0) + 6)
    assert result["entities"][0]["score"] == pytest.approx((sure + unsure) / 2, abs=1e-5)


def test_a_long_raw_text_is_predicted_whole(tokenizer) -> None:
    text = " ".join(["Berlin"] + ["and"] * 200 + ["Rome"])
    enc = TASK.encode_texts(tokenizer, [text, "  "], None, max_length=32, stride=4)
    assert len(enc) > 5
    logits = logits_for(enc, [["B-LOC"] + ["O"] * 200 + ["B-LOC"], []], LABELS)
    results = TASK.decode(
        logits, enc, [text, "  "], LabelMap(LABELS, task=TASK.name), threshold=None, top_k=1
    )
    assert [(e["text"], e["start"]) for e in results[0]["entities"]] == [
        ("Berlin", 0),
        ("Rome", len(text) - 4),
    ]
    assert results[1] == {"entities": []}


# --- metrics --------------------------------------------------------------------------------------


def test_a_split_without_entities_scores_zero_not_nan(recwarn) -> None:
    """seqeval's macro average is NaN there: metrics.json got a bare NaN (no strict JSON parser
    reads it) and, as train.metric, NaN stayed the best for good."""
    import json

    scores = entity_scores([["O", "O"]], [["O", "O"]])
    assert scores["macro_f1"] == 0.0 and scores["entity_f1"] == 0.0
    json.dumps(scores, allow_nan=False)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_seqeval_strict_scores_and_error_kinds() -> None:
    words = [["Peter", "Blackburn", "in", "Paris"], ["EU", "and", "Bonn"], ["a", "b"]]
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-LOC"], ["O", "O"]]
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-LOC", "O", "O"], ["B-ORG", "O"]]
    scores = entity_scores(gold, pred)
    per_type = {r["label"]: r for r in scores["per_type"]}
    assert per_type["LOC"] == {"label": "LOC", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert (
        per_type["PER"]["f1"] == 0.0 and per_type["PER"]["support"] == 1
    )  # a boundary error counts as wrong
    # 1 of 4 predicted entities is right, 1 of 4 gold entities is found.
    assert scores["entity_precision"] == 0.25 and scores["entity_recall"] == 0.25
    assert scores["macro_f1"] == pytest.approx(np.mean([per_type[t]["f1"] for t in ("LOC", "ORG", "PER")]))
    errors = error_analysis(gold, pred, words)
    assert errors["counts"] == {
        "wrong type": 1,
        "wrong boundary": 1,
        "wrong type and boundary": 0,
        "missed": 1,
        "spurious": 1,
    }
    assert errors["examples"]["wrong boundary"] == [
        {"sentence": "Peter Blackburn in Paris", "gold": "Peter Blackburn (PER)", "predicted": "Peter (PER)"}
    ]
    assert errors["examples"]["missed"][0]["gold"] == "Bonn (LOC)"
    assert errors["confusions"] == [{"gold": "ORG", "predicted": "LOC", "count": 1}]


def test_score_merges_windows_and_reports_token_accuracy_and_loss(tokenizer, tmp_path: Path) -> None:
    train = write(tmp_path / "t.txt", CONLL)
    splits = splits_of(tmp_path, train=str(train), dev_size=0.0)
    names = splits.labels.names
    enc = TASK.encode(tokenizer, splits.train, max_length=5, stride=2)
    assert len(enc) > len(splits.train)  # windows
    gold = [s.tags for s in splits.train.sentences]
    perfect, _ = TASK.score(logits_for(enc, gold, names), enc, splits.labels)
    assert perfect["entity_f1"] == 1.0 and perfect["token_accuracy"] == 1.0 and perfect["n"] == 3
    assert perfect["loss"] < 0.1 and sum(perfect["errors"]["counts"].values()) == 0
    wrong = [list(t) for t in gold]
    wrong[1][1] = "O"  # Peter Blackburn -> Peter: a boundary error
    metrics, threshold = TASK.score(logits_for(enc, wrong, names), enc, splits.labels)
    assert threshold is None
    assert metrics["token_accuracy"] == pytest.approx(8 / 9)
    assert metrics["entity_f1"] == pytest.approx(0.75)
    assert metrics["errors"]["counts"]["wrong boundary"] == 1
    assert metrics["loss"] > perfect["loss"]
    assert set(TASK.headline(metrics)) == set(TASK.headline_keys)


def test_parity_metric_and_agreement() -> None:
    assert TASK.parity_metric("entity_f1") == "entity_f1"
    assert TASK.parity_metric("loss") == "entity_f1"
    assert TASK.parity_metric("accuracy") == "entity_f1"
    assert TASK.parity_metric("macro_f1") == "macro_f1"
    before = np.random.default_rng(0).normal(size=(4, 6, 3)).astype(np.float32)
    after = before.copy()
    assert TASK.agreement(before, after, threshold=None) == 1.0
    after[1, 2] = after[1, 2][::-1] * 10  # one position of one example flips
    after[1, 2, before[1, 2].argmax()] = -100
    assert TASK.agreement(before, after, threshold=None) == 0.75


@pytest.mark.plots  # reads the report's PNGs (tests/conftest.py)
def test_report_has_the_per_type_table_plot_and_errors(tmp_path: Path) -> None:
    words = [["Peter", "Blackburn", "in", "北京"]]
    gold, pred = [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-LOC"]]
    metrics = {"loss": 0.3, "n": 1, "token_accuracy": 0.75, **entity_scores(gold, pred)}
    metrics["errors"] = error_analysis(gold, pred, words)
    history = [{"event": "eval", "step": 1, "split": "dev", "loss": 0.5, "entity_f1": 0.4}]
    written = TASK.write_report(
        tmp_path,
        metrics,
        labels=LabelMap(LABELS, task=TASK.name),
        history=history,
        title="NER",
        meta={"model": "x"},
        split="test",
    )
    assert {"report.md", "report.html", "per_type_f1.png", "training.png"} <= set(written)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| LOC | 100.00% | 100.00% | 100.00% | 1 |" in md
    assert "| Entity F1 (micro) | 50.00% |" in md
    assert "| wrong boundary | Peter Blackburn (PER) | Peter (PER) | Peter Blackburn in 北京 |" in md
    assert "北京" in (tmp_path / "report.html").read_text(encoding="utf-8")


# --- model and loss -------------------------------------------------------------------------------


def test_loss_ignores_unlabelled_positions() -> None:
    logits = torch.randn(2, 5, 3)
    labels = torch.tensor([[IGNORE, 0, 2, IGNORE, IGNORE], [IGNORE, 1, IGNORE, IGNORE, IGNORE]])
    expected = torch.nn.functional.cross_entropy(
        torch.stack([logits[0, 1], logits[0, 2], logits[1, 1]]), torch.tensor([0, 2, 1])
    )
    assert TASK.loss(logits, labels, None).item() == pytest.approx(expected.item(), rel=1e-6)
    changed = logits.clone()
    changed[labels == IGNORE] = 100.0
    assert TASK.loss(changed, labels, None).item() == pytest.approx(expected.item(), rel=1e-6)
    assert TASK.loss(logits, torch.full((2, 5), IGNORE), None).item() == 0.0


def test_label_smoothing_covers_labelled_positions_only() -> None:
    logits = torch.randn(2, 5, 3)
    labels = torch.tensor([[IGNORE, 0, 2, IGNORE, IGNORE], [IGNORE, 1, IGNORE, IGNORE, IGNORE]])
    picked = torch.stack([logits[0, 1], logits[0, 2], logits[1, 1]])
    targets = torch.full((3, 3), 0.1 / 3)
    for row, tag in enumerate((0, 2, 1)):
        targets[row, tag] += 0.9
    expected = -(targets * torch.log_softmax(picked, dim=-1)).sum(dim=-1).mean()
    assert TASK.loss(logits, labels, None, smoothing=0.1).item() == pytest.approx(expected.item(), rel=1e-6)
    # soft targets (distillation) are smoothed the same way, and skipped positions stay skipped
    soft = torch.zeros(2, 5, 3)
    for (b, t), tag in zip(((0, 1), (0, 2), (1, 1)), (0, 2, 1), strict=True):
        soft[b, t, tag] = 1.0
    assert TASK.loss(logits, soft, None, smoothing=0.1).item() == pytest.approx(expected.item(), rel=1e-5)


def test_soft_targets_are_masked_to_labelled_positions(tokenizer, tmp_path: Path) -> None:
    splits = splits_of(tmp_path, train=str(write(tmp_path / "t.txt", CONLL)), dev_size=0.0)
    enc = TASK.encode(tokenizer, splits.train, max_length=16)
    teacher = torch.randn(len(enc), max(enc.lengths), len(splits.labels))
    enc.labels = TASK.soft_targets(teacher)
    soft = TASK.batch_labels(enc, [0, 2], width=10, num_labels=len(splits.labels))
    assert soft.shape == (2, 10, len(splits.labels))
    labelled = torch.tensor(
        [
            [w >= 0 for w in enc.extra["words"][i][:10]] + [False] * (10 - len(enc.extra["words"][i][:10]))
            for i in (0, 2)
        ]
    )
    assert torch.allclose(soft.sum(-1), labelled.float())
    student = torch.randn(2, 10, len(splits.labels))
    mask = labelled
    expected = -(soft * torch.log_softmax(student, -1)).sum(-1)[mask].mean()
    assert TASK.loss(student, soft, None).item() == pytest.approx(expected.item(), rel=1e-5)


def test_class_weights_are_balanced_over_word_tags() -> None:
    ds = NerDataset(sentences=[], labels=[[0, 2, 2, 2], [2, 2]], source="x")
    weights = TASK.class_weights(ds, 3)
    assert weights.tolist() == pytest.approx([6 / (2 * 1), 1.0, 6 / (2 * 5)])


def test_stock_model_trains_one_step_and_reloads(tiny_bert: Path, tokenizer, tmp_path: Path) -> None:
    from transformers import BertForTokenClassification

    splits = splits_of(tmp_path, train=str(write(tmp_path / "t.txt", CONLL)), dev_size=0.0)
    model = TASK.build_model(tiny_bert, splits.labels, pooling="auto", seed=0)
    assert isinstance(model, BertForTokenClassification)
    assert model.config.id2label[0] == "B-LOC" and model.config.num_labels == 9
    enc = TASK.encode(tokenizer, splits.train, max_length=16)
    batch = collate(enc, [0, 1, 2])
    labels = TASK.batch_labels(enc, [0, 1, 2], width=batch["input_ids"].shape[1], num_labels=9)
    logits = model(**batch).logits  # (B, T, L)
    assert logits.shape == (*labels.shape, 9)
    loss = TASK.loss(logits, labels, TASK.class_weights(splits.train, 9))
    loss.backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    model.save_pretrained(tmp_path / "run")
    again = TASK.load_model(tmp_path / "run")
    model.eval()
    again.eval()
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, again(**batch).logits, atol=1e-5)


# --- review fixes (2026-12-04): each failed before its fix ---------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("राजेश दिल्ली गया।", ["राजेश", "दिल्ली", "गया", "।"]),
        ("สวัสดี กรุงเทพ", ["สวัสดี", "กรุงเทพ"]),
        ("Cafe\u0301 in U.S.", ["Cafe\u0301", "in", "U.S."]),
    ],
)
def test_combining_marks_stay_in_their_word(text: str, words: list[str]) -> None:
    """``\\w`` excludes combining marks: "राजेश" was five words, and predict tagged the pieces."""
    from tunelab.tasks.token_classification.encoding import split_words

    found, offsets = split_words(text)
    assert found == words and [text[s:e] for s, e in offsets] == words


def test_a_missing_file_or_a_folder_is_named_as_such(tmp_path: Path) -> None:
    """Both were "cannot read NER data from a file without extension"."""
    with pytest.raises(DataError, match=r"missing: file not found"):
        splits_of(tmp_path, train=str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"a folder, not a file"):
        splits_of(tmp_path, train=str(tmp_path))


def test_a_tag_that_is_not_text_is_named_by_its_index(tmp_path: Path) -> None:
    """It said '"tags" must be a list of strings, got list'."""
    bad = write(tmp_path / "t.jsonl", '{"tokens": ["a", "b"], "tags": ["O", null]}\n')
    with pytest.raises(
        DataError, match=r"t\.jsonl line 1: \"tags\" must be a list of strings, got tags\[1\] = null"
    ):
        splits_of(tmp_path, train=str(bad))


def test_data_labels_on_an_ner_run_is_refused(tmp_path: Path) -> None:
    """It was silently ignored."""
    from tunelab.config import RunConfig
    from tunelab.preflight import check_listed_labels

    train = write(tmp_path / "train.txt", "".join(f"EU{i} B-ORG\nrises O\n\n" for i in range(20)))
    cfg = RunConfig.from_yaml(
        None, [f"data.train={train}", "data.task=token_classification", "data.labels=[FOO]"]
    )
    with pytest.raises(
        ConfigError, match=r"data\.labels: a token_classification run takes its tags from the data"
    ):
        check_listed_labels(cfg, splits_of(tmp_path, train=str(train)))


def test_eval_takes_the_files_own_tag_column(tmp_path: Path) -> None:
    """data.tag_column was not a reading option of eval/export: a test file laid out otherwise than
    the training file could not be read at all."""
    from tunelab.data.file_options import parse_file_overrides

    assert parse_file_overrides(["data.tag_column=-1"]) == {"tag_column": -1}


@pytest.mark.parametrize("tags", [["O", "B-PER", "I-PER"], ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]])
def test_a_base_that_is_another_tasks_classifier_gets_a_fresh_head(tmp_path: Path, tags: list[str]) -> None:
    """An NLI model as model.name: 5 tags failed as "unexpected RuntimeError: ... ignore_mismatched_sizes",
    3 tags kept the NLI head as the tagger's starting head."""
    from tunelab.models.tiny import save_tiny_bert

    nli = save_tiny_bert(tmp_path / "nli", labels=["contradiction", "neutral", "entailment"])
    model = TASK.build_model(nli, LabelMap(tags, task=TASK.name), pooling="auto", seed=1)
    assert model.classifier.weight.shape[0] == len(tags)
    from transformers import AutoModelForSequenceClassification

    nli_head = AutoModelForSequenceClassification.from_pretrained(str(nli)).classifier.weight
    assert model.classifier.weight.shape != nli_head.shape or not torch.equal(
        model.classifier.weight, nli_head
    )


def test_an_encoder_whose_weights_do_not_fit_its_config_is_still_refused(
    tiny_bert: Path, tmp_path: Path
) -> None:
    """Letting another task's head be replaced must not let a misfitting encoder in: it trained on a
    partly random encoder without a word."""
    import json
    import shutil

    from tunelab.errors import ModelNotFoundError

    bad = tmp_path / "bad"
    shutil.copytree(tiny_bert, bad)
    config = json.loads((bad / "config.json").read_text(encoding="utf-8"))
    config["intermediate_size"] = 48
    (bad / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelNotFoundError, match=r"does not fit config\.json"):
        TASK.build_model(bad, LabelMap(["O", "B-PER", "I-PER"], task=TASK.name), pooling="auto", seed=1)


# --- review fixes ---------------------------------------------------------------------------------

GERMEVAL = "".join(
    f"1\t{name}\tB-PER\tO\n2\tsagte\tO\tO\n3\tin\tO\tO\n4\t{city}\tB-LOC\tO\n\n"
    for name, city in [("Schartau", "Berlin"), ("Merkel", "Bonn"), ("Kohl", "Mainz")] * 4
)


def test_data_token_column_reaches_every_reader_of_a_column_file(tmp_path: Path) -> None:
    """DataConfig had no token_column: GermEval trained on the index numbers 1, 2, 3, ... silently."""
    from tunelab.data.file_options import options_for_file, parse_file_overrides

    train = write(tmp_path / "train.tsv", GERMEVAL)
    dev = write(tmp_path / "dev.tsv", GERMEVAL)
    splits = splits_of(tmp_path, train=str(train), dev=str(dev), token_column=1, tag_column=2)
    assert splits.train.sentences[0].tokens == ["Schartau", "sagte", "in", "Berlin"]
    assert splits.dev is not None and splits.dev.sentences[1].tokens[0] == "Merkel"
    with pytest.raises(DataError, match=r"line 1: column 0 holds token numbers; set data\.token_column"):
        splits_of(tmp_path, train=str(train), dev_size=0.0, tag_column=2)
    # eval --data and export --data: the run's token_column, or the file's own given as data.token_column
    assert parse_file_overrides(["data.token_column=-3"]) == {"token_column": -3}
    run = DataConfig(task="token_classification", train=str(train), token_column=1, tag_column=2)
    other = write(tmp_path / "other.conll", GERMEVAL)
    read = options_for_file(other, run)
    assert TASK.read_labelled(other, read, splits.labels, field=None).sentences[0].tokens[0] == "Schartau"
    again = options_for_file(other, run, ["data.token_column=0"])
    with pytest.raises(DataError, match="column 0 holds token numbers"):
        TASK.read_labelled(other, again, splits.labels, field=None)


def test_token_column_on_the_tag_column_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.token_column=2 and tag_column=2 are the same column"):
        DataConfig(token_column=2, tag_column=2)
    assert DataConfig().token_column == 0


@pytest.mark.parametrize(
    "rows",
    [
        [{"tokens": ["Anna", "left", str(i)], "tags": ["B-PER", "O", "O"]} for i in range(12)],
        [{"text": f"Anna left {i}", "spans": [{"start": 0, "end": 4, "label": "PER"}]} for i in range(12)],
    ],
    ids=["tokens+tags", "text+spans"],
)
def test_an_ner_dataframe_may_hold_tokens_and_tags_or_text_and_spans(
    tmp_path: Path, rows: list[dict[str, object]]
) -> None:
    """tunelab.train(train=df) demanded a text column of a tokens + tags frame, and renaming a column
    to text (its advice) then failed in the span reader."""
    import pandas as pd

    from tunelab.config import RunConfig
    from tunelab.train.frames import with_frames

    cfg = RunConfig.from_yaml(None, ["data.task=token_classification", f"output_dir={tmp_path}"])
    cfg = with_frames(cfg, {"train": pd.DataFrame(rows)})
    splits = TASK.load_splits(cfg.data)
    assert len(splits.train) + len(splits.dev) == 12
    assert splits.train.sentences[0].tags == ["B-PER", "O", "O"]


def test_an_ner_dataframe_with_neither_layout_names_both(tmp_path: Path) -> None:
    import pandas as pd

    from tunelab.config import RunConfig
    from tunelab.train.frames import with_frames

    cfg = RunConfig.from_yaml(None, ["data.task=token_classification", f"output_dir={tmp_path}"])
    frame = pd.DataFrame({"sentence": ["Anna left"], "label": ["x"]})
    with pytest.raises(DataError) as info:
        TASK.load_splits(with_frames(cfg, {"train": frame}).data)
    message = str(info.value)
    assert "\n" not in message and "line 1: keys 'sentence', 'label'" in message
    assert "NER data needs tokens and tags" in message and "or text and spans" in message


SPAN_ROWS = [
    {"text": f"The Google-owned firm {i} hired Anna", "spans": [{"start": 4, "end": 10, "label": "ORG"}]}
    for i in range(10)
]


def test_dev_and_test_span_files_are_split_as_predict_splits_them(tokenizer, tmp_path: Path) -> None:
    """Only training sentences are cut at the gold entities' edges; dev, test (files or carved) and
    eval files are split as predict splits, and score, so F1 credits only what predict can return."""
    from tunelab.tasks.token_classification.encoding import split_words

    def spans_file(name: str) -> Path:
        return write(tmp_path / name, "".join(json.dumps(r) + "\n" for r in SPAN_ROWS))

    train, dev, test = spans_file("train.jsonl"), spans_file("dev.jsonl"), spans_file("test.jsonl")
    predicted = split_words(SPAN_ROWS[0]["text"])[0]  # type: ignore[arg-type]
    assert predicted[1] == "Google-owned"
    splits = splits_of(tmp_path, train=str(train), dev=str(dev), test=str(test))
    assert splits.train.sentences[0].tokens[1:4] == ["Google", "-", "owned"]
    for split in (splits.dev, splits.test):
        assert split is not None and split.sentences[0].tokens == predicted
        assert split.sentences[0].tags[:3] == ["O", "B-ORG", "O"]
    carved = splits_of(tmp_path, train=str(train), dev_size=0.2, test_size=0.2)
    assert carved.train.sentences[0].tokens[1:4] == ["Google", "-", "owned"]
    assert carved.dev is not None and carved.test is not None
    assert [s.tokens for s in carved.dev.sentences + carved.test.sentences] == [
        split_words(s.text or "")[0] for s in carved.dev.sentences + carved.test.sentences
    ]
    evaluated = TASK.read_labelled(dev, DataConfig(), splits.labels, field=None)
    assert evaluated.sentences[0].tokens == predicted
    # scoring still works on the uncut words: the model's right tags give F1 1
    enc = TASK.encode(tokenizer, evaluated, max_length=64)
    names = splits.labels.names
    gold = [s.tags for s in evaluated.sentences]
    metrics, _ = TASK.score(logits_for(enc, gold, names), enc, splits.labels)
    assert metrics["entity_f1"] == 1.0 and metrics["n_words"] == sum(map(len, gold))
