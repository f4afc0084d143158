"""Structured pruning (heads, FFN neurons) with least-squares refit, and distillation recovery."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tunelab
from tunelab.compress import structured
from tunelab.compress.structured import (
    apply_shape,
    ffn_sizes,
    head_counts,
    input_gram,
    prune_structured,
    refit_linear,
)
from tunelab.config import TrainConfig
from tunelab.data.encoding import collate, encode_texts
from tunelab.errors import RunError
from tunelab.inference.forward import predict_logits
from tunelab.tasks import get_task


def gram_of(x: torch.Tensor) -> torch.Tensor:
    xa = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    return xa.T @ xa


def test_refit_keeping_every_input_gives_back_the_layer() -> None:
    torch.manual_seed(0)
    layer, x = nn.Linear(6, 4), torch.randn(200, 6)
    new, error = refit_linear(layer, gram_of(x), torch.arange(6))
    assert torch.allclose(new.weight, layer.weight, atol=1e-5) and torch.allclose(
        new.bias, layer.bias, atol=1e-5
    )
    assert error == pytest.approx(0.0, abs=1e-8)


def test_refit_recovers_a_dropped_input_that_the_others_explain() -> None:
    """Input 3 is 2 * x0 - x1 + 0.5: the refit folds it into the kept weights; a plain cut cannot."""
    torch.manual_seed(0)
    x = torch.randn(500, 6)
    x[:, 3] = 2 * x[:, 0] - x[:, 1] + 0.5
    layer, keep = nn.Linear(6, 4), torch.tensor([0, 1, 2, 4, 5])
    with torch.no_grad():
        target = layer(x)
        new, error = refit_linear(layer, gram_of(x), keep)
        cut = nn.functional.linear(x[:, keep], layer.weight[:, keep], layer.bias)
        refit_gap = (new(x[:, keep]) - target).abs().max()
        cut_gap = (cut - target).abs().max()
    assert refit_gap < 0.02 < cut_gap and error < 1e-3  # damping leaves a trace, nothing more


def test_refit_error_is_the_unexplained_share_of_the_output() -> None:
    torch.manual_seed(1)
    layer, x, keep = nn.Linear(5, 3), torch.randn(300, 5), torch.tensor([0, 2, 4])
    new, error = refit_linear(layer, gram_of(x), keep)
    with torch.no_grad():
        y = layer(x).double()
        residual = (new(x[:, keep]).double() - y).pow(2).sum()
        spread = (y - y.mean(dim=0)).pow(2).sum()
    assert error == pytest.approx(float(residual / spread), rel=1e-4)


@pytest.fixture
def classifier(tiny_bert: Path) -> nn.Module:
    from tunelab.models import build_classifier

    return build_classifier(tiny_bert, ["a", "b", "c"], pooling="mean", seed=0).eval()


@pytest.fixture
def calibration(tiny_bert: Path, text_maker) -> list[dict[str, torch.Tensor]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    texts = [text_maker(label, 20, seed) for seed, label in enumerate(("sports", "food", "weather"))]
    enc = encode_texts(tokenizer, [t for group in texts for t in group], max_length=32)
    return [collate(enc, list(range(i, min(i + 16, len(enc))))) for i in range(0, len(enc), 16)]


def cut_only(linear: nn.Linear, _gram: torch.Tensor, keep: torch.Tensor) -> tuple[nn.Linear, float]:
    """``refit_linear`` without the refit: the kept columns as they are."""
    from transformers.pytorch_utils import prune_linear_layer

    return prune_linear_layer(linear, keep, dim=1), 1.0


def logits_on(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(**b).logits for b in batches])


def test_structured_pruning_cuts_the_shapes_and_refits_closer_than_a_plain_cut(
    classifier: nn.Module, calibration: list[dict[str, torch.Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = logits_on(classifier, calibration)
    plain = copy.deepcopy(classifier)
    info = prune_structured(classifier, heads=0.5, ffn=0.5, calibration=calibration)
    assert head_counts(classifier) == info["heads_per_layer"] == [1, 1]
    assert ffn_sizes(classifier) == info["ffn_per_layer"] == [32, 32]
    assert info["heads_before"] == 4 and info["ffn_before"] == 128 and info["calibration_texts"] == 60
    assert all(0 <= e <= 1 for e in info["attention_refit_error"] + info["ffn_refit_error"])

    monkeypatch.setattr(structured, "refit_linear", cut_only)  # the same selection, no refit
    prune_structured(plain, heads=0.5, ffn=0.5, calibration=calibration)
    refit_gap = (logits_on(classifier, calibration) - original).abs().mean()
    plain_gap = (logits_on(plain, calibration) - original).abs().mean()
    assert refit_gap < plain_gap


def test_the_head_and_neurons_with_no_output_are_the_ones_cut(
    classifier: nn.Module, calibration: list[dict[str, torch.Tensor]]
) -> None:
    layer = classifier.base_model.encoder.layer[0]
    size = layer.attention.self.attention_head_size
    with torch.no_grad():
        keep_query = layer.attention.self.query.weight[:size].clone()  # head 0 stays
        layer.attention.output.dense.weight[:, size:] = 0  # head 1 adds nothing to the output
        layer.output.dense.weight[:, 10:42] = 0  # neither do FFN neurons 10-41
        kept_rows = layer.intermediate.dense.weight[[*range(10), *range(42, 64)]].clone()
    prune_structured(classifier, heads=0.5, ffn=0.5, calibration=calibration)
    assert torch.equal(layer.attention.self.query.weight, keep_query)
    assert torch.equal(layer.intermediate.dense.weight, kept_rows)


def test_a_saved_shape_rebuilds_on_a_fresh_model(
    tiny_bert: Path, classifier: nn.Module, calibration: list[dict[str, torch.Tensor]]
) -> None:
    from tunelab.models import build_classifier

    info = prune_structured(classifier, heads=0.5, ffn=0.25, calibration=calibration)
    fresh = build_classifier(tiny_bert, ["a", "b", "c"], pooling="mean").eval()
    apply_shape(fresh, info)
    fresh.load_state_dict(classifier.state_dict(), strict=True)
    assert torch.allclose(logits_on(fresh, calibration), logits_on(classifier, calibration))
    with pytest.raises(RunError, match="saved FFN sizes cover 3 layers, the model has 2"):
        apply_shape(fresh, {"ffn_per_layer": [8, 8, 8]})


def test_the_gram_counts_only_real_tokens(
    classifier: nn.Module, calibration: list[dict[str, torch.Tensor]]
) -> None:
    gram = input_gram(classifier, classifier.base_model.encoder.layer[1].output.dense, calibration)
    tokens = sum(int(b["attention_mask"].sum()) for b in calibration)
    assert gram.shape == (65, 65) and gram[-1, -1] == tokens and torch.allclose(gram, gram.T)


def test_models_without_bert_layers_are_refused(calibration: list[dict[str, torch.Tensor]]) -> None:
    with pytest.raises(RunError, match="use --prune-method magnitude"):
        prune_structured(nn.Sequential(nn.Linear(4, 4)), heads=0.5, calibration=calibration)


def test_soft_targets_pass_through_collate(calibration: list[dict[str, torch.Tensor]]) -> None:
    from tunelab.data.encoding import Encoded

    soft = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    enc = Encoded(
        input_ids=[[101, 5, 102], [101, 102], [101, 7, 8, 102]], token_type_ids=None, labels=soft, pad_id=0
    )
    batch = collate(enc, [2, 0], task=get_task("single_label"), num_labels=3)
    assert torch.equal(batch["labels"], soft[[2, 0]]) and batch["input_ids"].shape == (2, 4)


def test_distillation_teaches_the_student_what_the_teacher_predicts(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], text_maker, tmp_path: Path
) -> None:
    """A student with the teacher's encoder and a blank head learns the teacher's outputs, no labels."""
    from test_compress import train_tiny

    from tunelab.compress.recover import distill

    predictor = tunelab.load(train_tiny(tiny_bert, labelled_csvs, tmp_path, "teacher"))
    teacher = predictor.model.eval()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.classifier.weight.zero_()
        student.classifier.bias.zero_()
    words = [t for group in ("sports", "food", "weather") for t in text_maker(group, 20, 9)]
    texts = predictor.encode(words)

    def gap() -> float:
        p = torch.softmax(torch.from_numpy(predict_logits(teacher, texts)), -1)
        q = torch.log_softmax(torch.from_numpy(predict_logits(student, texts)), -1)
        return float(nn.functional.kl_div(q, p, reduction="batchmean"))

    before = gap()
    summary = distill(
        student,
        teacher,
        texts,
        task=get_task("single_label"),
        epochs=5,
        train_cfg=TrainConfig(batch_size=8),
        workdir=tmp_path / "recover",
        learning_rate=5e-3,
        show_progress=False,
    )
    assert gap() < 0.25 * before
    assert summary["steps"] == 5 * 8 and summary["texts"] == 60 and summary["final_loss"] is not None
    assert not student.training and (tmp_path / "recover" / "metrics.jsonl").is_file()


def test_distillation_ignores_the_runs_label_smoothing_and_adversarial_training(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    text_maker: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recovery copied them from the run's recipe: the pruned model learned a smoothed teacher
    (softer than the source) on perturbed embeddings."""
    import importlib

    from test_compress import train_tiny

    from tunelab.compress.recover import distill

    loop = importlib.import_module("tunelab.train.loop")  # tunelab.train is also the API's function

    predictor = tunelab.load(train_tiny(tiny_bert, labelled_csvs, tmp_path, "teacher"))
    seen = {}

    def stop(model: Any, setup: Any, **kwargs: Any) -> None:
        seen["cfg"] = setup.cfg
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "run_loop", stop)
    recipe = TrainConfig(batch_size=8, label_smoothing=0.2, adversarial="fgm")
    with pytest.raises(KeyboardInterrupt):
        distill(
            copy.deepcopy(predictor.model),
            predictor.model.eval(),
            predictor.encode(text_maker("food", 8, 1)),
            task=get_task("single_label"),
            epochs=1,
            train_cfg=recipe,
            workdir=tmp_path / "r",
            show_progress=False,
        )
    assert seen["cfg"].label_smoothing == 0.0 and seen["cfg"].adversarial is None


