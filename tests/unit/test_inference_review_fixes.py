"""Review fixes in predict, eval and ensemble on tiny runs: outputs under a file, an explicit text
column that the file lacks, pair runs whose second columns are named differently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.ensembling import ensemble


@pytest.fixture(scope="module")
def run(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    return tunelab.train(None, overrides=tiny_overrides(tiny_bert, train, test, out, "name=r", epochs=1),
                         show_progress=False).run_dir  # fmt: skip


def test_predict_output_under_a_file_is_one_line_before_predicting(run: Path, tmp_path: Path, capsys) -> None:
    """It ended in 'unexpected FileExistsError' after every prediction was made."""
    (tmp_path / "empty.csv").write_text("")
    source = tmp_path / "in.csv"
    pd.DataFrame({"text": ["football", "pizza"]}).to_csv(source, index=False)
    code = main(
        ["predict", str(run), "--input", str(source), "--output", str(tmp_path / "empty.csv" / "x.csv")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err and "unexpected" not in err


def test_eval_out_under_a_file_is_one_line(run: Path, labelled_csvs, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.csv").write_text("")
    code = main(
        ["eval", str(run), "--data", str(labelled_csvs[1]), "--out", str(tmp_path / "empty.csv" / "rep")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err and "unexpected" not in err


def test_an_explicit_text_column_the_file_lacks_is_refused_not_replaced_by_text(
    run: Path, tmp_path: Path, capsys
) -> None:
    """`data.text_column=bdoy` (a typo for body) predicted the `text` column without a word."""
    source = tmp_path / "two.csv"
    pd.DataFrame({"id": [1, 2], "text": ["football", "pizza"], "body": ["rain", "snow"]}).to_csv(
        source, index=False
    )
    out = tmp_path / "out.csv"
    code = main(["predict", str(run), "--input", str(source), "data.text_column=bdoy", "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "bdoy" in err and not out.exists()
    assert (
        main(["predict", str(run), "--input", str(source), "data.text_column=body", "--output", str(out)])
        == 0
    )
    assert list(pd.read_csv(out)["text"]) == ["rain", "snow"]
    # without data.text_column a file with a `text` column still works with any run
    assert main(["predict", str(run), "--input", str(source), "--output", str(out), "--overwrite"]) == 0
    assert list(pd.read_csv(out)["text"]) == ["football", "pizza"]


def test_pair_runs_whose_second_columns_differ_in_name_ensemble(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs, tmp_path: Path
) -> None:
    """They were refused as 'one takes text pairs, the other single texts'."""
    frame = pd.read_csv(labelled_csvs[0])
    runs = []
    for i, column in enumerate(("hypothesis", "sentence2")):
        data = tmp_path / f"pairs{i}.csv"
        pd.DataFrame({"text": frame["text"], column: [f"about {x}" for x in frame["label"]],
                      "label": frame["label"]}).to_csv(data, index=False)  # fmt: skip
        overrides = tiny_overrides(tiny_bert, data, None, tmp_path / "runs", f"name=p{i}",
                                   f"data.text_pair_column={column}", epochs=1)  # fmt: skip
        runs.append(tunelab.train(None, overrides=overrides, show_progress=False).run_dir)
    built = ensemble(runs, tmp_path / "pairs-ens", calibrate=False)
    got = tunelab.load(built.path).predict("football match", "about sports", top_k=3)
    members = [tunelab.load(r).predict("football match", "about sports", top_k=3) for r in runs]
    mean = {
        n: sum({t["label"]: t["score"] for t in m["top_k"]}[n] for m in members) / 2 for n in got_names(got)
    }
    assert {t["label"]: t["score"] for t in got["top_k"]} == pytest.approx(mean, abs=1e-5)


def got_names(result: dict[str, Any]) -> list[str]:
    return [t["label"] for t in result["top_k"]]
