"""``predict --input`` predicts and writes the file a chunk at a time (``CHUNK_ROWS`` rows):
the output is what the whole file gave (every format, column, type and row number), the predictor
never sees more than a chunk, errors name the row of the file, and a failure in a later chunk leaves
no output; ``batched_outputs`` fills one array instead of padding copies of the whole set.
"""

from __future__ import annotations

import io
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

import tunelab
from tunelab.cli.main import main
from tunelab.errors import DataError
from tunelab.inference import files
from tunelab.inference.predictor import Predictor

WORDS = ["football", "match", "pizza", "cheese", "snow", "wind", "team", "soup"]


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory) -> Path:
    train, _ = labelled_csvs
    out = tmp_path_factory.mktemp("chunked-runs")
    overrides = tiny_overrides(tiny_bert, train, None, out, "name=chunked", epochs=1)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def predictor(run: Path) -> Predictor:
    return tunelab.load(run)


def _texts(n: int) -> list[str]:
    """``n`` texts of different lengths (so batches differ), some empty (dropped rows)."""
    texts = [" ".join(WORDS[: 1 + i % len(WORDS)]) + f" n{i}" for i in range(n)]
    texts[2] = ""  # dropped in the first chunk of three
    texts[10] = "   "  # and in the fourth
    texts[4] = "  spaces around  "
    return texts


