"""The follower's review: copytruncate under a followed symlink finishes the copy beside its target,
a deleted followed file is read to its end, closed and warned about, and a UTF-16 file or a JSON
array is refused (or read, for a folder's array) in one warning instead of a skip a line."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from test_monitor_app import classifier, config, doc, write_jsonl

from tunelab.apps.monitor import Monitor
from tunelab.apps.monitor.sources import ROTATION_GRACE_READS, ROTATION_MAX_READS


def stored_ids(m: Monitor, count: int) -> list[str]:
    return sorted(d["id"] for d in m.store.documents("markets", [f"n{i}" for i in range(count)]))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- 1. copytruncate of a followed symlink's target ---------------------------------------------------


def linked(tmp_path: Path) -> tuple[Path, Path]:
    """``news.jsonl`` -> ``logs/news.jsonl`` holding n0, n1."""
    (tmp_path / "logs").mkdir()
    link, real = tmp_path / "news.jsonl", tmp_path / "logs" / "news.jsonl"
    write_jsonl(real, [doc(0, 0, "a"), doc(1, 1, "b")])
    os.symlink(real, link)
    return link, real


def copytruncate(real: Path) -> None:
    shutil.copy(real, str(real) + ".1")
    os.truncate(real, 0)


def test_copytruncate_of_a_followed_symlinks_target_finishes_the_copy(tmp_path: Path, caplog) -> None:
    """The copy is beside the target (logs/news.jsonl.1), not beside the symlink: n2, n3, written
    after the last read and before the copy, were lost ("was truncated: reading it from the start")."""
    _, real = linked(tmp_path)
    with caplog.at_level(logging.INFO), Monitor(config(tmp_path), classifier=classifier()) as m:
        m.poll()
        m.poll()
        write_jsonl(real, [doc(2, 2, "c"), doc(3, 3, "d")], mode="a")
        copytruncate(real)
        write_jsonl(real, [doc(4, 4, "e")], mode="a")
        for _ in range(ROTATION_GRACE_READS + 2):
            m.poll()
        assert stored_ids(m, 5) == ["n0", "n1", "n2", "n3", "n4"]
    assert not any("reading it from the start" in w for w in warnings(caplog))
    assert any("news.jsonl.1" in w and "finishing the copy" in w for w in warnings(caplog))


def test_copytruncate_of_a_followed_symlinks_target_while_stopped_finishes_the_copy(
    tmp_path: Path, caplog
) -> None:
    _, real = linked(tmp_path)
    with Monitor(config(tmp_path), classifier=classifier()) as m:
        m.poll()
    write_jsonl(real, [doc(2, 2, "c"), doc(3, 3, "d")], mode="a")
    copytruncate(real)
    write_jsonl(real, [doc(4, 4, "e")], mode="a")
    with caplog.at_level(logging.INFO), Monitor(config(tmp_path), classifier=classifier()) as m:
        for _ in range(ROTATION_GRACE_READS + 2):
            m.poll()
        assert stored_ids(m, 5) == ["n0", "n1", "n2", "n3", "n4"]
    assert not any("is not the file read before" in w for w in warnings(caplog))


# -- 2. a deleted followed file ----------------------------------------------------------------------


def open_deleted(name: str) -> list[str]:
    """This process's descriptors on a deleted file called ``name``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.endswith(f"/{name} (deleted)"):
            found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_a_deleted_followed_file_is_read_to_its_end_closed_and_warned_about(tmp_path: Path, caplog) -> None:
    """Its descriptor stayed open for ever (the disk space never freed), without a word."""
    news = tmp_path / "news.jsonl"
    write_jsonl(news, [doc(i, i / 100, "Acme Corp revenue steady") for i in range(2000)])
    with caplog.at_level(logging.INFO), Monitor(config(tmp_path), classifier=classifier()) as m:
        m.poll()
        m.poll()
        write_jsonl(
            news, [doc(i, i / 100, "written before the deletion") for i in range(2000, 2003)], mode="a"
        )
        os.unlink(news)
        stored = sum(m.poll().stored for _ in range(ROTATION_GRACE_READS + 3))
        assert stored == 3 and m.store.count("markets") == 2003  # nothing lost
        assert open_deleted("news.jsonl") == []
        gone = [w for w in warnings(caplog) if "news.jsonl" in w]
        assert gone and len(gone) == len(set(gone))  # each said once, not once a poll
        caplog.clear()
        for _ in range(3):
            m.poll()
        assert not any("news.jsonl" in w for w in warnings(caplog))
        write_jsonl(news, [doc(5000, 30, "a new file"), doc(5001, 31, "b")])  # back: read from its start
        assert m.poll().stored == 2


