"""Loading a model while serving changes nothing for the rest of the process (issue 8 item 8).

Before, a ``torch-int8`` load ran inside ``logging.disable`` and ``warnings.catch_warnings`` (both
process-wide: every other request's access-log line and warning vanished meanwhile), an encoder
load flipped transformers' global verbosity, and every atomic write set the umask to 0 for a
moment (files other threads created then were world-writable).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import tunelab
from tunelab.atomic import atomic_write_text
from tunelab.quiet import quiet
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.settings import ServeSettings


def current_umask() -> int | None:
    """The umask read without setting it (Linux ``/proc``), or None where that is not possible."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1], 8) for line in lines if line.startswith("Umask:")), None)


def catch_all_ignore() -> bool:
    """Whether a filter now ignores every warning (what ``simplefilter("ignore")`` adds)."""
    return any(
        f[0] == "ignore" and f[1] is None and f[2] is Warning and f[3] is None for f in warnings.filters
    )


# -- atomic writes -----------------------------------------------------------------------------------


def test_atomic_writes_never_set_the_umask_and_still_honour_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_umask = os.umask
    previous = real_umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real_umask(mask))
        atomic_write_text(tmp_path / "a.txt", "one")
        atomic_write_text(tmp_path / "a.txt", "two")  # over an existing file
        monkeypatch.undo()
    finally:
        real_umask(previous)
    assert calls == [], f"os.umask was called with {calls}"
    assert (tmp_path / "a.txt").read_text() == "two"
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temp file left


# -- quiet() is per thread ---------------------------------------------------------------------------


def test_quiet_hides_only_the_calling_threads_logs_and_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    inside, release = threading.Event(), threading.Event()

    def chatty_library() -> None:
        with quiet():
            logging.getLogger("some.library").warning("library chatter")
            warnings.warn("library warning", UserWarning, stacklevel=1)
            inside.set()
            release.wait(30)

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        worker = threading.Thread(target=chatty_library)
        worker.start()
        try:
            assert inside.wait(30)
            logging.getLogger("tunelab.serve.access").info("POST /v1/models/x/predict 200")
            warnings.warn("a request's own warning", UserWarning, stacklevel=1)
            assert logging.root.manager.disable == logging.NOTSET
        finally:
            release.set()
            worker.join(30)
    messages = [r.getMessage() for r in caplog.records]
    assert "POST /v1/models/x/predict 200" in messages
    assert "library chatter" not in messages
    assert [str(w.message) for w in seen] == ["a request's own warning"]


# -- a load through the admin endpoint, with a request in between -----------------------------------


@pytest.fixture(scope="module")
def artifacts(
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A tiny run and its ``torch-int8`` export (whose load quantises under ``quiet()``)."""
    train, test = labelled_csvs
    root = tmp_path_factory.mktemp("side-effects")
    overrides = tiny_overrides(tiny_bert, train, test, root, "name=topics", epochs=2)
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    # max_drop=100.0: this is a serving fixture, not a parity check (int8 parity is tested in
    # test_compress); a 2-epoch tiny model must export whatever its accuracy drop.
    tunelab.export(run, format="torch-int8", max_drop=100.0, show_progress=False)
    return root


@pytest.fixture
def server(artifacts: Path) -> Iterator[tuple[TestClient, str]]:
    values: dict[str, Any] = {"data_dir": artifacts / "data", "db": None, "max_wait_ms": 1}
    if "model_roots" in ServeSettings.model_fields:  # loads are confined to allowed folders
        values["model_roots"] = (artifacts,)
    run = artifacts / "topics"
    app = create_app(ServeSettings(**values), [ServedModel("topics", "1", tunelab.load(run), str(run))])
    with TestClient(app, raise_server_exceptions=False) as client:
        _, admin = app.state.tunelab.access.create_key("root", rate=None, quota=None, admin=True)
        yield client, admin


def test_a_request_during_a_load_is_still_logged_and_the_process_is_unchanged(
    server: tuple[TestClient, str],
    artifacts: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch.ao.quantization as quantization

    client, admin = server
    headers = {"Authorization": f"Bearer {admin}"}
    caplog.set_level(logging.INFO, logger="tunelab.serve.access")
    umask_before = current_umask()
    level_before = logging.getLogger("transformers").getEffectiveLevel()

    # Hold the load inside its quantisation step (where it hides the quantiser's chatter) until a
    # request from another client has been answered and logged.
    inside, release = threading.Event(), threading.Event()
    original = quantization.quantize_dynamic

    def held(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        release.wait(60)
        return original(*args, **kwargs)

    monkeypatch.setattr(quantization, "quantize_dynamic", held)
    loaded: list[Any] = []
    body = {"path": str(artifacts / "topics-torch-int8"), "version": "2", "activate": False}
    loader = threading.Thread(
        target=lambda: loaded.append(client.post("/v1/models/topics/versions", json=body, headers=headers))
    )
    loader.start()
    try:
        assert inside.wait(120), "the load never reached its quantisation step"
        r = client.post("/v1/models/topics/predict", json={"texts": ["rain and snow"]}, headers=headers)
        assert r.status_code == 200, r.text
        during = {
            "logging disabled": logging.root.manager.disable,
            "catch-all warning filter": catch_all_ignore(),
            "umask": current_umask(),
            "transformers level": logging.getLogger("transformers").getEffectiveLevel(),
        }
    finally:
        release.set()
        loader.join(120)
    assert loaded and loaded[0].status_code in (200, 201), loaded[0].text if loaded else "no answer"
    request_id = r.headers["X-Request-ID"]
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "tunelab.serve.access"]
    assert any(request_id in line for line in lines), f"no access-log line for {request_id}: {lines}"
    assert during == {
        "logging disabled": logging.NOTSET,
        "catch-all warning filter": False,
        "umask": umask_before,
        "transformers level": level_before,
    }


def test_onnxruntime_loaded_through_tunelab_writes_nothing_in_the_home_folder(tmp_path: Path) -> None:
    """Importing onnxruntime wrote a persistent device id and a telemetry database under
    ``~/.cache/Microsoft`` on every export, ONNX predict and serve; a value the user set is kept."""
    import subprocess
    import sys

    script = (
        "import os, tunelab.compress.ort_backend, onnxruntime; print(os.environ['ORT_DISABLE_TELEMETRY'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script], env={**env, "HOME": str(home)}, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    assert [p for p in home.rglob("*") if p.is_file()] == []
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "HOME": str(home), "ORT_DISABLE_TELEMETRY": "0"},
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "0", done.stderr  # the user's choice stands
