"""The common tester: every registered method over every registered task, through the contracts only.

peft's ``PeftCommonTester`` habit (STYLE.md habit 11). The pairs come from the registries
(``available_methods()`` x ``available_tasks()``), so a new method folder or a new task folder gets
these tests for free: build the model with ``task.build_model``, ``method.apply``, train a few
steps through the real loop (``run_loop``), ``method.save`` -> ``method.load``, then
``task.score``, ``task.decode`` and ``task.result_schema``. Nothing here branches on a name: what
differs between methods is read from the ``Method`` fields (``stores_base``, ``on_step``).

A new task needs one thing here: an entry in ``TASK_FIXTURES`` (a tiny labelled dataset and a few
texts to predict), else ``test_every_task_has_a_fixture`` fails naming it.
"""

from __future__ import annotations

import json
import math
import random
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from transformers import PreTrainedModel

from tunelab.config import DataConfig, TrainConfig
from tunelab.inference.forward import predict_logits
from tunelab.methods import available_methods, get_method
from tunelab.methods.registry import ModelLoader
from tunelab.models import load_tokenizer
from tunelab.serve.schemas import PredictResponse, UsageCount
from tunelab.tasks import available_tasks, get_task
from tunelab.train.loop import LoopSetup, run_loop
from tunelab.train.metrics_log import MetricsLog

MAX_LENGTH = 32
POOLING = "mean"  # the tiny random encoder learns from mean pooling more reliably (tests/conftest.py)
HEAD_LEARNING_RATE = 5e-2  # the tiny random encoder's features are weak: the fresh head needs big steps
EPOCHS = 12
BATCH_SIZE = 8
HEAD = "classifier"  # the head's module name: lora's modules_to_save and the optimizer's head group use it

# -- tiny labelled data, one builder per task ------------------------------------------------------

TOPICS = {
    "sports": ["football", "tennis", "goal", "match", "team", "league"],
    "food": ["pizza", "bread", "cheese", "soup", "salad", "dinner"],
    "weather": ["rain", "snow", "sunny", "storm", "cloud", "wind"],
}
FILLER = ["the", "a", "today", "really", "was", "about", "my", "very"]


def _topic_text(rng: random.Random, topics: list[str]) -> str:
    words = [w for t in topics for w in rng.sample(TOPICS[t], 2)] + rng.sample(FILLER, 2)
    rng.shuffle(words)
    return " ".join(words)


def _csv(path: Path, rows: list[tuple[str, str]]) -> str:
    import pandas as pd

    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return str(path)


def single_label_data(folder: Path) -> tuple[DataConfig, list[str]]:
    rng = random.Random(0)

    def rows(n: int) -> list[tuple[str, str]]:
        return [(_topic_text(rng, [t]), t) for t in TOPICS for _ in range(n)]

    train, test = _csv(folder / "train.csv", rows(12)), _csv(folder / "test.csv", rows(3))
    data = DataConfig(train=train, test=test, dev_size=0.0, task="single_label")
    return data, ["goal and team today", "pizza for dinner"]


def multi_label_data(folder: Path) -> tuple[DataConfig, list[str]]:
    rng = random.Random(1)
    sets = [["sports"], ["food"], ["weather"], ["sports", "weather"], ["food", "weather"]]

    def rows(n: int) -> list[tuple[str, str]]:
        return [(_topic_text(rng, s), "|".join(s)) for s in sets for _ in range(n)]

    train, test = _csv(folder / "train.csv", rows(8)), _csv(folder / "test.csv", rows(2))
    data = DataConfig(train=train, test=test, dev_size=0.0, task="multi_label")
    return data, ["tennis match in the rain", "cheese soup"]


PEOPLE = ["peter", "maria", "john", "anna"]
PLACES = ["paris", "london", "berlin", "rome"]


def token_classification_data(folder: Path) -> tuple[DataConfig, list[str]]:
    rng = random.Random(2)

    def sentences(n: int) -> list[dict[str, list[str]]]:
        out = []
        for _ in range(n):
            person, place = rng.choice(PEOPLE), rng.choice(PLACES)
            verb = rng.choice(["visited", "left", "liked"])
            out.append({"tokens": [person, verb, place, "today"], "tags": ["B-PER", "O", "B-LOC", "O"]})
        return out

    def write(path: Path, records: list[dict[str, list[str]]]) -> str:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return str(path)

    train, test = write(folder / "train.jsonl", sentences(32)), write(folder / "test.jsonl", sentences(6))
    data = DataConfig(train=train, test=test, dev_size=0.0, task="token_classification")
    return data, ["maria visited rome", "john left  berlin today"]


