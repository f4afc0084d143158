"""NER review fixes: RoBERTa-style tokenizers read each word after a space, a listed abbreviation
ending the text gives up its full stop, and export agreement counts texts, not windows.

The prefix space is the task's ``prepare_tokenizer`` hook, called once when a run begins and
recorded in run.json: ``encode_words`` set it on every tokenizer it was given, so a run trained
before it (on sentence-start pieces) predicted, and finished a resume, on pieces it never saw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab.models import load_tokenizer
from tunelab.tasks import get_task
from tunelab.tasks.token_classification.encoding import encode_words, split_words

WORDS = ["peter", "visited", "paris"]
RUNNING = ["<s>", "Ġpeter", "Ġvisited", "Ġparis", "</s>"]  # the pieces of " peter visited paris"
PREPARED = {"word_prefix_space": True}  # what the hook returns, and run.json records, where it set it


def _byte_level_tokenizer(folder: Path) -> Path:
    """A tiny byte-level BPE ``RobertaTokenizer`` (add_prefix_space=False, the class default) saved
    in ``folder``. Trained on text that starts with a space, so ``Ġpeter`` is a piece too."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [" peter visited paris today maria left rome"] * 20,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split()) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    RobertaTokenizer(vocab=model["vocab"], merges=merges).save_pretrained(str(folder))
    return folder


def _pieces(tokenizer: Any, ids: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


def test_roberta_words_encode_as_in_running_text(tmp_path: Path, tiny_bert: Path) -> None:
    """Word by word, a RoBERTa tokenizer left at add_prefix_space=False gave every word the pieces
    of a text start ('vis', 'ited'), not the running text's 'Ġvisited'."""
    folder = _byte_level_tokenizer(tmp_path / "tok")
    running = load_tokenizer(folder)
    assert running.add_prefix_space is False  # the default the fix must overcome
    expected = _pieces(running, running(" " + " ".join(WORDS))["input_ids"])
    assert expected == ["<s>", "Ġpeter", "Ġvisited", "Ġparis", "</s>"]
    tokenizer = load_tokenizer(folder)
    assert get_task("token_classification").prepare_tokenizer(tokenizer) == PREPARED
    enc = encode_words(tokenizer, [WORDS], max_length=32, stride=4)
    assert _pieces(tokenizer, enc.input_ids[0]) == expected
    assert enc.extra["words"][0] == [-1, 0, 1, 2, -1]
    # Prepared once, the tokenizer stays prepared: a second call has nothing left to change.
    assert get_task("token_classification").prepare_tokenizer(tokenizer) == {}
    # A WordPiece tokenizer has no prefix space to set: left as it was.
    bert = load_tokenizer(tiny_bert)
    parts = ("pre_tokenizer", "post_processor")
    before = {k: json.loads(bert.backend_tokenizer.to_str())[k] for k in parts}
    assert get_task("token_classification").prepare_tokenizer(bert) == {}
    encode_words(bert, [WORDS], max_length=32, stride=4)
    assert {k: json.loads(bert.backend_tokenizer.to_str())[k] for k in parts} == before
    assert bert.add_prefix_space is False


def test_encode_words_reads_a_tokenizer_as_it_is_given(tmp_path: Path) -> None:
    """encode_words set the prefix space on every tokenizer it was given, a run's saved one too: a
    run trained on sentence-start pieces was switched to Ġ pieces at predict, eval, export, serve."""
    tokenizer = load_tokenizer(_byte_level_tokenizer(tmp_path / "tok"))
    parts = ("pre_tokenizer", "post_processor")
    before = {k: json.loads(tokenizer.backend_tokenizer.to_str())[k] for k in parts}
    enc = encode_words(tokenizer, [WORDS], max_length=32, stride=4)
    assert {k: json.loads(tokenizer.backend_tokenizer.to_str())[k] for k in parts} == before
    assert tokenizer.add_prefix_space is False
    pieces = _pieces(tokenizer, enc.input_ids[0])
    assert "Ġvisited" not in pieces and pieces[0] == "<s>" and pieces[-1] == "</s>"
    # each word read as a text start, as a run trained before the hook saw it
    alone = [
        p
        for word in WORDS
        for p in _pieces(tokenizer, tokenizer(word, add_special_tokens=False)["input_ids"])
    ]
    assert pieces[1:-1] == alone


def test_a_bare_space_piece_does_not_take_the_words_label(tmp_path: Path) -> None:
    """A word the vocabulary has no 'Ġ' piece for starts with a bare 'Ġ', the same token for every
    such word: its label goes on the next piece, as with sentencepiece's bare '▁'."""
    tokenizer = load_tokenizer(_byte_level_tokenizer(tmp_path / "tok"))
    assert get_task("token_classification").prepare_tokenizer(tokenizer) == PREPARED
    enc = encode_words(tokenizer, [["peter", "zq"]], max_length=32, stride=4)
    assert _pieces(tokenizer, enc.input_ids[0]) == ["<s>", "Ġpeter", "Ġ", "z", "q", "</s>"]
    assert enc.extra["words"][0] == [-1, 0, -1, 1, -1, -1]


def test_a_sentencepiece_tokenizer_that_never_prepends_gets_its_word_marker() -> None:
    """Metaspace with prepend_scheme="never" (add_prefix_space=False) dropped '▁' from every word."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("<pad>", 0.0), ("▁peter", -1.0), ("peter", -2.0)]
    vocab += [("▁visited", -1.0), ("visited", -2.0), *((c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz")]
    backend = Tokenizer(models.Unigram(vocab, unk_id=0))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    before = encode_words(tokenizer, [["peter", "visited"]], max_length=16, stride=2)
    assert _pieces(tokenizer, before.input_ids[0]) == ["<s>", "peter", "visited", "</s>"]  # as given: no ▁
    assert get_task("token_classification").prepare_tokenizer(tokenizer) == PREPARED
    enc = encode_words(tokenizer, [["peter", "visited"]], max_length=16, stride=2)
    assert _pieces(tokenizer, enc.input_ids[0]) == ["<s>", "▁peter", "▁visited", "</s>"]


@pytest.fixture(scope="module")
def roberta_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random RoBERTa (2 layers, hidden 32) with ``_byte_level_tokenizer``'s tokenizer, as
    a pre-trained base folder: its tokenizer is saved with add_prefix_space=False."""
    from transformers import RobertaConfig, RobertaModel

    folder = _byte_level_tokenizer(tmp_path_factory.mktemp("roberta"))
    tokenizer = load_tokenizer(folder)
    config = RobertaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, hidden_size=32,
                           num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=40)  # fmt: skip
    RobertaModel(config).save_pretrained(str(folder))
    return folder


