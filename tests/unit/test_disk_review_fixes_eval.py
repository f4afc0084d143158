"""Review of full disks and failed writes: `eval` writes its report whole or not at all.

The report was written in place, metrics.json first: a re-evaluation of the same file that failed
part-way (the disk full at the plots) left the new metrics.json beside the old report.md and
report.html, and the folder contradicted itself with nothing to say so.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tunelab


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: Any):
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    return tunelab.train(
        None, overrides=tiny_overrides(tiny_bert, train, test, out, "name=r", epochs=1), show_progress=False
    ).run_dir


def test_a_failed_re_evaluation_keeps_the_earlier_report_whole(
    run: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, monkeypatch
) -> None:
    import tunelab.evaluate.report as report_module

    frame = pd.read_csv(labelled_csvs[1])
    data = tmp_path / "held.csv"
    frame.head(6).to_csv(data, index=False)
    first = tunelab.evaluate(run, data)
    folder = Path(first["report"]).parent
    before = {name: (folder / name).read_bytes() for name in ("metrics.json", "report.md", "report.html")}
    frame.to_csv(data, index=False)  # the same file, now every row: the same report folder

    real = report_module.atomic_write_text

    def disk_full_at_the_html(path: Any, text: str) -> Path:
        if Path(path).name == "report.html":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(report_module, "atomic_write_text", disk_full_at_the_html)
    with pytest.raises(OSError) as info:
        tunelab.evaluate(run, data)
    assert info.value.filename == str(folder / "report.html")  # the report's file, not a hidden one
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert json.loads(before["metrics.json"])["n"] == 6
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # nothing hidden left

    monkeypatch.setattr(report_module, "atomic_write_text", real)
    again = tunelab.evaluate(run, data)
    assert again["n"] == len(frame) and Path(again["report"]) == folder / "report.html"
    assert json.loads((folder / "metrics.json").read_text(encoding="utf-8"))["n"] == len(frame)
    assert f"{len(frame)}" in (folder / "report.md").read_text(encoding="utf-8")


def test_moving_in_a_report_without_mistakes_removes_the_earlier_mistakes_csv(tmp_path: Path) -> None:
    from tunelab.evaluate.on_run import _move_in

    stage, target = tmp_path / "stage", tmp_path / "target"
    (stage / "plots").mkdir(parents=True)
    target.mkdir()
    (stage / "metrics.json").write_text("{}", encoding="utf-8")
    (stage / "plots" / "a.png").write_bytes(b"png")
    (target / "mistakes.csv").write_text("old", encoding="utf-8")
    written = _move_in(stage, target, {"a.png": stage / "plots" / "a.png"})
    assert written == {"a.png": target / "plots" / "a.png"}
    assert not (target / "mistakes.csv").exists()
    assert (target / "plots" / "a.png").read_bytes() == b"png" and (target / "metrics.json").is_file()
    (stage / "mistakes.csv").write_text("new", encoding="utf-8")  # found some: they replace the old ones
    (stage / "metrics.json").write_text("{}", encoding="utf-8")
    _move_in(stage, target, {})
    assert (target / "mistakes.csv").read_text(encoding="utf-8") == "new"
