"""The linear-probe warm start (``train.head_init=probe``) on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab
from tunelab.data.encoding import encode_texts
from tunelab.models import build_classifier, load_tokenizer
from tunelab.train.head_init import pooled_features, probe_head
from tunelab.train.optim import HEAD_LEARNING_RATE, head_learning_rate


def _encoded(tiny_bert: Path, text_maker, labels: list[str], per_class: int = 12):
    tokenizer = load_tokenizer(tiny_bert)
    texts, ids = [], []
    for i, label in enumerate(labels):
        made = text_maker(label, per_class, 3)
        texts += made
        ids += [i] * len(made)
    return encode_texts(tokenizer, texts, max_length=32, labels=ids)


@pytest.mark.parametrize("labels", [["food", "sports", "weather"], ["food", "sports"]])
def test_probe_head_matches_a_logistic_regression_on_frozen_features(tiny_bert, text_maker, labels) -> None:
    from sklearn.linear_model import LogisticRegression

    enc = _encoded(tiny_bert, text_maker, labels)
    model = build_classifier(tiny_bert, labels, pooling="mean", seed=0)
    before = model.classifier.weight.detach().clone()
    accuracy = probe_head(model, enc, multi_label=False, num_labels=len(labels), seed=0)
    assert not torch.equal(before, model.classifier.weight)

    features = pooled_features(model, enc)
    expected = LogisticRegression(max_iter=1000, random_state=0).fit(features, enc.labels).predict(features)
    model.eval()
    with torch.no_grad():
        logits = model.classifier(torch.from_numpy(features)).numpy()
    # The copied head decides exactly as the fitted probe (binary included: one row becomes two).
    assert (logits.argmax(axis=1) == expected).all()
    assert accuracy == pytest.approx(float((expected == np.asarray(enc.labels)).mean()))


def test_probe_head_multi_label(tiny_bert, text_maker) -> None:
    labels = ["food", "sports", "weather"]
    enc = _encoded(tiny_bert, text_maker, labels)
    # Two labels per row, so no label is always present or always absent.
    enc.labels = [[i, (i + 1) % 3] for i in enc.labels]
    model = build_classifier(tiny_bert, labels, "multi_label_classification", pooling="mean", seed=0)
    accuracy = probe_head(model, enc, multi_label=True, num_labels=3, seed=0)

    # One binary logistic regression per label on the frozen features, its weights copied row by row.
    from sklearn.linear_model import LogisticRegression

    features = pooled_features(model, enc)
    targets = np.zeros((len(enc.labels), 3), dtype=int)
    for row, ids in enumerate(enc.labels):
        targets[row, ids] = 1
    fits = [LogisticRegression(max_iter=1000, random_state=0).fit(features, targets[:, j]) for j in range(3)]
    np.testing.assert_allclose(
        model.classifier.weight.detach().numpy(), np.stack([f.coef_[0] for f in fits]), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        model.classifier.bias.detach().numpy(), [f.intercept_[0] for f in fits], rtol=1e-4, atol=1e-5
    )
    expected = np.stack([f.predict(features) for f in fits], axis=1)  # (N, 3)
    model.eval()
    with torch.no_grad():
        logits = model.classifier(torch.from_numpy(features)).numpy()
    assert ((logits > 0).astype(int) == expected).all()  # sigmoid > 0.5: the probe's own decisions
    # the exact-match accuracy of those decisions
    assert accuracy == pytest.approx(float((expected == targets).all(axis=1).mean()))


def test_probe_keeps_the_head_learning_rate_of_the_body() -> None:
    from tunelab.config import TrainConfig

    assert head_learning_rate(TrainConfig(head_init="probe"), 5e-5) == 5e-5
    assert head_learning_rate(TrainConfig(head_init="random"), 5e-5) == HEAD_LEARNING_RATE
    assert head_learning_rate(TrainConfig(head_init="probe", head_learning_rate=1e-3), 5e-5) == 1e-3


@pytest.mark.parametrize("method", ["full", "lora"])
def test_training_with_a_probe_head_starts_ahead(tiny_bert, train_csv, test_csv, tmp_path, method) -> None:
    common = [
        f"data.train={train_csv}",
        f"data.test={test_csv}",
        f"model.name={tiny_bert}",
        "model.max_length=32",
        "model.pooling=mean",
        "train.batch_size=8",
        "train.epochs=1",
        "train.learning_rate=0.00001",
        "train.patience=null",
        f"output_dir={tmp_path}",
        f"method={method}",
    ]
    probe = tunelab.train(
        None, overrides=[*common, "train.head_init=probe", "name=probe"], show_progress=False
    )
    plain = tunelab.train(
        None, overrides=[*common, "train.head_init=random", "name=plain"], show_progress=False
    )
    summary = json.loads((probe.run_dir / "run.json").read_text(encoding="utf-8"))
    assert summary["head_init"] == "probe" and summary["probe_train_accuracy"] > 0.5
    # One epoch at a tiny learning rate: the random head is still near chance, the probe is not.
    assert probe.metrics["test"]["accuracy"] > plain.metrics["test"]["accuracy"]
    assert probe.metrics["test"]["accuracy"] > 0.6


def test_unknown_head_init_is_a_config_error() -> None:
    from tunelab.config import RunConfig
    from tunelab.errors import ConfigError

    with pytest.raises(ConfigError, match="head_init='lp'"):
        RunConfig.from_yaml(None, ["train.head_init=lp"])
