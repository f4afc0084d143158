"""``tunelab serve --monitor/--alert-webhook/--no-follow`` (uvicorn stubbed, the stand-in classifier):
monitors load before the port is bound, and every bad argument is one line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_monitor_app import DETECTOR, classifier

from tunelab.apps.monitor import open_monitor_store
from tunelab.cli.main import main


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Stubs uvicorn (keeps the app it was given) and the monitor's runs (the stand-in classifier)."""
    import signal

    import uvicorn

    import tunelab.apps.monitor as monitor_app

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("app", app))
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # leave pytest's SIGTERM handler alone
    monkeypatch.setattr(monitor_app, "load_classifier", lambda cfg, ner=None: classifier())
    yield seen
    root.handlers[:] = handlers
    root.setLevel(level)


def write(tmp_path: Path, name: str = "markets", **raw: Any) -> str:
    path = tmp_path / f"{name}-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    config = {"name": name, "runs": {"sentiment": "runs/unused"}, "detector": DETECTOR, **raw}
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def test_serve_loads_monitors_without_models(
    served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    news = tmp_path / "news.jsonl"
    news.touch()
    markets = write(tmp_path, sources=[{"follow": str(news)}])
    bonds = write(tmp_path, "bonds", webhook="https://hooks.example.com/bonds")
    url = "https://user:pw@alerts.example.com/hooks?token=abc"
    argv = ["serve", "--monitor", markets, "--monitor", bonds, "--data-dir", str(tmp_path / "data")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"loaded monitor markets from {markets}, following 1 source(s)" in out
    assert f"loaded monitor bonds from {bonds}" in out
    assert "monitor bonds: alerts are POSTed to https://hooks.example.com/bonds" in out
    assert "monitor markets: alerts" not in out  # no webhook for it
    state = served.pop("app").state.tunelab
    assert state.monitors.names() == ["bonds", "markets"] and state.registry.names() == []
    assert type(state.store).__name__ == "SQLiteMonitorStore"  # the server's database, with monitor tables
    with open_monitor_store(None, tmp_path / "data") as store:
        assert store.monitor_names() == ["bonds", "markets"]
    assert main([*argv, "--alert-webhook", url, "--no-follow"]) == 0
    out = capsys.readouterr().out
    assert "monitor markets: alerts are POSTed to https://alerts.example.com/hooks?..." in out
    assert "pw" not in out and "abc" not in out and "following" not in out
    settings = served["app"].state.tunelab.settings
    assert settings.alert_webhook == url and settings.follow_sources is False


@pytest.mark.parametrize(
    ("make_argv", "fragment"),
    [
        (lambda p: ["serve"], "nothing to serve: give a MODEL (a run or artifact folder), --bot"),
        (lambda p: ["serve", "--monitor", str(p / "missing.yaml")], "missing.yaml: monitor config not found"),
        (
            lambda p: ["serve", "--monitor", write(p), "--monitor", write(p)],
            "a monitor named 'markets' is already served",
        ),
        (
            lambda p: ["serve", "--monitor", write(p, sources=[{"follow": str(p / "gone.jsonl")}])],
            "gone.jsonl does not exist",
        ),
        (lambda p: ["serve", "--monitor", write(p), "--alert-webhook", "ftp://x/y"], "--alert-webhook: "),
        (
            lambda p: ["serve", "--monitor", write(p), "--alert-webhook", "http://x:80x/y"],
            "is not an http(s) URL",
        ),
        (
            lambda p: ["serve", "--monitor", write(p, webhook="hooks.example.com")],
            "webhook: 'hooks.example.com' is not an http(s) URL",
        ),
    ],
)
def test_bad_monitor_arguments_fail_in_one_line(
    served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], make_argv: Any, fragment: str
) -> None:
    assert main([*make_argv(tmp_path), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert "app" not in served


def test_without_follow_a_missing_source_is_not_needed(served: dict[str, Any], tmp_path: Path) -> None:
    config = write(tmp_path, sources=[{"follow": str(tmp_path / "gone.jsonl")}])
    assert main(["serve", "--monitor", config, "--no-follow", "--data-dir", str(tmp_path / "data")]) == 0


def test_serve_help_shows_the_monitor_flags_and_routes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    for part in (
        "--monitor YAML",
        "--alert-webhook URL",
        "--no-follow",
        "/v1/apps/monitor/markets/documents",
    ):
        assert part in text, part


def test_the_readmes_monitor_config_is_valid() -> None:
    import yaml

    from tunelab.apps.monitor import MonitorConfig

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Sentiment monitor", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = MonitorConfig.from_dict(yaml.safe_load(block))
    assert config.name == "markets" and config.webhook and len(config.sources) == 2
