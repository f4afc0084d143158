"""``tunelab merge``: a LoRA-family adapter folded into its base is a plain run that predicts the same.

Which methods merge comes from the registry (``Method.merge``); every one is trained on the tiny
model, merged, and compared with its unmerged adapter (largest logit difference under 1e-4) by the
command and again here. Methods that cannot merge, a plain run, an export, a taken output folder
and a merge whose logits moved are refused in one line, and leave nothing behind.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.errors import ConfigError, RunError
from tunelab.inference.backends import LoadContext, model_loader, run_method
from tunelab.methods import available_methods, get_method

MERGEABLE = [m for m in available_methods() if get_method(m).merge is not None]
NOT_MERGEABLE = [m for m in available_methods() if get_method(m).merge is None]
_RUNS: dict[tuple[str, str], Path] = {}


@pytest.fixture
def trained(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    tagged_jsonls: tuple[Path, Path],
):
    """``trained(method, task="single_label")``: a tiny run of ``method``, trained once per session;
    each call returns a fresh copy in its own folder (tests merge into its siblings)."""

    def get(method: str, task: str = "single_label") -> Path:
        if (method, task) not in _RUNS:
            out = tmp_path_factory.mktemp(f"runs-{method}-{task}")
            train_file, test_file = labelled_csvs if task == "single_label" else tagged_jsonls
            overrides = tiny_overrides(
                tiny_bert,
                train_file,
                test_file,
                out,
                f"method={method}",
                f"data.task={task}",
                "name=run",
                epochs=2,
            )
            _RUNS[method, task] = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
        copy = tmp_path_factory.mktemp("copy") / "run"
        shutil.copytree(_RUNS[method, task], copy)
        return copy

    return get


def unmerged_logits(run: Path, data: Path | None = None) -> tuple[Any, np.ndarray]:
    """The adapter run's logits on its test file, the adapter kept apart (``Method.load``)."""
    predictor = tunelab.load(run)
    summary = predictor.run.read_summary()
    ctx = LoadContext(run=predictor.run, config=predictor.config, labels=predictor.labels, summary=summary)
    model = run_method(ctx).load(predictor.run.weights, model_loader(ctx))
    dataset = predictor.task.read_labelled(
        predictor.config.data.test, predictor.config.data, predictor.labels, field=None
    )
    enc = predictor.task.encode(predictor.tokenizer, dataset, max_length=predictor.config.model.max_length)
    from tunelab.inference.forward import predict_logits

    return enc, predict_logits(model, enc)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("method", MERGEABLE)
def test_merging_writes_a_plain_run_that_predicts_like_the_adapter(method: str, trained: Any) -> None:
    run = trained(method)
    result = tunelab.merge(run)
    assert result.path == run.with_name("run-merged") and result.method == method
    assert 0 <= result.max_logit_diff < 1e-4 and result.rows == 24

    # A plain run: the whole model in weights/, method full, no adapter, the source named.
    merged = result.path
    assert (merged / "weights" / "model.safetensors").is_file()
    assert not (merged / "weights" / "adapter_model.safetensors").exists()
    summary = json.loads((merged / "run.json").read_text(encoding="utf-8"))
    assert summary["method"] == "full" and summary["stores_base"] is True and summary["name"] == "run-merged"
    assert summary["merged_from"]["method"] == method and summary["merged_from"]["max_logit_diff"] < 1e-4
    assert json.loads((merged / "config.json").read_text(encoding="utf-8"))["method"]["name"] == "full"
    assert leftovers(run.parent) == []

    # Its predictions are the unmerged adapter's, checked again here.
    enc, expected = unmerged_logits(run)
    got = tunelab.load(merged).backend.logits(enc)
    assert np.abs(got - expected).max() < 1e-4
    assert (
        tunelab.load(merged).predict("pizza and cheese for dinner")["label"]
        == tunelab.load(run).predict("pizza and cheese for dinner")["label"]
    )


def test_a_token_classification_run_merges_too(trained: Any) -> None:
    run = trained("lora", "token_classification")
    result = tunelab.merge(run, output=run.parent / "tagger")
    enc, expected = unmerged_logits(run)
    assert np.abs(tunelab.load(result.path).backend.logits(enc) - expected).max() < 1e-4
    assert tunelab.load(result.path).predict("maria visited rome")["entities"]  # per-token decoding works


