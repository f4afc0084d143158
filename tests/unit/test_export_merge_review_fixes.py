"""Export and merge review fixes: runs load from any directory, parity compares at the precision it
reports, ensembles check every member before exporting any, and merge cleans up after a killed merge.

Each test failed before its fix: an adapter run with a relative base (``model.name=../tiny``)
loaded only from its training directory; merge read ``data.test`` relative to the current
directory; an exact 1-point drop failed ``--max-drop 1``; an ensemble's unsupported member was
refused after the members before it were exported, without its name; an exported ensemble went to
the composite builder; ``--recover-epochs 1e6`` passed the option checks; a killed merge's hidden
folder stayed for ever.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab.compress.options import ExportOptions
from tunelab.compress.parity import Measured, compare
from tunelab.errors import ConfigError, ModelNotFoundError, RunError
from tunelab.inference.backends import LoadContext
from tunelab.tasks import get_task

TEXT = "pizza and cheese for dinner"


@pytest.fixture(scope="module")
def trained_here(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tiny_overrides: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A lora run trained from its own folder with a relative base (``../../../tiny-bert0``) and
    relative data files (``train.csv``, ``test.csv``), as a user in a project folder types them."""
    work = tmp_path_factory.mktemp("trained-here") / "a" / "b"
    work.mkdir(parents=True)
    for given, name in zip(labelled_csvs, ("train.csv", "test.csv"), strict=True):
        shutil.copy(given, work / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        overrides = tiny_overrides(
            os.path.relpath(tiny_bert, work),
            "train.csv",
            Path("test.csv"),
            Path("runs"),
            "method=lora",
            "name=lora",
            epochs=2,
        )
        return Path(tunelab.train(None, overrides=overrides, show_progress=False).run_dir).resolve()


def typed_config(run: Path) -> dict[str, Any]:
    return json.loads((run / "config.json").read_text(encoding="utf-8"))


# 1. A relative base loads from anywhere -----------------------------------------------------------


def test_a_run_with_a_relative_base_loads_from_another_directory(
    trained_here: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It failed "model '../../../tiny-bert0': no such folder" anywhere but where it was trained."""
    name = typed_config(trained_here)["model"]["name"]
    monkeypatch.chdir(tmp_path)
    assert not Path(name).exists() and name.startswith("..")
    got = tunelab.load(trained_here).logits([TEXT])
    monkeypatch.chdir(trained_here.parent.parent)  # where it was trained: the name resolves there
    np.testing.assert_allclose(got, tunelab.load(trained_here).logits([TEXT]), atol=1e-6)


def test_the_recorded_base_is_still_fingerprint_checked(
    trained_here: Path, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading from ``model_path_at_training`` is guarded like any base: other weights there fail."""
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-base"
    shutil.copytree(tiny_bert, other)
    tensors = load_file(other / "model.safetensors")
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + 1.0
    save_file(tensors, other / "model.safetensors")
    run = tmp_path / "moved" / "lora"
    shutil.copytree(trained_here, run)
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    (run / "run.json").write_text(json.dumps({**summary, "model_path_at_training": str(other)}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError, match=r"its adapter was trained on base .* now loads from .*other-base"):
        tunelab.load(run)


def fake_context(name: str, summary: dict[str, Any]) -> LoadContext:
    config = types.SimpleNamespace(model=types.SimpleNamespace(name=name))
    return LoadContext(run=None, config=config, labels=None, summary=summary)


def test_bundled_names_and_hub_ids_resolve_as_before(tmp_path: Path) -> None:
    """Only a local base falls back to the recorded folder: a hub id stays a hub id."""
    from tunelab.inference.backends import base_folder

    hub = fake_context(
        "nobody-here/no-such-model", {"model_source": "hub", "model_path_at_training": str(tmp_path)}
    )
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        base_folder(hub)
    local = {"model_source": "local", "model_path_at_training": str(tmp_path)}
    assert base_folder(fake_context("../nowhere/tiny", local)) == tmp_path
    assert base_folder(fake_context("tiny-not-here", local)) == tmp_path  # a bare name: never the hub
    older = {"model_path_at_training": str(tmp_path)}  # a run from before model_source was recorded
    assert base_folder(fake_context("../nowhere/tiny", older)) == tmp_path
    gone = {"model_source": "local", "model_path_at_training": str(tmp_path / "deleted")}
    # both gone: the line names the folder it trained on (and no hub)
    with pytest.raises(ModelNotFoundError, match="is not there") as caught:
        base_folder(fake_context("../nowhere/tiny", gone))
    assert str(tmp_path / "deleted") in str(caught.value) and "download" not in str(caught.value)


# 2. merge reads the run's own data files ----------------------------------------------------------


def test_merge_from_another_directory_checks_on_the_runs_own_test_file(
    trained_here: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It read ``test.csv`` of the current directory: missing, it failed; present, it was scored."""
    import pandas as pd

    pd.read_csv(labelled_csvs[1]).head(3).to_csv(tmp_path / "test.csv", index=False)  # same name, 3 rows
    monkeypatch.chdir(tmp_path)
    result = tunelab.merge(trained_here, output=tmp_path / "merged")
    own = trained_here.parent.parent / "test.csv"
    assert result.rows == 24 and str(own) in result.data
    merged = typed_config(result.path)
    assert merged["data"]["test"] == "test.csv" and merged["data"]["train"] == "train.csv"  # as typed


# 3. an exact-limit drop passes --------------------------------------------------------------------


def test_a_drop_of_exactly_max_drop_passes() -> None:
    """59/100 -> 58/100 is 1.0000000000000071 points in floats, and failed --max-drop 1."""
    task = get_task("single_label")
    latency = {"batch_1": 1.0, "batch_32": 1.0}
    logits = np.zeros((100, 3))

    def report(before: int, after: int, max_drop: float) -> dict[str, Any]:
        b = Measured({"accuracy": before / 100}, logits, latency, 1.0)
        a = Measured({"accuracy": after / 100}, logits, latency, 1.0)
        return compare(b, a, metric="accuracy", task=task, threshold=None, max_drop=max_drop)

    exact = [c for c in range(1, 101) if not report(c, c - 1, 1.0)["passed"]]
    assert exact == []
    assert report(59, 58, 1.0)["drop_points"] == 1.0
    assert not report(59, 57, 1.0)["passed"] and not report(59, 58, 0.99)["passed"]
    assert report(58, 58, 0.0)["passed"]


# 4. and 5. ensembles ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_ensemble(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tiny_overrides: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """An ensemble of a full run, then a prefix run (whose model keeps weights outside the base)."""
    from tunelab.ensembling import ensemble

    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    runs = []
    for method in ("full", "prefix"):
        overrides = tiny_overrides(
            tiny_bert, train, test, out, "data.dev_size=0.2", f"name={method}", f"method={method}", epochs=1
        )
        runs.append(tunelab.train(None, overrides=overrides, show_progress=False).run_dir)
    return ensemble(runs, tmp_path_factory.mktemp("ens") / "ens").path


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"format": "onnx", "prune": 0.5, "prune_method": "heads"}, "--prune-method heads reshapes the base"),
        ({"format": "torch-int8"}, "--format torch-int8 rebuilds the plain classifier"),
    ],
)
def test_an_ensemble_member_that_cannot_export_is_named_before_any_member_is_exported(
    mixed_ensemble: Path, kwargs: dict[str, Any], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full member was exported (and pruned) first, then the prefix member failed unnamed."""
    import tunelab.compress.build

    built: list[str] = []
    original = tunelab.compress.build.build_artifact

    def counting(source: Any, *args: Any, **kw: Any) -> Any:
        built.append(str(source.root))
        return original(source, *args, **kw)

    monkeypatch.setattr(tunelab.compress.build, "build_artifact", counting)
    prefix = next(
        m["path"]
        for m in json.loads((mixed_ensemble / "run.json").read_text(encoding="utf-8"))["members"]
        if m["path"].endswith("prefix")
    )
    with pytest.raises(RunError, match=f"^member {re.escape(prefix)}: {re.escape(says)}"):
        tunelab.export(mixed_ensemble, output=tmp_path / "art", show_progress=False, **kwargs)
    assert built == [] and list(tmp_path.iterdir()) == []


def test_an_exported_ensemble_is_refused_naming_its_source(mixed_ensemble: Path, tmp_path: Path) -> None:
    """Export went to the composite builder and failed naming a member's folder; merge said to
    merge the ensemble, which holds no adapter either."""
    art = tmp_path / "ens-onnx"
    shutil.copytree(mixed_ensemble, art)
    summary = json.loads((art / "run.json").read_text(encoding="utf-8"))
    for member in summary["members"]:  # as an export leaves them: onnx artifacts of the members
        run_json = art / member["path"] / "run.json"
        member_summary = json.loads(run_json.read_text(encoding="utf-8"))
        source_run = str(mixed_ensemble / member["path"])
        run_json.write_text(json.dumps({**member_summary, "format": "onnx", "source_run": source_run}))
    exported = {"format": "ensemble", "member_format": "onnx", "created_at": "2026-01-01T00:00:00+00:00"}
    (art / "run.json").write_text(
        json.dumps({**summary, "source_run": str(mixed_ensemble), "export": exported})
    )
    said = f"{art.resolve()} is an exported ensemble; export from {mixed_ensemble} instead"
    with pytest.raises(RunError, match=f"^{re.escape(said)}$"):
        tunelab.export(art, format="onnx", output=tmp_path / "again", show_progress=False)
    with pytest.raises(
        RunError, match=r"is an exported ensemble \(of .*\), which holds no adapter of its own"
    ):
        tunelab.merge(art, output=tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens-onnx"]


# 6. --recover-epochs below train.epochs' bound ----------------------------------------------------


@pytest.mark.parametrize("epochs", [1e6, 1e9, float("inf"), float("nan")])
def test_recover_epochs_of_a_million_or_more_are_refused_naming_the_option(epochs: float) -> None:
    """1e6 passed and failed after loading and pruning as "train.epochs=1000000.0 ..."."""
    with pytest.raises(
        ConfigError, match=r"give --recover-epochs a number of epochs from 0 to below 1000000"
    ):
        ExportOptions(format="onnx", prune=0.5, prune_method="ffn", recover_epochs=epochs)
    assert ExportOptions(format="onnx", prune=0.5, prune_method="ffn", recover_epochs=999_999).recover_epochs


# 7. a killed merge's hidden folder is removed -----------------------------------------------------


def test_a_killed_merges_folder_is_removed_and_a_live_ones_kept(
    trained_here: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL runs no cleanup: its full-size ``.NAME.merging-PID-XXXXXXXX`` stayed beside the target."""
    from tunelab.compress.export import MARKER, _lock

    done = subprocess.Popen(["true"])
    done.wait()  # a pid no process has now
    dead = tmp_path / f".merged.merging-{done.pid}-0123abcd"
    (dead / "weights").mkdir(parents=True)
    (dead / "weights" / "model.safetensors").write_bytes(b"\0" * 1000)
    (dead / MARKER).write_text("")  # a killed merge's marker: no process holds its lock
    old = tmp_path / f".merged.merging-{done.pid}-00000000"  # no marker (an older version's), hours old
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    # no marker and just made: a merge on another machine (its pid means nothing here) between
    # making its folder and locking the marker, or renaming it: left alone
    young = tmp_path / f".merged.merging-{done.pid}-11111111"
    young.mkdir()
    live = tmp_path / f".merged.merging-{os.getppid()}-4567abcd"  # its process runs
    live.mkdir()
    elsewhere = tmp_path / f".merged.merging-{done.pid}-89abcdef"  # locked: a live merge on another host
    elsewhere.mkdir()
    held = _lock(elsewhere / MARKER, ours=True)
    other = tmp_path / f".other.merging-{done.pid}-0123abcd"  # another target's: not this merge's business
    other.mkdir()
    monkeypatch.chdir(trained_here.parent.parent)
    try:
        with caplog.at_level(logging.WARNING, logger="tunelab.compress.merge"):
            result = tunelab.merge(trained_here, output=tmp_path / "merged")
    finally:
        assert held is not None
        held.close()
    assert not dead.exists() and not old.exists()
    assert live.is_dir() and elsewhere.is_dir() and other.is_dir() and young.is_dir()
    assert f"removed {dead}, left behind by a merge (pid {done.pid}) that was killed" in caplog.text
    assert not (result.path / MARKER).exists()  # the merge's own lock file stays out of the run
    assert (
        tunelab.load(result.path).predict(TEXT)["label"] == tunelab.load(trained_here).predict(TEXT)["label"]
    )


def test_a_run_with_a_relative_base_is_served_and_continued_from_another_directory(
    trained_here: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tunelab.load found the recorded base, but the server's adapter pool (its host key) and
    validate/train --from (the base check) still resolved model.name from here: "no such folder"."""
    from tunelab.preflight import validate_run
    from tunelab.serve.adapters import BasePool

    monkeypatch.chdir(tmp_path)
    pool = BasePool()
    served = pool.load(str(trained_here))
    assert served.predict(TEXT)["label"] == tunelab.load(trained_here).predict(TEXT)["label"]
    report = validate_run(
        None, overrides=[f"data.train={labelled_csvs[0]}"], from_run=trained_here, count_tokens=False
    )
    assert not report.problems, report.problems