def _ner_overrides(
    base: Path, tagged_jsonls: tuple[Path, Path], out: Path, name: str, *extra: str
) -> list[str]:
    train, test = tagged_jsonls
    return [
        "data.task=token_classification",
        f"data.train={train}",
        f"data.test={test}",
        f"model.name={base}",
        f"output_dir={out}",
        f"name={name}",
        "model.max_length=32",
        "train.epochs=1",
        "train.batch_size=8",
        "train.patience=null",
        *extra,
    ]


def _run_json(run: Path) -> dict[str, Any]:
    return json.loads((run / "run.json").read_text(encoding="utf-8"))


def _start_pieces(base: Path) -> list[str]:
    """The pieces a run trained before the hook learned " peter visited paris" as: each word read as
    the start of a text (no Ġ), from the base tokenizer as it is saved."""
    tokenizer = load_tokenizer(base)
    assert tokenizer.add_prefix_space is False
    ids = tokenizer([WORDS], is_split_into_words=True)["input_ids"][0]
    pieces = _pieces(tokenizer, ids)
    assert pieces != RUNNING and not any(p.startswith("Ġ") for p in pieces)
    return pieces


def _as_before_the_hook(run: Path, base: Path) -> None:
    """Make ``run`` as yesterday's code left it: its tokenizer/ the base's, saved unprepared
    (add_prefix_space=False), and no ``tokenizer_prepared`` in run.json."""
    import shutil

    shutil.rmtree(run / "tokenizer")
    load_tokenizer(base).save_pretrained(str(run / "tokenizer"))
    summary = _run_json(run)
    summary.pop("tokenizer_prepared", None)
    (run / "run.json").write_text(json.dumps(summary), encoding="utf-8")


def test_a_roberta_ner_run_saves_the_prefix_space_for_predict(
    tmp_path: Path, tagged_jsonls: tuple[Path, Path], roberta_base: Path
) -> None:
    """The run's tokenizer/ folder carries add_prefix_space=True: predict, eval, export and serve load
    it from there, and read words as training did. run.json records the choice."""
    run = tunelab.train(
        None,
        overrides=_ner_overrides(roberta_base, tagged_jsonls, tmp_path / "runs", "rob"),
        show_progress=False,
    ).run_dir
    assert _run_json(run)["tokenizer_prepared"] == PREPARED
    saved = load_tokenizer(run / "tokenizer")
    assert saved.add_prefix_space is True
    # Straight from the folder, without encode_words setting anything: the Ġ pieces of running text.
    direct = saved([WORDS], is_split_into_words=True)["input_ids"][0]
    assert _pieces(saved, direct) == RUNNING
    predictor = tunelab.load(run)
    assert _pieces(predictor.tokenizer, predictor.encode([" ".join(WORDS)]).input_ids[0]) == RUNNING
    result = predictor.predict("peter visited paris today")
    assert set(result) == {"entities"}


