"""``tunelab serve --recommend`` (uvicorn stubbed, ``Recommender.load`` giving the stand-in of
test_serve_recommend.py): recommenders load before the port is bound, and every bad argument is
one line naming the path."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_serve_recommend import StandIn

from tunelab.cli.main import main
from tunelab.errors import DataError

MARK = "standin.txt"  # what makes a folder a (stand-in) recommender folder here


def fake_load(path: str | Path) -> StandIn:
    folder = Path(path)
    if (folder / "broken").exists():
        raise KeyError("n_items")  # what a folder of something else could make a loader raise
    if not (folder / MARK).exists():
        raise DataError(f"{folder}: not a recommender folder (no recommender.json)")
    return StandIn(folder=str(folder))


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Stubs uvicorn (keeps the app it was given) and ``Recommender.load`` (the stand-in)."""
    import signal

    import uvicorn

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("app", app))
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # leave pytest's SIGTERM handler alone
    try:
        from tunelab.apps.recommend import Recommender

        monkeypatch.setattr(Recommender, "load", staticmethod(fake_load))
    except ImportError:  # the recommender app is not merged yet: a module with the contract's name
        module = types.ModuleType("tunelab.apps.recommend")
        module.Recommender = types.SimpleNamespace(load=fake_load)  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tunelab.apps.recommend", module)
    yield seen
    root.handlers[:] = handlers
    root.setLevel(level)


def folder(tmp_path: Path, rel: str, *, mark: bool = True) -> str:
    path = tmp_path / rel
    path.mkdir(parents=True, exist_ok=True)
    if mark:
        (path / MARK).write_text("x", encoding="utf-8")
    return str(path)


def broken(tmp_path: Path) -> str:
    path = folder(tmp_path, "odd")
    (Path(path) / "broken").touch()
    return path


def test_serve_loads_recommenders_without_models(
    served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    movies, books = folder(tmp_path, "recs/movies"), folder(tmp_path, "recs/books/")
    argv = ["serve", "--recommend", movies, "--recommend", books, "--data-dir", str(tmp_path / "data")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"loaded recommender movies from {movies}: 11 items, 0 users" in out
    assert f"loaded recommender books from {books}" in out
    state = served.pop("app").state.tunelab
    assert state.recommenders.names() == ["books", "movies"] and state.registry.names() == []
    assert state.recommenders.get("movies").source == movies


def test_name_equals_dir_serves_under_another_name(served: dict[str, Any], tmp_path: Path) -> None:
    one, two = folder(tmp_path, "a/movies"), folder(tmp_path, "b/movies")
    argv = ["serve", "--recommend", one, "--recommend", f"films={two}", "--data-dir", str(tmp_path / "d")]
    assert main(argv) == 0
    assert served["app"].state.tunelab.recommenders.names() == ["films", "movies"]


@pytest.mark.parametrize(
    ("make_argv", "fragment"),
    [
        (lambda p: ["serve"], "--monitor monitor.yaml or --recommend recs/<name>"),
        (
            lambda p: ["serve", "--recommend", str(p / "recs/missing")],
            "--recommend {p}/recs/missing: no such folder (build one with: tunelab app recommend build",
        ),
        (
            lambda p: ["serve", "--recommend", folder(p, "runs/a-run", mark=False)],
            "--recommend {p}/runs/a-run: not a recommender folder (no recommender.json)",
        ),
        (
            lambda p: ["serve", "--recommend", folder(p, "x/movies"), "--recommend", folder(p, "y/movies")],
            "a recommender named 'movies' is already served; serve one under another name",
        ),
        (
            lambda p: ["serve", "--recommend", broken(p)],
            "not a recommender folder (KeyError: 'n_items'",
        ),
        (lambda p: ["serve", "--recommend", ""], "--recommend '': write DIR or NAME=DIR"),
        (
            lambda p: ["serve", "--recommend", folder(p, "recs/new films")],
            "'new films' cannot be served under its own name (a name is part of the URLs",
        ),
    ],
)
def test_bad_recommend_arguments_fail_in_one_line(
    served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], make_argv: Any, fragment: str
) -> None:
    assert main([*make_argv(tmp_path), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment.format(p=tmp_path) in err[0], err
    assert "app" not in served


def test_serve_help_shows_the_recommend_flag_and_routes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    for part in (
        "--recommend DIR",
        "/v1/apps/recommend/movies/users/42?k=10&exclude_seen=true",
        "/v1/apps/recommend/movies/items",
        "/v1/apps/recommend/movies/events",
        "usage shows recommend/<name>",
    ):
        assert part in text, part


def test_the_real_loader_names_a_folder_that_is_not_a_recommender(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "banking77"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("task: single_label\n", encoding="utf-8")
    assert main(["serve", "--recommend", str(run), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: --recommend {run}: not a recommender folder (no recommender.json); build one with "
        "tunelab app recommend build"
    ]