# task name -> builder(folder) -> (data config of a tiny labelled set with a test file, texts to decode)
TASK_FIXTURES: dict[str, Callable[[Path], tuple[DataConfig, list[str]]]] = {
    "single_label": single_label_data,
    "multi_label": multi_label_data,
    "token_classification": token_classification_data,
}


def test_every_task_has_a_fixture() -> None:
    missing = sorted(set(available_tasks()) - set(TASK_FIXTURES))
    stale = sorted(set(TASK_FIXTURES) - set(available_tasks()))
    assert not missing, (
        f"task(s) {', '.join(missing)} have no entry in TASK_FIXTURES of {Path(__file__).name}: "
        "add a builder of a tiny labelled dataset, so the common tester runs every method over them"
    )
    assert not stale, f"TASK_FIXTURES names task(s) that are not registered: {', '.join(stale)}"


def test_every_task_result_schema_is_in_the_api_response() -> None:
    # serve/schemas.py writes the union out for /docs; a new task's schema must be added there.
    union = PredictResponse.model_fields["results"].annotation
    accepted = {typing.get_args(option)[0] for option in typing.get_args(union)}
    for name in available_tasks():
        schema = get_task(name).result_schema
        assert schema in accepted, (
            f"task {name}: add list[{schema.__name__}] to PredictResponse.results in tunelab/serve/schemas.py"
        )


# -- one prepared task: splits and encodings, shared by every method --------------------------------


@dataclass
class Prepared:
    task: Any
    splits: Any
    tokenizer: Any
    enc_train: Any
    enc_test: Any
    texts: list[str]


_PREPARED: dict[str, Prepared] = {}


