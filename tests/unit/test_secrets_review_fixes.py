"""Secrets in refusals and delivery errors (a review of where passwords and tokens end up).

- A monitor config's refused ``webhook:`` was echoed whole, password and query token with it (the
  same URL given as a flag was already shown without them).
- A database value that names neither backend (SQLAlchemy's ``postgresql+psycopg://user:pw@...``,
  libpq's ``host=... password=...``) was echoed whole in the refusal, from ``--db``,
  ``$TUNELAB_DB`` or a monitor's ``store:``; a monitor's unparsable PostgreSQL URL blamed ``--db``.
- A webhook URL with a space was accepted, and every failed delivery then logged its path and query
  (a token) from http.client's error, into the log and the outbox row, retried for ever.
- A monitor whose own database was down answered "the key and usage database is unavailable".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from test_serve_monitor import CountingClassifier, monitor_config, open_api

from tunelab.apps.monitor import MonitorConfig, open_monitor_store
from tunelab.cli.main import main
from tunelab.errors import ConfigError
from tunelab.serve.inputs import is_http_url
from tunelab.serve.store import StoreError, open_store
from tunelab.serve.webhook import DeliveryError, post_json

SECRETS = ("S3cretPw", "HookPw123", "QTOKEN99", "p#ss")


def no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


# -- 1. a monitor config's webhook -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://alice:p#ss@alerts.example.com/hooks",
        "https://alice:HookPw123@alerts.example.com:80443/hooks?token=QTOKEN99",
    ],
    ids=["hash-in-password", "port-out-of-range"],
)
def test_a_refused_monitor_webhook_is_shown_without_its_secrets(tmp_path: Path, url: str) -> None:
    base = {"name": "markets", "runs": {"sentiment": "runs/x"}, "webhook": url}
    with pytest.raises(ConfigError, match=r"webhook: https://alerts\.example\.com") as caught:
        MonitorConfig.from_dict(base, path=tmp_path / "mon.yaml")
    assert "is not an http(s) URL" in str(caught.value)
    no_secret(str(caught.value))


# -- 2. a database value of neither backend --------------------------------------------------------

REFUSED_DBS = {
    "sqlalchemy": "postgresql+psycopg://postgres:S3cretPw%21@127.0.0.1:55432/tl",
    "libpq-keywords": "host=db.internal user=tunelab password=S3cretPw dbname=tl",
}


@pytest.mark.parametrize("db", REFUSED_DBS.values(), ids=REFUSED_DBS.keys())
def test_a_refused_db_value_is_shown_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str
) -> None:
    with pytest.raises(ConfigError, match=r"^--db .*: use postgresql://user@host:5432/dbname") as caught:
        open_store(db, tmp_path)
    no_secret(str(caught.value))
    monkeypatch.setenv("TUNELAB_DB", db)
    with pytest.raises(ConfigError, match=r"^\$TUNELAB_DB ") as caught:
        open_store(db, tmp_path)
    no_secret(str(caught.value))
    with pytest.raises(ConfigError, match=r"^store: .*: use postgresql://") as caught:
        open_monitor_store(db, tmp_path)
    no_secret(str(caught.value))


def test_the_sqlalchemy_form_keeps_its_host_in_the_refusal(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(REFUSED_DBS["sqlalchemy"], tmp_path)
    assert str(caught.value).startswith("--db postgresql+psycopg://127.0.0.1:55432/tl: use postgresql://")


def test_the_keys_command_refuses_it_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list", "--db", REFUSED_DBS["libpq-keywords"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --db (a key=value connection string, not shown") and "\n" not in err
    no_secret(err)


def test_a_monitors_unparsable_postgresql_url_names_its_store_field(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"^cannot parse the store: URL \(percent-encode") as caught:
        open_monitor_store("postgresql://postgres:p@S3cretPw@127.0.0.1:1/tl", tmp_path)
    no_secret(str(caught.value))


# -- 3. a webhook URL with whitespace or a control character ---------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://desk.example.com/hooks?channel=support team&token=QTOKEN99",
        "https://desk.example.com/hooks\t?token=QTOKEN99",
        "https://desk.example.com/hooks\x7f",
        "https://desk.example.com/hooks\n",
    ],
    ids=["space", "tab", "delete", "newline"],
)
def test_a_webhook_url_with_whitespace_or_a_control_character_is_refused(url: str) -> None:
    assert not is_http_url(url)


def test_the_handoff_flag_refuses_a_url_with_a_space(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = "https://desk.example.com/hooks/tickets?channel=support team&token=QTOKEN99"
    argv = ["serve", "runs/x", "--handoff-webhook", url, "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --handoff-webhook: https://desk.example.com/hooks/tickets?... is not an")
    no_secret(err)


def test_a_delivery_error_never_carries_the_url() -> None:
    """A URL that reached delivery anyway (an outbox row from before the check): only its kind."""
    with pytest.raises(DeliveryError) as caught:
        post_json("http://127.0.0.1:9/hooks?a=b c&token=QTOKEN99", b"{}", {}, 1)
    assert str(caught.value) == "InvalidURL: the request could not be sent to this URL"


# -- 4. a monitor's own database down --------------------------------------------------------------


def test_readiness_names_a_monitors_own_database_down_and_is_not_ready_without_another_product(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the service database was pinged: a server serving one monitor whose own database was
    down answered ready (200, "database: ok") while every request to that monitor was a 503."""
    config = monitor_config(tmp_path, store=str(tmp_path / "own.db"))
    for api in open_api(tmp_path, [(config, CountingClassifier())]):
        assert api.client.get("/readyz").status_code == 200
        api.store.close()  # its database gone; the key and usage database is fine
        caplog.set_level(logging.WARNING)
        answer = api.client.get("/readyz")
        assert answer.status_code == 503
        checks = answer.json()["checks"]
        assert checks["monitor markets database"] == "unreachable (the reason is in the server log)"
        assert checks["database"] == "ok"
        assert api.client.head("/readyz").status_code == 503
        assert "readiness: monitor markets: its database is unreachable" in caplog.text


def test_a_monitors_own_database_down_is_named_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = monitor_config(tmp_path, store=str(tmp_path / "own.db"))
    for api in open_api(tmp_path, [(config, CountingClassifier())]):
        api.store.close()  # its database gone; the key and usage database is fine
        caplog.set_level(logging.ERROR)
        answers: list[Any] = [
            api.send([{"id": "d1", "text": "Acme Corp revenue", "time": "2026-03-02T08:00:00Z"}]),
            api.get("/trend"),
            api.get("/alerts"),
        ]
        for r in answers:
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["code"] == "store_unavailable"
            assert error["message"].startswith("the database of monitor 'markets' is unavailable; try again")
            assert "own.db" not in error["message"]  # the address stays in the log
        assert "own.db" in caplog.text
        assert api.client.get("/v1/usage", headers=api.headers(api.token_or_default("default"))).is_success
