"""Review fixes in the model checks ``validate`` and ``train`` share (``tunelab.preflight``), and in
``train --from`` / ``validate --from`` of a run whose local base folder is gone.

``validate`` said "config ok" for model folders ``train`` then refused (no weights, pickled weights
only, an unknown model type), and for one naming code of its own (``auto_map``) beside a known
model type, which ``train`` trained on the stock architecture, its code never run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tunelab
from tunelab.errors import ModelNotFoundError
from tunelab.preflight import validate_run


def _variant(tiny_bert: Path, folder: Path, change) -> Path:
    shutil.copytree(tiny_bert, folder)
    change(folder)
    return folder


def _edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **changes}), encoding="utf-8")


def _no_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def _pickled_weights(folder: Path) -> None:
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


def _unknown_type(folder: Path) -> None:
    _edit_json(folder / "config.json", model_type="acme_bert")


def _own_code_unknown_type(folder: Path) -> None:
    _edit_json(
        folder / "config.json",
        model_type="acme_bert",
        auto_map={"AutoConfig": "configuration_acme.AcmeConfig", "AutoModel": "modeling_acme.AcmeModel"},
    )


def _own_code_known_type(folder: Path) -> None:  # model_type stays "bert"
    _edit_json(folder / "config.json", auto_map={"AutoModel": "modeling_acme.AcmeModel"})


def _own_tokenizer_code(folder: Path) -> None:
    _edit_json(
        folder / "tokenizer_config.json", auto_map={"AutoTokenizer": ["tokenization_acme.AcmeTok", None]}
    )


CASES = {
    "no-weights": (_no_weights, ["has no weights (model.safetensors)"]),
    "pickled-only": (
        _pickled_weights,
        ["pickled weights only (pytorch_model.bin)", "convert them to safetensors"],
    ),
    "unknown-type": (_unknown_type, ["cannot read", "acme_bert"]),
    "own-code-unknown-type": (
        _own_code_unknown_type,
        ["config.json names Python code of its own (auto_map)"],
    ),
    "own-code-bert": (_own_code_known_type, ["config.json names Python code of its own (auto_map)"]),
    "own-tokenizer-code": (_own_tokenizer_code, ["tokenizer_config.json names Python code of its own"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_refuses_the_model_folders_train_refuses(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    change, expected = CASES[case]
    folder = _variant(tiny_bert, tmp_path / "model", change)
    report = validate_run(overrides=[f"data.train={labelled_csvs[0]}", f"model.name={folder}"])
    assert not report.ok
    lines = [p for p in report.problems if str(folder) in p]
    assert len(lines) == 1, report.problems
    assert all(part in lines[0] for part in expected), lines[0]
    assert "\n" not in lines[0] and "Traceback" not in lines[0]


def test_train_refuses_a_folder_naming_its_own_code_beside_a_known_model_type(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides, tmp_path: Path
) -> None:
    """It trained silently on stock BERT (transformers ignores auto_map for a type it knows), though
    the README says such a folder is refused in one line."""
    folder = _variant(tiny_bert, tmp_path / "model", _own_code_known_type)
    overrides = tiny_overrides(folder, labelled_csvs[0], None, tmp_path / "runs", "name=x", epochs=1)
    with pytest.raises(ModelNotFoundError, match=r"names Python code of its own \(auto_map\)"):
        tunelab.train(overrides=overrides, show_progress=False)
    assert not (tmp_path / "runs" / "x").exists()


def test_a_sound_folder_still_passes(tiny_bert: Path, labelled_csvs: tuple[Path, Path]) -> None:
    report = validate_run(overrides=[f"data.train={labelled_csvs[0]}", f"model.name={tiny_bert}"])
    assert report.ok, report.problems


# -- 3. --from a run whose local base folder is gone: named, not tried on the hub --------------------


@pytest.mark.parametrize("network", ["offline", "online"])
def test_from_a_run_whose_local_base_is_gone_names_it_and_asks_no_hub(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tiny_overrides,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_hub,
    network: str,
) -> None:
    """The bare folder name ("base") was resolved as a hub id: "could not download from the hub
    (ReadTimeout)" after ~20 s online, "HF_HUB_OFFLINE is set and it is not in the local hub cache"
    offline. ``predict`` already said the folder is not there; --from now says the same."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_bert, tmp_path / "base")
    train, _ = labelled_csvs
    overrides = tiny_overrides(Path("base"), train, None, tmp_path / "runs", "name=first", epochs=1)
    tunelab.train(None, overrides=overrides, show_progress=False)
    (tmp_path / "base").rename(tmp_path / "base-moved")
    if network == "online":
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
    calls = fake_hub(ConnectionError("no route to host"), cached=None)

    report = validate_run(from_run=tmp_path / "runs" / "first", overrides=[f"data.train={train}"])
    assert not report.ok
    assert len(report.problems) == 1, report.problems
    message = report.problems[0]
    assert "is not there; put it back" in message and str(tmp_path / "base") in message, message
    assert "hub" not in message, message
    assert calls == []  # nothing asked of the hub, not even its cache
    with pytest.raises(ModelNotFoundError, match="is not there; put it back"):
        tunelab.train(None, overrides=[f"data.train={train}"], from_run=tmp_path / "runs" / "first")
    assert calls == []