def test_a_roberta_run_trained_before_the_hook_predicts_on_the_pieces_it_learned(
    tmp_path: Path, tagged_jsonls: tuple[Path, Path], roberta_base: Path
) -> None:
    """A run trained before today on sentence-start pieces (its tokenizer/ saved with
    add_prefix_space=False): encode_words flipped its own saved tokenizer to Ġ pieces at predict,
    so its predictions changed without a word. Its saved tokenizer is used as it is."""
    run = tunelab.train(
        None,
        overrides=_ner_overrides(roberta_base, tagged_jsonls, tmp_path / "runs", "old"),
        show_progress=False,
    ).run_dir
    _as_before_the_hook(run, roberta_base)
    expected = _start_pieces(roberta_base)
    predictor = tunelab.load(run)
    assert _pieces(predictor.tokenizer, predictor.encode([" ".join(WORDS)]).input_ids[0]) == expected
    predictor.predict("peter visited paris today")
    assert predictor.tokenizer.add_prefix_space is False  # predicting changed nothing either
    assert _pieces(predictor.tokenizer, predictor.encode([" ".join(WORDS)]).input_ids[0]) == expected


def test_a_roberta_run_killed_before_the_hook_finishes_as_it_began(
    tmp_path: Path, tagged_jsonls: tuple[Path, Path], roberta_base: Path, killed_at_first_checkpoint: Any
) -> None:
    """Killed yesterday after a checkpoint (trained on sentence-start pieces), resumed today: the
    resume reloads the base tokenizer and encode_words flipped it, so the run finished on Ġ pieces
    (the data fingerprint compares words, not tokens) and saved them. Without a record it stays as
    it was; a run begun today records the hook and its resume prepares the tokenizer again."""
    out = tmp_path / "runs"
    old = killed_at_first_checkpoint(
        _ner_overrides(roberta_base, tagged_jsonls, out, "old", "train.epochs=2", "train.checkpoint_steps=2")
    )
    _as_before_the_hook(old, roberta_base)
    finished = tunelab.train(resume=old, show_progress=False).run_dir
    assert _run_json(finished)["steps"] > 2  # it resumed from the checkpoint
    saved = load_tokenizer(finished / "tokenizer")  # the tokenizer the resumed steps trained with
    assert saved.add_prefix_space is False
    expected = _start_pieces(roberta_base)
    assert _pieces(saved, saved([WORDS], is_split_into_words=True)["input_ids"][0]) == expected
    assert "tokenizer_prepared" in _run_json(finished)
    assert _run_json(finished)["tokenizer_prepared"] is None  # not prepared, and a later resume neither

    new = killed_at_first_checkpoint(
        _ner_overrides(roberta_base, tagged_jsonls, out, "new", "train.epochs=2", "train.checkpoint_steps=2")
    )
    assert _run_json(new)["tokenizer_prepared"] == PREPARED  # recorded while training
    finished = tunelab.train(resume=new, show_progress=False).run_dir
    assert _run_json(finished)["tokenizer_prepared"] == PREPARED
    saved = load_tokenizer(finished / "tokenizer")
    assert _pieces(saved, saved([WORDS], is_split_into_words=True)["input_ids"][0]) == RUNNING


def test_a_bert_ner_run_records_that_the_hook_changed_nothing(
    tmp_path: Path, tagged_jsonls: tuple[Path, Path], tiny_bert: Path
) -> None:
    """A WordPiece tokenizer has no prefix space to set: run.json records {} and the run's tokenizer/
    reads words as the base's does."""
    run = tunelab.train(
        None,
        overrides=_ner_overrides(tiny_bert, tagged_jsonls, tmp_path / "runs", "bert"),
        show_progress=False,
    ).run_dir
    assert _run_json(run)["tokenizer_prepared"] == {}
    base, saved = load_tokenizer(tiny_bert), load_tokenizer(run / "tokenizer")
    parts = ("pre_tokenizer", "post_processor")
    assert {k: json.loads(saved.backend_tokenizer.to_str())[k] for k in parts} == {
        k: json.loads(base.backend_tokenizer.to_str())[k] for k in parts
    }
    text = "peter visited paris"
    assert (
        saved(text.split(), is_split_into_words=True)["input_ids"]
        == base(text.split(), is_split_into_words=True)["input_ids"]
    )


