"""Review of full disks and failed writes: an int8 export on a nearly full disk.

ONNX Runtime's quantiser writes a shape-inferred copy of the fp32 model in onnx's C++ code, which
does not report a full disk; reading the cut-short copy back failed as "unexpected DecodeError:
... Wire format was corrupt", where a fuller disk gave the usual one line naming the output.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import tunelab


class DecodeError(Exception):
    """Stands for protobuf's, raised by onnx.load on a cut-short file."""


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory: Any):
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    return tunelab.train(
        None, overrides=tiny_overrides(tiny_bert, train, test, out, "name=r", epochs=1), show_progress=False
    ).run_dir


def _cut_short(source: Any, *args: Any, **kwargs: Any) -> None:
    """The quantiser on a full disk: its shape-inferred copy cut short, then unreadable."""
    source = Path(source)
    source.with_name(f"{source.stem}-inferred{source.suffix}").write_bytes(b"\x08")
    raise DecodeError("Error parsing message with type 'onnx.ModelProto'")


def _fails_otherwise(*args: Any, **kwargs: Any) -> None:
    raise ValueError("Failed to find proper ai.onnx domain")


def _free(bytes_free: int):
    real = shutil.disk_usage

    def usage(path: Any) -> Any:
        total, used, _ = real(path)
        return type(real(path))(total, used, bytes_free)

    return usage


def test_an_int8_export_cut_short_by_a_full_disk_is_one_line_naming_the_output(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.cli.main import main

    monkeypatch.setattr("onnxruntime.quantization.quantize_dynamic", _cut_short)
    monkeypatch.setattr(shutil, "disk_usage", _free(1024))
    target = tmp_path / "art"
    assert main(["export", str(run), "-q", "--format", "onnx-int8", "--output", str(target)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: no space left on device writing {target}: free space and run again\n"
    assert list(tmp_path.iterdir()) == []


def test_the_same_error_with_room_left_is_not_called_a_full_disk(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.compress.onnx_int8 import quantize_onnx

    monkeypatch.setattr("onnxruntime.quantization.quantize_dynamic", _cut_short)
    source = tmp_path / "model-fp32.onnx"
    source.write_bytes(b"x" * 100)
    with pytest.raises(DecodeError):
        quantize_onnx(source, tmp_path / "model.onnx")


def test_another_quantiser_failure_on_a_nearly_full_disk_keeps_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Less room than the model but no cut-short copy: not the disk (it said "no space left")."""
    from tunelab.compress.onnx_int8 import quantize_onnx

    monkeypatch.setattr("onnxruntime.quantization.quantize_dynamic", _fails_otherwise)
    monkeypatch.setattr(shutil, "disk_usage", _free(1024))
    source = tmp_path / "model-fp32.onnx"
    source.write_bytes(b"x" * 100_000)
    with pytest.raises(ValueError, match=r"ai\.onnx domain"):
        quantize_onnx(source, tmp_path / "model.onnx")
