"""``train --resume`` of a run whose ``checkpoints/last`` (or ``checkpoints``) is a plain file: it ended
in "unexpected NotADirectoryError" instead of one line naming the path and what to do."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.errors import RunError


@pytest.fixture(scope="module")
def killed_run(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    killed_at_first_checkpoint: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A run killed right after its first checkpoint (step 1); tests copy its .partial folder."""
    out = tmp_path_factory.mktemp("killed") / "runs"
    overrides = tiny_overrides(
        tiny_bert, labelled_csvs[0], None, out, "data.dev_size=0.3", "name=k", "train.checkpoint_steps=1",
        epochs=1,
    )  # fmt: skip
    return killed_at_first_checkpoint(overrides)


@pytest.mark.parametrize("where", ["checkpoints/last", "checkpoints", "checkpoints/last.old"])
def test_resume_with_a_file_where_the_checkpoint_folder_belongs_is_one_line(
    killed_run: Path, tmp_path: Path, where: str
) -> None:
    """``last`` a file read as "no checkpoint": the run started over and its second checkpoint's
    rename failed; ``checkpoints`` a file failed clearing ``best.safetensors``; ``last.old`` a file
    failed at the first checkpoint's rename. Now refused up front, before anything is rebuilt."""
    partial = tmp_path / "runs" / "k.partial"
    shutil.copytree(killed_run, partial)
    blocker = partial / where
    shutil.rmtree(blocker, ignore_errors=True)  # last.old: none, so the file sits beside a good `last`
    blocker.write_text("not a checkpoint\n", encoding="utf-8")
    with pytest.raises(RunError) as caught:
        tunelab.train(resume=partial, show_progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{blocker}: a file, not a checkpoint folder"), message
    assert f"delete {blocker}" in message and f"tunelab train --resume {partial}" in message, message