@pytest.mark.parametrize("method", NOT_MERGEABLE)
def test_a_method_that_cannot_merge_says_why_in_one_line(method: str, trained: Any) -> None:
    run = trained(method)
    with pytest.raises(ConfigError) as info:
        tunelab.merge(run)
    message = str(info.value)
    assert f"a {method} run cannot be merged: {get_method(method).cannot_merge}" in message
    assert "\n" not in message
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]


def test_an_exported_artifact_and_a_taken_output_are_refused(trained: Any) -> None:
    run = trained("lora")
    artifact = run.with_name("run-onnx")
    shutil.copytree(run, artifact)
    summary = json.loads((artifact / "run.json").read_text(encoding="utf-8"))
    (artifact / "run.json").write_text(json.dumps({**summary, "format": "onnx", "source_run": str(run)}))
    with pytest.raises(RunError, match=f"exported onnx artifact; merge {run} instead"):
        tunelab.merge(artifact)
    taken = run.with_name("taken")
    taken.mkdir()
    with pytest.raises(RunError, match="taken exists; delete it or give another --out"):
        tunelab.merge(run, output=taken)
    assert list(taken.iterdir()) == []


def test_logits_that_move_too_far_fail_and_write_nothing(
    trained: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    merging = importlib.import_module("tunelab.compress.merge")  # the module; the attribute is the function
    run = trained("lora")
    monkeypatch.setattr(merging, "MAX_LOGIT_DIFF", -1.0)  # any difference is too large
    with pytest.raises(RunError, match=r"moved the logits by up to .* nothing was written"):
        tunelab.merge(run)
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]


