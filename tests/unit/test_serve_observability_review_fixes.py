"""Review of the server's observability: start-up errors never carry a password, log masking leaves
key names and timestamps alone, and a database outage is told apart from a missing key.

The PostgreSQL messages are checked without a server: the URLs are refused before any connection,
and libpq's failures are stood in for by raising psycopg's own errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_serve_security import App, dead_postgres, metrics_text, open_app

from tunelab.cli.main import main
from tunelab.serve.masking import MaskingFilter, mask_pii

# --- 1. credentials in start-up errors ---------------------------------------------------------


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    return lines[0]


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("postgresql://alice:S3cret%PW@127.0.0.1:1/tl", ("S3cret", "percent-encoded", "cannot create")),
        ("postgresql://alice:p@ss#word@127.0.0.1:1/tl", ("ss#word", "word@", "resolve")),
        ("postgresql://alice:pa/ss@127.0.0.1:1/tl", ("pa/ss", "ss@", "alice:")),
    ],
)
def test_a_db_url_that_cannot_be_parsed_is_refused_without_its_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str, secrets: tuple[str, ...]
) -> None:
    pytest.importorskip("psycopg")
    from tunelab.serve.store import describe_store

    line = one_error(capsys, ["keys", "list", "--db", url, "--data-dir", str(tmp_path)])
    assert "cannot parse the --db URL (percent-encode special characters in the password" in line
    assert [s for s in secrets if s in line] == [], line
    described = describe_store(url, tmp_path)  # what a command prints as its "database:" line
    assert [s for s in secrets if s in described] == [], described


def test_an_at_sign_in_the_query_is_no_split_password() -> None:
    pytest.importorskip("psycopg")
    from tunelab.serve.store.postgres import describe_url

    assert describe_url("postgresql://tl@db.internal:6543/billing?user=a@b") == "a@b@db.internal:6543/billing"


@pytest.mark.parametrize("error", ["OperationalError", "ProgrammingError"])
def test_libpq_error_texts_never_carry_the_password(monkeypatch: pytest.MonkeyPatch, error: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    from tunelab.serve.store import StoreError
    from tunelab.serve.store.postgres import PostgresStore

    def connect(*args: object, **kwargs: object) -> None:
        raise getattr(psycopg, error)(
            'connection to server at "db" failed: bad options "p@ss word" and token "p%40ss%20word"'
        )

    monkeypatch.setattr(psycopg, "connect", connect)
    with pytest.raises(StoreError) as raised:
        PostgresStore("postgresql://alice:p%40ss%20word@db:5432/tl")
    message = str(raised.value)
    assert "alice@db:5432/tl" in message and "***" in message
    assert "p@ss word" not in message and "p%40ss%20word" not in message, message


@pytest.mark.parametrize("flag", ["--handoff-webhook", "--alert-webhook"])
def test_a_refused_webhook_url_is_shown_without_its_credentials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str
) -> None:
    url = "https://desk:HookPW99@desk.example.com:99999/hooks?token=T0k3n"
    line = one_error(capsys, ["serve", "runs/x", flag, url, "--data-dir", str(tmp_path)])
    assert line.startswith(f"error: {flag}: https://desk.example.com:99999/hooks?... is not an http(s) URL")
    for secret in ("HookPW99", "desk:", "T0k3n", "Value error"):
        assert secret not in line, line


def test_webhook_urls_are_shown_without_any_credentials() -> None:
    from tunelab.serve.settings import without_secrets

    assert without_secrets("https://u:p#w@hooks.example.com/x") == "https://hooks.example.com/x"
    assert without_secrets("u:pw@hooks.example.com/x") == "(a value without scheme://host, not shown)"
    assert without_secrets("https://hooks.example.com/@team") == "https://hooks.example.com/@team"


# --- 2. log masking: timestamps and key names ---------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-02 08:53:00+00:00",
        "2026-03-02 08:53:00.123456+00:00",
        "ended at 2026-03-02 08",
        "02.03.2026 08:53",
        "2026-03-02T08:53:00+00:00",
    ],
)
def test_a_datetime_is_never_a_phone_number(text: str) -> None:
    assert mask_pii(text) == text


def test_phone_numbers_are_still_masked_beside_dates() -> None:
    assert mask_pii("on 2026-03-02 08:53 call 555-123-4567") == "on 2026-03-02 08:53 call <phone>"
    assert mask_pii("2026-13-02 08") == "<phone>"  # no month 13: not a date


def test_an_ended_alert_is_logged_with_its_iso_time(caplog: pytest.LogCaptureFixture) -> None:
    from tunelab.apps.monitor.detector import Alert
    from tunelab.apps.monitor.monitor import Monitor

    alert = Alert(
        id="a1",
        monitor="markets",
        key="topic:rates",
        kind="negative_share",
        started_at=datetime(2026, 3, 2, 7, tzinfo=UTC),
        level=4.0,
        baseline=0.1,
        observed=0.5,
        ended_at=datetime(2026, 3, 2, 8, 53, tzinfo=UTC),
    )
    with caplog.at_level(logging.WARNING, logger="tunelab.apps.monitor.monitor"):
        Monitor._log_alert(SimpleNamespace(name="markets"), alert)  # type: ignore[arg-type]
    [line] = [r.getMessage() for r in caplog.records]
    assert line.endswith("ended at 2026-03-02T08:53:00+00:00"), line


class Lines(logging.Handler):
    """Each record as the server's handler writes it: through a ``MaskingFilter``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(MaskingFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def access_lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("tunelab.serve.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[App]:
    yield from open_app(tmp_path)