@pytest.mark.parametrize("fmt", ["onnx-int8"])
def test_export_with_recovery_records_it_and_leaves_only_its_log(
    tiny_bert: Path, parity_csvs: tuple[Path, Path], tmp_path: Path, fmt: str
) -> None:
    """On a run that learned its task (test accuracy >= 0.95), the pruned and recovered int8 artifact
    stays within the pruning bound of test_compress (measured: agreement 1.0, logits <= 0.16 apart)."""
    from test_compress import PRUNED, assert_parity, train_tiny

    run = train_tiny(tiny_bert, parity_csvs, tmp_path, "tiny-recover", "method.freeze_word_embeddings=false")
    assert json.loads((run / "metrics.json").read_text(encoding="utf-8"))["test"]["accuracy"] >= 0.95
    result = tunelab.export(
        run,
        format=fmt,
        prune=0.5,
        prune_method="ffn",
        recover_epochs=1,
        max_drop=PRUNED.drop_points,
        show_progress=False,
    )
    summary = json.loads((result.path / "run.json").read_text(encoding="utf-8"))
    info, rows = summary["export"]["prune"], summary["rows"]["train"]  # the training split: 54 of 60
    assert info["ffn_per_layer"] == [32, 32] and "heads_per_layer" not in info
    assert info["calibration_texts"] == info["recovery"]["texts"] == rows
    assert info["recovery"]["epochs"] == 1 and info["recovery"]["steps"] == math.ceil(rows / 8)
    assert (result.path / "logs" / "recover.jsonl").is_file() and not (result.path / "recover").exists()
    assert result.parity == assert_parity(result.path, run, parity_csvs[1], PRUNED)
    assert tunelab.load(result.path).predict("rain and snow")["label"] == "weather"
