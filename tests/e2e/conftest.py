"""Fixtures for the end-to-end tests: a tiny trained run, and servers that are always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import ServerProcess, make_keys, start_server

import tunelab


@pytest.fixture(scope="session")
def tiny_run(
    tiny_bert: Path,
    tiny_overrides: Callable[..., list[str]],
    labelled_csvs: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A finished run of the tiny BERT on the toy topics (sports, food, weather)."""
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("e2e-runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=topics")
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    """``start(models, data_dir=..., db=..., keys={...})``; every server started is stopped at the end."""
    started: list[ServerProcess] = []

    def start(models: list[str], *, keys: dict[str, dict[str, Any]], **kw: Any) -> ServerProcess:
        tokens = make_keys(kw.get("db"), kw["data_dir"], keys)
        server = start_server(models, **kw)
        server.tokens = tokens
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def tiny_export(tiny_run: Path) -> Path:
    """The tiny run exported to ONNX int8 (``tunelab export``): served like a run, as a new version."""
    from tunelab.compress import export

    return export(tiny_run, format="onnx-int8", max_drop=100, show_progress=False).path
