"""The recommender's encoder saves and loads say nothing through the Python API either.

The CLI turns transformers' progress bars off for its whole process; a build or a server started
from Python (a notebook, a benchmark, a service's own process) got "Writing model shards" and
"Loading weights" bars in its log, and every cross-encoder build a WARNING "Converting
SentenceTransformer model /tmp/tunelab-cross-... to CrossEncoder" naming a deleted folder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunelab.apps.recommend.config import ModelSection
from tunelab.apps.recommend.crossencoder import CrossScorer
from tunelab.apps.recommend.textmodel import TextModel

BARS = ("Writing model shards", "Loading weights")


@pytest.fixture
def bars_on() -> Iterator[None]:
    """transformers' bars switched on, as in a process the CLI never configured (an earlier test in
    this worker may have run ``main()``, which turns them off for the process)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    yield
    if not was_on:
        hf_logging.disable_progress_bar()


def test_the_text_model_saves_and_loads_without_transformers_bars(
    tiny_bert: Path, tmp_path: Path, bars_on: None, capsys: pytest.CaptureFixture[str]
) -> None:
    model = TextModel.from_base(ModelSection(base=str(tiny_bert), device="cpu", max_length=32))
    capsys.readouterr()
    model.save(tmp_path)
    loaded = TextModel.load(tmp_path, max_length=32, device="cpu")
    err = capsys.readouterr().err
    assert not any(bar in err for bar in BARS), err
    assert loaded.encode(["a text"]).shape[0] == 1
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # put back as it was


def test_the_cross_encoder_is_built_saved_and_loaded_without_chatter(
    tiny_bert: Path,
    tmp_path: Path,
    bars_on: None,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = ModelSection(base=str(tiny_bert), device="cpu", max_length=32, cross_encoder=True)
    capsys.readouterr()
    with caplog.at_level(logging.INFO):
        scorer = CrossScorer.from_base(cfg)
        scorer.save(tmp_path)
        loaded = CrossScorer.load(tmp_path, max_length=32, device="cpu")
    err = capsys.readouterr().err
    assert not any(bar in err for bar in BARS), err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert loaded.logits("q", ["a", "b"]).shape == (2,)
    # the other threads' (and, after the block, this thread's) warnings still reach the log
    logging.getLogger("sentence_transformers").warning("after the build")
    assert "after the build" in caplog.text
