"""``tunelab serve`` arguments, server settings, and masked logging (no server started)."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunelab.cli.main import main
from tunelab.cli.serve_cmd import ModelSpec, check_served_name, parse_active, parse_specs
from tunelab.errors import ConfigError
from tunelab.serve.logging_setup import configure_logging
from tunelab.serve.settings import ServeSettings, parse_size


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_model_specs_name_versions_and_defaults() -> None:
    specs = parse_specs(["runs/a/", "intents=runs/b", "intents=runs/c", "intents@v9=runs/d"])
    assert specs == [
        ModelSpec("a", "1", "runs/a/"),
        ModelSpec("intents", "1", "runs/b"),
        ModelSpec("intents", "2", "runs/c"),
        ModelSpec("intents", "v9", "runs/d"),
    ]
    assert parse_active(["intents@1"], specs) == {"intents": "1"}


@pytest.mark.parametrize(
    ("specs", "active", "message"),
    [
        (["x@1=runs/a", "x@1=runs/b"], [], "x@1 is given twice"),
        (["x=runs/a"], ["x@2"], "--active 'x@2': name one of the models given (x@1)"),
        (["x=runs/a"], ["x"], "--active 'x'"),
        (["runs/my model"], [], "model runs/my model: 'my model' cannot be served under its own name"),
        (["runs/a#b"], [], "serve it under another name with model NAME=runs/a#b"),
        (["..=runs/a"], [], "'..' cannot be served"),
    ],
)
def test_bad_specs_name_the_problem(specs: list[str], active: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_active(active, parse_specs(specs))


def test_a_name_with_a_trailing_newline_is_not_served() -> None:
    """``re.match`` with ``$`` took "acme\n" as a served name (and cut the newline off the path)."""
    with pytest.raises(ConfigError) as info:
        parse_specs(["runs/acme\n"])
    message = str(info.value)
    assert "\n" not in message and message.startswith("model 'runs/acme\\n': 'acme\\n' cannot be served")
    with pytest.raises(ConfigError, match="cannot be served under its own name"):
        check_served_name("--bot ", "bots/acme", "acme\n", "bots/acme")


@pytest.mark.parametrize("version", ["..", "-", pytest.param("v" * 80, id="80-characters"), ".hidden"])
def test_a_cli_version_follows_the_admin_apis_rule(version: str) -> None:
    """The CLI served versions ("..", "-", 80 characters) that POST /v1/models/{name}/versions refuses."""
    with pytest.raises(ConfigError) as info:
        parse_specs([f"x@{version}=runs/a"])
    message = str(info.value)
    assert message.startswith(f"model 'x@{version}=runs/a': version {version!r}: use a letter or digit")
    assert "\n" not in message
    assert parse_specs(["x@v2.1-rc_1=runs/a"]) == [ModelSpec("x", "v2.1-rc_1", "runs/a")]


def test_sizes_parse_with_units() -> None:
    assert parse_size("1MiB") == 1024 * 1024 and parse_size("1MB") == 1_000_000
    assert parse_size("512kb") == 512_000 and parse_size(2048) == 2048
    with pytest.raises(ConfigError, match="size 'lots'"):
        parse_size("lots")


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    monkeypatch.setenv("TUNELAB_DATA_DIR", "/srv/tunelab")
    s = ServeSettings()
    assert (s.host, s.port, s.max_batch, s.max_wait_ms) == ("127.0.0.1", 8000, 32, 5.0)
    assert (s.max_texts_per_request, s.max_chars_per_text, s.max_body_bytes) == (64, 2000, 1024 * 1024)
    assert s.mask_logs and s.require_keys and s.db is None and s.data_dir == Path("/srv/tunelab")


def test_serve_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "tunelab keys create --name acme --rate 20/s --quota 100000/month" in out
    assert "intents@2=" in out and "--max-wait-ms" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["serve", "/no/such/run"], "/no/such/run: no such run folder"),
        (["serve", "x@1=runs/a", "x@1=runs/b"], "x@1 is given twice"),
        (["serve", "runs/a", "--max-batch", "0"], "--max-batch: Input should be greater than or equal to 1"),
        # the setting's field name ("--max-texts-per-request") named no flag the command has
        (
            ["serve", "runs/a", "--max-texts", "20000"],
            "--max-texts: Input should be less than or equal to 10000",
        ),
        (["serve", "runs/a", "--max-in-flight", "0"], "--max-in-flight: Input should be greater than"),
        (["serve", "runs/a", "--max-body", "huge"], "size 'huge'"),
        (["serve", "runs/a", "--max-wait-ms", "inf"], "--max-wait-ms: "),  # a lone request waited forever
        (["serve", "runs/a", "--model-root", "/no/such/root"], "--model-root /no/such/root: no such folder"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_binding(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err


def test_serve_names_its_model_roots_and_warns_when_the_default_is_missing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    """The server starts (uvicorn stubbed) in a folder without ``runs``: stderr names the root in
    use and warns that it is missing; an explicit root that exists is named without a warning."""
    import signal

    import uvicorn
    from test_serve_app import FakePredictor

    import tunelab.inference

    monkeypatch.setattr(tunelab.inference, "load", FakePredictor)
    given: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: given.update(kw))
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # leave pytest's SIGTERM handler alone
    tmp_path = Path(os.path.realpath(tmp_path))  # as the server's cwd reads it (macOS: /private/var)
    monkeypatch.chdir(tmp_path)
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["serve", "m=fake", *data]) == 0
    # no WebSocket protocol: the websockets package logged every upgrade attempt outside the limit
    assert given["ws"] == "none"
    err = capsys.readouterr().err
    assert f"model roots (admin loads): {tmp_path / 'runs'}" in err
    assert f"warning: model root {tmp_path / 'runs'} does not exist" in err
    (tmp_path / "models").mkdir()
    assert main(["serve", "m=fake", *data, "--model-root", "models"]) == 0
    err = capsys.readouterr().err
    assert f"model roots (admin loads): {tmp_path / 'models'}" in err and "warning" not in err


def test_a_port_in_use_or_a_bad_host_is_one_line_before_listening_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """uvicorn logged "address already in use" after "listening on ..." was printed and exited 3."""
    import signal
    import socket

    import uvicorn
    from test_serve_app import FakePredictor

    import tunelab.inference

    monkeypatch.setattr(tunelab.inference, "load", FakePredictor)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: pytest.fail("the server started"))
    monkeypatch.setattr(signal, "signal", lambda *a: None)
    data = ["--data-dir", str(tmp_path / "data")]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "m=fake", *data, "--port", str(port)]) == 2
        out, err = capsys.readouterr()
    assert f"--port {port}: cannot listen on 127.0.0.1:{port} (" in err and "pick a free port" in err
    assert "listening on" not in out

    def unknown(*args: object, **kwargs: object) -> None:  # no resolver asked: it may be slow or lie
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    assert main(["serve", "m=fake", *data, "--host", "no-such-host.invalid"]) == 2
    assert "--host no-such-host.invalid: cannot listen there" in capsys.readouterr().err


def test_logs_are_masked_by_default(restore_logging: None) -> None:
    handler = configure_logging(level="info", mask=True)
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    log = logging.getLogger("tunelab.serve.test")
    log.info("texts=%r", ["mail jo@example.com", "card 4111 1111 1111 1111"])
    try:
        raise RuntimeError("cannot label 'call +44 20 7946 0958'")
    except RuntimeError:
        log.exception("predict failed")
    out = stream.getvalue()
    assert "jo@example.com" not in out and "4111" not in out and "7946" not in out
    assert "<email>" in out and "<card>" in out and "<phone>" in out


def test_masking_can_be_turned_off(restore_logging: None) -> None:
    handler = configure_logging(level="info", mask=False)
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("tunelab.serve.test").info("mail jo@example.com")
    assert "jo@example.com" in stream.getvalue()


def test_uvicorn_connection_lines_are_limited_but_its_startup_lines_and_errors_are_not(
    restore_logging: None,
) -> None:
    """Each malformed HTTP request and WebSocket attempt was a log line written before any key was
    read: a peer without a key wrote the server's log without limit."""
    handler = configure_logging(level="info", mask=False)
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    log = logging.getLogger("uvicorn.error")
    protocol = "/x/site-packages/uvicorn/protocols/http/h11_impl.py"

    def emit(level: int, message: str, path: str) -> None:
        log.handle(log.makeRecord(log.name, level, path, 1, message, (), None))

    for _ in range(50):
        emit(logging.WARNING, "Invalid HTTP request received.", protocol)
    emit(logging.INFO, "Uvicorn running on http://127.0.0.1:8000", "/x/site-packages/uvicorn/server.py")
    emit(logging.ERROR, "Exception in ASGI application", protocol)
    lines = stream.getvalue().splitlines()
    assert sum("Invalid HTTP request received." in line for line in lines) == 1
    assert any("Uvicorn running on" in line for line in lines)
    assert any("Exception in ASGI application" in line for line in lines)
    assert len(lines) == 3
    [only] = [f for f in log.filters if f.__class__.__name__ == "ConnectionNoiseFilter"]
    only.clock = lambda: 1e12  # type: ignore[attr-defined]  # the interval has passed
    emit(logging.WARNING, "Invalid HTTP request received.", protocol)
    assert "(and 49 more connection line(s)" in stream.getvalue().splitlines()[-1]


def test_serve_help_keeps_its_curl_examples_on_their_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """A lone backslash at a line's end inside the help string joined the lines: every continued
    curl example after the first ran together on one line."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert out.count('Bearer $TOKEN" \\\n') >= 4, out
    assert '$TOKEN"        -H' not in out


def test_repeat_gate_logs_a_recurring_failure_once_per_message_and_interval() -> None:
    from tunelab.serve.logging_setup import RepeatGate

    gate = RepeatGate(every_s=300)
    assert gate.should_log("a", "db down", now=0.0)
    assert not gate.should_log("a", "db down", now=299.0)  # the same failure, too soon
    assert gate.should_log("b", "db down", now=299.0)  # another key has its own entry
    assert gate.should_log("a", "disk full", now=299.5)  # a new message is logged at once
    assert not gate.should_log("a", "disk full", now=500.0)
    assert gate.should_log("a", "disk full", now=599.5)  # and again after the interval
    assert gate.recovered("a") and not gate.recovered("a") and not gate.recovered("c")
    assert gate.should_log("a", "disk full", now=600.0)  # after a recovery the next failure is new
