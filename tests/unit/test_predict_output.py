"""``tunelab predict --input X --output Y``: CSV, TSV, JSONL or Parquet by Y's extension, the input's columns
kept beside the prediction, no silent overwrite, atomic writes; and ``tunelab eval`` report folders of
files with the same stem kept apart.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.errors import DataError


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("output-runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=out", epochs=2)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture
def tickets(tmp_path: Path) -> Path:
    """A labelled file with an id, a free column and an empty text (dropped: row 3 leaves a gap)."""
    source = tmp_path / "tickets.csv"
    pd.DataFrame(
        {
            "id": ["t1", "t2", "t3", "t4"],
            "text": ["football match with my team", "pizza and cheese for dinner", "", "snow and cold wind"],
            "label": ["sports", "food", "food", "weather"],
            "channel": ["mail", "chat", "chat", "phone"],
        }
    ).to_csv(source, index=False)
    return source


def _predict(run: Path, source: Path, target: Path, *extra: str) -> int:
    return main(["predict", str(run), "--input", str(source), "--output", str(target), *extra])


def _one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_tables_keep_the_input_columns_beside_label_score_and_top_k(
    run: Path, tickets: Path, tmp_path: Path, suffix: str
) -> None:
    target = tmp_path / f"predictions{suffix}"
    assert _predict(run, tickets, target) == 0
    if suffix == ".parquet":
        table = pd.read_parquet(target)
    else:
        table = pd.read_csv(target, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False)
    assert table["id"].tolist() == ["t1", "t2", "t4"]
    assert table["channel"].tolist() == ["mail", "chat", "phone"]
    assert table["row"].tolist() == [1, 2, 4]
    # The file's own label column is kept, renamed: "label" is the prediction.
    assert table["label_input"].tolist() == ["sports", "food", "weather"]
    assert table["label"].tolist() == ["sports", "food", "weather"]
    for rank in (1, 2, 3):
        assert {f"top_{rank}_label", f"top_{rank}_score"} <= set(table.columns)
    assert table["top_1_label"].tolist() == table["label"].tolist()
    assert table["score"].tolist() == pytest.approx(table["top_1_score"].tolist())
    assert all(0 < s <= 1 for s in table["score"])


def test_jsonl_keeps_the_input_columns_and_the_nested_top_k(run: Path, tickets: Path, tmp_path: Path) -> None:
    target = tmp_path / "predictions.jsonl"
    assert _predict(run, tickets, target, "--top-k", "2") == 0
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["channel"], r["label_input"], r["row"]) for r in rows] == [
        ("t1", "mail", "sports", 1),
        ("t2", "chat", "food", 2),
        ("t4", "phone", "weather", 4),
    ]
    assert all(len(r["top_k"]) == 2 and r["top_k"][0]["label"] == r["label"] for r in rows)


def test_formats_agree(run: Path, tickets: Path, tmp_path: Path) -> None:
    predictor = tunelab.load(run)
    for suffix in (".jsonl", ".csv", ".parquet"):
        assert tunelab.predict_file(predictor, tickets, tmp_path / f"p{suffix}") == 3
    jsonl = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    csv, parquet = pd.read_csv(tmp_path / "p.csv"), pd.read_parquet(tmp_path / "p.parquet")
    assert csv["label"].tolist() == parquet["label"].tolist() == [r["label"] for r in jsonl]
    assert csv["top_2_label"].tolist() == [r["top_k"][1]["label"] for r in jsonl]
    assert parquet["top_3_score"].tolist() == pytest.approx([r["top_k"][2]["score"] for r in jsonl])


@pytest.mark.parametrize("name", ["predictions.txt", "predictions.xlsx", "predictions"])
def test_an_unknown_output_extension_is_one_line_before_loading(
    tickets: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The run does not exist: the output is checked first, so no model is loaded for nothing.
    assert _predict(tmp_path / "no-run", tickets, tmp_path / name) == 2
    _one_error_line(capsys.readouterr().err, name, ".csv", ".jsonl", ".parquet")
    assert not (tmp_path / name).exists()


def test_an_existing_output_is_kept_unless_overwrite(
    run: Path, tickets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "predictions.csv"
    target.write_text("precious,results\n", encoding="utf-8")
    assert _predict(run, tickets, target) == 2
    _one_error_line(capsys.readouterr().err, str(target), "exists", "--overwrite")
    assert target.read_text(encoding="utf-8") == "precious,results\n"
    assert _predict(run, tickets, target, "--overwrite") == 0
    assert pd.read_csv(target)["id"].tolist() == ["t1", "t2", "t4"]
    with pytest.raises(DataError, match="exists"):
        tunelab.predict_file(tunelab.load(run), tickets, target)


def test_the_input_file_is_never_the_output_even_with_overwrite(
    run: Path, tickets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--overwrite replaced the input by its predictions: rows dropped for an empty text were gone."""
    before = tickets.read_bytes()
    assert _predict(run, tickets, tickets, "--overwrite") == 2
    _one_error_line(capsys.readouterr().err, "is the --input file")
    assert tickets.read_bytes() == before


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    run: Path, tickets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "predictions.parquet"
    target.write_bytes(b"old")

    def disk_full(self: pd.DataFrame, buffer: Any, **kwargs: Any) -> None:
        buffer.write(b"PAR1 half")
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    with pytest.raises(OSError, match="No space"):
        tunelab.predict_file(tunelab.load(run), tickets, target, overwrite=True)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.parquet", "tickets.csv"]