def test_the_command_merges_and_refuses_in_one_line(trained: Any, capsys: pytest.CaptureFixture) -> None:
    run = trained("ia3")
    assert main(["merge", str(run), "--out", str(run.parent / "plain"), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"merged the ia3 adapter of {run} into its base: {run.parent / 'plain'}" in out
    assert "largest logit difference" in out and (run.parent / "plain" / "run.json").is_file()

    assert main(["merge", str(run.parent / "plain")]) == 2  # a plain run has nothing to fold in
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "a full run cannot be merged" in err and "\n" not in err


def test_merge_help_has_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["merge", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "tunelab merge runs/banking77-lora" in text and "--out" in text


def test_the_help_example_names_the_columns_of_the_run_it_merges(capsys: pytest.CaptureFixture) -> None:
    """``--data other.tsv data.column_names=[text,label]`` named columns a banking77 run (label column
    ``category``, configs/banking77.yaml) does not read: run as written, it failed "the run needs
    'category'"."""
    from tunelab.config import RunConfig

    with pytest.raises(SystemExit):
        main(["merge", "--help"])
    line = next(x for x in capsys.readouterr().out.splitlines() if "data.column_names=" in x)
    assert "runs/banking77-" in line
    named = re.search(r"data\.column_names=\[([^\]]*)\]", line).group(1).split(",")
    data = RunConfig.from_yaml(Path(__file__).parents[2] / "configs" / "banking77.yaml").data
    assert named == [data.text_column, data.label_column]


def test_a_bad_out_is_refused_before_any_model_is_loaded(
    trained: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a file it failed at the end as "unexpected FileExistsError"; a name ending in .partial
    was written and then loaded as an unfinished run; a folder that cannot be made, after all the
    work. A merge that fails takes away the folders it made for its output."""
    run = trained("lora")
    (run.parent / "afile.csv").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"afile\.csv is a file, not a folder"):
        tunelab.merge(run, output=run.parent / "afile.csv" / "m")
    with pytest.raises(ConfigError, match=r"a name ending in \.partial marks an unfinished run"):
        tunelab.merge(run, output=run.parent / "m.partial")
    with pytest.raises(ConfigError, match="cannot make its folder"):
        tunelab.merge(run, output=run.parent / ("a" * 300) / "m")
    merge_module = importlib.import_module("tunelab.compress.merge")
    monkeypatch.setattr(merge_module, "MAX_LOGIT_DIFF", -1.0)  # every merge fails its check
    with pytest.raises(RunError, match="nothing was written"):
        tunelab.merge(run, output=run.parent / "new" / "deeper" / "m")
    assert not (run.parent / "new").exists()


def test_merging_dot_from_inside_the_run_names_the_run(
    trained: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`tunelab merge .`: ".".with_name(".-merged") raised ValueError; with --out, run.json's
    merged_from.run said "." and the command "merged the lora adapter of . into its base"."""
    run = trained("lora")
    monkeypatch.chdir(run)
    result = tunelab.merge(".")
    assert result.path == run.parent / "run-merged" and result.source == run
    assert json.loads((result.path / "run.json").read_text(encoding="utf-8"))["merged_from"]["run"] == str(
        run
    )
    assert main(["merge", ".", "--out", "../plain", "-q"]) == 0
    assert f"merged the lora adapter of {run} into its base: ../plain" in capsys.readouterr().out
    summary = json.loads((run.parent / "plain" / "run.json").read_text(encoding="utf-8"))
    assert summary["merged_from"]["run"] == str(run)


@pytest.mark.parametrize("inside", ["merged", "tokenizer/merged", "."])
def test_an_out_inside_the_run_is_refused_before_any_work(trained: Any, inside: str) -> None:
    """The staging folder was made inside the run before copytree listed it: the merged run held
    a hidden copy of the source run."""
    run = trained("lora")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(
        ConfigError, match=rf"^--out .* is inside the run {re.escape(str(run))}; give a folder beside it$"
    ):
        tunelab.merge(run, output=run / inside)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


@pytest.mark.parametrize(("name", "content"), [("config.json", '{"model": '), ("run.json", "[1]")])
def test_damaged_run_metadata_is_named_before_merging(trained: Any, name: str, content: str) -> None:
    """config.json failed as "unexpected JSONDecodeError"; run.json was read as {}."""
    run = trained("lora")
    (run / name).write_text(content, encoding="utf-8")
    with pytest.raises(
        RunError, match=rf"^{re.escape(str(run / name))}: cannot read \(.*\); the run folder is damaged"
    ):
        tunelab.merge(run)
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]


def test_a_merged_runs_config_is_refused_as_a_run_file_naming_the_adapter_run(
    trained: Any, capsys: pytest.CaptureFixture
) -> None:
    """It says method full with the adapter's learning rate: trained again, it fine-tuned the whole
    model at LoRA's rate (another model) without a word."""
    from tunelab.cli.main import main

    run = trained("lora")
    merged = tunelab.merge(run).path
    config = merged / "config.json"
    said = (
        f"{config}: the config of a merged run (lora merged into its base by tunelab merge); its method "
        f"full describes the merged weights, not how they were trained: train {run / 'config.json'} "
        "to train it again"
    )
    assert main(["train", str(config), f"output_dir={merged.parent}", "name=again"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {said}"
    assert not (merged.parent / "again").exists() and not (merged.parent / "again.partial").exists()
    assert main(["validate", str(config)]) == 2
    assert said in capsys.readouterr().err


def test_continuing_a_merged_or_adapter_run_does_not_inherit_the_adapters_learning_rate(
    trained: Any, labelled_csvs: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """``train --from`` a merged LoRA run (or the LoRA run itself, continued as full) kept its
    train.learning_rate, set for the adapter: the whole model was fine-tuned at LoRA's rate
    without a word. Given again on the command, it is used."""
    from tunelab.train.continual import continued_config

    run = trained("lora")
    lora_rate = json.loads((run / "config.json").read_text(encoding="utf-8"))["train"]["learning_rate"]
    assert lora_rate is not None  # the tiny runs set one: the case this is about
    merged = tunelab.merge(run).path
    new = [f"data.train={labelled_csvs[0]}"]
    for source in (merged, run):
        with caplog.at_level("WARNING", logger="tunelab.train.continual"):
            cfg = continued_config(source, new)
        assert cfg.method.name == "full" and cfg.train.learning_rate is None, source
        assert f"its train.learning_rate={lora_rate} was set for lora" in caplog.text
        caplog.clear()
        assert continued_config(source, [*new, "train.learning_rate=3e-5"]).train.learning_rate == 3e-5
    # method=full named on the command: the same; the LoRA rate stays where LoRA trains again
    assert continued_config(run, [*new, "method=full"]).train.learning_rate is None
