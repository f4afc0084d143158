"""Review fixes: an AdaLoRA run resumed between two rank masks ends as the uninterrupted run does; a
full run refuses to resume onto changed base weights; a run records the method options it used; a
search refuses to continue on changed data; the benchmarks compare a row's method options."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import tunelab


def weights_digest(run: Path) -> str:
    """sha256 over every saved tensor of ``run`` (names in order), as the reviewer compared them."""
    digest = hashlib.sha256()
    for f in sorted((run / "weights").rglob("*.safetensors")):
        tensors = load_file(str(f))
        for key in sorted(tensors):
            digest.update(key.encode())
            digest.update(tensors[key].float().numpy().tobytes())
    return digest.hexdigest()


# -- 1. AdaLoRA resumed inside the reallocation phase -------------------------------------------------


def test_adalora_resumed_between_two_rank_masks_ends_with_the_uninterrupted_weights(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tiny_overrides: Any,
    killed_at_first_checkpoint: Any,
    tmp_path: Path,
) -> None:
    """Between two mask steps (every delta_t) peft lets masked triplets train again; the resume masked
    them with the saved rank pattern, so it went on from other weights than the killed run had."""
    base = tiny_overrides(
        tiny_bert,
        labelled_csvs[0],
        labelled_csvs[1],
        tmp_path,
        "method=adalora",
        "method.delta_t=5",
        "method.init_r=6",
        "method.target_r=2",
        "train.warmup_ratio=0",
        epochs=3,
    )
    ref = tunelab.train(None, overrides=[*base, "name=ref"], show_progress=False)
    steps = ref.summary["steps"]
    adapter_config = json.loads((ref.run_dir / "weights" / "adapter_config.json").read_text())
    tfinal, tinit = adapter_config["tfinal"], adapter_config["tinit"]
    # Killed after step 7: the last mask was at step 5 (a multiple of delta_t), inside the phase where
    # the budget moves, and one optimizer step has regrown masked triplets since.
    kill_at = 7
    assert tinit < 5 < kill_at < steps - tfinal, (tinit, tfinal, steps)
    partial = killed_at_first_checkpoint([*base, "name=k", f"train.checkpoint_steps={kill_at}"])
    resumed = tunelab.train(resume=partial, show_progress=False)
    assert resumed.summary["steps"] == steps
    assert weights_digest(resumed.run_dir) == weights_digest(ref.run_dir)


# -- 4. a full run resumed onto other base weights -----------------------------------------------------


def _new_base_weights(folder: Path, seed: int) -> None:
    """Another random encoder of the same shape saved into ``folder``: the same name, other weights."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    BertModel(BertConfig.from_pretrained(str(folder))).save_pretrained(str(folder), safe_serialization=True)


def test_a_full_run_refuses_to_resume_onto_other_base_weights_and_resumes_on_its_own(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tiny_overrides: Any,
    killed_at_first_checkpoint: Any,
    one_line: Any,
    tmp_path: Path,
) -> None:
    """Its checkpoint holds the trained weights only (token embeddings frozen by default): resumed on
    another base it finished a model made of both, and said nothing."""
    import shutil

    from tunelab.errors import RunError

    base, kept = tmp_path / "base", tmp_path / "kept"
    shutil.copytree(tiny_bert, base)
    shutil.copytree(tiny_bert, kept)
    overrides = tiny_overrides(
        base, labelled_csvs[0], None, tmp_path / "runs", "method=full", "name=k", "train.checkpoint_steps=2",
        epochs=1,
    )  # fmt: skip
    partial = killed_at_first_checkpoint(overrides)
    old = tmp_path / "old" / "k.partial"  # stands for a run killed before the fingerprint was recorded
    shutil.copytree(partial, old)
    summary = json.loads((old / "run.json").read_text(encoding="utf-8"))
    summary.pop("began_on_base", None)
    (old / "run.json").write_text(json.dumps(summary), encoding="utf-8")

    _new_base_weights(base, seed=7)
    with pytest.raises(RunError) as caught:
        tunelab.train(resume=partial, show_progress=False)
    message = one_line(caught)
    assert str(partial) in message and "began on base" in message and "restore that base" in message
    # Nothing recorded, nothing to compare: it resumes as it did before the check.
    assert tunelab.train(resume=old, show_progress=False).summary["status"] == "finished"

    shutil.rmtree(base)
    shutil.copytree(kept, base)  # the same weights back: the resume goes on
    result = tunelab.train(resume=partial, show_progress=False)
    assert result.summary["status"] == "finished" and result.summary["base_fingerprint"] is None


