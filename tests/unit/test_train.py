"""tunelab.train end to end on the tiny random BERT: run folders, reproducibility, resume, options.

Every run here takes a second or two: 54 training rows, batch 8, 32 tokens, 2 layers of width 32.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import tunelab
from tunelab.config import RunConfig
from tunelab.errors import ConfigError, DataError, ModelNotFoundError, RunError, TunelabError
from tunelab.methods import available_methods, get_method
from tunelab.runs import find_run
from tunelab.train import loop as train_loop

# Learning rates at which the tiny model moves in 6 epochs (its random encoder needs a large one).
LEARNING_RATES = {"full": "0.005", "lora": "0.02"}
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def records(run_dir: Path, event: str | None = None) -> list[dict[str, Any]]:
    lines = (run_dir / "logs" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [r for r in rows if event is None or r["event"] == event]


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in records(run_dir, "train")]


def assert_nothing_left(out: Path) -> None:
    leftovers = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert leftovers == [], f"a failed run left {leftovers} in {out}"


# -- the run folder --------------------------------------------------------------------------------


@pytest.mark.plots  # reads the report's PNGs (tests/conftest.py)
@pytest.mark.parametrize("method", available_methods())
def test_run_folder_layout(
    method: str, tiny_bert: Path, tiny_overrides, train_csv: Path, test_csv: Path, tmp_path: Path
) -> None:
    lr = LEARNING_RATES.get(method)
    extra = [f"method={method}", "name=layout"] + ([f"train.learning_rate={lr}"] if lr else [])
    result = tunelab.train(
        None, overrides=tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path, *extra), show_progress=False
    )
    run = tmp_path / "layout"
    assert result.run_dir == run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout"], "no .partial folder may remain"

    for name in ("config.json", "labels.json", "run.json", "metrics.json", "report.md", "report.html"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoints").exists()
    assert list((run / "plots").glob("*.png"))
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "tokenizer" / "tokenizer_config.json").is_file()
    assert (run / "logs" / "train.log").is_file()
    assert not [p for p in run.rglob("*") if p.suffix in PICKLES], "weights must be safetensors only"

    weights = {p.name for p in (run / "weights").iterdir()}
    assert any(name.endswith(".safetensors") for name in weights)
    if get_method(method).stores_base:
        assert "model.safetensors" in weights and "config.json" in weights
    else:
        assert "model.safetensors" not in weights
        assert {"adapter_model.safetensors", "adapter_config.json"} <= weights
        adapter = load_file(str(run / "weights" / "adapter_model.safetensors"))
        assert not any("word_embeddings" in key for key in adapter), "the base model must not be copied"

    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert summary["status"] == "finished" and summary["method"] == method
    assert summary["num_labels"] == 3 and summary["steps"] == 42  # 54 rows / 8 = 7 steps x 6 epochs
    assert summary["rows"] == {"train": 54, "dev": 6, "test": 24}
    assert summary == result.summary | {"finished_at": summary["finished_at"]}
    assert json.loads((run / "labels.json").read_text(encoding="utf-8"))["labels"] == [
        "food",
        "sports",
        "weather",
    ]
    assert json.loads((run / "metrics.json").read_text(encoding="utf-8")) == json.loads(
        json.dumps(result.metrics)
    )
    assert set(result.metrics) == {"dev", "test"}
    assert (
        RunConfig.from_dict(json.loads((run / "config.json").read_text(encoding="utf-8"))).method.name
        == method
    )

    train_records, eval_records = records(run, "train"), records(run, "eval")
    assert [r["step"] for r in train_records] == [10, 20, 30, 40, 42]
    assert [r["step"] for r in eval_records] == [7, 14, 21, 28, 35, 42]  # once per epoch
    assert all(math.isfinite(r["loss"]) and r["lr"] >= 0 for r in train_records)
    assert all(r["split"] == "dev" and 0 <= r["accuracy"] <= 1 for r in eval_records)
    report = (run / "report.md").read_text(encoding="utf-8")
    assert "Results on test" in report and "Training curves" in report

    predictor = tunelab.load(run)
    out = predictor.predict(["football match with my team", "pizza and cheese for dinner"])
    assert [set(r) >= {"label", "score", "top_k"} for r in out] == [True, True]
    if method == "full":
        # The words are distinctive enough for the tiny model to learn them in 6 epochs.
        assert result.metrics["test"]["accuracy"] >= 0.8
        assert [r["label"] for r in out] == ["sports", "food"]


def test_seeded_run_reproduces_its_loss_curve(
    tiny_bert: Path, tiny_overrides, train_csv: Path, test_csv: Path, tmp_path: Path
) -> None:
    def run(name: str, seed: int) -> tunelab.TrainResult:
        overrides = tiny_overrides(
            tiny_bert, train_csv, test_csv, tmp_path, f"name={name}", f"train.seed={seed}"
        )
        return tunelab.train(None, overrides=overrides, show_progress=False)

    first, second, other = run("a", 7), run("b", 7), run("c", 8)
    steps_a, loss_a = zip(*losses(first.run_dir), strict=True)
    steps_b, loss_b = zip(*losses(second.run_dir), strict=True)
    assert steps_a == steps_b
    torch.testing.assert_close(torch.tensor(loss_b), torch.tensor(loss_a), rtol=1e-5, atol=0)
    dev_a = [r["loss"] for r in records(first.run_dir, "eval")]
    dev_b = [r["loss"] for r in records(second.run_dir, "eval")]
    torch.testing.assert_close(torch.tensor(dev_b), torch.tensor(dev_a), rtol=1e-5, atol=0)
    assert second.metrics["test"]["accuracy"] == first.metrics["test"]["accuracy"]
    # The seed matters: another one gives another curve, so the comparison above can fail.
    loss_c = [loss for _, loss in losses(other.run_dir)]
    assert not torch.allclose(torch.tensor(loss_c), torch.tensor(loss_a), rtol=1e-5, atol=0)


# -- resume after a kill ---------------------------------------------------------------------------


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in tunelab catches a BaseException."""