def test_a_followed_file_renamed_away_is_still_read_until_its_new_file_comes(tmp_path: Path) -> None:
    """A rename (its name kept elsewhere) is a rotation whose new file is not there yet: not a deletion."""
    news = tmp_path / "news.jsonl"
    write_jsonl(news, [doc(0, 0, "a")])
    with Monitor(config(tmp_path), classifier=classifier()) as m:
        assert m.poll().stored == 1
        os.replace(news, tmp_path / "news.jsonl.1")
        for _ in range(ROTATION_MAX_READS + 2):
            m.poll()
        write_jsonl(tmp_path / "news.jsonl.1", [doc(1, 1, "b")], mode="a")  # its writer still holds it
        assert m.poll().stored == 1


# -- 3. UTF-16 files and JSON arrays -----------------------------------------------------------------


def lines_of(docs: list[dict]) -> str:
    return "".join(json.dumps(d) + "\r\n" for d in docs)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_followed_utf16_file_is_refused_in_one_warning(tmp_path: Path, caplog, encoding: str) -> None:
    """PowerShell 5.1's ``>`` writes UTF-16 with a byte-order mark: each line was skipped ("not
    UTF-8", "not JSON") with a warning about a sparse file."""
    path = tmp_path / "ps.jsonl"
    bom = b"\xff\xfe" if encoding == "utf-16" else b"\xfe\xff"
    path.write_bytes(
        bom * (encoding != "utf-16") + lines_of([doc(0, 0, "a"), doc(1, 1, "b")]).encode(encoding)
    )
    cfg = config(tmp_path, sources=[{"follow": str(path)}])
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as m:
        results = [m.poll() for _ in range(3)]
        assert [(r.stored, r.skipped) for r in results] == [(0, 0)] * 3
        said = warnings(caplog)
        assert len(said) == 1 and "ps.jsonl" in said[0] and "UTF-16: save it as UTF-8 (JSON lines)" in said[0]
        path.write_text(lines_of([doc(0, 0, "a"), doc(1, 1, "b")]), encoding="utf-8")  # saved again
        assert m.poll().stored == 2


def test_a_folder_utf16_file_is_refused_in_one_warning(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "ps.jsonl").write_bytes(lines_of([doc(0, 0, "a"), doc(1, 1, "b")]).encode("utf-16"))
    write_jsonl(folder / "ok.jsonl", [doc(2, 2, "c")])
    cfg = config(tmp_path, sources=[{"directory": str(folder)}])
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as m:
        result = m.poll()
        assert (result.stored, result.skipped) == (1, 0)
        m.poll()
    said = warnings(caplog)
    assert len(said) == 1 and "ps.jsonl" in said[0] and "UTF-16: save it as UTF-8 (JSON lines)" in said[0]


@pytest.mark.parametrize("indent", [None, 1], ids=["object-a-line", "pretty-printed"])
def test_a_folder_file_holding_a_json_array_has_its_items_read(tmp_path: Path, caplog, indent) -> None:
    """``[\\n {...},\\n {...}\\n]`` stored only its last object (the others skipped as not JSON)."""
    folder = tmp_path / "drop"
    folder.mkdir()
    docs = [doc(i, i, f"item {i}") for i in range(3)]
    text = (
        json.dumps(docs, indent=indent)
        if indent
        else "[\n" + ",\n".join(json.dumps(d) for d in docs) + "\n]\n"
    )
    (folder / "array.json").write_text(text, encoding="utf-8")
    cfg = config(tmp_path, sources=[{"directory": str(folder), "pattern": "*.json"}])
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as m:
        result = m.poll()
        assert (result.stored, result.skipped) == (3, 0)
        assert stored_ids(m, 3) == ["n0", "n1", "n2"]
    assert warnings(caplog) == []


