"""Symlinks in a run someone else gave are refused before ensemble, merge or export copies it.

Each test failed before the fix: a link to a folder elsewhere (``assets -> ~``) was followed, so
its files (``.ssh/id_ed25519``) ended up in the ensemble, the merged run or the artifact the user
then shares, and a link to the run's own folder (``extra -> .``) failed "unexpected Error" after
copying 40 levels of paths.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.cli.main import main
from tunelab.errors import RunError

SECRET = "not for sharing"
WHAT_TO_DO = "replace the link with the file it points to, or remove it"


@pytest.fixture(scope="module")
def runs(tiny_bert: Path, labelled_csvs: tuple[Path, Path], tiny_overrides: Any, tmp_path_factory) -> Any:
    """Two tiny full runs (ensemble, export) and a lora run (merge), trained once for the module."""
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")

    def one(*extra: str) -> Path:
        overrides = tiny_overrides(tiny_bert, train, test, out, *extra, epochs=1)
        return Path(tunelab.train(None, overrides=overrides, show_progress=False).run_dir)

    return {"a": one("name=a"), "b": one("name=b", "train.seed=2"), "lora": one("name=l", "method=lora")}


def home_like(tmp_path: Path) -> Path:
    """A folder outside every run holding a file that must not leave the machine."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(SECRET, encoding="utf-8")
    return home


def given(run: Path, tmp_path: Path, link: str, target: str | Path) -> Path:
    """A copy of ``run`` as someone else's download, with ``link`` pointing at ``target``."""
    theirs = tmp_path / "downloaded" / "theirs"
    shutil.copytree(run, theirs)
    os.symlink(target, theirs / link)
    return theirs


def leaked(folder: Path) -> list[Path]:
    """Files under ``folder`` holding the secret (the copy followed a link to it)."""
    if not folder.exists():
        return []
    return [p for p in folder.rglob("*") if p.is_file() and SECRET in p.read_text(errors="replace")]


@pytest.mark.parametrize(
    ("link", "target"),
    [("assets", "HOME"), ("tokenizer/extras", "HOME"), ("notes.txt", "HOME/.ssh/id_ed25519"), ("extra", ".")],
    ids=["folder-outside", "tokenizer-folder-outside", "file-outside", "loop"],
)
def test_ensemble_refuses_a_member_holding_a_symlink_in_one_line(
    runs: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], link: str, target: str
) -> None:
    home = home_like(tmp_path)
    theirs = given(runs["b"], tmp_path, link, target.replace("HOME", str(home)))
    out = tmp_path / "ens"
    code = main(["ensemble", str(runs["a"]), str(theirs), "--out", str(out), "--no-calibrate", "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == (
        f"error: {theirs}: {link} is a symlink, and tunelab ensemble does not copy what a link in a run "
        f"points to (it could be any file on this machine); {WHAT_TO_DO}\n"
    )
    assert not out.exists() and not leaked(tmp_path / "ens")


def test_a_link_in_what_the_ensemble_leaves_out_is_no_reason_to_refuse(runs: Any, tmp_path: Path) -> None:
    """evals/, checkpoints/ and tb/ stay with the member: a link there is not copied, so not refused."""
    home = home_like(tmp_path)
    theirs = given(runs["b"], tmp_path, "tb/elsewhere", home)
    result = tunelab.ensemble([runs["a"], theirs], tmp_path / "ens", calibrate=False)
    assert not leaked(result.path) and not [p for p in result.path.rglob("*") if p.is_symlink()]


@pytest.mark.parametrize(("link", "target"), [("assets", "HOME"), ("extra", ".")], ids=["outside", "loop"])
def test_merge_refuses_a_run_holding_a_symlink(runs: Any, tmp_path: Path, link: str, target: str) -> None:
    home = home_like(tmp_path)
    theirs = given(runs["lora"], tmp_path, link, target.replace("HOME", str(home)))
    out = tmp_path / "merged"
    with pytest.raises(RunError) as refused:
        tunelab.merge(theirs, output=out)
    assert str(refused.value) == (
        f"{theirs}: {link} is a symlink, and tunelab merge does not copy what a link in a run points to "
        f"(it could be any file on this machine); {WHAT_TO_DO}"
    )
    assert not out.exists() and not leaked(out)


@pytest.mark.parametrize("link", ["tokenizer/extras", "tokenizer", "labels.json"])
def test_export_refuses_a_symlink_in_what_it_copies(runs: Any, tmp_path: Path, link: str) -> None:
    home = home_like(tmp_path)
    theirs = tmp_path / "downloaded" / "theirs"
    shutil.copytree(runs["a"], theirs)
    moved = tmp_path / "elsewhere"
    if link == "tokenizer/extras":
        os.symlink(home, theirs / link)
    else:  # the run's own file moved out and linked back: still a file from outside the run
        shutil.move(theirs / link, moved)
        os.symlink(moved, theirs / link)
    out = tmp_path / "int8"
    with pytest.raises(RunError) as refused:
        tunelab.export(theirs, format="torch-int8", output=out, show_progress=False)
    assert str(refused.value).startswith(f"{theirs}: {link} is a symlink, and tunelab export does not copy")
    assert not out.exists() and not leaked(tmp_path / "int8")


@pytest.fixture(scope="module")
def ens(runs: Any, tmp_path_factory) -> Path:
    return tunelab.ensemble(
        [runs["a"], runs["b"]], tmp_path_factory.mktemp("ens") / "e", calibrate=False
    ).path


@pytest.mark.parametrize("where", ["the ensemble", "a member"])
def test_an_ensemble_export_refuses_a_symlink_before_any_member_is_exported(
    ens: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from tunelab.compress import build

    home = home_like(tmp_path)
    theirs = tmp_path / "theirs"
    shutil.copytree(ens, theirs)
    folder = theirs if where == "the ensemble" else theirs / "weights" / "b"
    os.symlink(home, folder / "tokenizer" / "extras")
    monkeypatch.setattr(build, "build_artifact", lambda *a, **k: pytest.fail("a member was exported"))
    with pytest.raises(RunError) as refused:
        tunelab.export(theirs, format="torch-int8", output=tmp_path / "out", show_progress=False)
    assert str(refused.value).startswith(f"{folder}: tokenizer/extras is a symlink, and tunelab export")
    assert not (tmp_path / "out").exists()


def test_links_in_walks_without_following_and_skips_what_the_copy_ignores(tmp_path: Path) -> None:
    from tunelab.runs.links import links_in, refuse_links

    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    (run / "tokenizer").mkdir()
    os.symlink(".", run / "loop")
    os.symlink(tmp_path / "gone", run / "tokenizer" / "dangling")
    os.symlink(tmp_path, run / "weights" / "big")
    found = sorted(p.relative_to(run).as_posix() for p in links_in(run))
    assert found == ["loop", "tokenizer/dangling", "weights/big"]
    skip_weights = shutil.ignore_patterns("weights")
    assert sorted(p.relative_to(run).as_posix() for p in links_in(run, skip_weights)) == [
        "loop",
        "tokenizer/dangling",
    ]
    refuse_links(run, "x", only=("weights", "config.json"), ignore=skip_weights)  # nothing copied is a link
    with pytest.raises(RunError, match=r"^\S+: tokenizer/dangling is a symlink, and x does not copy"):
        refuse_links(run, "x", only=("tokenizer",))
    best = tmp_path / "best"  # a run named through a link (a search's best): the user chose it
    os.symlink(run, best, target_is_directory=True)
    assert sorted(p.relative_to(best).as_posix() for p in links_in(best)) == found
    refuse_links(best, "x", only=("weights",), ignore=skip_weights)
