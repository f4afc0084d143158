"""FGM and PGD on the input embeddings (``train.adversarial``): they change the gradient, not the data."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tunelab.config import DataConfig, TrainConfig
from tunelab.data.encoding import collate
from tunelab.errors import ConfigError
from tunelab.methods import available_methods, get_method
from tunelab.models import load_tokenizer
from tunelab.tasks import available_tasks, get_task
from tunelab.train.adversarial import Adversary, _project, build_adversary
from tunelab.train.loop import LoopSetup, run_loop
from tunelab.train.metrics_log import MetricsLog


def _multi_label_csv(folder: Path) -> Path:
    import pandas as pd

    rows = [("goal team rain", "sports|weather"), ("pizza soup", "food"), ("snow wind", "weather")] * 6
    path = folder / "multi.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def datasets(labelled_csvs, tagged_jsonls, tmp_path_factory) -> dict[str, DataConfig]:
    multi = _multi_label_csv(tmp_path_factory.mktemp("multi"))
    return {
        "single_label": DataConfig(train=str(labelled_csvs[0]), dev_size=0.0),
        "multi_label": DataConfig(train=str(multi), dev_size=0.0, task="multi_label"),
        "token_classification": DataConfig(
            train=str(tagged_jsonls[0]), dev_size=0.0, task="token_classification"
        ),
    }


def _prepared(task_name: str, datasets: dict[str, DataConfig], tiny_bert: Path):
    task = get_task(task_name)
    splits = task.load_splits(datasets[task_name])
    enc = task.encode(load_tokenizer(tiny_bert), splits.train, max_length=32)
    return task, splits, enc


def _batch(task, enc, num_labels: int) -> tuple[dict, torch.Tensor]:
    batch = collate(enc, list(range(8)), task=task, num_labels=num_labels)
    return batch, batch.pop("labels")


def _one_step(model, task, batch, labels, adversary: Adversary | None) -> dict[str, torch.Tensor]:
    """One SGD step on ``batch``; returns the parameters' gradients (before the step)."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)

    def forward_loss() -> torch.Tensor:
        return task.loss(model(**batch).logits, labels, None)

    if adversary is None:
        forward_loss().backward()
    else:
        with adversary.watch(model):
            forward_loss().backward()
        adversary.attack(model, forward_loss)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    optimizer.step()
    return grads


@pytest.mark.parametrize("kind", ["fgm", "pgd"])
def test_adversarial_changes_the_gradient_and_not_the_data(kind, datasets, tiny_bert) -> None:
    task, splits, enc = _prepared("single_label", datasets, tiny_bert)
    base = task.build_model(tiny_bert, splits.labels, pooling="mean", seed=0)
    batch, labels = _batch(task, enc, len(splits.labels))
    batch_before = {k: v.clone() for k, v in batch.items()}
    labels_before = labels.clone()

    # eval(): no dropout, so the two models differ only by the adversarial pass.
    plain, attacked = copy.deepcopy(base).eval(), copy.deepcopy(base).eval()
    plain_grads = _one_step(plain, task, batch, labels, None)

    # The embedding weights after the adversarial pass (before the optimizer step) are exactly
    # the ones before it: the perturbation is added to their output, never written into them.
    embeddings = attacked.get_input_embeddings().weight
    weights_before = embeddings.detach().clone()
    adversary = build_adversary(kind, epsilon=1.0, steps=3, alpha=0.3)
    optimizer = torch.optim.SGD([p for p in attacked.parameters() if p.requires_grad], lr=0.5)

    def forward_loss() -> torch.Tensor:
        return task.loss(attacked(**batch).logits, labels, None)

    with adversary.watch(attacked):
        clean_loss = forward_loss()
        clean_loss.backward()
    adversary.attack(attacked, forward_loss)
    assert torch.equal(embeddings.detach(), weights_before)
    attacked_grads = {n: p.grad.clone() for n, p in attacked.named_parameters() if p.grad is not None}
    optimizer.step()

    # The data is untouched: every batch tensor and the labels are as collated.
    for key, value in batch.items():
        assert torch.equal(value, batch_before[key]), key
    assert torch.equal(labels, labels_before)
    # The gradient changed (it now holds the adversarial batch's as well) ...
    assert attacked_grads.keys() == plain_grads.keys()
    assert any(not torch.allclose(attacked_grads[n], plain_grads[n]) for n in plain_grads)
    # ... and so the parameters after the step differ from a step without it.
    moved = [
        n for n, p in attacked.named_parameters() if not torch.equal(p, dict(plain.named_parameters())[n])
    ]
    assert moved


def test_the_perturbation_raises_the_loss(datasets, tiny_bert) -> None:
    task, splits, enc = _prepared("single_label", datasets, tiny_bert)
    model = task.build_model(tiny_bert, splits.labels, pooling="mean", seed=0).eval()
    batch, labels = _batch(task, enc, len(splits.labels))
    adversary = Adversary(kind="fgm", epsilon=2.0)
    seen: list[float] = []

    def forward_loss() -> torch.Tensor:
        loss = task.loss(model(**batch).logits, labels, None)
        seen.append(loss.item())
        return loss

    with adversary.watch(model):
        forward_loss().backward()
    adversary.attack(model, forward_loss)
    clean, perturbed = seen
    assert perturbed > clean


def test_pgd_stays_inside_the_epsilon_ball() -> None:
    delta = torch.randn(4, 5, 3) * 10
    projected = _project(delta, 0.5)
    assert torch.all(projected.flatten(1).norm(dim=1) <= 0.5 + 1e-6)
    small = torch.full((2, 2, 2), 0.01)
    assert torch.equal(_project(small, 0.5), small)  # inside already: unchanged


@pytest.mark.parametrize("kind", ["fgm", "pgd"])
@pytest.mark.parametrize("method_name", available_methods())
@pytest.mark.parametrize("task_name", available_tasks())
def test_adversarial_training_runs_for_every_task_and_method(
    kind, method_name, task_name, datasets, tiny_bert, tmp_path
) -> None:
    task, splits, enc = _prepared(task_name, datasets, tiny_bert)
    method = get_method(method_name)
    model = method.apply(
        task.build_model(tiny_bert, splits.labels, pooling="mean", seed=0), method.parse_options({})
    )
    cfg = TrainConfig(
        epochs=1,
        batch_size=8,
        learning_rate=method.default_learning_rate,
        head_init="random",
        patience=None,
        metric=task.metrics[0],
        adversarial=kind,
        adversarial_steps=2,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    log = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tb")
    setup = LoopSetup(
        train=enc,
        cfg=cfg,
        task=task,
        num_labels=len(splits.labels),
        learning_rate=method.default_learning_rate,
        checkpoints=tmp_path / "checkpoints",
        log=log,
        show_progress=False,
        on_step=method.on_step,
        on_train_begin=method.on_train_begin,
        loss_term=method.loss_term,
    )
    try:
        state = run_loop(model, setup, resume=False)
    finally:
        log.close()
    assert state.step >= 1
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)


def test_bad_adversarial_options_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"train.adversarial='fgsm' \(use fgm, pgd"):
        TrainConfig(adversarial="fgsm")
    with pytest.raises(ConfigError, match=r"train\.adversarial_epsilon=0"):
        TrainConfig(adversarial="fgm", adversarial_epsilon=0)
