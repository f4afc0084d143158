"""tunelab.export: each format exports, loads like a run, predicts like its source, and is parity-checked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.compress import ParityError
from tunelab.errors import ConfigError, DataError, RunError

PARITY_FIELDS = {
    "metric",
    "before",
    "after",
    "drop_points",
    "max_drop",
    "passed",
    "agreement",
    "max_logit_diff",
}
SIDE_FIELDS = {"accuracy", "metrics", "latency_ms", "texts_per_s", "size_mb"}


@dataclass(frozen=True)
class Bound:
    """How far an artifact may stray from its source run on the 120 parity texts (``parity_csvs``)."""

    drop_points: float  # accuracy fall, in percentage points (one changed text: 0.83)
    agreement: float  # share of texts whose predicted label is unchanged
    logit_diff: float  # largest absolute logit difference, over texts and classes


# Measured on the ``run`` fixture (2 training seeds): onnx fp32 agrees on every text with logits
# 2e-6 apart (float rounding; a wrong graph or a lost mask is off by whole units); int8 and 30%
# magnitude pruning: agreement >= 0.99, no accuracy drop, logits <= 0.15 apart; 50% head or
# structured pruning with int8: agreement >= 0.99, no drop, logits <= 0.26 apart (the logits
# span about +-4). The bounds leave two to three changed texts and 3-4x the logit distance.
FP32 = Bound(drop_points=0.0, agreement=1.0, logit_diff=1e-4)
INT8 = Bound(drop_points=2.5, agreement=0.97, logit_diff=0.5)
PRUNED = Bound(drop_points=2.5, agreement=0.97, logit_diff=1.0)
BOUNDS = {"onnx": FP32, "onnx-int8": INT8, "torch-int8": INT8}


def assert_parity(artifact: Path, source: Path, data: Path, bound: Bound) -> dict:
    """The artifact is within ``bound`` of its source, both by its own ``parity.json`` and by logits
    computed here on ``data``; returns the report."""
    import pandas as pd

    frame = pd.read_csv(data)
    texts, labels = frame["text"].tolist(), frame["label"].tolist()
    original, exported = tunelab.load(source), tunelab.load(artifact)
    before, after = original.logits(texts), exported.logits(texts)
    truth = np.array([original.labels.names.index(label) for label in labels])
    drop = 100 * ((before.argmax(1) == truth).mean() - (after.argmax(1) == truth).mean())
    assert drop <= bound.drop_points
    assert (after.argmax(1) == before.argmax(1)).mean() >= bound.agreement
    assert np.abs(after - before).max() <= bound.logit_diff

    report = json.loads((artifact / "parity.json").read_text(encoding="utf-8"))
    assert report["data"]["rows"] == len(texts) and report["passed"] is True
    assert report["drop_points"] <= bound.drop_points and report["agreement"] >= bound.agreement
    assert report["max_logit_diff"] <= bound.logit_diff
    return report


def train_tiny(
    tiny_bert: Path, csvs: tuple[Path, Path], out: Path, name: str, *extra: str, with_test: bool = True
) -> Path:
    train, test = csvs
    overrides = [
        f"data.train={train}",
        *([f"data.test={test}"] if with_test else []),
        f"model.name={tiny_bert}",
        "model.max_length=32",
        "model.pooling=mean",
        "train.batch_size=8",
        "train.epochs=6",
        "train.learning_rate=0.005",
        "train.patience=null",
        f"output_dir={out}",
        f"name={name}",
        *extra,
    ]
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def run(tiny_bert: Path, parity_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that has learned its task, so that parity means something: a model at chance
    level agrees with any other at chance level only by luck."""
    # The tiny model's token embeddings are random, not pre-trained: this fixture, which must learn
    # its task well, trains them (full keeps a real model's pre-trained ones by default).
    folder = train_tiny(
        tiny_bert,
        parity_csvs,
        tmp_path_factory.mktemp("compress-runs"),
        "tiny",
        "method.freeze_word_embeddings=false",
    )
    accuracy = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["test"]["accuracy"]
    assert accuracy >= 0.95, f"the parity fixture learned only {accuracy:.1%} of its test set"
    return folder


