"""Names too long for a folder: a run ``name`` longer than ``MAX_NAME_BYTES`` is refused by the
config checks, naming the field and the limit, and a path too long for the OS (ENAMETOOLONG) is
the usual one-line "no such folder" of ``find_run`` and ``Recommender.load``. They ended in
"unexpected OSError: [Errno 36] File name too long" (CLI) or a 500 (the serve admin route)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_serve_app import settings

from tunelab.cli.main import main
from tunelab.compress.options import ExportOptions
from tunelab.config import RunConfig
from tunelab.errors import ConfigError, RunError
from tunelab.runs.folder import PARTIAL_SUFFIX, RunFolder, find_run, find_unfinished_run

TOO_LONG = "y" * 300  # over the 255 bytes a file name may take
MAX_NAME_BYTES = 200  # the limit on a run's name, as the README gives it


def test_the_limit_is_the_one_the_checks_use() -> None:
    from tunelab.runs import folder

    assert folder.MAX_NAME_BYTES == MAX_NAME_BYTES


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# -- the run name, in the config checks ---------------------------------------------------------------


def test_the_longest_folder_named_after_a_run_fits_a_file_name() -> None:
    """What MAX_NAME_BYTES is for: an export's staging folder (compress/export.py) of the longest
    suffix, with the largest pid, for a name of MAX_NAME_BYTES bytes."""
    longest = ExportOptions(format="torch-int8", prune=0.999, prune_method="structured").suffix
    assert longest == "-torch-int8-structured100"
    staging = f".{'x' * MAX_NAME_BYTES}{longest}{PARTIAL_SUFFIX}.4194304.0123abcd"
    assert len(staging.encode()) <= 255


@pytest.mark.parametrize("name", ["x" * 250, "é" * 101])  # 250 and 202 bytes
def test_a_run_name_too_long_for_a_folder_is_refused_naming_the_field_and_the_limit(name: str) -> None:
    size = len(name.encode())
    with pytest.raises(ConfigError) as raised:
        RunConfig.from_dict({"name": name, "data": {"train": "train.csv"}})
    message = str(raised.value)
    assert message.startswith(f"name={name[:40]!r}... ({size} bytes; use at most {MAX_NAME_BYTES}")
    assert "\n" not in message
    with pytest.raises(ConfigError, match=f"use at most {MAX_NAME_BYTES}"):
        RunConfig(name=name)  # built in Python: checked too


def test_a_run_name_of_the_limit_is_taken() -> None:
    assert RunConfig(name="x" * MAX_NAME_BYTES).name == "x" * MAX_NAME_BYTES
    assert RunConfig(name="é" * (MAX_NAME_BYTES // 2)).name == "é" * (MAX_NAME_BYTES // 2)


def test_validate_refuses_a_name_too_long_in_one_line(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "validate",
        f"data.train={labelled_csvs[0]}",
        f"output_dir={tmp_path / 'runs'}",
        f"name={'x' * 250}",
        f"model.name={tiny_bert}",
    ]
    assert main(args) != 0
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "OSError" not in lines[0], lines
    assert lines[0].startswith("error: ") and f"name={'x' * 40!r}... (250 bytes; use at most" in lines[0]


# -- paths too long for the OS --------------------------------------------------------------------------


def test_a_new_run_folder_of_a_name_too_long_for_the_os_fails_in_one_line(tmp_path: Path) -> None:
    # the name fits, its .partial does not: nothing of that name exists, so making it fails in one line
    name = "y" * 250
    assert RunFolder.check_name(tmp_path, name) == tmp_path / f"{name}{PARTIAL_SUFFIX}"
    with pytest.raises(ConfigError, match=r"cannot make the run folder .* \(File name too long\)"):
        RunFolder.create(tmp_path, name)


@pytest.mark.parametrize("name", [TOO_LONG, "y" * 250])  # the folder's name, or only its .partial's
def test_find_run_says_no_such_run_folder_for_a_name_too_long(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(RunError) as raised:
        find_run(path)
    assert str(raised.value) == f"{path}: no such run folder (`tunelab runs` lists the runs)"
    with pytest.raises(RunError, match="no such run folder"):
        find_unfinished_run(path)


def test_find_run_on_a_folder_whose_partial_name_is_too_long_says_what_it_is(tmp_path: Path) -> None:
    folder = tmp_path / ("y" * 250)
    folder.mkdir()
    with pytest.raises(RunError, match="not a run folder"):
        find_run(folder)


def test_the_serve_admin_load_of_a_path_too_long_is_a_400(tmp_path: Path) -> None:
    from tunelab.serve.app import create_app

    runs = tmp_path / "runs"
    runs.mkdir()
    app = create_app(settings(tmp_path, model_roots=(runs,)), [])
    with TestClient(app, raise_server_exceptions=False) as client:
        _, admin = app.state.tunelab.access.create_key("root", rate=None, quota=None, admin=True)
        path = str(runs / TOO_LONG)
        r = client.post(
            "/v1/models/x/versions", json={"path": path}, headers={"Authorization": f"Bearer {admin}"}
        )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_request" and "no such run folder" in error["message"]


# -- a recommender folder ---------------------------------------------------------------------------------


def test_recommender_load_of_a_path_too_long_is_no_such_folder(tmp_path: Path) -> None:
    from tunelab.apps.recommend import Recommender

    path = tmp_path / TOO_LONG
    with pytest.raises(ConfigError) as raised:
        Recommender.load(path)
    assert str(raised.value) == f"{path}: no such folder; build one with tunelab app recommend build"


def test_recommend_rank_of_a_path_too_long_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "recs").mkdir()  # else the OS stops at the missing folder, before the long name
    path = tmp_path / "recs" / TOO_LONG
    assert main(["app", "recommend", "rank", str(path), "--user", "u1"]) != 0
    lines = _error_lines(capsys.readouterr().err)
    assert lines == [f"error: {path}: no such folder; build one with tunelab app recommend build"]