def test_prepare_tokenizer_is_an_optional_hook_whose_result_is_checked() -> None:
    """The default changes nothing and returns {}; a plug-in's hook that returns no dict, or one
    run.json cannot hold, is one line naming the plug-in and the hook."""
    from tunelab.errors import ConfigError
    from tunelab.tasks.base import Task, checked_prepared

    classifier = get_task("single_label")
    assert type(classifier).prepare_tokenizer is Task.prepare_tokenizer
    marker = object()
    assert classifier.prepare_tokenizer(marker) == {}
    assert checked_prepared(classifier, {"x": True}) == {"x": True}
    with pytest.raises(ConfigError, match=r"prepare_tokenizer\(\) returned None"):
        checked_prepared(classifier, None)
    with pytest.raises(ConfigError, match=r"prepare_tokenizer\(\) returned dict, expected a dict of JSON"):
        checked_prepared(classifier, {"x": marker})


@pytest.mark.parametrize("name", ["Jan", "Penn", "Mass", "Gen", "Inc"])
def test_a_listed_abbreviation_ending_the_text_gives_up_the_full_stop(name: str) -> None:
    """Text ending "I met Jan." kept "Jan." whole, so a predicted entity ended after the full stop."""
    assert split_words(f"I met {name}.")[0] == ["I", "met", name, "."]
    assert split_words(f"I met {name}. ")[0] == ["I", "met", name, "."]
    assert split_words(f"(in {name}.)")[0] == ["(", "in", name, ".", ")"]
    # A word, number or comma after the dot: the abbreviation's own dot, kept (as CoNLL-2003 writes
    # it). A capital cannot tell a sentence end ("Jan. Then") from the name after a title
    # ("Gen. Motors"), so a following word keeps it whole either way.
    assert split_words(f"{name}. 5")[0] == [f"{name}.", "5"]
    assert split_words(f"{name}. Then")[0] == [f"{name}.", "Then"]
    assert split_words(f"{name}., then")[0] == [f"{name}.", ",", "then"]


def _agreement_case(tokenizer: Any, texts: list[str], change_first_window: bool) -> float:
    task = get_task("token_classification")
    enc = task.encode_texts(tokenizer, texts, None, max_length=16, stride=4)
    width = max(len(ids) for ids in enc.input_ids)
    before = np.zeros((len(enc.input_ids), width, 3), dtype=np.float32)
    before[..., 0] = 1.0  # every position's argmax: tag 0
    after = before.copy()
    if change_first_window:
        position = enc.extra["words"][0].index(0)  # the first word's labelled sub-token
        after[0, position] = [0.0, 1.0, 0.0]
    return task.agreement(before, after, threshold=None, enc=enc)


def test_export_agreement_counts_texts_not_windows(tiny_bert: Path) -> None:
    """One 24-word text makes 2 windows at max_length=16; a changed tag in the first window read as
    0.5 of it agreeing, where the parity report's "of rows" counts texts."""
    tokenizer = load_tokenizer(tiny_bert)
    long_text = " ".join(["the"] * 24)
    enc = get_task("token_classification").encode_texts(tokenizer, [long_text], None, max_length=16, stride=4)
    assert len(enc.input_ids) == 2  # the scenario: one text, two windows
    assert _agreement_case(tokenizer, [long_text], change_first_window=True) == 0.0
    assert _agreement_case(tokenizer, [long_text], change_first_window=False) == 1.0
    assert _agreement_case(tokenizer, [long_text, "the end"], change_first_window=True) == 0.5


def test_train_from_prepares_the_tokenizer_as_the_continued_run_did(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides: Any, monkeypatch
) -> None:
    """``train --from`` loads the base tokenizer afresh: it is prepared where the continued run
    recorded preparing it, and left as it is after a run from before the hook (any task: the trainer
    names none; NER refuses --from, so a classifier's hook stands in)."""
    calls: list[str] = []

    def spy(self: Any, tokenizer: Any) -> dict[str, Any]:
        calls.append(type(tokenizer).__name__)
        return {"spy": True}

    monkeypatch.setattr(type(get_task("single_label")), "prepare_tokenizer", spy)
    train, _ = labelled_csvs
    out = tmp_path / "runs"
    first = tunelab.train(
        overrides=tiny_overrides(tiny_bert, train, None, out, "name=first", epochs=1), show_progress=False
    ).run_dir
    assert len(calls) == 1 and _run_json(first)["tokenizer_prepared"] == {"spy": True}

    def continued(name: str) -> Path:
        overrides = [f"data.train={train}", f"output_dir={out}", f"name={name}", "train.epochs=1"]
        return tunelab.train(from_run=first, overrides=overrides, show_progress=False).run_dir

    assert _run_json(continued("recorded"))["tokenizer_prepared"] == {"spy": True}
    assert len(calls) == 2
    summary = _run_json(first)
    del summary["tokenizer_prepared"]  # as a run from before the hook
    (first / "run.json").write_text(json.dumps(summary), encoding="utf-8")
    later = continued("unrecorded")
    assert len(calls) == 2  # not prepared
    assert "tokenizer_prepared" in _run_json(later) and _run_json(later)["tokenizer_prepared"] is None