# -- 5. the method options a run used are recorded ------------------------------------------------------


def test_a_default_lora_run_records_its_options_and_its_config_json_retrains_them(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides: Any, tmp_path: Path
) -> None:
    """config.json said "options": {} and run.json method_options {}: retrained after a default
    changed, the same config.json trained another recipe, and the report showed no options."""
    from tunelab.methods import get_method

    overrides = tiny_overrides(
        tiny_bert, labelled_csvs[0], labelled_csvs[1], tmp_path, "method=lora", "name=x", epochs=1
    )
    first = tunelab.train(None, overrides=overrides, show_progress=False)
    saved = json.loads((first.run_dir / "config.json").read_text(encoding="utf-8"))["method"]
    defaults = get_method("lora").parse_options({})
    assert saved["name"] == "lora"
    assert saved["options"].get("r") == defaults.r and saved["options"].get("alpha") == defaults.alpha
    assert saved["options"].get("target_modules") == list(defaults.target_modules)
    assert first.summary["method_options"] == saved["options"]
    report = (first.run_dir / "report.md").read_text(encoding="utf-8")
    assert f"r={defaults.r}" in report and f"alpha={defaults.alpha}" in report

    # Every recorded key is accepted again, and the retrained run records the same options.
    again = tunelab.train(first.run_dir / "config.json", overrides=["name=y"], show_progress=False)
    assert json.loads((again.run_dir / "config.json").read_text(encoding="utf-8"))["method"] == saved


# -- 2. a search rerun on edited data ---------------------------------------------------------------------


def test_a_search_rerun_on_an_edited_training_file_is_refused_and_an_unchanged_one_continues(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides: Any, one_line: Any, tmp_path: Path
) -> None:
    """search.json compared the config, metric and space, not the rows: after the training file was
    edited the old trials stayed "best" beside new ones, and best.json kept their test score."""
    from tunelab.errors import ConfigError
    from tunelab.search import search

    train = tmp_path / "train.csv"
    train.write_text(labelled_csvs[0].read_text(encoding="utf-8"), encoding="utf-8")
    space = tmp_path / "space.yaml"
    space.write_text("train.learning_rate: [0.005, 0.001]\n", encoding="utf-8")
    overrides = tiny_overrides(tiny_bert, train, None, tmp_path / "runs", "train.head_init=random", epochs=1)
    kwargs = {
        "space": space,
        "overrides": overrides,
        "out": tmp_path / "s",
        "prune": False,
        "show_progress": False,
    }
    first = search(None, trials=1, **kwargs)
    assert search(None, trials=1, **kwargs).best_run == first.best_run  # unchanged: it continues

    lines = train.read_text(encoding="utf-8").splitlines()
    train.write_text("\n".join([lines[0], *lines[2:]]) + "\n", encoding="utf-8")  # one row fewer
    with pytest.raises(ConfigError) as caught:
        search(None, trials=2, **kwargs)
    message = one_line(caught)
    assert f"train ({train})" in message and "give --out" in message and "delete the folder" in message
    assert len(list((tmp_path / "s" / "trials").iterdir())) == 1  # nothing trained on the new rows

    # A search.json written before the rows were recorded continues, and records the rows it goes on with.
    settings = json.loads((tmp_path / "s" / "search.json").read_text(encoding="utf-8"))
    del settings["data_fingerprint"]
    (tmp_path / "s" / "search.json").write_text(json.dumps(settings), encoding="utf-8")
    assert search(None, trials=1, **kwargs).best_run == first.best_run
    assert "data_fingerprint" in json.loads((tmp_path / "s" / "search.json").read_text(encoding="utf-8"))


