"""NER review fixes: RoBERTa-style tokenizers read each word after a space, a listed abbreviation
ending the text gives up its full stop, and export agreement counts texts, not windows."""

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
    enc = encode_words(tokenizer, [WORDS], max_length=32, stride=4)
    assert _pieces(tokenizer, enc.input_ids[0]) == expected
    assert enc.extra["words"][0] == [-1, 0, 1, 2, -1]
    # A WordPiece tokenizer has no prefix space to set: left as it was.
    bert = load_tokenizer(tiny_bert)
    parts = ("pre_tokenizer", "post_processor")
    before = {k: json.loads(bert.backend_tokenizer.to_str())[k] for k in parts}
    encode_words(bert, [WORDS], max_length=32, stride=4)
    assert {k: json.loads(bert.backend_tokenizer.to_str())[k] for k in parts} == before
    assert bert.add_prefix_space is False


def test_a_bare_space_piece_does_not_take_the_words_label(tmp_path: Path) -> None:
    """A word the vocabulary has no 'Ġ' piece for starts with a bare 'Ġ', the same token for every
    such word: its label goes on the next piece, as with sentencepiece's bare '▁'."""
    tokenizer = load_tokenizer(_byte_level_tokenizer(tmp_path / "tok"))
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
    enc = encode_words(tokenizer, [["peter", "visited"]], max_length=16, stride=2)
    assert _pieces(tokenizer, enc.input_ids[0]) == ["<s>", "▁peter", "▁visited", "</s>"]


def test_a_roberta_ner_run_saves_the_prefix_space_for_predict(
    tmp_path: Path, tagged_jsonls: tuple[Path, Path]
) -> None:
    """The run's tokenizer/ folder carries add_prefix_space=True: predict, eval, export and serve load
    it from there, and read words as training did."""
    from transformers import RobertaConfig, RobertaModel

    folder = _byte_level_tokenizer(tmp_path / "roberta")
    tokenizer = load_tokenizer(folder)
    config = RobertaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, hidden_size=32,
                           num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=40)  # fmt: skip
    RobertaModel(config).save_pretrained(str(folder))
    train, test = tagged_jsonls
    overrides = [
        "data.task=token_classification",
        f"data.train={train}",
        f"data.test={test}",
        f"model.name={folder}",
        f"output_dir={tmp_path / 'runs'}",
        "name=rob",
        "model.max_length=32",
        "train.epochs=1",
        "train.batch_size=8",
        "train.patience=null",
    ]
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    saved = load_tokenizer(run / "tokenizer")
    assert saved.add_prefix_space is True
    # Straight from the folder, without encode_words setting anything: the Ġ pieces of running text.
    direct = saved([WORDS], is_split_into_words=True)["input_ids"][0]
    assert _pieces(saved, direct) == ["<s>", "Ġpeter", "Ġvisited", "Ġparis", "</s>"]
    result = tunelab.load(run).predict("peter visited paris today")
    assert set(result) == {"entities"}


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