def _inputs(folder: Path) -> dict[str, Path]:
    """One input of 14 rows per readable format, with columns whose types change down the file."""
    n = 14
    texts = _texts(n)
    frame = pd.DataFrame({"id": [f"t{i}" for i in range(n)], "text": texts, "label": ["food"] * n})
    made = {"csv": folder / "in.csv", "tsv": folder / "in.tsv", "xlsx": folder / "in.xlsx"}
    frame.to_csv(made["csv"], index=False)
    frame.to_csv(made["tsv"], index=False, sep="\t")
    frame.to_excel(made["xlsx"], index=False)
    lines = []
    for i, text in enumerate(texts):
        record: dict[str, Any] = {"text": text, "id": i if i < 9 else f"x{i}"}  # ints, then text
        if i >= 7:
            record["late"] = {"k": i}  # a column first seen in the third chunk, a JSON object
        if i == 12:
            record["score"] = 0.5  # a prediction field's name: kept as score_input
        record["maybe"] = None if i < 6 else i  # null only in the first chunks, then ints
        lines.append(json.dumps(record))
    lines.insert(5, "")  # a blank line: JSON lines rows are line numbers
    made["jsonl"] = folder / "in.jsonl"
    made["jsonl"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    made["json"] = folder / "in.json"  # one JSON array: read whole, predicted in chunks
    made["json"].write_text(json.dumps([{"text": t, "n": i} for i, t in enumerate(texts)]), encoding="utf-8")
    typed = pd.DataFrame(
        {
            "text": texts,
            "n": pd.array([None if i % 5 == 0 else i for i in range(n)], dtype="Int64"),
            "tags": [["a", str(i)] for i in range(n)],
        }
    )
    made["parquet"] = folder / "in.parquet"  # a RangeIndex pandas stores as metadata only
    typed.set_index(pd.RangeIndex(7, 7 + 2 * n, 2, name="ticket_id")).to_parquet(
        made["parquet"], row_group_size=4
    )
    made["named.parquet"] = folder / "named.parquet"  # an index stored as a column
    typed.assign(key=[f"k{i}" for i in range(n)]).set_index("key").to_parquet(made["named.parquet"])
    return made


def _whole(
    predictor: Predictor, source: Path, target: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the file gave read as one chunk, written by ``write_predictions`` (the whole-table writer)."""
    with monkeypatch.context() as m:
        m.setattr(files, "CHUNK_ROWS", 1_000_000)
        records, types = files._records_and_input_types(predictor, source, 2, 1, None)
    files.write_predictions(records, target, fmt, types)


def _same_output(a: Path, b: Path) -> None:
    if a.suffix != ".parquet":
        assert a.read_bytes() == b.read_bytes()
        return
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.schema.remove_metadata() == tb.schema.remove_metadata()
    assert ta.equals(tb)
    assert json.loads(ta.schema.metadata[b"pandas"]) == json.loads(tb.schema.metadata[b"pandas"])
    pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_three_row_chunks_write_what_the_whole_file_gave(
    predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    # batch_size=1: a text's scores do not depend on which texts share its batch (padding)
    fmt = files.OUTPUT_FORMATS[suffix]
    for name, source in _inputs(tmp_path).items():
        expected = tmp_path / f"whole-{name}{suffix}"
        _whole(predictor, source, expected, fmt, monkeypatch)
        monkeypatch.setattr(files, "CHUNK_ROWS", 3)
        target = tmp_path / f"chunked-{name}{suffix}"
        assert tunelab.predict_file(predictor, source, target, top_k=2, batch_size=1) == 12, name
        _same_output(target, expected)
        monkeypatch.undo()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_the_api_frame_of_a_file_is_the_same_in_chunks(
    predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _inputs(tmp_path)["jsonl"]
    monkeypatch.setattr(files, "CHUNK_ROWS", 1_000_000)
    whole = predictor.predict(source, batch_size=1)
    monkeypatch.setattr(files, "CHUNK_ROWS", 3)
    chunked = predictor.predict(source, batch_size=1)
    pd.testing.assert_frame_equal(chunked, whole)
    # line 6 is blank; lines 3 and 12 hold empty texts
    assert chunked["row"].tolist() == [1, 2, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15]


def test_the_predictor_sees_one_chunk_at_a_time_and_rows_are_written_as_they_come(
    predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's 200,000 rows were tokenised and predicted whole, nothing written until the
    end: now each call gets CHUNK_ROWS of the kept texts (the last the rest), and earlier chunks are
    on disk (in the temporary file) before a later one is predicted."""
    source = _inputs(tmp_path)["csv"]
    target = tmp_path / "out" / "predictions.csv"
    monkeypatch.setattr(files, "CHUNK_ROWS", 3, raising=False)
    calls: list[int] = []
    written: list[int] = []
    real = Predictor.predict

    def spy(self: Predictor, texts: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(texts))
        written.append(sum(p.stat().st_size for p in target.parent.glob(".predictions.csv.*")))
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", spy)
    assert tunelab.predict_file(predictor, source, target, batch_size=1) == 12
    assert calls == [3, 3, 3, 3], calls  # 12 kept rows of 14
    assert written[0] == 0 and all(b > a for a, b in itertools.pairwise(written)), written
    table = pd.read_csv(target, keep_default_na=False)
    assert table["row"].tolist() == [1, 2, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14]  # in order, gaps kept
    assert table["id"].tolist() == [f"t{r - 1}" for r in table["row"]]


def _names_row(source: Path, target: Path, *options: str) -> str:
    with pytest.raises(DataError) as caught:
        tunelab.predict_file(
            tunelab.load(source.parent / "run"), source, target, options=list(options), overwrite=True
        )
    return str(caught.value)


@pytest.fixture
def later(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a link to the run, the old output, and chunks of three rows."""
    (tmp_path / "run").symlink_to(run)
    (tmp_path / "out.csv").write_text("old,results\n", encoding="utf-8")
    monkeypatch.setattr(files, "CHUNK_ROWS", 3)
    return tmp_path


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_bad_cell_in_the_third_chunk_is_named_by_its_line(later: Path) -> None:
    lines = [json.dumps({"text": t or "x"}) for t in _texts(12)]
    lines[7] = json.dumps({"text": ["a", "list"]})  # line 8: the third chunk
    source = later / "list.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    message = _names_row(source, later / "out.csv", "data.empty_text=drop")
    assert f"{source} row 8: column 'text' holds a list" in message
    assert (later / "out.csv").read_text(encoding="utf-8") == "old,results\n" and not _left(later)


def test_a_bad_record_in_the_third_chunk_is_named_by_its_line(later: Path) -> None:
    rows = ["id,text"] + [f"t{i},word {i}" for i in range(12)]
    rows[8] = "t7,word,one field too many"  # line 9 of the file
    source = later / "fields.csv"
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    message = _names_row(source, later / "new.csv")
    assert "line 9 has 3 fields where line 1 has 2" in message
    assert not (later / "new.csv").exists() and not _left(later)


def test_empty_text_as_an_error_names_the_first_row_and_counts_the_whole_file(later: Path) -> None:
    texts = [f"word {i}" for i in range(12)]
    texts[7] = texts[10] = ""  # rows 8 and 11: the third and fourth chunks
    source = later / "empty.csv"
    pd.DataFrame({"text": texts}).to_csv(source, index=False)
    message = _names_row(source, later / "new.jsonl", "data.empty_text=error")
    assert message.startswith(f"{source} row 8: empty text (2 rows in all)")
    assert not (later / "new.jsonl").exists() and not _left(later)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_failure_in_a_later_chunk_leaves_the_old_output_and_no_temporary(
    later: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    source = later / "in.csv"
    pd.DataFrame({"text": [f"word {i}" for i in range(12)]}).to_csv(source, index=False)
    target = later / f"out{suffix}"
    target.write_bytes(b"old")
    real, calls = Predictor.predict, []

    def fails_third(self: Predictor, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", fails_third)
    with pytest.raises(RuntimeError, match="killed"):
        tunelab.predict_file(tunelab.load(later / "run"), source, target, overwrite=True)
    assert target.read_bytes() == b"old" and not _left(later)


def test_a_text_refused_in_a_later_chunk_is_counted_over_the_file() -> None:
    class Refuses:
        def predict(self, texts: list[str], pairs: Any, **kwargs: Any) -> Any:
            raise DataError("text 2: empty or not a string; give non-empty texts")

    with pytest.raises(DataError, match=r"^text 8: empty or not a string"):
        files._predict_chunk(Refuses(), ["a", "b"], None, 3, 64, before=6)  # type: ignore[arg-type]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_counts_rows_on_a_terminal_and_q_hides_it(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _inputs(tmp_path)["jsonl"]
    monkeypatch.setattr(files, "CHUNK_ROWS", 5)
    shown = _Terminal()
    monkeypatch.setattr(sys, "stderr", shown)
    assert main(["predict", str(run), "--input", str(source), "--output", str(tmp_path / "a.csv")]) == 0
    assert "predict" in shown.getvalue() and "12/12" in shown.getvalue()  # rows predicted, of the 12
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main(["predict", str(run), "--input", str(source), "--output", str(tmp_path / "b.csv"), "-q"]) == 0
    assert quiet.getvalue() == ""
    assert "wrote 12 predictions" in capsys.readouterr().out


# -- batched_outputs: one array, filled batch by batch ----------------------------------------------


def _padded_then_stacked(fn: Any, enc: Any, batch_size: int) -> np.ndarray:
    """The former ``batched_outputs``: every batch padded to the widest, stacked, then reordered."""
    from tunelab.data.encoding import collate, inference_batches

    chunks, order = [], []
    for idx in inference_batches(enc.lengths, batch_size):
        chunks.append(fn(**collate(enc, idx)).float().numpy())
        order.extend(idx)
    if chunks[0].ndim == 3:
        width = max(c.shape[1] for c in chunks)
        chunks = [np.pad(c, ((0, 0), (0, width - c.shape[1]), (0, 0))) for c in chunks]
    stacked = np.concatenate(chunks)
    out = np.empty_like(stacked)
    out[np.asarray(order)] = stacked
    return out


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_batched_outputs_are_those_of_padding_every_batch(batch_size: int) -> None:
    from tunelab.data.encoding import Encoded
    from tunelab.inference.forward import batched_outputs

    rng = np.random.default_rng(0)
    ids = [[int(t) for t in rng.integers(1, 50, int(rng.integers(1, 12)))] for _ in range(30)]
    ids[17] = list(range(1, 49))  # one long example sets the width for all
    enc = Encoded(input_ids=ids, token_type_ids=None, labels=None, pad_id=0)
    weights = torch.randn(50, 5)
    fns = {
        "per token": lambda input_ids, attention_mask, **_: weights[input_ids] * attention_mask[..., None],
        "pooled": lambda input_ids, attention_mask, **_: (weights[input_ids] * attention_mask[..., None]).sum(
            1
        ),
        "fewer positions": lambda input_ids, **_: weights[input_ids][:, :3],
        "more positions": lambda input_ids, **_: torch.cat([weights[input_ids], weights[input_ids]], 1),
    }
    for name, fn in fns.items():
        expected = _padded_then_stacked(fn, enc, batch_size)
        got = batched_outputs(fn, enc, batch_size=batch_size)
        assert got.shape == expected.shape and got.dtype == expected.dtype, name
        assert np.array_equal(got, expected) and got.flags.c_contiguous, name