@pytest.mark.parametrize("name", ["ops@acme.io", "4420-7946-0958"])
def test_the_access_line_names_the_key_as_metrics_do(api: App, access_lines: Lines, name: str) -> None:
    _, token = api.access.create_key(name, rate=None, quota=None)
    assert api.predict({"texts": ["pizza"]}, token).status_code == 200
    # a name the client chose (here an unknown model's) is still masked on the same line
    assert api.predict({"texts": ["pizza"]}, token, model="jo@example.com").status_code == 404
    served, unknown = [line for line in access_lines.lines if "/predict" in line]
    assert f"key={name} " in served and f"key={name} " in unknown, access_lines.lines
    assert "model=<email>" in unknown and "jo@example.com" not in unknown
    assert f'key="{name}"' in metrics_text(api)


def test_marked_arguments_pass_the_filter_as_they_are_with_str_and_repr() -> None:
    from tunelab.serve.masking import Unmasked

    args = (Unmasked("ops@acme.io"), Unmasked("4420-7946-0958"), "mail jo@example.com")
    record = logging.LogRecord("tunelab", logging.WARNING, __file__, 1, "key %r (%s) said %s", args, None)
    MaskingFilter().filter(record)
    assert record.getMessage() == "key 'ops@acme.io' (4420-7946-0958) said mail <email>"


# --- 3. a database outage is no missing key ------------------------------------------------------


def test_a_failed_key_look_up_is_counted_and_logged_as_what_it_is(
    api: App, caplog: pytest.LogCaptureFixture
) -> None:
    state = api.app.state.tunelab
    before = metrics_text(api)
    assert 'tunelab_refused_requests_total{reason="store_unavailable"} 0.0' in before  # from the start
    saved = state.store, api.access.store
    state.store = api.access.store = dead_postgres()
    try:
        with caplog.at_level(logging.INFO, logger="tunelab.serve"):
            # the probe first: one line per interval for all refusals would hide it behind the other
            assert api.client.get("/readyz").status_code == 503
            assert api.predict({"texts": ["pizza"]}, api.token).status_code == 503
    finally:
        state.store, api.access.store = saved
    after = metrics_text(api)
    assert 'tunelab_refused_requests_total{reason="store_unavailable"} 1.0' in after
    assert 'tunelab_refused_requests_total{reason="unauthenticated"} 0.0' in after
    lines = [r.getMessage() for r in caplog.records if r.name == "tunelab.serve.access"]
    assert not [line for line in lines if "without a valid key" in line], lines  # neither request
    [lookup] = [line for line in lines if "could not be checked" in line]
    assert "store_unavailable=1" in lookup and "/predict 503" in lookup


def test_the_note_on_a_key_replacing_a_revoked_one_names_it_as_given(api: App) -> None:
    """The key service's own warnings name the key as the operator wrote it (was ``key <email>``)."""
    from tunelab.serve.limits import Quota

    handler = Lines()
    logger = logging.getLogger("tunelab.serve")
    logger.addHandler(handler)
    try:
        api.access.create_key("ops@acme.io", rate=None, quota=Quota(10, "day"))
        api.access.revoke_key("ops@acme.io")
        api.access.create_key("ops@acme.io", rate=None, quota=Quota(10, "day"))
    finally:
        logger.removeHandler(handler)
    (note,) = [line for line in handler.lines if "replaces a revoked key" in line]
    assert "key 'ops@acme.io' replaces" in note and "--key ops@acme.io` totals both" in note, note
