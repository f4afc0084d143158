"""A key may not be named after another key's id: ``keys revoke NAME`` reads an id first, so it
revoked the other key (the admin key) and left the one the operator named active."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.cli.main import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(folder))
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    return folder


def test_a_key_named_after_another_keys_id_is_refused(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--name", "ops", "--admin", "--json"]) == 0
    ops = json.loads(capsys.readouterr().out)["key"]
    assert main(["keys", "create", "--name", ops["id"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: key name {ops['id']!r} is the id of key 'ops'; choose another name"], err
    assert main(["keys", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(k["name"], k["revoked_at"]) for k in listed] == [("ops", None)]  # nothing made, nothing revoked
