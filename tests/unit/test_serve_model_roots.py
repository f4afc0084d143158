"""``POST /v1/models/{name}/versions`` loads only from the allowed roots (``--model-root``, default
``./runs``): ``..``, symlinks out of a root and absolute paths elsewhere are a 403 naming the roots,
and the loader never sees them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tunelab.cli.main import build_parser
from tunelab.cli.serve_cmd import build_settings
from tunelab.errors import RunError
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.model_roots import ModelPathForbiddenError, confine
from tunelab.serve.settings import ServeSettings


class FakePredictor:
    format = "torch"
    task_name = "single_label"
    labels = SimpleNamespace(names=["a", "b"])

    def __init__(self, path: str = "fake") -> None:
        if not Path(path, "run.json").is_file() and path != "fake":
            raise RunError(f"{path}: no such run folder (`tunelab runs` lists the runs)")
        self.run = SimpleNamespace(name=Path(path).name)


@dataclass
class Admin:
    client: TestClient
    loaded: list[str]
    headers: dict[str, str]

    def load(self, path: str, name: str = "m") -> Any:
        return self.client.post(f"/v1/models/{name}/versions", json={"path": path}, headers=self.headers)


def make_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text("{}", encoding="utf-8")
    return folder


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """tmp_path with its own symlinks resolved (macOS: /var -> /private/var), as the server sees it."""
    return Path(os.path.realpath(tmp_path))


@pytest.fixture
def tree(base: Path) -> SimpleNamespace:
    """``runs/good``, ``more/other`` (two roots) and ``outside/secret`` (not a root)."""
    tmp_path = base
    return SimpleNamespace(
        root=tmp_path / "runs",
        more=tmp_path / "more",
        good=make_run(tmp_path / "runs" / "good"),
        other=make_run(tmp_path / "more" / "other"),
        secret=make_run(tmp_path / "outside" / "secret"),
    )


@pytest.fixture
def admin(tmp_path: Path, tree: SimpleNamespace) -> Iterator[Admin]:
    loaded: list[str] = []

    def loader(path: str) -> FakePredictor:
        loaded.append(path)
        return FakePredictor(path)

    settings = ServeSettings(data_dir=tmp_path / "data", db=None, model_roots=(tree.root, tree.more))
    app = create_app(settings, [ServedModel("m", "1", FakePredictor(), "fake")], loader=loader)
    with TestClient(app, raise_server_exceptions=False) as client:
        _, token = app.state.tunelab.access.create_key("root", rate=None, quota=None, admin=True)
        yield Admin(client, loaded, {"Authorization": f"Bearer {token}"})


def refused(response: Any, *roots: Path) -> str:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "path_not_allowed"
    for root in roots:
        assert str(root) in error["message"], error["message"]
    assert "--model-root" in error["message"]
    return error["message"]


def test_folders_under_a_root_load(admin: Admin, tree: SimpleNamespace) -> None:
    assert admin.load(str(tree.good)).status_code == 201
    assert admin.load(str(tree.other)).status_code == 201  # the second root
    assert admin.load(str(tree.root / "x" / ".." / "good")).status_code == 201  # '..' that stays inside
    assert admin.loaded == [str(tree.good), str(tree.other), str(tree.good)]


def test_dot_dot_out_of_a_root_is_refused(admin: Admin, tree: SimpleNamespace) -> None:
    r = admin.load(str(tree.root / ".." / "outside" / "secret"))
    refused(r, tree.root, tree.more)
    r = admin.load(str(tree.root) + "/../outside/secret")
    refused(r, tree.root)
    assert admin.loaded == []


def test_absolute_paths_elsewhere_are_refused(admin: Admin, tree: SimpleNamespace) -> None:
    refused(admin.load(str(tree.secret)), tree.root, tree.more)
    refused(admin.load("/etc"), tree.root)
    refused(admin.load(str(tree.root) + "-evil/x"), tree.root)  # a sibling sharing the prefix
    assert admin.loaded == []


def test_paths_no_filesystem_can_hold_are_422_not_500(admin: Admin, tree: SimpleNamespace) -> None:
    """Found by benchmarks/fuzz_api.py: a NUL byte made os.path.realpath raise (a 500)."""
    for path in (str(tree.root / "go\u0000od"), ""):
        r = admin.load(path)
        assert r.status_code == 422, r.text
        assert "path" in r.json()["error"]["message"]
    assert admin.loaded == []


def test_symlinks_out_of_a_root_are_refused(admin: Admin, tree: SimpleNamespace) -> None:
    (tree.root / "link").symlink_to(tree.secret, target_is_directory=True)
    refused(admin.load(str(tree.root / "link")), tree.root)
    # A run folder inside the root whose weights link elsewhere is refused as well.
    inner = make_run(tree.root / "inner")
    (inner / "weights").symlink_to(tree.secret, target_is_directory=True)
    message = refused(admin.load(str(inner)), tree.root)
    assert "weights links outside" in message
    assert admin.loaded == []
    # A link that stays inside the roots is fine; the loader gets the resolved path.
    (tree.root / "alias").symlink_to(tree.other, target_is_directory=True)
    assert admin.load(str(tree.root / "alias")).status_code == 201
    assert admin.loaded == [str(tree.other)]


def test_relative_paths_resolve_against_the_servers_directory(
    base: Path, tree: SimpleNamespace, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(base)
    assert admin.load("runs/good").status_code == 201
    refused(admin.load("outside/secret"), tree.root)
    refused(admin.load("runs/../outside/secret"), tree.root)
    assert admin.loaded == [str(tree.good)]


def test_the_default_root_is_the_runs_folder_where_the_server_started(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path = base
    monkeypatch.chdir(tmp_path)
    assert ServeSettings().model_roots == (tmp_path / "runs",)
    args = build_parser().parse_args(["serve", "runs/a", "--model-root", "models", "--model-root", "/srv/m"])
    assert build_settings(args).model_roots == (tmp_path / "models", Path("/srv/m"))
    args = build_parser().parse_args(["serve", "runs/a"])
    assert build_settings(args).model_roots == (tmp_path / "runs",)


def test_confine_resolves_like_the_filesystem(tree: SimpleNamespace) -> None:
    assert confine(str(tree.good), [tree.root]) == tree.good
    with pytest.raises(ModelPathForbiddenError, match="outside the allowed model roots"):
        confine(str(tree.other), [tree.root])
    os.symlink(tree.root, tree.more / "runs-link")
    assert confine(str(tree.more / "runs-link" / "good"), [tree.root]) == tree.good


@pytest.mark.parametrize("name", ["_other", "-x", "a b", "a+b"])
def test_a_name_no_client_could_reach_is_refused_before_loading(
    admin: Admin, tree: SimpleNamespace, name: str
) -> None:
    """An admin load took any name: "_other" (the label of unknown models in usage and metrics)
    then had its requests booked with the unknown ones'."""
    r = admin.load(str(tree.good), name=name)
    assert r.status_code == 422 and "name" in r.json()["error"]["message"], r.text
    assert admin.loaded == []


def test_usage_names_the_model_as_the_router_reads_the_path(admin: Admin) -> None:
    """The middleware decoded the already decoded path again: "%256d" (a 404 for the model "%6d")
    was booked against the served "m". httpx's ASGI transport decodes the path once, as uvicorn does
    (TestClient decodes it twice, hiding this)."""
    import asyncio

    import httpx

    app = admin.client.app

    async def post() -> int:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post("/v1/models/%256d/predict", json={"texts": ["x"]}, headers=admin.headers)
            return r.status_code

    assert asyncio.run(post()) == 404
    rows = app.state.tunelab.access.store.usage()  # type: ignore[attr-defined]
    assert [(row.model, row.status) for row in rows] == [("_other", 404)]
