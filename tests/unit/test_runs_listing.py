"""``tunelab runs`` / ``tunelab.list_runs``: artifacts with format and export time, unfinished runs with
their data, and a missing folder said plainly.

The folders are written by hand with the files train and export write (run.json, config.json, the
export marker), so these tests need no model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.errors import RunError
from tunelab.runs import EXPORT_MARKER


def _write(folder: Path, *, run: dict | None = None, config: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    if run is not None:
        (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


FINISHED = {
    "name": "tickets",
    "status": "finished",
    "finished_at": "2026-11-30T10:15:00+00:00",
    "model": "minilm-l6",
    "method": "lora",
    "data": {"train": "data/tickets.csv", "dev": None, "test": None},
    "headline": {"dev": {"accuracy": 0.9, "macro_f1": 0.88}},
}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    config = {"data": {"train": "data/tickets.csv"}}
    _write(root / "tickets", run=FINISHED, config=config)
    # tunelab export copies the source's run.json and adds format, source_run and export.created_at.
    exported = {
        **FINISHED,
        "name": "tickets-onnx-int8",
        "format": "onnx-int8",
        "source_run": str(root / "tickets"),
        "export": {"format": "onnx-int8", "created_at": "2026-12-01T08:30:00+00:00"},
    }
    _write(root / "tickets-onnx-int8", run=exported, config=config)
    # A killed run: run.json written when training began names no data; config.json does.
    started = {"name": "big", "status": "training", "model": "minilm-l6", "method": "full"}
    _write(root / "big.partial", run=started, config={"data": {"train": "data/big.csv", "dev": "d.csv"}})
    # A killed export, before it wrote its run.json.
    (_write(root / "tickets-onnx.partial", config=config) / EXPORT_MARKER).write_text("x", encoding="utf-8")
    return root


def _rows(out: str) -> dict[str, list[str]]:
    lines = out.strip().splitlines()
    headers = lines[0]
    # Columns are aligned under their headers: cut each line where the header's columns start.
    names = headers.split()
    names = [*names[:5], "train data", "dev acc", "test acc", "macro F1", "finished/exported (UTC)"]
    starts = [headers.index(n) for n in names]
    ends = [*starts[1:], None]
    return {
        line[: starts[1]].strip(): [line[s:e].strip() for s, e in zip(starts, ends, strict=True)]
        for line in lines[2:]
    }


def test_runs_lists_artifacts_with_format_and_export_time(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--dir", str(runs)]) == 0
    rows = _rows(capsys.readouterr().out)
    run, artifact = rows["tickets"], rows["tickets-onnx-int8"]
    assert (run[1], run[4], run[9]) == ("finished", "torch", "2026-11-30 10:15")
    # Not the source run's finish time: when the artifact was exported.
    assert (artifact[1], artifact[4], artifact[9]) == ("exported", "onnx-int8", "2026-12-01 08:30")
    assert artifact[5] == "data/tickets.csv"


def test_runs_lists_unfinished_runs_with_their_data(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--dir", str(runs)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["big.partial"][1:6] == ["unfinished", "minilm-l6", "full", "torch", "data/big.csv"]
    export = rows["tickets-onnx.partial"]
    assert export[1] == "unfinished" and export[5] == "data/tickets.csv"


def test_list_runs_api_says_what_each_folder_is(runs: Path) -> None:
    infos = {i.path.name: i for i in tunelab.list_runs(runs)}
    assert set(infos) == {"tickets", "tickets-onnx-int8", "big.partial", "tickets-onnx.partial"}
    assert (infos["tickets"].kind, infos["tickets"].format) == ("run", "torch")
    assert (infos["tickets-onnx-int8"].kind, infos["tickets-onnx-int8"].format) == ("export", "onnx-int8")
    assert infos["tickets-onnx-int8"].when == "2026-12-01T08:30:00+00:00"
    assert infos["big.partial"].data == {"train": "data/big.csv", "dev": "d.csv", "test": None}
    assert infos["big.partial"].when is None
    assert infos["tickets-onnx.partial"].kind == "export"


def test_runs_on_a_missing_folder_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope: no such folder" in err[0]
    with pytest.raises(RunError, match="no such folder"):
        tunelab.list_runs(tmp_path / "nope")


def test_runs_in_an_empty_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--dir", str(tmp_path)]) == 0
    assert "no runs in" in capsys.readouterr().out


def test_an_ensemble_is_listed_as_one_with_its_build_time(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Review 13 #6: it was "exported" with no date (its run.json says format: ensemble)."""
    members = [{"path": f"weights/m{i}", "source": f"runs/m{i}", "temperature": 1.0} for i in (1, 2)]
    built = {
        **FINISHED,
        "name": "m12",
        "format": "ensemble",
        "method": "ensemble",
        "finished_at": "2026-12-02T09:45:00+00:00",
        "members": members,
    }
    _write(runs / "m12", run=built, config={"data": {"train": "data/tickets.csv"}})
    info = {i.path.name: i for i in tunelab.list_runs(runs)}["m12"]
    assert (info.kind, info.status, info.format) == ("ensemble", "finished", "ensemble")
    assert info.when == "2026-12-02T09:45:00+00:00"
    assert main(["runs", "--dir", str(runs)]) == 0
    row = _rows(capsys.readouterr().out)["m12"]
    assert (row[1], row[3], row[4], row[9]) == (
        "finished",
        "ensemble of 2 runs",
        "ensemble",
        "2026-12-02 09:45",
    )


