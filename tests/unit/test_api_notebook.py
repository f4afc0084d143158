"""The Python API in a notebook: DataFrames (and ``datasets.Dataset``) for each split, a predictor that
takes a list, a DataFrame column or a file, ``tunelab.predict`` a function, ``dir(tunelab)`` the
public API only; and the README's notebook example, executed with a short-training override.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import tunelab
from tunelab.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def short(tiny_bert: Path, tiny_overrides):
    """``short(out)``: what makes a run take seconds (conftest's tiny run, one epoch, ``out``)."""
    return lambda out: tiny_overrides(tiny_bert, None, None, out, epochs=1)


@pytest.fixture(scope="module")
def frames(labelled_csvs: tuple[Path, Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, test = (pd.read_csv(p) for p in labelled_csvs)
    return train, test


@pytest.fixture(scope="module")
def frame_run(
    short,
    tiny_bert: Path,
    frames: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path_factory: pytest.TempPathFactory,
) -> tunelab.TrainResult:
    train, test = frames
    out = tmp_path_factory.mktemp("frame-runs")
    dev = train.iloc[:12]
    return tunelab.train(train=train.iloc[12:], dev=dev, test=test, overrides=short(out), show_progress=False)


# -- train on DataFrames ----------------------------------------------------------------------------


def test_train_takes_a_dataframe_for_each_split(
    frame_run: tunelab.TrainResult, frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = frames
    summary = frame_run.summary
    assert summary["rows"] == {"train": len(train) - 12, "dev": 12, "test": len(test)}
    assert set(frame_run.metrics) == {"dev", "test"}
    # The run names real files (resume and dev_split read them again), under <output_dir>/_frames/.
    config = json.loads((frame_run.run_dir / "config.json").read_text(encoding="utf-8"))
    for split in ("train", "dev", "test"):
        path = Path(config["data"][split])
        assert path.is_file() and path.parent == frame_run.run_dir.parent / "_frames"
    dev = tunelab.load(frame_run.run_dir).dev_split()
    assert dev is not None and dev.texts == train["text"].iloc[:12].tolist()


def test_the_same_frame_is_saved_once(
    tiny_bert: Path, frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    from tunelab.config import RunConfig
    from tunelab.train.frames import with_frames

    cfg = RunConfig.from_yaml(None, [f"output_dir={tmp_path}"])
    a = with_frames(cfg, {"train": frames[0], "dev": None, "test": None})
    b = with_frames(cfg, {"train": frames[0].copy(), "dev": None, "test": "other.csv"})
    assert a.data.train == b.data.train and b.data.test == "other.csv" and a.data.test is None
    assert len(list((tmp_path / "_frames").iterdir())) == 1


def test_a_dataframe_without_the_label_column_is_one_clear_error(
    short, tiny_bert: Path, frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    df = frames[0].rename(columns={"label": "category"})
    with pytest.raises(DataError, match=r"train DataFrame: columns \['text', 'category'\].*'label'"):
        tunelab.train(train=df, overrides=short(tmp_path), show_progress=False)
    # With the column named, it trains.
    overrides = [*short(tmp_path), "data.label_column=category", "train.epochs=0.2"]
    result = tunelab.train(train=df, overrides=overrides, show_progress=False)
    assert result.summary["rows"]["train"] > 0
    with pytest.raises(ConfigError, match="not data tunelab reads"):
        tunelab.train(train=[("a text", "a label")], overrides=short(tmp_path))


@pytest.mark.parametrize(
    ("split", "override"),
    [("train", "data.train={file}"), ("test", "data={{test: {file}}}"), ("dev", "data.dev={file}")],
)
def test_a_split_given_as_an_argument_and_as_an_override_is_refused(
    short, frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, split: str, override: str
) -> None:
    """``train(train=df, overrides=["data.train=new.csv"])`` trained on the frame and never read the
    file, without a word; nothing is written before the refusal."""
    file = tmp_path / "new.csv"
    frames[0].to_csv(file, index=False)
    out = tmp_path / "out"
    overrides = [*short(out), override.format(file=file)]
    with pytest.raises(ConfigError, match=rf"^data\.{split} is given twice: as {split}= and as the override"):
        tunelab.train(**{split: frames[0]}, overrides=overrides, show_progress=False)
    assert not (out / "_frames").exists()


class _FakeHFDataset:
    """What tunelab uses of ``datasets.Dataset`` (``to_pandas``), from a module named like it."""

    __module__ = "datasets.arrow_dataset"

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def to_pandas(self) -> pd.DataFrame:
        return self.frame


@pytest.mark.parametrize("real", [False, True], ids=["stand-in", "datasets"])
def test_train_takes_a_datasets_dataset(
    short, real: bool, tiny_bert: Path, frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    """``datasets`` is optional for users (not a tunelab dependency) and a dev dependency here, so the
    real class is always tested; the stand-in has the one method tunelab uses, from a module of the
    same name, for what a user without ``datasets`` passes."""
    if real:
        import datasets

        train = datasets.Dataset.from_pandas(frames[0])
    else:
        train = _FakeHFDataset(frames[0])
    overrides = [*short(tmp_path), "train.epochs=0.2"]
    result = tunelab.train(train=train, overrides=overrides, show_progress=False)
    assert result.summary["rows"]["train"] + result.summary["rows"]["dev"] == len(frames[0])


# -- predict: a list, a DataFrame column, a file ----------------------------------------------------


def test_predict_takes_a_list_a_series_and_a_file(
    frame_run: tunelab.TrainResult, frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    predictor = tunelab.load(frame_run.run_dir)
    test = frames[1].iloc[:5].set_index(pd.Index([10, 20, 30, 40, 50]))
    as_list = predictor.predict(test["text"].tolist())
    assert isinstance(as_list, list) and len(as_list) == 5
    table = predictor.predict(test["text"])
    assert isinstance(table, pd.DataFrame) and list(table.index) == [10, 20, 30, 40, 50]
    assert table["label"].tolist() == [r["label"] for r in as_list]
    assert test[["text"]].join(table)["label"].tolist() == table["label"].tolist()  # lines up
    source = tmp_path / "tickets.csv"
    test.assign(id=["a", "b", "c", "d", "e"]).to_csv(source, index=False)
    from_file = predictor.predict(source)
    assert isinstance(from_file, pd.DataFrame)
    assert from_file["id"].tolist() == ["a", "b", "c", "d", "e"]
    assert from_file["label_input"].tolist() == test["label"].tolist()  # the file's own label column
    assert from_file["label"].tolist() == table["label"].tolist()


def test_a_series_with_an_empty_text_names_its_index(frame_run: tunelab.TrainResult) -> None:
    predictor = tunelab.load(frame_run.run_dir)
    texts = pd.Series(["tennis match", None], index=["x", "y"], name="text")
    with pytest.raises(DataError, match=r"text\['y'\]: empty or not a string"):
        predictor.predict(texts)


def test_a_string_naming_a_file_is_a_text_with_a_hint(
    frame_run: tunelab.TrainResult, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tickets.csv").write_text("text\nfootball\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        result = tunelab.load(frame_run.run_dir).predict("tickets.csv")
    assert isinstance(result, dict) and "pathlib.Path('tickets.csv')" in caplog.text


def test_tunelab_predict_is_a_function(frame_run: tunelab.TrainResult) -> None:
    import tunelab.inference.predictor  # importing the package behind it changes nothing

    assert callable(tunelab.predict) and tunelab.predict.__module__ == "tunelab.inference.predictor"
    result = tunelab.predict(frame_run.run_dir, ["snow and rain", "pizza dinner"], top_k=2)
    assert [len(r["top_k"]) for r in result] == [2, 2]
    predictor = tunelab.load(frame_run.run_dir)
    assert tunelab.predict(predictor, "snow and rain", top_k=2) == result[0]


def test_predict_names_a_function_in_a_fresh_interpreter() -> None:
    code = (
        "import importlib.util, tunelab\n"
        "from tunelab import predict\n"
        "import tunelab.inference, tunelab.inference.predictor, tunelab.inference.files\n"
        "assert tunelab.predict is predict and callable(predict)\n"
        "assert importlib.util.find_spec('tunelab.predict') is None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_dir_shows_only_the_public_api() -> None:
    import tunelab.config  # a loaded subpackage is an attribute, but not part of the API
    import tunelab.inference

    assert dir(tunelab) == sorted([*tunelab.__all__, "__version__"])
    assert {"predict", "train", "load", "evaluate", "export"} <= set(dir(tunelab))
    assert not {"os", "sys", "importlib", "inference", "config", "TYPE_CHECKING"} & set(dir(tunelab))


# -- the README's notebook example ------------------------------------------------------------------


def _readme_notebook_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python notebook\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "README.md should have one ```python notebook block"
    return blocks[0]


def test_the_readme_notebook_example_runs(
    short, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block as written, run from the repository root; the test only shortens training (the tiny
    model, one short epoch) and sends the run to a scratch folder, by adding overrides last."""
    real_train = tunelab.train
    calls: list[dict[str, Any]] = []

    def short_train(*args: Any, overrides: list[str] | None = None, **kwargs: Any) -> Any:
        calls.append(kwargs)
        extra = [*short(tmp_path / "runs"), "train.epochs=0.2"]
        return real_train(*args, overrides=[*(overrides or []), *extra], show_progress=False, **kwargs)

    monkeypatch.setattr(tunelab, "train", short_train)
    monkeypatch.chdir(ROOT)
    namespace: dict[str, Any] = {}
    exec(compile(_readme_notebook_block(), "README.md (notebook)", "exec"), namespace)
    assert isinstance(calls[0]["train"], pd.DataFrame)  # the DataFrame went in as it is
    test, predictions = namespace["test"], namespace["predictions"]
    assert isinstance(predictions, pd.DataFrame) and predictions.index.equals(test.index)
    assert {"label", "score", "top_k"} <= set(predictions.columns)
    assert set(predictions["label"]) <= set(test["category"]) | set(namespace["df"]["category"])
    assert not list(ROOT.glob("runs/_frames"))  # nothing written into the repository
