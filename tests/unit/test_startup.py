"""Start-up: ``tunelab --version`` and ``--help`` load no heavy library, and global options (``-v``)
work before or after the subcommand.

The import checks run the CLI in a fresh interpreter (this test process has long imported torch)
and look at ``sys.modules`` afterwards: behaviour, not timing, so they hold on a busy machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.cli.main import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
# What made every command take seconds when imported eagerly.
HEAVY = ("torch", "transformers", "pandas", "fastapi", "sklearn", "matplotlib", "peft", "onnxruntime")

RUNNER = """
import contextlib, io, sys
from tunelab.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    code = main(sys.argv[1:])
print('loaded:' + ','.join(m for m in {heavy!r} if m in sys.modules))
print('output:' + repr(out.getvalue()[:200]))
"""


def _run_cli(*argv: str) -> tuple[list[str], str]:
    """Heavy modules a fresh interpreter imported while running ``tunelab ARGV``, and its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", RUNNER.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    loaded = next(line for line in lines if line.startswith("loaded:")).removeprefix("loaded:")
    output = next(line for line in lines if line.startswith("output:"))
    return [m for m in loaded.split(",") if m], output


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["-v", "--help"]])
def test_version_and_help_import_no_heavy_library(argv: list[str]) -> None:
    loaded, output = _run_cli(*argv)
    assert loaded == []
    assert "tunelab" in output  # it did answer


def test_every_command_help_imports_no_heavy_library() -> None:
    """Each subcommand imports its heavy modules only when it runs, never to show its help."""
    names = [module.__name__.rsplit(".", 1)[-1].removesuffix("_cmd") for module in COMMANDS]
    code = (
        "import contextlib, io, sys\n"
        "from tunelab.cli.main import main\n"
        f"for name in {names!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([name, '--help'])\n"
        f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "loaded:"


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "runs"],
        ["runs", "-v"],
        ["runs", "--verbose", "--dir", "x"],
        ["train", "-v", "configs/demo.yaml"],
        ["eval", "runs/demo", "-v"],
        ["app", "support", "chat", "bots/x", "-v"],
    ],
)
def test_verbose_before_or_after_the_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).verbose is True


@pytest.mark.parametrize("argv", [["runs"], ["train", "configs/demo.yaml"], ["app", "support", "chat", "b"]])
def test_verbose_is_off_unless_given(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).verbose is False


def test_verbose_after_the_command_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without -v an unexpected error is one line; ``tunelab runs -v`` raises it, as ``-v runs`` does."""
    import tunelab.runs

    def broken(_: object) -> list:
        raise RuntimeError("boom")

    monkeypatch.setattr(tunelab.runs, "list_runs", broken)
    (tmp_path / "runs").mkdir()
    assert main(["runs", "--dir", str(tmp_path / "runs")]) == 1
    assert "run with -v for the traceback" in capsys.readouterr().err
    runs = str(tmp_path / "runs")
    for argv in (["-v", "runs", "--dir", runs], ["runs", "--dir", runs, "-v"]):
        with pytest.raises(RuntimeError, match="boom"):
            main(argv)


def test_eval_without_data_reads_the_saved_metrics_without_loading_the_model(
    tiny_bert: Path, tiny_overrides: object, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    """``tunelab eval RUN`` prints metrics.json: it used to load torch and the weights first (~8 s)."""
    import tunelab

    train, test = labelled_csvs
    overrides = tiny_overrides(tiny_bert, train, test, tmp_path, "name=saved", epochs=0.2)  # type: ignore[operator]
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    loaded, output = _run_cli("eval", str(run))
    assert loaded == []
    assert "saved test metrics" in output and "accuracy" in output
