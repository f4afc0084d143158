"""``tunelab serve --bot/--handoff-webhook/--conversation-ttl`` (uvicorn stubbed, a fake ``Bot``
module) and ``export-feedback`` (``tunelab.cli.support_feedback_cmd``, called directly and through
an argparse group like the ``app support`` one)."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_serve_support import FakeBot

from tunelab.cli import support_feedback_cmd as feedback_cmd
from tunelab.cli.main import main
from tunelab.errors import ConfigError, DataError
from tunelab.serve.store import open_store
from tunelab.serve.store.support import Ticket, Turn

T0 = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# -- tunelab serve --bot ---------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> dict[str, Any]:
    """Stubs uvicorn (keeps the app it was given) and provides ``tunelab.apps.support.bot.Bot``
    as a fake whose ``load`` fails one-line for a folder named ``missing``."""
    import signal

    import uvicorn

    seen: dict[str, Any] = {}

    class Bot(FakeBot):
        @classmethod
        def load(cls, folder: str) -> Bot:
            if "missing" in folder:
                raise ConfigError(f"{folder}: no such bot folder (tunelab app support build writes one)")
            return cls(Path(folder).name, folder)

    module = types.ModuleType("tunelab.apps.support.bot")
    module.Bot = Bot  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tunelab.apps.support.bot", module)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.setdefault("app", app))
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # leave pytest's SIGTERM handler alone
    return seen


def test_serve_loads_bots_without_models(
    served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--bot", "bots/bank", "--bot", "shop=bots/bank", "--data-dir", str(tmp_path)]
    url = "https://user:pw@desk.example.com/hooks?token=abc"
    assert main([*argv, "--handoff-webhook", url, "--conversation-ttl", "2h"]) == 0
    out = capsys.readouterr().out
    assert "loaded bot bank from bots/bank" in out and "loaded bot shop from bots/bank" in out
    assert "POSTed to https://desk.example.com/hooks?..." in out and "pw" not in out and "abc" not in out
    state = served["app"].state.tunelab
    assert state.bots.names() == ["bank", "shop"] and state.registry.names() == []
    assert state.settings.conversation_ttl_s == 7200 and state.settings.handoff_webhook == url


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["serve"], "nothing to serve: give a MODEL"),
        (["serve", "--bot", "bots/missing"], "bots/missing: no such bot folder"),
        (["serve", "--bot", "bots/bank", "--bot", "other/bank"], "a bot named 'bank' is already served"),
        (["serve", "--bot", "bots/my bank?"], "'my bank?' cannot be served under its own name"),
        (["serve", "--bot", "..=bots/bank"], "serve it under another name with --bot NAME=bots/bank"),
        (["serve", "--bot", "bots/bank", "--handoff-webhook", "ftp://x/y"], "--handoff-webhook: "),
        (
            ["serve", "--bot", "bots/bank", "--conversation-ttl", "0"],
            "--conversation-ttl '0': give a positive",
        ),
        (["serve", "--bot", "bots/bank", "--conversation-ttl", "soon"], "--conversation-ttl 'soon'"),
        # taken, then every message a 500 (now + ttl past year 9999); the next two a start-up traceback
        (
            ["serve", "--bot", "bots/bank", "--conversation-ttl", "3000000d"],
            "--conversation-ttl '3000000d': over the longest age, 3650d; give a shorter one",
        ),
        (["serve", "--bot", "bots/bank", "--conversation-ttl", f"{10**12}d"], "over the longest age, 3650d"),
        (["serve", "--bot", "bots/bank", "--conversation-ttl", "9" * 400], "over the longest age"),  # inf
    ],
)
def test_bad_bot_arguments_fail_in_one_line(
    served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert main([*argv, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert "app" not in served


def test_the_longest_conversation_ttl_is_ten_years(served: dict[str, Any], tmp_path: Path) -> None:
    from tunelab.cli.serve_cmd import parse_age

    assert (
        main(["serve", "--bot", "bots/bank", "--data-dir", str(tmp_path), "--conversation-ttl", "3650d"]) == 0
    )
    assert served["app"].state.tunelab.settings.conversation_ttl_s == 3650 * 86400
    assert parse_age("5000d", "--x", max_days=10_000) == 5000 * 86400  # another option's own bound


# -- export-feedback -------------------------------------------------------------------------------


def resolve(store: Any, tid: str, text: str, at: datetime, **resolution: Any) -> None:
    conversation = [{"text": "earlier"}, {"text": text}]
    ticket = Ticket(tid, "bank", "k1", "c1", text, conversation, "r", [], "open", at, at)
    turn = Turn("bank", "k1", "c1", text, "", "handoff", None, at, at + timedelta(hours=1))
    store.add_turn(turn, ticket=ticket)
    store.resolve_ticket(tid, agent="ann", now=at, **{"intent": None, "answer": None, **resolution})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "service.db"
    with open_store(str(path), tmp_path) as store:
        resolve(store, "tk_1", "where is my card?", T0, intent="card_arrival")
        resolve(
            store, "tk_2", 'a "quoted", comma\nand a new line', T0 + timedelta(minutes=1), intent="lost_card"
        )
        resolve(store, "tk_3", "can I speak to a human", T0 + timedelta(minutes=2), answer="Calling you.")
        resolve(
            store, "tk_4", "where is my card?", T0 + timedelta(minutes=3), intent="card_delivery_estimate"
        )
        store.add_turn(  # another bot's, open: never exported
            Turn("shop", "k1", "c", "x", "", "handoff", None, T0, T0),
            ticket=Ticket("tk_5", "shop", "k1", "c", "x", [{"text": "x"}], "r", [], "open", T0, T0),
        )
    return path


def test_export_writes_text_label_csv_latest_label_wins(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "feedback.csv"
    with open_store(str(db), tmp_path) as store:
        summary = feedback_cmd.export_feedback(store, out, bot="bank")
    rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert rows == [  # each after its conversation's previous message ("earlier"), as the bot read it
        {"text": 'earlier a "quoted", comma\nand a new line', "label": "lost_card"},
        {"text": "earlier can I speak to a human", "label": "oos"},
        {"text": "earlier where is my card?", "label": "card_delivery_estimate"},
    ]
    assert (summary.rows, summary.intents, summary.answers, summary.duplicates, summary.labels) == (
        3,
        2,
        1,
        1,
        3,
    )


def test_export_jsonl_skip_answers_since_and_oos_label(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "feedback.jsonl"
    with open_store(str(db), tmp_path) as store:
        feedback_cmd.export_feedback(store, out, skip_answers=True)
        assert [json.loads(line)["label"] for line in out.read_text().splitlines()] == [
            "lost_card",
            "card_delivery_estimate",
        ]
        feedback_cmd.export_feedback(
            store, out, since=T0 + timedelta(minutes=2), oos_label="human", overwrite=True
        )
        assert [json.loads(line) for line in out.read_text().splitlines()] == [
            {"text": "earlier can I speak to a human", "label": "human"},
            {"text": "earlier where is my card?", "label": "card_delivery_estimate"},
        ]


def test_nothing_to_export_is_an_error_and_leaves_the_old_file(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "feedback.csv"
    out.write_text("text,label\nold,kept\n")
    with open_store(str(db), tmp_path) as store:
        with pytest.raises(DataError, match=r"no resolved hand-offs of bot 'shop'.*nothing written"):
            feedback_cmd.export_feedback(store, out, bot="shop", overwrite=True)
        with pytest.raises(ConfigError, match=r"--out .*feedback\.txt: write a \.csv or \.jsonl"):
            feedback_cmd.export_feedback(store, tmp_path / "feedback.txt")
    assert out.read_text() == "text,label\nold,kept\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left


def test_an_existing_out_is_refused_without_overwrite(db: Path, tmp_path: Path) -> None:
    """``--out train.csv`` (the file the rows are meant to be added to) was replaced by the
    resolutions alone, silently."""
    out = tmp_path / "train.csv"
    out.write_text("text,label\nmy labelled row,kept\n")
    with open_store(str(db), tmp_path) as store:
        said = r"--out .*train\.csv exists; give another file .* or --overwrite"
        with pytest.raises(ConfigError, match=said):
            feedback_cmd.export_feedback(store, out, bot="bank")
        assert out.read_text() == "text,label\nmy labelled row,kept\n"
        feedback_cmd.export_feedback(store, out, bot="bank", overwrite=True)
    assert "card_delivery_estimate" in out.read_text() and "kept" not in out.read_text()


def test_an_out_that_is_a_folder_or_under_a_file_is_refused_before_the_store_is_read(
    db: Path, tmp_path: Path
) -> None:
    """Both failed at the very end as "unexpected IsADirectoryError / FileExistsError"."""
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "afile").write_text("x")
    with open_store(str(db), tmp_path) as store:
        with pytest.raises(ConfigError, match=r"--out .*folder\.csv: is a folder; give a \.csv or \.jsonl"):
            feedback_cmd.export_feedback(store, tmp_path / "folder.csv")
        with pytest.raises(ConfigError, match=r"afile is a file, not a folder"):
            feedback_cmd.export_feedback(store, tmp_path / "afile" / "x.csv")


def test_a_follow_up_is_exported_joined_to_its_previous_message_as_the_bot_read_it(tmp_path: Path) -> None:
    # Review finding 10: the follow-up was exported alone, teaching the next model to answer the
    # ambiguous text on its own, while the bot read it joined to the previous message.
    from test_serve_support import real_bot

    previous, follow_up = "I ordered a card last week", "and how long does that take?"
    with open_store(str(tmp_path / "s.db"), tmp_path) as store:
        conversation = [{"text": "hi"}, {"text": previous}, {"text": follow_up}]
        ticket = Ticket("tk_1", "bank", "k1", "c1", follow_up, conversation, "r", [], "open", T0, T0)
        store.add_turn(Turn("bank", "k1", "c1", follow_up, "", "handoff", None, T0, T0), ticket=ticket)
        store.resolve_ticket("tk_1", agent="ann", now=T0, intent="card_arrival", answer=None)
        resolve(store, "tk_2", "my card is lost", T0 + timedelta(minutes=1), intent="lost_card")
        summary = feedback_cmd.export_feedback(store, tmp_path / "f.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert rows == [
        {"text": f"{previous} {follow_up}", "label": "card_arrival"},
        {"text": "earlier my card is lost", "label": "lost_card"},
    ]
    assert summary.with_context == 2
    # The very text the bot classified when it read the follow-up with its conversation.
    bot = real_bot(tmp_path / "bot")
    seen: list[str] = []
    logits = bot.predictor.logits
    bot.predictor.logits = lambda texts: (seen.extend(texts), logits(texts))[1]
    assert bot.reply(follow_up, history=["hi", previous]).kind == "handoff"
    assert seen == [follow_up, rows[0]["text"]]


def _cli(*argv: str) -> int:
    """``argv`` through a parser shaped like ``tunelab app support`` (botcore's group calls add_parser)."""
    parser = argparse.ArgumentParser(prog="tunelab app support")
    actions = parser.add_subparsers(dest="support_action", required=True)
    feedback_cmd.add_parser(actions)
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_the_command_reads_the_store_given_and_says_what_it_wrote(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "train.csv"
    assert _cli("export-feedback", "--store", str(db), "--bot", "bank", "--out", str(out)) == 0
    captured = capsys.readouterr()
    assert f"wrote 3 examples (3 labels) to {out}" in captured.out
    assert "1 answer-only as 'oos'" in captured.out and "1 earlier resolutions" in captured.out
    assert f"database: SQLite {db}" in captured.err
    assert out.read_text(encoding="utf-8").startswith("text,label\n")


def test_a_missing_sqlite_store_is_an_error_not_a_new_database(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(DataError, match=f"no database at {missing}"):
        _cli("export-feedback", "--store", str(missing), "--out", str(tmp_path / "x.csv"))
    assert not missing.exists()


def test_export_from_postgres(postgres_url: str, tmp_path: Path) -> None:
    from test_serve_support_store import clear_postgres

    clear_postgres(postgres_url)
    with open_store(postgres_url, tmp_path) as store:
        resolve(store, "tk_1", "where is my card?", T0, intent="card_arrival")
    out = tmp_path / "pg.csv"
    assert _cli("export-feedback", "--store", postgres_url, "--out", str(out)) == 0
    assert out.read_text() == "text,label\nearlier where is my card?,card_arrival\n"