@pytest.fixture(scope="module")
def exported(run: Path) -> dict[str, Path]:
    """One artifact per format, exported once for the module with each format's stated bound."""
    return {
        fmt: tunelab.export(run, format=fmt, max_drop=bound.drop_points, show_progress=False).path
        for fmt, bound in BOUNDS.items()
    }


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8", "torch-int8"])
def test_each_format_loads_and_predicts_like_its_source(
    fmt: str, run: Path, exported: dict[str, Path], parity_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    artifact = exported[fmt]
    assert (
        artifact == run.with_name(f"{run.name}-{fmt}")
        and not artifact.with_name(artifact.name + ".partial").exists()
    )
    summary = json.loads((artifact / "run.json").read_text(encoding="utf-8"))
    assert (
        summary["format"] == fmt and summary["source_run"] == str(run) and summary["export"]["format"] == fmt
    )
    assert not [p for p in artifact.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".data")]
    if fmt.startswith("onnx"):  # both layers' attention fused for ONNX Runtime, reading the raw mask
        assert summary["export"]["onnx"]["fusions"]["attention"] == 2
        assert summary["export"]["onnx"]["attention_mask_index"] == 2

    predictor = tunelab.load(artifact)
    assert predictor.format == fmt
    test_csv = parity_csvs[1]
    parity = assert_parity(artifact, run, test_csv, BOUNDS[fmt])
    assert predictor.predict("football match with my team")["label"] == "sports"
    assert set(parity) >= PARITY_FIELDS and parity["max_drop"] == BOUNDS[fmt].drop_points
    for side in ("before", "after"):
        assert set(parity[side]) >= SIDE_FIELDS
        assert set(parity[side]["latency_ms"]) == {"batch_1", "batch_32"}
    assert (artifact / "parity.md").read_text(encoding="utf-8").startswith(f"# Parity: {fmt} export")

    metrics = tunelab.evaluate(artifact, test_csv, out_dir=tmp_path / "eval")
    assert metrics["accuracy"] == pytest.approx(parity["after"]["accuracy"] / 100)
    assert tunelab.evaluate(artifact)["accuracy"] == metrics["accuracy"]  # saved metrics.json


def pd_texts(path: Path) -> list[str]:
    import pandas as pd

    return pd.read_csv(path)["text"].tolist()


def test_int8_artifacts_are_smaller(exported: dict[str, Path]) -> None:
    size = {
        f: sum(p.stat().st_size for p in (a / "weights").rglob("*") if p.is_file())
        for f, a in exported.items()
    }
    assert size["onnx-int8"] < 0.5 * size["onnx"] and size["torch-int8"] < 0.5 * size["onnx"]
    onnx_files = list((exported["onnx"] / "weights").iterdir())
    assert [p.name for p in onnx_files] == ["model.onnx"]  # one self-contained file