@pytest.fixture
def prepared(task_name: str, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    if task_name not in TASK_FIXTURES:
        pytest.fail(f"task {task_name!r} has no entry in TASK_FIXTURES (see test_every_task_has_a_fixture)")
    if task_name not in _PREPARED:  # reading and encoding once per task, not once per method
        task = get_task(task_name)
        data, texts = TASK_FIXTURES[task_name](tmp_path_factory.mktemp(f"data-{task_name}"))
        splits = task.load_splits(data)
        tokenizer = load_tokenizer(tiny_bert)
        _PREPARED[task_name] = Prepared(
            task=task,
            splits=splits,
            tokenizer=tokenizer,
            enc_train=task.encode(tokenizer, splits.train, max_length=MAX_LENGTH),
            enc_test=task.encode(tokenizer, splits.test, max_length=MAX_LENGTH),
            texts=texts,
        )
    return _PREPARED[task_name]


def n_params(model: nn.Module, *, trainable: bool | None = None) -> int:
    return sum(p.numel() for p in model.parameters() if trainable is None or p.requires_grad == trainable)


def train_loss(p: Prepared, model: nn.Module) -> float:
    metrics, _ = p.task.score(predict_logits(model, p.enc_train), p.enc_train, p.splits.labels)
    return float(metrics["loss"])


# -- the common test -------------------------------------------------------------------------------


@pytest.mark.parametrize("method_name", available_methods())
@pytest.mark.parametrize("task_name", available_tasks())
def test_method_trains_saves_loads_and_predicts_on_task(
    method_name: str, task_name: str, prepared: Prepared, tiny_bert: Path, tmp_path: Path
) -> None:
    p, method = prepared, get_method(method_name)
    task, labels = p.task, p.splits.labels

    # apply: the head stays trainable; a method that stores the whole model trains all of it, an
    # adapter trains a small fraction (the embeddings alone are most of the tiny model's weights).
    model = method.apply(
        task.build_model(tiny_bert, labels, pooling=POOLING, seed=0), method.parse_options({})
    )
    trainable = {n for n, q in model.named_parameters() if q.requires_grad}
    head = {n for n in trainable if HEAD in n.split(".")}
    assert head, f"{method_name} on {task_name}: the head ({HEAD}) is not trainable"
    if method.stores_base:  # the whole model trains; full keeps the token embeddings by default
        words = model.get_input_embeddings().weight
        assert all(q.requires_grad for q in model.parameters() if q is not words)
    else:
        assert 0 < n_params(model, trainable=True) * 20 < n_params(model)

    # a few steps through the real loop; on_step (the method's, if any) once per optimizer step
    before = {n: q.detach().clone() for n, q in model.named_parameters()}
    loss_before = train_loss(p, model)
    steps_seen: list[int] = []

    def on_step(m: nn.Module, step: int) -> None:
        steps_seen.append(step)
        if method.on_step is not None:
            method.on_step(m, step)

    cfg = TrainConfig(
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        learning_rate=method.default_learning_rate,
        head_learning_rate=HEAD_LEARNING_RATE,
        head_init="random",
        patience=None,
        metric=task.metrics[0],
        seed=0,
    )
    log = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tb")
    setup = LoopSetup(
        train=p.enc_train,
        cfg=cfg,
        task=task,
        num_labels=len(labels),
        learning_rate=method.default_learning_rate,
        checkpoints=tmp_path / "checkpoints",
        log=log,
        show_progress=False,
        on_step=on_step,
        on_train_begin=method.on_train_begin,
        loss_term=method.loss_term,
    )
    try:
        state = run_loop(model, setup, resume=False)
    finally:
        log.close()
    assert state.step == EPOCHS * math.ceil(len(p.enc_train) / BATCH_SIZE)
    assert steps_seen == list(range(state.step))
    loss_after = train_loss(p, model)
    assert loss_after < 0.8 * loss_before, f"training loss {loss_before:.3f} -> {loss_after:.3f}"
    after = dict(model.named_parameters())
    for name, param in after.items():
        moved = not torch.equal(before[name], param.detach())
        assert moved or name not in head, f"head weight {name} did not move"
        assert not moved or name in trainable, f"frozen weight {name} moved"
    body = trainable - head
    if body:  # adapters or the encoder: something besides the head must learn
        assert any(not torch.equal(before[n], after[n].detach()) for n in body)

    # save -> load gives the trained model back; merged (where it can be) a plain transformers model
    expected = predict_logits(model, p.enc_test)
    folder = tmp_path / "weights"
    folder.mkdir()
    method.save(model, folder)
    calls: list[str] = []

    def base() -> nn.Module:
        calls.append("base")
        return task.build_model(tiny_bert, labels, pooling=POOLING, seed=None)  # a different fresh head

    def whole(f: Path) -> nn.Module:
        calls.append("whole")
        return task.load_model(f)

    loaded = method.load(folder, ModelLoader(base=base, whole=whole))
    assert calls == (["whole"] if method.stores_base else ["base"])
    np.testing.assert_allclose(predict_logits(loaded, p.enc_test), expected, rtol=1e-4, atol=1e-5)
    if method.merge is not None:  # folded into the base: the task's plain model, same logits
        loaded = method.merge(loaded)
    if method.merge is not None or method.stores_base:
        assert isinstance(loaded, PreTrainedModel)
        plain = task.build_model(tiny_bert, labels, pooling=POOLING, seed=0)
        assert set(loaded.state_dict()) == set(plain.state_dict()), (
            "the loaded model is not the task's plain model"
        )
    else:
        assert method.cannot_merge, f"{method_name} cannot merge and does not say why"
    logits = predict_logits(loaded, p.enc_test)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)

    # score: every metric a run may select on, and the headline
    metrics, threshold = task.score(logits, p.enc_test, labels)
    for key in task.metrics:
        assert isinstance(metrics.get(key), int | float) and math.isfinite(metrics[key]), key
    assert set(task.headline(metrics)) >= {"loss", *task.metrics}
    assert (threshold is not None) == task.tunes_threshold()

    # decode: one result per text, valid under the task's schema and inside the API's response
    enc = task.encode_texts(p.tokenizer, p.texts, None, max_length=MAX_LENGTH)
    results = task.decode(predict_logits(loaded, enc), enc, p.texts, labels, threshold=threshold, top_k=2)
    assert len(results) == len(p.texts)
    parsed = [task.result_schema.model_validate(r) for r in results]
    response = PredictResponse(
        model="m",
        version="v1",
        format="torch",
        task=task.name,
        results=parsed,
        usage=UsageCount(texts=len(parsed), tokens=sum(enc.lengths)),
    )
    assert all(type(r) is task.result_schema for r in response.results)
    assert json.loads(response.model_dump_json())["results"] == [r.model_dump(mode="json") for r in parsed]
