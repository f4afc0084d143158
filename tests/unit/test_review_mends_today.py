"""Mends to today's review findings: the knowledge accuracy of a bot without tagged passages, a
Chinese previous message cut by tokens, a freshly built ``live.sqlite`` a reader without write access
can open, a knowledge CSV row with text after a closing quote, the key's rate on the ticket routes,
and a quoted TSV field with a space before its separator."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_serve_support as support_tests

from tunelab.apps.recommend import live as live_module
from tunelab.apps.support.bot import join_previous
from tunelab.apps.support.evaluate import score
from tunelab.apps.support.knowledge import read_passages
from tunelab.config import DataConfig
from tunelab.data.readers import read_table
from tunelab.errors import DataError
from tunelab.serve.limits import Rate

# -- 1. knowledge_accuracy over answers from tagged passages only ------------------------------------


def test_an_untagged_out_of_scope_knowledge_answer_is_wrong_in_accuracy_not_in_knowledge_accuracy() -> None:
    """Judged as accuracy judges it, a knowledge base without tags got knowledge_accuracy 0.0 (it
    was None) from its first out-of-scope message answered from knowledge."""
    labels = ["card", "balance", "transfer", "oos", "oos"]
    oos = np.array([lab == "oos" for lab in labels])
    m = score(["answer", "knowledge", "knowledge", "knowledge", "handoff"], ["card", None, None, None, None],
              labels, oos)  # fmt: skip
    assert m["knowledge_accuracy"] is None  # no tagged passage answered: nothing to judge it by
    assert m["accuracy"] == 0.5  # the template answer right, the out-of-scope knowledge answer wrong
    # tagged passages: knowledge_accuracy over them; the untagged out-of-scope answer only in accuracy
    kinds = ["knowledge", "knowledge", "knowledge", "knowledge"]
    labels = ["card", "balance", "oos", "transfer"]
    oos = np.array([lab == "oos" for lab in labels])
    m = score(kinds, ["card", "card", None, None], labels, oos)
    assert m["knowledge_accuracy"] == 0.5 and m["accuracy"] == pytest.approx(1 / 3)


# -- 2. a Chinese previous message cut by tokens ------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_bert: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


def test_a_chinese_previous_message_keeps_its_end_cut_at_a_token(tokenizer: Any) -> None:
    """One "word" (no spaces) that did not fit was dropped whole: the follow-up was read alone."""
    previous = "我的信用卡昨天在商场里丢了请问我应该怎么办才能尽快冻结这张卡并且补办一张新的信用卡呢"
    follow_up = "要多少钱"
    max_length = 32
    assert len(tokenizer(f"{previous} {follow_up}")["input_ids"]) > max_length  # the case at hand
    joined = join_previous(previous, follow_up, tokenizer, max_length)
    kept = joined[: -len(follow_up) - 1]
    assert joined.endswith(f" {follow_up}") and kept and previous.endswith(kept)
    assert max_length - 1 <= len(tokenizer(joined)["input_ids"]) <= max_length  # as much as fits
    # after words that fit, English is still cut at a word's start
    words = "please tell me " + previous
    assert join_previous(words, follow_up, tokenizer, max_length) == joined


# -- 3. a fresh live.sqlite: rollback journal until the first write ---------------------------------


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def test_a_built_live_sqlite_switches_to_wal_on_its_first_write_not_before(tmp_path: Path) -> None:
    """Made in WAL mode by the build, a freshly built folder could not be loaded by a reader without
    write access to it (SQLite must write a WAL file's -shm beside it)."""
    live_module.create(tmp_path)
    path = tmp_path / live_module.FILE
    assert _journal_mode(path) == "delete"
    store = live_module.LiveStore(tmp_path)
    try:
        assert store.changes_after(0, 0) == ([], [])  # a read leaves it as it is
        assert _journal_mode(path) == "delete"
        row = {"user_id": "u", "item_id": "i", "time": 1.0, "rating": None, "event": None, "positive": 1,
               "recorded": 1.0}  # fmt: skip
        assert store.add_event(row) == 1
        assert _journal_mode(path) == "wal"
        assert len(store.changes_after(0, 0)[1]) == 1
    finally:
        store.close()


@pytest.fixture
def readonly_folder() -> Iterator[Path]:
    """A folder with a freshly created live.sqlite that another user may enter but not write."""
    folder = Path(tempfile.mkdtemp(prefix="tunelab-ro-"))
    try:
        live_module.create(folder)
        (folder / live_module.FILE).chmod(0o444)
        folder.chmod(0o555)
        yield folder
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_reader_without_write_access_reads_a_freshly_built_live_sqlite(readonly_folder: Path) -> None:
    """The reader runs as another user (nobody, when the tests run as root, whom modes do not stop)."""
    if os.geteuid() == 0 and not all(os.stat(p).st_mode & 0o001 for p in readonly_folder.parents):
        pytest.skip("the temp folder's parents are closed to other users")
    store = live_module.LiveStore(readonly_folder)
    pid = os.fork()
    if pid == 0:  # the child: another user, without write access to the folder
        code = 3
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            code = 0 if store.changes_after(0, 0) == ([], []) else 2
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # 1: it raised (HEAD: attempt to write a readonly database)


# -- 4. a knowledge CSV row with text after a closing quote -----------------------------------------


def test_a_knowledge_csv_row_going_on_after_a_closing_quote_is_read_as_before(tmp_path: Path) -> None:
    """Strict CSV refused it with the unclosed quotes; csv's default reads it with the quotes dropped."""
    path = tmp_path / "faq.csv"
    path.write_text(
        'title,text,intent\nA,plain passage,x\nB,"Premium" accounts include travel insurance,y\n'
        'C,"Two\nlines" and more,z\nD,another,w\n',
        encoding="utf-8",
    )
    got = [(p.text, p.intent, p.source.rsplit(":", 1)[1]) for p in read_passages(path)]
    assert got == [
        ("plain passage", "x", "2"),
        ("Premium accounts include travel insurance", "y", "3"),
        ("Two\nlines and more", "z", "5"),
        ("another", "w", "6"),
    ]


def test_a_knowledge_csv_quote_that_never_closes_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text('title,text,intent\nA,plain,x\nB,"unclosed,y\nC,another,z\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"faq\.csv: line 3: not readable CSV \(unexpected end of data\)"):
        read_passages(path)
    # opened after a field that went on after its closing quote, on the same line: refused too
    path.write_text('title,text,intent\nB,"Premium" cover,"unclosed\nC,another,z\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"faq\.csv: line 2: not readable CSV"):
        read_passages(path)


# -- 5. the ticket routes take the key's rate ---------------------------------------------------------


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Any]:
    yield from support_tests.open_api(tmp_path)


def test_a_key_at_one_a_minute_gets_429_on_its_second_ticket_request(sup: Any) -> None:
    """The ticket routes never took the rate: a 1/min key could query the tickets without limit."""
    calls = {
        "list": lambda t: sup.get("/tickets", token=t),
        "get": lambda t: sup.get("/tickets/tk_nope", token=t),
        "claim": lambda t: sup.post("/tickets/tk_nope/claim", token=t),
        "resolve": lambda t: sup.post("/tickets/tk_nope/resolve", {"answer": "done"}, token=t),
    }
    got = {}
    for i, (name, call) in enumerate(calls.items()):
        _, token = sup.state.access.create_key(f"slow{i}", rate=Rate.parse("1/min"), quota=None)
        got[name] = [sup.get("/tickets", token=token).status_code, call(token).status_code]
    assert got == {name: [200, 429] for name in calls}


# -- 6. a quoted TSV field with a space before its separator ----------------------------------------


def test_a_space_after_a_closing_quote_keeps_a_tsv_quoted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It made the whole file read unquoted: its quoted tab split the field (DataError: 3 fields)."""
    path = tmp_path / "q.tsv"
    path.write_text('text\tlabel\n"a\tb" \tx\n"plain"  \ty\n"end" \t"z" \n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tunelab.data.readers"):
        df = read_table(path, DataConfig())
    assert df.values.tolist() == [["a\tb ", "x"], ["plain  ", "y"], ["end ", "z "]]
    assert "without quoting" not in caplog.text
    # more text than spaces after the closing quote: still read without quoting
    other = tmp_path / "dev.tsv"
    other.write_text('label\ttext_a\n1\t"PC卡插槽" 为什么\n0\t很好\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tunelab.data.readers"):
        assert read_table(other, DataConfig())["text_a"].tolist() == ['"PC卡插槽" 为什么', "很好"]
    assert "without quoting" in caplog.text


# -- a user id holding a newline reaches the key check ---------------------------------------------------


def test_a_user_id_holding_a_newline_is_refused_for_its_missing_key_not_as_no_route(tmp_path: Path) -> None:
    """``{user_id:path}`` is ".*", which stops at a newline: such an id matched no route, so a
    request without a key got "404 no route" where every other request without one gets 401 (the
    API fuzzer found it)."""
    from fastapi.testclient import TestClient

    from tunelab.serve.app import create_app
    from tunelab.serve.settings import ServeSettings

    app = create_app(ServeSettings(data_dir=tmp_path, require_keys=True), [])
    with TestClient(app) as client:
        for user in ("a%0Ab", "a/b%0A", "plain"):
            answer = client.get(f"/v1/apps/recommend/movies/users/{user}")
            assert answer.status_code == 401, (user, answer.text)
    assert "/v1/apps/recommend/{name}/users/{user_id}" in app.openapi()["paths"]