def test_output_without_input_is_refused(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(run), "a text", "--output", str(tmp_path / "p.csv")]) == 2
    _one_error_line(capsys.readouterr().err, "--output goes with --input")


# -- eval report folders --------------------------------------------------------------------------


def test_eval_reports_of_files_with_the_same_stem_never_overwrite_each_other(
    run: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    rows = pd.read_csv(labelled_csvs[1])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = tmp_path / "a" / "test.csv", tmp_path / "b" / "test.csv"
    rows.iloc[:10].to_csv(a, index=False)
    rows.iloc[10:].to_csv(b, index=False)
    report_a = Path(tunelab.evaluate(run, a)["report"]).parent
    report_b = Path(tunelab.evaluate(run, b)["report"]).parent
    assert report_a != report_b
    assert (report_a.name, report_b.name) == ("test", "test-2")
    n = {p: json.loads((p / "metrics.json").read_text(encoding="utf-8"))["n"] for p in (report_a, report_b)}
    assert n == {report_a: 10, report_b: len(rows) - 10}
    # The same file again goes to its own folder, not a third one.
    assert Path(tunelab.evaluate(run, a)["report"]).parent == report_a
    assert sorted(p.name for p in (run / "evals").iterdir()) == ["test", "test-2"]


def test_rescoring_a_predictions_file_keeps_every_old_column_as_input(
    run: Path, tickets: Path, tmp_path: Path
) -> None:
    """Review 13 #4: an earlier file's top_N_* were overwritten, or kept under the new names."""
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    assert _predict(run, tickets, first, "--top-k", "3") == 0
    assert _predict(run, first, second, "--top-k", "1") == 0
    old = pd.read_csv(first, keep_default_na=False)
    new = pd.read_csv(second, keep_default_na=False)
    # only this prediction's top-1 under the output names; the old top-3 all kept as *_input
    assert not {"top_2_label", "top_2_score", "top_3_label", "top_3_score"} & set(new.columns)
    for rank in (1, 2, 3):
        for part in ("label", "score"):
            assert new[f"top_{rank}_{part}_input"].tolist() == old[f"top_{rank}_{part}"].tolist()
    assert new["top_1_label"].tolist() == new["label"].tolist()
    # "label_input" was taken by the first file's own input column: nothing is overwritten
    assert new["label_input"].tolist() == ["sports", "food", "weather"]
    assert new["label_input_input"].tolist() == old["label"].tolist()
    assert new["row_input"].tolist() == [1, 2, 4] and new["row"].tolist() == [1, 2, 3]


# -- the input's columns keep their types ---------------------------------------------------------

TEXTS = ["football match with my team", "pizza and cheese for dinner", "", "snow and cold wind"]


@pytest.fixture
def typed_parquet(tmp_path: Path) -> Path:
    """Beside the text: an int id, a float and an int with a null, a bool, a timestamp, a list, a
    nullable string, and a ``label`` of ints (kept as label_input); row 3's empty text is dropped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "typed.parquet"
    table = pa.table(
        {
            "id": pa.array([7, 8, 9, 10], pa.int32()),
            "text": TEXTS,
            "weight": pa.array([0.5, None, 1.25, 2.0], pa.float64()),
            "count": pa.array([1, None, 3, 4], pa.int64()),
            "flag": pa.array([True, False, None, None], pa.bool_()),
            "seen": pa.array(
                [datetime(2024, 1, 2, 3, 4, 5), None, None, datetime(2024, 5, 6)], pa.timestamp("us")
            ),
            "tags": pa.array([["a", "b"], [], None, None], pa.list_(pa.string())),
            "note": pa.array([None, "x", "y", None], pa.string()),
            "label": pa.array([0, 1, 1, 2], pa.int64()),
        }
    )
    pq.write_table(table, source)
    return source


def test_parquet_columns_keep_their_parquet_types_and_nulls(
    run: Path, typed_parquet: Path, tmp_path: Path
) -> None:
    """Every cell came back as text: 7 as "7", a null as "", a list as JSON text."""
    import pyarrow.parquet as pq

    target = tmp_path / "predictions.parquet"
    assert _predict(run, typed_parquet, target) == 0
    written = pq.read_table(target)
    given = pq.read_schema(typed_parquet)
    for name in ("id", "weight", "count", "flag", "seen", "tags", "note"):
        assert written.schema.field(name).type == given.field(name).type, name
    assert written.schema.field("label_input").type == given.field("label").type
    rows = written.to_pylist()
    assert [r["row"] for r in rows] == [1, 2, 4]
    assert [r["id"] for r in rows] == [7, 8, 10]
    assert [r["weight"] for r in rows] == [0.5, None, 2.0]
    assert [r["count"] for r in rows] == [1, None, 4]
    assert [r["flag"] for r in rows] == [True, False, None]
    assert [r["seen"] for r in rows] == [datetime(2024, 1, 2, 3, 4, 5), None, datetime(2024, 5, 6)]
    assert [r["tags"] for r in rows] == [["a", "b"], [], None]
    assert [r["note"] for r in rows] == [None, "x", None]
    assert [r["label_input"] for r in rows] == [0, 1, 2]
    assert [r["text"] for r in rows] == [TEXTS[0], TEXTS[1], TEXTS[3]]  # the model's text, as text


def test_parquet_columns_keep_their_types_in_jsonl(run: Path, typed_parquet: Path, tmp_path: Path) -> None:
    target = tmp_path / "predictions.jsonl"
    assert _predict(run, typed_parquet, target) == 0
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [(r["row"], r["id"], r["weight"], r["count"], r["flag"]) for r in rows] == [
        (1, 7, 0.5, 1, True),
        (2, 8, None, None, False),
        (4, 10, 2.0, 4, None),
    ]
    assert [(r["tags"], r["note"], r["label_input"]) for r in rows] == [
        (["a", "b"], None, 0),
        ([], "x", 1),
        (None, None, 2),
    ]
    assert [r["seen"] for r in rows] == ["2024-01-02 03:04:05", None, "2024-05-06 00:00:00"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_json_columns_keep_their_json_types(run: Path, tmp_path: Path, suffix: str) -> None:
    """JSON lines (a blank line counted in "row") or a JSON array: numbers, booleans, nulls, a key
    a line lacks (null), lists and objects come back as they were, not as "7", "True", ""."""
    records = [
        {
            "id": 7,
            "text": TEXTS[0],
            "weight": 0.5,
            "flag": True,
            "tags": ["a", 1],
            "meta": {"k": 1},
            "note": None,
        },
        {"id": 8, "text": TEXTS[1], "weight": None, "flag": False, "tags": [], "meta": None, "note": "x"},
        {"id": 9, "text": TEXTS[2], "weight": 1.25, "flag": None, "tags": None, "meta": {}, "note": "y"},
        {"id": 10, "text": TEXTS[3], "flag": True, "tags": ["c"], "meta": {"k": [1, 2]}},
    ]
    source = tmp_path / f"typed{suffix}"
    if suffix == ".jsonl":
        lines = [json.dumps(r) for r in records]
        source.write_text("\n".join([*lines[:2], "", *lines[2:]]) + "\n", encoding="utf-8")
        numbers = [1, 2, 5]
    else:
        source.write_text(json.dumps(records), encoding="utf-8")
        numbers = [1, 2, 4]
    target = tmp_path / "predictions.jsonl"
    assert _predict(run, source, target) == 0
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    kept = [records[0], records[1], records[3]]
    assert [r["row"] for r in rows] == numbers
    for name in ("id", "weight", "flag", "tags", "meta", "note"):
        assert [r[name] for r in rows] == [k.get(name) for k in kept], name

    table = tmp_path / "predictions.parquet"
    assert _predict(run, source, table) == 0
    written = pd.read_parquet(table)
    assert written["id"].tolist() == [7, 8, 10] and written["id"].dtype == "int64"
    assert written["weight"].tolist()[0] == 0.5 and written["weight"].isna().tolist() == [False, True, True]
    assert written["flag"].tolist() == [True, False, True]
    # Objects, and a list mixing text and numbers, fit no one Parquet type: JSON text, as before.
    assert written["meta"].tolist()[0::2] == ['{"k": 1}', '{"k": [1, 2]}'] and pd.isna(written["meta"][1])
    assert written["tags"].tolist() == ['["a", 1]', "[]", '["c"]']


def test_csv_columns_stay_text_and_a_null_is_an_empty_cell(
    run: Path, typed_parquet: Path, tmp_path: Path
) -> None:
    """CSV cells are text, never re-typed ("007" keeps its zeros, "NA" is a text); a Parquet null
    written to CSV is an empty cell, not "nan" or "None", and an int 7 stays "7", not "7.0"."""
    source = tmp_path / "ids.csv"
    source.write_text(
        "id,text,note\n007,football match with my team,\n008,,x\n010,snow and cold wind,NA\n",
        encoding="utf-8",
    )
    target = tmp_path / "predictions.csv"
    assert _predict(run, source, target) == 0
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id,text,note,row,")
    assert [line.split(",")[:4] for line in lines[1:]] == [
        ["007", "football match with my team", "", "1"],
        ["010", "snow and cold wind", "NA", "3"],
    ]
    from_parquet = tmp_path / "from-parquet.csv"
    assert _predict(run, typed_parquet, from_parquet) == 0
    table = pd.read_csv(from_parquet, dtype=str, keep_default_na=False)
    assert table["id"].tolist() == ["7", "8", "10"]
    assert table["count"].tolist() == ["1", "", "4"]
    assert table["note"].tolist() == ["", "x", ""]
    assert table["flag"].tolist() == ["True", "False", ""]
    assert table["tags"].tolist() == ['["a", "b"]', "[]", ""]


def test_predict_on_a_path_keeps_an_int_column_with_a_null_as_ints(run: Path, tmp_path: Path) -> None:
    """Predictor.predict(Path) built a plain DataFrame of the records: an id of 7 beside a null came
    back 7.0 and NaN, where the CLI writes 7 and an empty cell."""
    source = tmp_path / "ids.jsonl"
    rows = [{"id": 7, "text": TEXTS[0]}, {"id": None, "text": TEXTS[1]}]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    frame = tunelab.load(run).predict(source)
    assert frame["id"].tolist() == [7, None]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_parquet_files_named_index_is_kept_as_a_column(run: Path, tmp_path: Path, suffix: str) -> None:
    """df.set_index("ticket_id").to_parquet(): pandas read ticket_id back as the index, which
    read_table replaced with row numbers, so the ids never reached the output."""
    source = tmp_path / "indexed.parquet"
    ids = [101, 205, 307, 412]
    frame = pd.DataFrame({"ticket_id": ids, "text": TEXTS, "channel": ["mail", "chat", "chat", "web"]})
    frame.set_index("ticket_id").to_parquet(source)
    target = tmp_path / f"predictions{suffix}"
    assert tunelab.predict_file(tunelab.load(run), source, target) == 3
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
        assert [(r["ticket_id"], r["row"], r["channel"]) for r in rows] == [
            (101, 1, "mail"),
            (205, 2, "chat"),
            (412, 4, "web"),
        ]
    elif suffix == ".csv":
        written = pd.read_csv(target, dtype=str, keep_default_na=False)
        assert written["ticket_id"].tolist() == ["101", "205", "412"]
    else:
        written = pd.read_parquet(target)
        assert written["ticket_id"].tolist() == [101, 205, 412] and written["row"].tolist() == [1, 2, 4]
    assert tunelab.load(run).predict(source)["ticket_id"].tolist() == [101, 205, 412]


@pytest.mark.parametrize("ids", [[7, 8, 9, 10], [10, 8, 6, 4]])
@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_parquet_files_named_range_index_is_kept_as_numbers(
    run: Path, tmp_path: Path, suffix: str, ids: list[int]
) -> None:
    """Evenly spaced ids (7, 8, 9, 10) under df.set_index("ticket_id") are saved as a range in the
    file's pandas metadata, not as a column: the typed reread found no ticket_id and wrote nulls."""
    source = tmp_path / "ranged.parquet"
    pd.DataFrame({"ticket_id": ids, "text": TEXTS}).set_index("ticket_id").to_parquet(source)
    kept = [ids[0], ids[1], ids[3]]  # row 3's empty text is dropped
    target = tmp_path / f"predictions{suffix}"
    assert tunelab.predict_file(tunelab.load(run), source, target) == 3
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
        assert [(r["ticket_id"], r["row"]) for r in rows] == list(zip(kept, [1, 2, 4], strict=True))
    else:
        written = pd.read_parquet(target)
        assert written["ticket_id"].tolist() == kept and written["row"].tolist() == [1, 2, 4]
        assert pd.api.types.is_integer_dtype(written["ticket_id"])
    assert tunelab.load(run).predict(source)["ticket_id"].tolist() == kept