def test_predict_and_eval_cli_take_an_artifact(
    exported: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(exported["onnx-int8"]), "snow and cold wind"]) == 0
    assert "-> weather" in capsys.readouterr().out
    assert main(["eval", str(exported["torch-int8"])]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_export_cli_prints_the_parity_table(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli-onnx"
    assert main(["export", str(run), "--format", "onnx", "--output", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "latency batch 32" in printed and str(out) in printed
    assert (out / "weights" / "model.onnx").is_file()


def test_export_data_takes_reading_options_like_eval(
    run: Path, parity_csvs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--data FILE data.*=...``: a headerless ``text@label`` file is read with the options given."""
    import pandas as pd

    frame = pd.read_csv(parity_csvs[1])
    other = tmp_path / "other.txt"
    other.write_text("".join(f"{t}@{lab}\n" for t, lab in zip(frame["text"], frame["label"], strict=True)))
    options = ["data.separator=@", "data.header=false", "data.column_names=[text,label]"]
    out = tmp_path / "with-options"
    argv = [
        "export",
        str(run),
        "--format",
        "onnx",
        "--output",
        str(out),
        "--data",
        str(other),
        *options,
        "-q",
    ]
    assert main(argv) == 0
    report = json.loads((out / "parity.json").read_text(encoding="utf-8"))
    assert report["data"] == {**report["data"], "name": str(other), "rows": len(frame)}
    reference = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["test"]["accuracy"]
    assert report["before"]["accuracy"] == pytest.approx(100 * reference)  # the same rows, read right
    capsys.readouterr()

    assert (
        main(["export", str(run), "--output", str(tmp_path / "typo"), "--data", str(other), "data.sep=@"])
        == 2
    )
    assert "data.FIELD=value with FIELD one of" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="need a file to read: give --data FILE"):
        tunelab.export(run, output=tmp_path / "none", data_options=options, show_progress=False)
    assert not (tmp_path / "typo").exists() and not (tmp_path / "none").exists()
    assert not (tmp_path / "typo.partial").exists() and not (tmp_path / "none.partial").exists()


def test_a_failed_parity_check_leaves_nothing(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.compress import ort_backend

    real = ort_backend.OnnxBackend.logits

    def wrecked(self, enc, *, batch_size=64):  # the artifact's logits are noise
        return np.random.default_rng(0).normal(size=real(self, enc, batch_size=batch_size).shape)

    monkeypatch.setattr(ort_backend.OnnxBackend, "logits", wrecked)
    out = tmp_path / "fails"
    assert main(["export", str(run), "--format", "onnx", "--output", str(out), "--max-drop", "1", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: onnx export failed the parity check: accuracy ")
    assert "more than the allowed 1 (--max-drop); no artifact was written" in err
    assert not out.exists() and not out.with_name("fails.partial").exists()


def test_a_wrecked_model_fails_the_default_threshold(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What silent int8 damage looks like: the artifact's logits are noise; the export must refuse."""
    from tunelab.compress import ort_backend

    real = ort_backend.OnnxBackend.logits

    def wrecked(self, enc, *, batch_size=64):
        return np.random.default_rng(0).normal(size=real(self, enc, batch_size=batch_size).shape)

    monkeypatch.setattr(ort_backend.OnnxBackend, "logits", wrecked)
    with pytest.raises(ParityError, match=r"accuracy .*% -> .*%.* more than the allowed 1 .*no artifact"):
        tunelab.export(run, format="onnx-int8", output=tmp_path / "wrecked", show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_lora_run_without_test_file_exports_merged_and_checks_on_dev(
    tiny_bert: Path, parity_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    lora = train_tiny(
        tiny_bert, parity_csvs, tmp_path, "lora", "method=lora", "train.learning_rate=0.01", with_test=False
    )
    # Learned (0.89 measured; LoRA on a random 2-layer encoder; chance is 0.33), so agreeing means something.
    assert tunelab.evaluate(lora, parity_csvs[1], out_dir=tmp_path / "eval")["accuracy"] >= 0.8
    artifact = tunelab.export(lora, format="onnx", show_progress=False, max_drop=0).path
    texts = pd_texts(parity_csvs[1])
    merged, source = tunelab.load(artifact).logits(texts), tunelab.load(lora).logits(texts)
    assert (merged.argmax(1) == source.argmax(1)).all() and np.abs(merged - source).max() <= FP32.logit_diff
    assert json.loads((artifact / "run.json").read_text(encoding="utf-8"))["method"] == "lora"
    parity = json.loads((artifact / "parity.json").read_text(encoding="utf-8"))
    assert parity["data"]["name"].startswith("dev split of") and parity["data"]["rows"] == 6
    saved = json.loads((artifact / "metrics.json").read_text(encoding="utf-8"))
    assert list(saved) == ["dev"] and tunelab.evaluate(artifact)["accuracy"] == saved["dev"]["accuracy"]


def test_onnx_keeps_the_plain_graph_when_the_fused_one_disagrees(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    from tunelab.compress import onnx_export
    from tunelab.models import build_classifier, load_tokenizer

    model = build_classifier(tiny_bert, ["a", "b"], pooling="mean", seed=0).eval()
    texts = ["rain", "a much longer text about football and pizza"]
    sample = dict(load_tokenizer(tiny_bert)(texts, padding=True, return_tensors="pt"))
    monkeypatch.setattr(onnx_export, "_agrees", lambda *a: False)
    info = onnx_export.export_onnx(model, sample, tmp_path / "model.onnx")
    assert info["fallback"] and info["fusions"] == {}
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert "Attention" not in {n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node}
    got = session.run(["logits"], {k: v.numpy() for k, v in sample.items()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(**sample).logits.numpy(), rtol=1e-4, atol=1e-5)


def test_multi_label_parity_uses_micro_f1_and_whole_label_sets() -> None:
    from tunelab.compress.parity import Measured, compare
    from tunelab.tasks import get_task

    assert get_task("multi_label").parity_metric("accuracy") == "micro_f1"
    assert get_task("single_label").parity_metric("loss") == "accuracy"
    assert get_task("single_label").parity_metric("macro_f1") == "macro_f1"
    timing = {"batch_1": 2.0, "batch_32": 10.0}
    before = Measured({"micro_f1": 0.9}, np.array([[2.0, -2.0], [2.0, 2.0]]), timing, size_mb=4.0)
    faster = {"batch_1": 1.0, "batch_32": 4.0}
    after = Measured({"micro_f1": 0.88}, np.array([[1.5, -1.0], [2.0, -0.5]]), faster, size_mb=1.0)
    report = compare(
        before, after, metric="micro_f1", task=get_task("multi_label"), threshold=0.5, max_drop=1.0
    )
    assert report["agreement"] == 0.5 and report["drop_points"] == pytest.approx(2.0)
    assert report["passed"] is False and report["max_logit_diff"] == pytest.approx(2.5)
    assert report["speedup"] == {"batch_1": 2.0, "batch_32": 2.5} and report["size_ratio"] == 0.25


def test_magnitude_pruning_zeroes_the_fraction(
    run: Path, parity_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    result = tunelab.export(
        run,
        format="torch-int8",
        prune=0.3,
        output=tmp_path / "p",
        max_drop=PRUNED.drop_points,
        show_progress=False,
    )
    info = json.loads((result.path / "run.json").read_text(encoding="utf-8"))["export"]["prune"]
    assert info["method"] == "magnitude" and info["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert_parity(result.path, run, parity_csvs[1], PRUNED)


def test_magnitude_pruning_on_the_model() -> None:
    from torch import nn

    from tunelab.compress.prune import prune_magnitude

    model = nn.Sequential(nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 5))
    info = prune_magnitude(model, 0.5)
    zeros = sum(int((m.weight == 0).sum()) for m in model if isinstance(m, nn.Linear))
    assert info["sparsity"] == pytest.approx(0.5, abs=0.01) and zeros == 250
    assert not list(model[0].named_buffers())  # the pruning mask was made permanent


@pytest.mark.parametrize("fmt", ["onnx-int8", "torch-int8"])
def test_head_pruning_removes_heads_and_still_exports(
    run: Path, parity_csvs: tuple[Path, Path], fmt: str
) -> None:
    result = tunelab.export(
        run, format=fmt, prune=0.5, prune_method="heads", max_drop=PRUNED.drop_points, show_progress=False
    )
    assert result.path.name == f"{run.name}-{fmt}-heads50"
    info = json.loads((result.path / "run.json").read_text(encoding="utf-8"))["export"]["prune"]
    assert info["heads_before"] == 4 and info["heads_after"] == 2 and info["heads_per_layer"] == [1, 1]
    assert info["selection"] == "output energy" and info["refit"] == "least squares"
    assert "ffn_per_layer" not in info
    assert_parity(result.path, run, parity_csvs[1], PRUNED)
    assert tunelab.load(result.path).predict("rain and snow")["label"] == "weather"


@pytest.mark.parametrize("fmt", ["onnx-int8", "torch-int8"])
def test_structured_pruning_cuts_heads_and_ffn_and_loads_like_a_run(
    run: Path, parity_csvs: tuple[Path, Path], fmt: str
) -> None:
    result = tunelab.export(
        run,
        format=fmt,
        prune=0.5,
        prune_method="structured",
        max_drop=PRUNED.drop_points,
        show_progress=False,
    )
    assert result.path.name == f"{run.name}-{fmt}-structured50"
    summary = json.loads((result.path / "run.json").read_text(encoding="utf-8"))
    info = summary["export"]["prune"]
    assert info["heads_per_layer"] == [1, 1] and info["ffn_per_layer"] == [32, 32]  # from 2 heads, 64
    assert info["calibration_texts"] == summary["rows"]["train"] and "recovery" not in info  # < 2,048
    assert result.parity == assert_parity(result.path, run, parity_csvs[1], PRUNED)
    assert tunelab.load(result.path).predict("rain and snow")["label"] == "weather"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"format": "onxx"}, ConfigError, "format 'onxx' is unknown; use one of onnx, onnx-int8, torch-int8"),
        ({"prune": 30}, ConfigError, "prune 30: give a fraction between 0 and 1"),
        ({"prune": 0.3, "prune_method": "rows"}, ConfigError, "prune method 'rows' is unknown"),
        ({"recover_epochs": 2}, ConfigError, "recovery fine-tunes a structurally pruned model; add --prune"),
        ({"prune": 0.3, "recover_epochs": 1}, ConfigError, "--prune-method heads|ffn|structured"),
        ({"prune": 0.3, "prune_method": "ffn", "recover_epochs": -1}, ConfigError, "recover epochs -1: give"),
        # A negative drop failed every export, after all its work; a method without --prune pruned nothing.
        ({"max_drop": -1}, ConfigError, "max drop -1: give a finite number of percentage points, 0 or more"),
        (
            {"prune_method": "heads"},
            ConfigError,
            "prune method 'heads' prunes nothing by itself; add --prune",
        ),
        ({"output": "x/art.partial"}, ConfigError, "a name ending in .partial marks an unfinished run"),
    ],
)
def test_bad_options_are_refused_before_any_work(run: Path, kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        tunelab.export(run, show_progress=False, **kwargs)


def test_a_failed_export_leaves_no_folder_it_made(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only <output>.partial was removed: the parents made for the output stayed; and a folder that
    cannot be made was "unexpected OSError"."""
    import tunelab.compress.build

    def fail(*args: object, **kwargs: object) -> None:
        raise RunError("the parity check failed")

    monkeypatch.setattr(tunelab.compress.build, "build_artifact", fail)
    with pytest.raises(RunError, match="the parity check failed"):
        tunelab.export(run, format="onnx", output=tmp_path / "new" / "dir" / "art", show_progress=False)
    assert not (tmp_path / "new").exists()
    with pytest.raises(ConfigError, match="cannot make its folder"):
        tunelab.export(run, format="onnx", output=tmp_path / ("a" * 300), show_progress=False)


def test_bad_sources_and_outputs_are_refused(
    run: Path, exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RunError, match="no such run folder"):
        tunelab.export(tmp_path / "missing", show_progress=False)
    with pytest.raises(RunError, match=r"is an exported onnx-int8 artifact; export from .*tiny instead"):
        tunelab.export(exported["onnx-int8"], format="onnx", show_progress=False)
    with pytest.raises(RunError, match="exists; delete it or give another --output"):
        tunelab.export(run, format="onnx", show_progress=False)
    (tmp_path / "someone.partial").mkdir()
    with pytest.raises(RunError, match="not an export in progress"):
        tunelab.export(run, output=tmp_path / "someone", show_progress=False)
    with pytest.raises(SystemExit) as exited:
        main(["export", str(run), "--format", "tflite"])
    assert exited.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert main(["export", str(run), "--prune", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: prune 1.5: give a fraction between 0 and 1, e.g. 0.3 for 30%"


def test_prune_method_without_prune_is_refused_by_the_cli(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(run), "--prune-method", "magnitude", "--output", "unused", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --prune-method magnitude prunes nothing by itself; add --prune FRACTION"


def test_an_output_under_a_file_is_one_line_before_any_work(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    assert main(["export", str(run), "--output", str(tmp_path / "afile" / "art"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "afile is a file, not a folder; give another --output" in err


def test_export_from_inside_the_run_records_where_the_run_is(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(run)
    result = tunelab.export(".", format="onnx", output=tmp_path / "dot", show_progress=False)
    summary = json.loads((result.path / "run.json").read_text(encoding="utf-8"))
    assert summary["source_run"] == str(run.resolve())


def test_data_given_for_parity_is_not_saved_as_the_artifacts_test_score(
    run: Path, parity_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    import pandas as pd

    # The labels rotated: the artifact scores 0 on this file, which is not its test score.
    frame = pd.read_csv(parity_csvs[1])
    names = sorted(set(frame["label"]))
    frame["label"] = frame["label"].map(lambda x: names[(names.index(x) + 1) % len(names)])
    wrong = tmp_path / "wrong.csv"
    frame.to_csv(wrong, index=False)
    result = tunelab.export(run, format="onnx", output=tmp_path / "art", data=wrong, show_progress=False)
    saved = json.loads((result.path / "metrics.json").read_text(encoding="utf-8"))
    summary = json.loads((result.path / "run.json").read_text(encoding="utf-8"))
    assert "test" not in saved and saved["parity"]["n"] == len(frame)
    assert "test" not in summary["headline"] and "parity" in summary["headline"]


def test_a_moved_test_file_says_to_give_data(run: Path, tmp_path: Path) -> None:
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    config = json.loads((moved / "config.json").read_text(encoding="utf-8"))
    config["data"]["test"] = str(tmp_path / "gone.csv")
    (moved / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(DataError, match=r"gone\.csv.*give --data FILE to check on another labelled file"):
        tunelab.export(moved, format="onnx", output=tmp_path / "art", show_progress=False)
    assert not (tmp_path / "art").exists() and not (tmp_path / "art.partial").exists()


def _edit_layout(weights: Path, **per_layer: object) -> None:
    """Give ``int8.json`` one pruned-shape entry per layer of the model (as a damaged file might)."""
    layers = json.loads((weights / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]
    layout = json.loads((weights / "int8.json").read_text(encoding="utf-8"))
    layout.update({key: [value] * layers for key, value in per_layer.items()})
    (weights / "int8.json").write_text(json.dumps(layout), encoding="utf-8")


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (
            lambda w: (w / "model.safetensors").write_bytes((w / "model.safetensors").read_bytes()[:1000]),
            "model",
        ),
        (lambda w: (w / "int8.json").write_text("{", encoding="utf-8"), "int8.json"),
        (lambda w: (w / "int8.json").write_text("{}", encoding="utf-8"), "int8.json"),
        # a damaged pruned shape: was "unexpected ValueError torch.cat()" / "unexpected TypeError"
        (lambda w: _edit_layout(w, heads_per_layer=0), "int8.json"),
        (lambda w: _edit_layout(w, heads_per_layer="a"), "int8.json"),
        (lambda w: _edit_layout(w, ffn_per_layer=10**6), "int8.json"),
        # transformers' own errors: "unexpected ValueError/OSError" before
        (lambda w: (w / "config.json").unlink(), "config.json"),
        (lambda w: (w / "config.json").write_text("{bad", encoding="utf-8"), "config.json"),
    ],
)
def test_a_damaged_torch_int8_artifact_is_named(
    damage, named: str, exported: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported["torch-int8"], copy)
    damage(copy / "weights")
    with pytest.raises(RunError, match=rf"weights/{named}.*: cannot read .*; export the run again"):
        tunelab.load(copy)


def test_predict_shows_a_multi_label_text_without_labels_as_such() -> None:
    from tunelab.cli.predict_cmd import _result_lines

    top = [{"label": "weather", "score": 0.372}, {"label": "food", "score": 0.173}]
    lines = _result_lines({"labels": [], "scores": [], "top_k": top, "label": "weather", "score": 0.372})
    assert lines == ["  -> (no label at or above the threshold)", "     also: weather 0.372, food 0.173"]
    both = [
        {"label": "food", "score": 0.9},
        {"label": "sports", "score": 0.7},
        {"label": "weather", "score": 0.1},
    ]
    lines = _result_lines({"labels": ["food", "sports"], "scores": [0.9, 0.7], "top_k": both})
    assert lines == ["  -> food, sports (0.900, 0.700)", "     also: weather 0.100"]


def test_the_parity_data_of_a_run_with_a_dev_file_is_named_by_that_file(labelled_csvs) -> None:
    """A run with data.dev=FILE and no test file had its parity rows named "dev split of <train file>"."""
    from types import SimpleNamespace

    from tunelab.compress.datasets import parity_data
    from tunelab.config import DataConfig
    from tunelab.tasks import get_task

    train, dev = labelled_csvs
    task = get_task("single_label")
    cfg = DataConfig(train=str(train), dev=str(dev), test=None)
    labels = task.load_splits(cfg).labels
    found = parity_data(SimpleNamespace(config=SimpleNamespace(data=cfg), labels=labels, task=task), None)
    assert (found.split, found.name) == ("dev", f"dev file {dev}") and len(found.dataset) == 24