@dataclass
class Killing:
    """One run stopped right after a checkpoint, then resumed."""

    partial: Path
    after_kill: list[str]
    checkpoint_state: dict[str, Any]
    summary_after_kill: dict[str, Any]
    resumed: tunelab.TrainResult


@dataclass
class ResumeCase:
    reference: tunelab.TrainResult
    kills: dict[str, Killing]


CHECKPOINT_STEPS = 2
# 7 steps per epoch. Step 4 is mid-way through the first epoch; step 12 mid-way through the second.
# Both lie inside a 10-step loss-logging window.
KILL_STEPS = {"first-epoch": 4, "second-epoch": 12}


@pytest.fixture(scope="module")
def resume_case(
    tiny_bert: Path,
    tiny_overrides,
    labelled_csvs: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> ResumeCase:
    """An uninterrupted run, and the same run killed after the checkpoint of each KILL_STEPS step,
    then resumed with ``train(resume=...)``."""
    out = tmp_path_factory.mktemp("resume")
    train_csv, test_csv = labelled_csvs
    # No warmup: the loss moves from the first step, so a wrongly averaged window shows.
    base = tiny_overrides(
        tiny_bert,
        train_csv,
        test_csv,
        out,
        f"train.checkpoint_steps={CHECKPOINT_STEPS}",
        "train.warmup_ratio=0",
    )
    reference = tunelab.train(None, overrides=[*base, "name=ref"], show_progress=False)
    kills = {}
    for label, kill_step in KILL_STEPS.items():
        original = train_loop.save_checkpoint

        def save_then_die(*args: Any, _original=original, _step=kill_step, **kwargs: Any) -> None:
            _original(*args, **kwargs)
            if kwargs["state"]["step"] == _step:
                raise Killed

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(train_loop, "save_checkpoint", save_then_die)
            with pytest.raises(Killed):
                tunelab.train(None, overrides=[*base, f"name={label}"], show_progress=False)
        partial = out / f"{label}.partial"
        after_kill = sorted(p.name for p in out.iterdir() if p.name.startswith(label))
        state = json.loads((partial / "checkpoints" / "last" / "state.json").read_text(encoding="utf-8"))
        summary = json.loads((partial / "run.json").read_text(encoding="utf-8"))
        resumed = tunelab.train(resume=partial, show_progress=False)
        kills[label] = Killing(partial, after_kill, state, summary, resumed)
    return ResumeCase(reference, kills)


def weights_of(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted((run_dir / "weights").glob("*.safetensors")):
        tensors.update({f"{path.name}:{k}": v for k, v in load_file(str(path)).items()})
    return tensors


def assert_same_training(reference: Path, resumed: Path, ref_metrics: dict, res_metrics: dict) -> None:
    """The resumed run has the uninterrupted run's numbers: metrics, dev curve, late losses, weights."""
    for split in ("dev", "test"):
        assert res_metrics[split]["loss"] == pytest.approx(ref_metrics[split]["loss"], abs=1e-4)
        assert res_metrics[split]["accuracy"] == pytest.approx(ref_metrics[split]["accuracy"], abs=0.005)
    ref_evals, res_evals = records(reference, "eval"), records(resumed, "eval")
    assert [r["step"] for r in res_evals] == [r["step"] for r in ref_evals]
    torch.testing.assert_close(
        torch.tensor([r["loss"] for r in res_evals]),
        torch.tensor([r["loss"] for r in ref_evals]),
        rtol=1e-5,
        atol=0,
    )
    # Loss windows that lie wholly after the kill (the one spanning it: see the xfail below).
    ref_loss, res_loss = dict(losses(reference)), dict(losses(resumed))
    assert sorted(res_loss) == sorted(ref_loss)
    later = [s for s in ref_loss if s > 20]
    torch.testing.assert_close(
        torch.tensor([res_loss[s] for s in later]),
        torch.tensor([ref_loss[s] for s in later]),
        rtol=1e-5,
        atol=0,
    )
    ref_w, res_w = weights_of(reference), weights_of(resumed)
    assert ref_w.keys() == res_w.keys() and ref_w
    for key in ref_w:
        torch.testing.assert_close(res_w[key], ref_w[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("label", list(KILL_STEPS))
def test_kill_leaves_an_unfinished_folder(resume_case: ResumeCase, label: str) -> None:
    kill = resume_case.kills[label]
    assert kill.after_kill == [f"{label}.partial"], "a killed run must not look finished"
    state = kill.checkpoint_state
    assert state["step"] == KILL_STEPS[label]
    assert state["epoch"] == KILL_STEPS[label] // 7 and 0 < state["batch_in_epoch"] < 7  # mid-epoch
    assert kill.summary_after_kill["status"] == "training"


@pytest.mark.parametrize("label", list(KILL_STEPS))
def test_resume_finishes_the_run(resume_case: ResumeCase, label: str) -> None:
    kill = resume_case.kills[label]
    resumed = kill.resumed
    assert resumed.run_dir == kill.partial.with_name(label)
    assert not kill.partial.exists()
    assert not (resumed.run_dir / "checkpoints").exists()
    assert resumed.summary["status"] == "finished"
    assert resumed.summary["steps"] == resume_case.reference.summary["steps"] == 42
    find_run(resumed.run_dir)  # opens as a finished run


@pytest.mark.parametrize("label", list(KILL_STEPS))
def test_resumed_log_has_no_duplicated_steps(resume_case: ResumeCase, label: str) -> None:
    rows = records(resume_case.kills[label].resumed.run_dir)
    keys = [(r["event"], r["step"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)
    assert keys == [(r["event"], r["step"]) for r in records(resume_case.reference.run_dir)]


def test_resume_in_the_first_epoch_matches_the_uninterrupted_run(resume_case: ResumeCase) -> None:
    ref, resumed = resume_case.reference, resume_case.kills["first-epoch"].resumed
    assert_same_training(ref.run_dir, resumed.run_dir, ref.metrics, resumed.metrics)


def test_resume_in_a_later_epoch_matches_the_uninterrupted_run(resume_case: ResumeCase) -> None:
    ref, resumed = resume_case.reference, resume_case.kills["second-epoch"].resumed
    assert_same_training(ref.run_dir, resumed.run_dir, ref.metrics, resumed.metrics)


def test_resumed_loss_record_spanning_the_kill_matches(resume_case: ResumeCase) -> None:
    ref_loss = dict(losses(resume_case.reference.run_dir))
    res_loss = dict(losses(resume_case.kills["first-epoch"].resumed.run_dir))
    assert res_loss[10] == pytest.approx(ref_loss[10], rel=1e-5)


def test_resume_refuses_config_and_finished_runs(resume_case: ResumeCase, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="saved config"):
        tunelab.train(None, overrides=["train.epochs=1"], resume=tmp_path / "x.partial")
    with pytest.raises(RunError, match="not an unfinished run folder"):
        tunelab.train(resume=resume_case.reference.run_dir)
    with pytest.raises(RunError):
        tunelab.train(resume=tmp_path / "nothing.partial")


def test_unfinished_run_cannot_be_loaded(tmp_path: Path) -> None:
    (tmp_path / "half.partial" / "weights").mkdir(parents=True)
    with pytest.raises(RunError, match="did not finish"):
        tunelab.load(tmp_path / "half")


# -- training options ------------------------------------------------------------------------------


def test_early_stopping(
    tiny_bert: Path, tiny_overrides, train_csv: Path, test_csv: Path, tmp_path: Path
) -> None:
    overrides = tiny_overrides(
        tiny_bert,
        train_csv,
        test_csv,
        tmp_path,
        "train.epochs=20",
        "train.patience=1",
        "train.learning_rate=0.0000001",
        "name=es",
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    summary = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert summary["stopped_early"] is True
    # Dev accuracy cannot improve at this learning rate, so patience 1 stops at the second
    # evaluation; the tie on accuracy goes to the lower dev loss, which a tiny step still lowers.
    assert [r["step"] for r in records(result.run_dir, "eval")] == [7, 14]
    evals = records(result.run_dir, "eval")
    assert evals[0]["accuracy"] == evals[1]["accuracy"] and evals[1]["loss"] < evals[0]["loss"]
    assert summary["steps"] == 14 and summary["epochs_run"] == 2 and summary["best_step"] == 14


def test_no_early_stopping_without_patience(
    tiny_bert: Path, tiny_overrides, train_csv: Path, tmp_path: Path
) -> None:
    overrides = tiny_overrides(
        tiny_bert, train_csv, None, tmp_path, "train.epochs=3", "train.learning_rate=0.0000001", "name=np"
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    assert result.summary["stopped_early"] is False and result.summary["steps"] == 21


def test_grad_accumulation_and_eval_steps(
    tiny_bert: Path, tiny_overrides, train_csv: Path, tmp_path: Path
) -> None:
    overrides = tiny_overrides(
        tiny_bert,
        train_csv,
        None,
        tmp_path,
        "train.epochs=3",
        "train.grad_accum_steps=2",
        "train.eval_steps=3",
        "name=acc",
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    # 7 batches per epoch, 2 per step (the last alone): 4 optimizer steps per epoch, 12 in all.
    assert result.summary["steps"] == 12
    assert [r["step"] for r in records(result.run_dir, "eval")] == [3, 6, 9, 12]
    assert [r["step"] for r in records(result.run_dir, "train")] == [10, 12]


def test_fractional_epochs(tiny_bert: Path, tiny_overrides, train_csv: Path, tmp_path: Path) -> None:
    overrides = tiny_overrides(tiny_bert, train_csv, None, tmp_path, "train.epochs=1.5", "name=half")
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    assert result.summary["steps"] == 11  # ceil(1.5 x 7)
    assert result.summary["epochs_run"] == 2
    assert [r["step"] for r in records(result.run_dir, "eval")] == [7, 11]


def test_without_dev_data_the_last_weights_are_kept(
    tiny_bert: Path, tiny_overrides, train_csv: Path, test_csv: Path, tmp_path: Path
) -> None:
    overrides = tiny_overrides(tiny_bert, train_csv, test_csv, tmp_path, "data.dev_size=0", "name=nodev")
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    assert set(result.metrics) == {"test"}
    assert records(result.run_dir, "eval") == []
    assert result.summary["best_step"] is None and result.summary["steps"] == 6 * 8  # 60 rows -> 8 batches
    assert (result.run_dir / "report.html").is_file()


def write_imbalanced(path: Path, make_texts) -> Path:
    rows = [{"text": t, "label": "sports"} for t in make_texts("sports", 36, seed=3)]
    rows += [
        {"text": t, "label": label} for label in ("food", "weather") for t in make_texts(label, 8, seed=3)
    ]
    pd.DataFrame(rows).sample(frac=1.0, random_state=0).to_csv(path, index=False)
    return path


def test_class_weights_change_the_loss(tiny_bert: Path, tiny_overrides, tmp_path: Path, text_maker) -> None:
    data = write_imbalanced(tmp_path / "imbalanced.csv", text_maker)

    def run(weighted: bool) -> tunelab.TrainResult:
        overrides = tiny_overrides(
            tiny_bert,
            data,
            None,
            tmp_path / "runs",
            f"train.class_weights={str(weighted).lower()}",
            "train.epochs=2",
            f"name=w{int(weighted)}",
        )
        return tunelab.train(None, overrides=overrides, show_progress=False)

    plain, weighted = run(False), run(True)
    assert json.loads((weighted.run_dir / "config.json").read_text(encoding="utf-8"))["train"][
        "class_weights"
    ]
    assert math.isfinite(weighted.metrics["dev"]["loss"])
    # Same batches, same seed: only the per-class weights differ, so the training loss must too.
    first_plain, first_weighted = losses(plain.run_dir)[0], losses(weighted.run_dir)[0]
    assert first_plain[0] == first_weighted[0]
    assert first_plain[1] != pytest.approx(first_weighted[1], rel=1e-3)


def test_label_smoothing_reaches_the_training_loss(
    tiny_bert: Path, tiny_overrides, tmp_path: Path, text_maker
) -> None:
    data = write_imbalanced(tmp_path / "imbalanced.csv", text_maker)

    def run(smoothing: float) -> tunelab.TrainResult:
        overrides = tiny_overrides(
            tiny_bert,
            data,
            None,
            tmp_path / "runs",
            f"train.label_smoothing={smoothing}",
            f"name=s{smoothing}",
        )
        return tunelab.train(None, overrides=overrides, show_progress=False)

    plain, smoothed = run(0.0), run(0.2)
    assert json.loads((smoothed.run_dir / "config.json").read_text(encoding="utf-8"))["train"][
        "label_smoothing"
    ] == pytest.approx(0.2)
    # Same batches and seed: only the targets differ. A confident start (the probe head) is further
    # from a smoothed target's minimum, so the first logged loss must differ.
    first_plain, first_smoothed = losses(plain.run_dir)[0], losses(smoothed.run_dir)[0]
    assert first_plain[0] == first_smoothed[0]
    assert first_plain[1] != pytest.approx(first_smoothed[1], rel=1e-3)


def write_multi_label(path: Path, n: int, seed: int, make_texts) -> Path:
    rng = random.Random(seed)
    combos = [
        ["sports"],
        ["food"],
        ["weather"],
        ["sports", "food"],
        ["food", "weather"],
        ["sports", "weather"],
    ]
    rows = []
    for i in range(n):
        labels = combos[i % len(combos)]
        words = " ".join(make_texts(label, 1, seed=seed * 1000 + i)[0] for label in labels)
        rows.append({"text": words, "label": "|".join(labels)})
    rng.shuffle(rows)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("class_weights", [False, True])
def test_multi_label(
    tiny_bert: Path, tiny_overrides, tmp_path: Path, class_weights: bool, text_maker
) -> None:
    train = write_multi_label(tmp_path / "ml_train.csv", 60, seed=1, make_texts=text_maker)
    test = write_multi_label(tmp_path / "ml_test.csv", 18, seed=2, make_texts=text_maker)
    overrides = tiny_overrides(
        tiny_bert,
        train,
        test,
        tmp_path / "runs",
        "data.task=multi_label",
        "data.dev_size=0.2",
        f"train.class_weights={str(class_weights).lower()}",
        "name=ml",
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    labels = json.loads((result.run_dir / "labels.json").read_text(encoding="utf-8"))
    assert labels == {"task": "multi_label", "labels": ["food", "sports", "weather"]}
    threshold = result.summary["threshold"]
    assert isinstance(threshold, float) and 0 < threshold < 1
    assert json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))["threshold"] == threshold
    # The threshold is tuned on dev and applied unchanged to test.
    assert result.metrics["dev"]["threshold"] == threshold == result.metrics["test"]["threshold"]
    assert all("threshold" in r for r in records(result.run_dir, "eval"))

    # Evaluating the test file again applies the run's threshold and reproduces the test metrics.
    evaluated = tunelab.evaluate(result.run_dir, test)
    assert evaluated["threshold"] == threshold
    assert evaluated["micro_f1"] == pytest.approx(result.metrics["test"]["micro_f1"])

    predictor = tunelab.load(result.run_dir)
    assert predictor.threshold == threshold
    out = predictor.predict("football team and pizza dinner")
    assert isinstance(out["labels"], list) and len(out["labels"]) == len(out["scores"])
    assert all(s >= threshold for s in out["scores"])


def test_text_pairs(
    tiny_bert: Path, tiny_overrides, tmp_path: Path, text_maker, class_names: list[str]
) -> None:
    rows = []
    for label in class_names:
        for i, text in enumerate(text_maker(label, 16, seed=5)):
            rows.append({"question": text, "context": f"context {i} {label}", "label": label})
    data = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    overrides = tiny_overrides(
        tiny_bert,
        data,
        None,
        tmp_path / "runs",
        "data.text_column=question",
        "data.text_pair_column=context",
        "train.epochs=2",
        "name=pairs",
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    assert result.summary["status"] == "finished"
    predictor = tunelab.load(result.run_dir)
    assert predictor.config.data.text_pair_column == "context"
    with pytest.raises(DataError, match="trained on text pairs"):  # scored the first texts alone, silently
        predictor.logits(["rain today"])
    paired = predictor.logits(["rain today"], ["context 1 weather"])
    other = predictor.logits(["rain today"], ["context 2 markets"])
    assert paired.shape == other.shape == (1, 3)
    assert not torch.allclose(torch.from_numpy(other), torch.from_numpy(paired))  # the pair is read
    assert predictor.predict("rain today", "context 1 weather")["label"] in class_names


def test_existing_run_name_is_never_overwritten(
    tiny_bert: Path, tiny_overrides, train_csv: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(RunError, match="a run of that name exists"):
        tunelab.train(None, overrides=tiny_overrides(tiny_bert, train_csv, None, tmp_path, "name=taken"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (tmp_path / "taken" / "keep.txt").read_text(encoding="utf-8") == "precious"


# -- bad input fails before the run folder exists --------------------------------------------------


def _unseen_test_label(tmp_path: Path, test_csv: Path) -> list[str]:
    bad = tmp_path / "test_unseen.csv"
    bad.write_text(test_csv.read_text(encoding="utf-8") + "guitar concert tonight,music\n", encoding="utf-8")
    return [f"data.test={bad}"]


def _tiny_class(tmp_path: Path, train_csv: Path) -> list[str]:
    bad = tmp_path / "train_tiny_class.csv"
    bad.write_text(train_csv.read_text(encoding="utf-8") + "guitar concert tonight,music\n", encoding="utf-8")
    return [f"data.train={bad}"]


def _model_without_weights(tmp_path: Path, tiny_bert: Path) -> list[str]:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny_bert / name).read_bytes())
    return [f"model.name={folder}"]


BAD_INPUTS = {
    "missing-train-file": (lambda tmp, csvs, bert: [f"data.train={tmp / 'nope.csv'}"], DataError, "nope.csv"),
    "missing-column": (lambda tmp, csvs, bert: ["data.label_column=category"], DataError, "'category'"),
    "unknown-method": (
        lambda tmp, csvs, bert: ["method=qlora"],
        ConfigError,
        "available methods: " + ", ".join(available_methods()),
    ),
    "unknown-lora-option": (lambda tmp, csvs, bert: ["method=lora", "method.rank=4"], ConfigError, "rank"),
    "unseen-test-label": (lambda tmp, csvs, bert: _unseen_test_label(tmp, csvs[1]), DataError, "'music'"),
    "too-small-class": (lambda tmp, csvs, bert: _tiny_class(tmp, csvs[0]), DataError, "only 1 row"),
    "bad-metric": (lambda tmp, csvs, bert: ["train.metric=acc"], ConfigError, "train.metric='acc'"),
    "no-train-file": (lambda tmp, csvs, bert: ["data.train=null"], ConfigError, "data.train is not set"),
    "hub-model-offline": (
        lambda tmp, csvs, bert: ["model.name=bert-base-uncased"],
        ModelNotFoundError,
        "minilm-l6",
    ),
    "bad-value": (lambda tmp, csvs, bert: ["train.epochs=0"], ConfigError, "epochs=0"),
}
KNOWN_LATE_FAILURES = {
    "lora-targets-nothing": (
        lambda tmp, csvs, bert: ["method=lora", "method.target_modules=[no_such_layer]"],
        ConfigError,
        "method.target_modules: no_such_layer matches no module",  # check_run's, before the model is built
    ),
    "model-folder-without-weights": (
        lambda tmp, csvs, bert: _model_without_weights(tmp, bert),
        ModelNotFoundError,
        "no-weights",
    ),
}


def _fails_before_the_run_folder(case, tiny_bert, tiny_overrides, labelled_csvs, tmp_path) -> None:
    make, error, fragment = case
    out = tmp_path / "runs"
    overrides = tiny_overrides(
        tiny_bert,
        *labelled_csvs,
        out,
        "train.epochs=1",
        "name=bad",
        *make(tmp_path, labelled_csvs, tiny_bert),
    )
    with pytest.raises(error) as info:
        tunelab.train(None, overrides=overrides, show_progress=False)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert_nothing_left(out)


@pytest.mark.parametrize("case", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_fails_before_the_run_folder(
    case, tiny_bert: Path, tiny_overrides, labelled_csvs, tmp_path: Path
) -> None:
    _fails_before_the_run_folder(case, tiny_bert, tiny_overrides, labelled_csvs, tmp_path)


@pytest.mark.parametrize("case", list(KNOWN_LATE_FAILURES.values()), ids=list(KNOWN_LATE_FAILURES))
def test_late_bad_input_fails_before_the_run_folder(
    case, tiny_bert: Path, tiny_overrides, labelled_csvs, tmp_path: Path
) -> None:
    _fails_before_the_run_folder(case, tiny_bert, tiny_overrides, labelled_csvs, tmp_path)


def test_errors_are_tunelab_errors() -> None:
    for error in (ConfigError, DataError, ModelNotFoundError, RunError):
        assert issubclass(error, TunelabError)


def test_a_resume_reports_the_weights_its_checkpoint_really_trained(
    tiny_bert: Path,
    tiny_overrides,
    labelled_csvs: tuple[Path, Path],
    killed_at_first_checkpoint,
    tmp_path: Path,
) -> None:
    """A checkpoint from before freeze_word_embeddings became the default trains the embeddings on:
    run.json must count them (it counted the config's frozen set before the loop turned them on)."""
    train_csv, test_csv = labelled_csvs
    overrides = tiny_overrides(
        tiny_bert,
        train_csv,
        test_csv,
        tmp_path / "runs",
        "method.freeze_word_embeddings=false",
        "train.checkpoint_steps=2",
        "name=old",
    )
    partial = killed_at_first_checkpoint(overrides)
    saved = json.loads((partial / "config.json").read_text(encoding="utf-8"))
    saved["method"]["options"] = {}  # as written before the option existed: frozen by default now
    (partial / "config.json").write_text(json.dumps(saved), encoding="utf-8")
    summary = tunelab.train(resume=partial, show_progress=False).summary
    assert summary["trainable_parameters"] == summary["total_parameters"]
