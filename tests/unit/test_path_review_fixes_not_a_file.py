"""A FIFO, a process substitution (``/dev/fd/63``) or a folder given as a data, config or input file
was "file not found"; ``monitor report --out`` an existing FIFO hung forever waiting for a writer."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tunelab.apps.monitor import MonitorConfig, write_report
from tunelab.config import DataConfig
from tunelab.data.readers import read_table
from tunelab.errors import ConfigError, DataError
from tunelab.tasks.token_classification.reading import read_conll

PIPE = "a pipe or device, not a regular file; save it to a file first"

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo.csv"
    os.mkfifo(path)
    return path


def test_a_fifo_as_a_data_file_is_not_called_missing(fifo: Path) -> None:
    with pytest.raises(DataError) as caught:
        read_table(fifo, DataConfig(), field="data.test")
    assert str(caught.value) == f"data.test: {fifo}: {PIPE}"


def test_a_process_substitution_as_input_is_not_called_missing() -> None:
    """``predict --input <(cat test.csv)``: the shell passes ``/dev/fd/63``, a pipe."""
    read_end, write_end = os.pipe()
    try:
        path = Path(f"/dev/fd/{read_end}")
        if not path.exists():
            pytest.skip("no /dev/fd here")
        with pytest.raises(DataError) as caught:
            read_table(path, DataConfig())
        assert str(caught.value) == f"{path}: {PIPE}"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_folder_as_a_data_file_says_to_give_the_file_inside(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        read_table(tmp_path, DataConfig())
    assert str(caught.value) == f"{tmp_path}: a folder, not a file; give the data file inside it"


def test_a_missing_data_file_is_still_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found \(paths are relative"):
        read_table(tmp_path / "nope.csv", DataConfig())


def test_a_fifo_as_a_conll_file_is_not_called_missing(tmp_path: Path) -> None:
    path = tmp_path / "fifo.conll"
    os.mkfifo(path)
    with pytest.raises(DataError) as caught:
        read_conll(path)
    assert str(caught.value) == f"{path}: {PIPE}"


def test_a_folder_as_the_monitor_config_is_not_called_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        MonitorConfig.from_yaml(tmp_path)
    assert str(caught.value) == f"{tmp_path}: a folder, not a file; give the monitor config inside it"


def test_a_fifo_as_the_monitor_config_is_not_called_missing(fifo: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        MonitorConfig.from_yaml(fifo)
    assert str(caught.value) == f"{fifo}: {PIPE}"


def test_report_out_an_existing_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    os.mkfifo(out)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            write_report(None, "markets", out)  # refused before the store is read
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    hung = worker.is_alive()
    if hung:  # unblock the reader the old code left waiting (a writer that writes nothing)
        os.close(os.open(out, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
    assert not hung, "write_report waited on the FIFO for a writer"
    assert isinstance(outcome[0], DataError)
    assert (
        str(outcome[0]) == f"--out {out}: a pipe or device, not a regular file; give the report's file name"
    )