# -- 3. the benchmarks compare a recipe's method and options --------------------------------------------

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _benchmark(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``benchmarks/<name>.py`` loaded fresh, with its own ``bench_common`` (the benchmarks import it
    by that name, at load or when called), for this test only."""
    import importlib.util

    def load(module: str, file: str) -> Any:
        spec = importlib.util.spec_from_file_location(module, BENCHMARKS / file)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        return loaded

    monkeypatch.setitem(sys.modules, "bench_common", load("bench_common", "bench_common.py"))
    return sys.modules["bench_common"] if name == "bench_common" else load(f"{name}_bench", f"{name}.py")


def test_settings_differ_compares_the_method_and_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Options sit under method.options in config.json: method= and every method.* key were skipped,
    so a run of an edited recipe was reused as the new recipe's figure."""
    differ = _benchmark("bench_common", monkeypatch).settings_differ
    typed_only = {"method": {"name": "setfit", "options": {"positives": 4}}}  # a run from before item 5
    resolved = {"method": {"name": "lora", "options": {"r": 8, "alpha": 16, "target_modules": ["query"]}}}
    assert differ(typed_only, ["method=setfit", "method.positives=8"]) == "method.positives=4, not 8"
    assert differ(typed_only, ["method=full"]) == "method=setfit, not full"
    # An option config.json leaves out is the method's default; the same value typed is no difference.
    assert differ(typed_only, ["method=setfit", "method.negatives=8"]) == "method.negatives=4, not 8"
    assert differ(typed_only, ["method.negatives=4", "method.options.positives=4"]) is None
    assert differ(resolved, ["method=lora", "method.r=16"]) == "method.r=8, not 16"
    assert differ(resolved, ["method.r=8", "method.target_modules=query", "method.alpha=16.0"]) is None


class _NoBaseline:
    def accuracy(self, overrides: list[str], split: str, seed: int) -> float:
        return 0.5


def test_fewshot_does_not_reuse_a_row_measured_with_other_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_done skipped a (stage, recipe, shots, seed, set) row whatever overrides measured it: after a
    RECIPES edit the old figure was reported as the new recipe's."""
    import argparse

    bench = _benchmark("fewshot", monkeypatch)
    trained: list[str] = []
    monkeypatch.setattr(
        bench,
        "setfit_accuracy",
        lambda o, out, name, split: trained.append(name) or (0.8, {"rows": {"train": 1}}),
    )
    now = bench._overrides("dev", "p4n4-head", 8, 0, [], tmp_path)
    before = [o if o != "method.positives=4" else "method.positives=2" for o in now]
    assert before != now
    row = {"stage": "dev", "recipe": "p4n4-head", "shots": 8, "seed": 0, "setfit": 0.9, "baseline": 0.5,
           "seconds": 1.0, "train_rows": 10, "overrides": before, "set": []}  # fmt: skip
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps(row) + "\n", encoding="utf-8")
    args = argparse.Namespace(set=[], out=tmp_path)
    with pytest.raises(SystemExit) as caught:
        bench.run_stage(args, results, _NoBaseline(), "dev", ["p4n4-head"], [8], [0])
    message = str(caught.value)
    assert "\n" not in message and "method.positives=2" in message and "give a fresh --out" in message
    assert trained == []

    results.write_text(json.dumps({**row, "overrides": now}) + "\n", encoding="utf-8")
    bench.run_stage(args, results, _NoBaseline(), "dev", ["p4n4-head"], [8], [0])
    assert trained == []  # measured with these overrides: reused


def test_the_continual_benchmark_does_not_reuse_a_run_of_other_method_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _benchmark("continual", monkeypatch)
    run = tmp_path / "first"
    run.mkdir()
    saved = {"method": {"name": "lora", "options": {"r": 8}}, "train": {"epochs": 3}}
    (run / "config.json").write_text(json.dumps(saved), encoding="utf-8")
    bench._same_recipe(run, ["method=lora", "method.r=8", "train.epochs=3"])  # the same: reused
    for args, said in ((["method.r=16"], "method.r=8, not 16"), (["method=full"], "method=lora, not full")):
        with pytest.raises(SystemExit) as caught:
            bench._same_recipe(run, args)
        assert said in str(caught.value) and "\n" not in str(caught.value)


@dataclasses.dataclass
class _DerivedOptions:
    """A plug-in's options with a field its __post_init__ derives (not a constructor argument)."""

    r: int = 8
    scale: float = dataclasses.field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.scale = 1.0 / self.r


@dataclasses.dataclass
class _TupleOptions:
    layers: tuple[int, ...] = (0, 1)


@pytest.mark.parametrize("cls", [_DerivedOptions, _TupleOptions], ids=["init-false", "tuple"])
def test_recorded_options_read_back_as_the_same_object(cls: type) -> None:
    """Recorded with dataclasses.asdict, an ``init=False`` field made every later read of config.json
    (resume, train --from, train runs/X/config.json) fail with "unexpected keyword argument"; a
    tuple came back a list. What is recorded now parses back to an equal object."""
    from tunelab.methods.registry import Method
    from tunelab.train.trainer import _resolved_options

    method = Method(
        name="toy", config_cls=cls, apply=lambda m, o: m, save=lambda m, f: None, load=lambda f, lo: None,
        default_learning_rate=1e-3, stores_base=True,
    )  # fmt: skip
    options = method.parse_options({})
    recorded = _resolved_options(method, options, {})
    assert method.parse_options(recorded) == options
    assert "scale" not in recorded
