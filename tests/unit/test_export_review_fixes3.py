"""Export review fixes: structured pruning of a continued run learns from its rehearsal rows too, an
ensemble member's failed export names the member, and an output inside the run is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.compress import build
from tunelab.compress.parity import ParityError
from tunelab.errors import ConfigError


@pytest.fixture(scope="module")
def runs(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tiny_overrides: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, Path]:
    """Two full runs (``a``, ``b``) and their ensemble."""
    from tunelab.ensembling import ensemble

    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    made = []
    for name in ("a", "b"):
        overrides = tiny_overrides(tiny_bert, train, test, out, "data.dev_size=0.2", f"name={name}", epochs=1)
        made.append(tunelab.train(None, overrides=overrides, show_progress=False).run_dir)
    return made[0], made[1], ensemble(made, tmp_path_factory.mktemp("ens") / "ens").path


def _listing(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


# 1. a continued run's structured pruning calibrates and recovers on its rehearsal rows too -------


def test_a_continued_runs_structured_export_learns_from_its_rehearsal_rows(
    runs: tuple[Path, Path, Path], text_maker: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Calibration and recovery used the new rows only (9 of 30 in the review): the pruned model was
    fitted to the new rows, and the parity check on the new test rows never saw the old ones."""
    rows = [{"text": t, "label": label} for label in ("sports", "food") for t in text_maker(label, 8, 5)]
    new = tmp_path / "new.csv"
    pd.DataFrame(rows).to_csv(new, index=False)
    more = tunelab.train(
        from_run=runs[0],
        overrides=[
            f"data.train={new}",
            f"output_dir={tmp_path}",
            "name=more",
            "train.epochs=1",
            "data.dev_size=0.3",
        ],
        show_progress=False,
    ).run_dir
    trained = json.loads((more / "run.json").read_text(encoding="utf-8"))
    assert trained["continual"]["rehearsal_rows"] > 0
    art = tunelab.export(
        more,
        format="onnx",
        prune=0.5,
        prune_method="structured",
        recover_epochs=1,
        max_drop=100,
        output=tmp_path / "art",
        show_progress=False,
    ).path
    pruned = json.loads((art / "run.json").read_text(encoding="utf-8"))["export"]["prune"]
    assert pruned["calibration_texts"] == pruned["recovery"]["texts"] == trained["rows"]["train"]
    assert pruned["rehearsal_rows"] == trained["continual"]["rehearsal_rows"]
    # The previous run moved away since: the export still runs, on the new rows, and says so.
    moved = runs[0].with_name(runs[0].name + "-moved")
    runs[0].rename(moved)
    try:
        with caplog.at_level("WARNING", logger="tunelab.compress.datasets"):
            again = tunelab.export(
                more, format="onnx", prune=0.5, prune_method="structured", max_drop=100,
                output=tmp_path / "art2", show_progress=False,
            ).path  # fmt: skip
    finally:
        moved.rename(runs[0])
    pruned = json.loads((again / "run.json").read_text(encoding="utf-8"))["export"]["prune"]
    assert pruned["calibration_texts"] == trained["rows"]["train"] - trained["continual"]["rehearsal_rows"]
    assert any("calibrates on the run's new rows only" in r.getMessage() for r in caplog.records)


# 2. a member's failed export names the member ------------------------------------------------------

FAILED = "onnx export failed the parity check: accuracy fell; no artifact was written"


def test_an_ensemble_members_failed_export_names_the_member(
    runs: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second member's parity failure read as the ensemble's own, naming no member."""
    _, b, ens = runs
    original = build.build_artifact

    def failing_for_b(source: Any, *args: Any, **kwargs: Any) -> Any:
        if source.root.name == b.name:
            raise ParityError(FAILED)
        return original(source, *args, **kwargs)

    monkeypatch.setattr(build, "build_artifact", failing_for_b)
    with pytest.raises(ParityError, match=f"^{re.escape(f'member weights/{b.name}: {FAILED}')}$"):
        tunelab.export(ens, format="onnx", output=tmp_path / "art", show_progress=False)
    assert list(tmp_path.iterdir()) == []


# 3. an output inside the run (or an ensemble member's source run) is refused -----------------------


def _never_built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    built: list[str] = []

    def record(source: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(str(source.root))
        raise AssertionError("the export was not refused")

    monkeypatch.setattr(build, "build_artifact", record)
    return built


@pytest.mark.parametrize("inside", ["onnx", "tokenizer/onnx", "."])
def test_an_output_inside_the_run_is_refused_before_any_work(
    runs: tuple[Path, Path, Path], inside: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside tokenizer/ the copy recursed into itself (40 KB of "File name too long"); elsewhere the
    artifact was silently written into the run."""
    run = runs[0]
    before = _listing(run)
    built = _never_built(monkeypatch)
    with pytest.raises(
        ConfigError, match=rf"^--output .* is inside the run {re.escape(str(run))}; give a folder beside it$"
    ):
        tunelab.export(run, format="onnx", output=run / inside, show_progress=False)
    assert built == [] and _listing(run) == before


def test_the_cli_refuses_an_output_inside_the_run_in_one_line(
    runs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = runs[0]
    _never_built(monkeypatch)
    target = run / "tokenizer" / "onnx"
    assert main(["export", str(run), "--format", "onnx", "--output", str(target), "-q"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"error: --output {target} is inside the run {run}; give a folder beside it"]


@pytest.mark.parametrize("where", ["ensemble", "member source"])
def test_an_ensemble_output_inside_it_or_a_members_run_is_refused(
    runs: tuple[Path, Path, Path], where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _, ens = runs
    built = _never_built(monkeypatch)
    if where == "ensemble":
        target, said = (
            ens / "tokenizer" / "onnx",
            f"--output {ens / 'tokenizer' / 'onnx'} is inside the run {ens}",
        )
    else:
        target, said = a / "onnx", f"member weights/{a.name}: --output {a / 'onnx'} is inside the run {a}"
    before = _listing(target.parent)
    with pytest.raises(ConfigError, match=f"^{re.escape(said)}; give a folder beside it$"):
        tunelab.export(ens, format="onnx", output=target, show_progress=False)
    assert built == [] and _listing(target.parent) == before


def test_an_ensemble_built_from_relative_paths_refuses_a_members_run_from_anywhere(
    runs: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members' sources were stored as given (``runs/a``): exported from another folder, the check
    looked for ``runs/a`` there, found nothing, and the artifact was written into the member's run."""
    import json

    from tunelab.ensembling import ensemble

    a, b, _ = runs
    monkeypatch.chdir(a.parent)
    ens = ensemble([Path(a.name), Path(b.name)], tmp_path / "rel-ens").path
    sources = [m["source"] for m in json.loads((ens / "run.json").read_text(encoding="utf-8"))["members"]]
    assert sources == [str(a), str(b)]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    built = _never_built(monkeypatch)
    with pytest.raises(
        ConfigError, match=rf"is inside the run {re.escape(str(a))}; give a folder beside it$"
    ):
        tunelab.export(ens, format="onnx", output=a / "onnx", show_progress=False)
    assert built == [] and not (a / "onnx").exists()
