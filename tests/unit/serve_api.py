"""The HTTP app in process for the apps' serve tests: one client with an admin and a plain key.

Each app's test module subclasses ``AppApi`` with its own request helpers (``send``, ``say``, ...)
and opens it with ``open_app``, so making the keys, reading usage rows and metrics, and checking the
one-line error body live here once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from fastapi.testclient import TestClient
from test_serve_app import settings

from tunelab.serve.app import create_app


class AppApi:
    """A ``TestClient`` on the app, with an admin key (``admin``) and a plain one (``token``)."""

    def __init__(self, client: TestClient, app: Any, token: str, admin: str) -> None:
        self.client, self.app, self.token, self.admin = client, app, token, admin

    @property
    def state(self) -> Any:
        return self.app.state.tunelab

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def token_or_default(self, token: str | None) -> str | None:
        """``"default"`` stands for the plain key; None sends no key."""
        return self.token if token == "default" else token

    def rows(self) -> list[Any]:
        return self.state.store.usage()

    def metrics(self) -> str:
        r = self.client.get("/metrics", headers=self.headers(self.admin))
        assert r.status_code == 200
        return r.text


A = TypeVar("A", bound=AppApi)


def open_app(
    api: type[A],
    tmp_path: Path,
    overrides: dict[str, Any],
    *,
    key_names: tuple[str, str] | None = None,
    **apps: Any,
) -> Iterator[A]:
    """Serve ``create_app(settings(..., **overrides), **apps)`` in its own data folder; yields ``api``.

    ``key_names`` (admin, plain) default to names unique per call, so two apps opened in one test
    never share a key name in usage rows or metrics.
    """
    data_dir = tmp_path / uuid.uuid4().hex[:8]
    data_dir.mkdir()
    app = create_app(settings(data_dir, **overrides), **apps)
    with TestClient(app, raise_server_exceptions=False) as client:
        access = app.state.tunelab.access
        run = uuid.uuid4().hex[:6]
        root, plain = key_names or (f"root-{run}", f"acme-{run}")
        _, admin = access.create_key(root, rate=None, quota=None, admin=True)
        _, token = access.create_key(plain, rate=None, quota=None)
        yield api(client, app, token, admin)


def app_factory(opener: Callable[..., Iterator[A]]) -> Iterator[Callable[..., A]]:
    """A fixture body: ``make(...)`` opens another app with ``opener``; all are closed at the end."""
    opened: list[Iterator[A]] = []

    def make(*args: Any, **overrides: Any) -> A:
        opened.append(opener(*args, **overrides))
        return next(opened[-1])

    yield make
    for gen in opened:
        next(gen, None)


def error(r: Any) -> dict[str, str]:
    """The error object of a refused request, checked to be the one-line ``{"error": {...}}`` body."""
    body = r.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    assert "\n" not in body["error"]["message"]
    return body["error"]