def test_a_folder_array_with_a_bad_item_names_its_line(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    good = json.dumps(doc(0, 0, "a"))
    (folder / "array.json").write_text(f'[\n{good},\n{{"id": "n1", "text": "no time"}}\n]', encoding="utf-8")
    cfg = config(tmp_path, sources=[{"directory": str(folder), "pattern": "*.json"}])
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as m:
        result = m.poll()
    assert (result.stored, result.skipped) == (1, 1)
    assert any("array.json line 3" in w and "no time" in w for w in warnings(caplog))


def test_a_followed_file_holding_a_json_array_is_named_once(tmp_path: Path, caplog) -> None:
    path = tmp_path / "news.jsonl"
    path.write_text(json.dumps([doc(0, 0, "a"), doc(1, 1, "b")], indent=1) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING), Monitor(config(tmp_path), classifier=classifier()) as m:
        m.poll()
        m.poll()
    said = [w for w in warnings(caplog) if "JSON lines" in w]
    assert len(said) == 1 and "news.jsonl" in said[0] and "a JSON array" in said[0]


def test_a_folder_file_starting_with_a_bracket_but_no_array_is_read_as_json_lines(
    tmp_path: Path, caplog
) -> None:
    """A JSON lines file whose first line is an array (a stray ``[1]``) keeps its other documents;
    an array that is no JSON (a trailing comma) is read line by line as before, with one warning."""
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.jsonl").write_text("[1]\n" + json.dumps(doc(0, 0, "a")) + "\n", encoding="utf-8")
    (folder / "b.jsonl").write_text("[\n" + json.dumps(doc(1, 1, "b")) + ",\n]\n", encoding="utf-8")
    cfg = config(tmp_path, sources=[{"directory": str(folder)}])
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as m:
        result = m.poll()
        assert stored_ids(m, 2) == ["n0"]
    assert (result.stored, result.skipped) == (1, 4)  # a.jsonl's [1]; b.jsonl's three lines
    said = warnings(caplog)
    assert any("a.jsonl starts with '[' but is no JSON array (more after" in w for w in said)
    assert any("b.jsonl starts with '[' but is no JSON array (Expecting value at line 3" in w for w in said)


def test_a_folder_file_being_written_is_read_once_whole_without_a_false_malformed_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer without the temp-then-rename pattern (``cp``, ``jq > inbox/x.jsonl``) caught mid-way:
    its cut last line was logged and counted as malformed, though the file was read again whole."""
    import tunelab.apps.monitor.monitor as monitor_module

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = config(tmp_path, sources=[{"directory": str(inbox)}])
    lines = [json.dumps(doc(i, i, f"Acme Corp revenue {i}")) + "\n" for i in range(4)]
    with caplog.at_level(logging.WARNING), Monitor(cfg, classifier=classifier()) as m:
        with open(inbox / "a.jsonl", "w", encoding="utf-8") as fh:
            fh.write(lines[0] + lines[1] + lines[2][:25])
            fh.flush()
            first = m.poll()
            fh.write(lines[2][25:] + lines[3])
        assert (first.stored, first.skipped) == (0, 0)  # left for a later poll
        second = m.poll()
        assert (second.stored, second.skipped) == (4, 0)
        path = inbox / "b.jsonl"
        path.write_text(lines[0].replace("n0", "b0").rstrip("\n")[:-1], encoding="utf-8")  # cut, and stays so
        assert m.poll().stored == 0  # read after WRITING_S: its cut line is malformed, said once
        monkeypatch.setattr(monitor_module, "WRITING_S", 0.0)  # as if written long ago
        assert m.poll().skipped == 1
    assert [w for w in warnings(caplog) if "not JSON" in w] == [w for w in warnings(caplog) if "b.jsonl" in w]