def test_a_folder_renamed_while_listing_is_skipped(
    runs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A training finishing mid-listing renames big.partial to big: no FileNotFoundError traceback."""
    from tunelab.runs.folder import RunFolder

    read = RunFolder.read_summary

    def finish_while_read(self: RunFolder) -> dict:
        summary = read(self)
        if self.root.name == "big.partial":
            self.root.rename(self.root.with_name("big"))
        return summary

    monkeypatch.setattr(RunFolder, "read_summary", finish_while_read)
    names = {i.path.name for i in tunelab.list_runs(runs)}
    assert "big.partial" not in names and {"tickets", "tickets-onnx-int8"} <= names
    (runs / "big").rename(runs / "big.partial")
    assert main(["runs", "--dir", str(runs)]) == 0
    assert "big.partial" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "damage",
    ["finished_at", "export", "config_not_utf8"],
)
def test_one_damaged_run_folder_does_not_hide_the_others(
    runs: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run.json with a number for finished_at (TypeError), a string for export
    (AttributeError), or an unfinished run's config.json not in UTF-8 (UnicodeDecodeError) failed
    the whole listing."""
    if damage == "finished_at":
        _write(runs / "odd", run={**FINISHED, "finished_at": 1700000000}, config={"data": {}})
    elif damage == "export":
        _write(runs / "odd", run={**FINISHED, "export": "onnx"}, config={"data": {}})
    else:
        (_write(runs / "odd.partial") / "config.json").write_bytes(b'{"data": {"train": "caf\xe9.csv"}}')
    assert main(["runs", "--dir", str(runs)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert "tickets" in rows and ("odd" in rows or "odd.partial" in rows)


@pytest.mark.parametrize("run_json", [None, "{not json", "[]"], ids=["missing", "cut-short", "a-list"])
def test_a_run_folder_without_a_readable_run_json_is_listed_as_damaged(
    runs: Path, run_json: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was listed as "finished", like a run that trained to the end."""
    folder = _write(runs / "odd", config={"data": {"train": "x.csv"}})
    if run_json is not None:
        (folder / "run.json").write_text(run_json, encoding="utf-8")
    assert main(["runs", "--dir", str(runs)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["odd"][1] == "damaged" and rows["tickets"][1] == "finished"


def test_a_score_from_dev_is_marked_and_one_from_test_is_not(
    runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The macro F1, entity F1 and score columns show test where the run has it, else dev: the dev
    value was shown unmarked, read as test beside the explicit "dev acc" / "test acc" columns."""
    tested = {**FINISHED, "name": "tested"}
    tested["headline"] = {**FINISHED["headline"], "test": {"accuracy": 0.8, "macro_f1": 0.77}}
    _write(runs / "tested", run=tested, config={"data": {}})
    ner = {"name": "ner", "status": "finished", "task": "ner", "model": "m", "method": "full"}
    _write(runs / "ner", run={**ner, "headline": {"dev": {"entity_f1": 0.5}}}, config={"data": {}})
    # A plug-in task's own metric, under "score" (its task is not registered here).
    toy = {**ner, "task": "nope", "headline": {"dev": {"toy_acc": 0.5}}, "best_dev_metric": {"toy_acc": 0.5}}
    _write(runs / "toy", run=toy, config={"data": {}})
    assert main(["runs", "--dir", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], {line.split()[0]: line for line in lines[2:]}

    def cell(run: str, column: str) -> str:
        return rows[run][header.index(column) :].split("  ")[0].strip()

    assert cell("tickets", "macro F1") == "88.00% (dev)"  # FINISHED has dev scores only
    assert cell("tested", "macro F1") == "77.00%"
    assert cell("ner", "entity F1") == "50.00% (dev)"
    assert cell("toy", "score") == "toy_acc 50.00% (dev)"


def test_a_merged_run_shows_what_was_merged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A merged run's method showed as plain "full", read as a run trained that way."""
    root = tmp_path / "runs"
    merged = {
        **FINISHED,
        "name": "lora-merged",
        "method": "full",
        "merged_from": {"run": "runs/lora", "method": "lora"},
    }
    _write(root / "lora-merged", run=merged, config={"data": {"train": "data/tickets.csv"}})
    _write(root / "tickets", run=FINISHED, config={"data": {"train": "data/tickets.csv"}})
    assert main(["runs", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "full (merged lora)" in out
    plain = next(line for line in out.splitlines() if line.startswith("tickets "))
    assert plain.split()[3] == FINISHED["method"]  # a run not merged shows its method as before
