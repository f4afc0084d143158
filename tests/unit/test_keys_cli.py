"""``tunelab keys`` and ``tunelab usage``, in process: output, files, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tunelab.cli.main import main
from tunelab.serve.access import AccessControl
from tunelab.serve.store import UsageRecord, open_store


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_create_prints_the_token_once(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys, "keys", "create", "--name", "acme", "--rate", "20/s", "--quota", "100000/month"
    )
    assert code == 0
    lines = out.strip().splitlines()
    assert "created key 'acme'" in lines[0] and "20/s" in lines[0] and "100000/month" in lines[0]
    token = lines[1]
    assert token.startswith("tl_") and "shown only now" in lines[2]
    with open_store(None, data_dir) as store:
        caller = AccessControl(store).authenticate(token)
    assert caller.name == "acme" and not caller.admin
    code, out, _ = cli(capsys, "keys", "list")
    assert code == 0 and "acme" in out and caller.key_id in out and "100000/month" in out
    assert token not in out and token.split("_", 2)[2] not in out and "sha256" not in out


def test_create_json_and_list_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "keys", "create", "--name", "ops", "--admin", "--json")
    created = json.loads(out)
    assert code == 0 and created["key"]["admin"] is True and created["token"].startswith("tl_")
    code, out, _ = cli(capsys, "keys", "list", "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    assert listed == [created["key"]]


def test_revoke_and_list(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "keys", "create", "--name", "acme")
    cli(capsys, "keys", "create", "--name", "beta")
    code, out, _ = cli(capsys, "keys", "revoke", "acme")
    assert code == 0 and "revoked key 'acme'" in out
    code, out, _ = cli(capsys, "keys", "list")
    acme = next(line for line in out.splitlines() if line.startswith("acme"))
    assert acme.split()[-2:] != ["-", "-"] and acme.split()[-1] != "-"  # has a revoked time
    code, out, _ = cli(capsys, "keys", "list", "--active")
    assert "beta" in out and "acme" not in out
    code, _, err = cli(capsys, "keys", "revoke", "acme")
    assert code == 2
    one_error(err, "already revoked")


def test_list_active_with_only_revoked_keys_says_so(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "no keys yet: create one with ...", though two keys exist (revoked)."""
    code, out, _ = cli(capsys, "keys", "list", "--active")
    assert code == 0 and out.startswith("no keys yet: create one")
    for name in ("acme", "beta"):
        cli(capsys, "keys", "create", "--name", name)
        cli(capsys, "keys", "revoke", name)
    code, out, _ = cli(capsys, "keys", "list", "--active")
    assert code == 0
    assert out.strip() == "no active keys (2 revoked; `tunelab keys list` shows them)"


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["keys", "create", "--name", "x", "--rate", "20/fortnight"], ["rate '20/fortnight'", "20/s"]),
        (["keys", "create", "--name", "x", "--quota", "lots"], ["quota 'lots'", "100000/month"]),
        # "" (an unset shell variable) was falsy: an unlimited key, without a word
        (["keys", "create", "--name", "x", "--rate", ""], ["rate ''", "20/s"]),
        (["keys", "create", "--name", "x", "--quota", ""], ["quota ''", "100000/month"]),
        (["keys", "create", "--name", "bad name"], ["key name 'bad name'"]),
        (["keys", "revoke", "ghost"], ["no key named or with id 'ghost'"]),
        (["keys", "list", "--db", "mysql://db/x"], ["--db 'mysql://db/x'", "postgresql://"]),
        (["usage", "--key", "ghost"], ["--key 'ghost'"]),
        (["usage", "--since", "yesterday"], ["--since 'yesterday'"]),
        (["usage", "--since", "2026-12-01", "--until", "2026-11-01"], ["not before"]),
        # ages and offsets past the calendar: "unexpected OverflowError" before
        (["usage", "--since", "99999999999d"], ["--since '99999999999d'", "within the calendar"]),
        (["usage", "--since", "4000000w"], ["--since '4000000w'"]),
        (["usage", "--until", "0001-01-01T00:00+01:00"], ["--until '0001-01-01T00:00+01:00'"]),
    ],
)
def test_bad_input_is_one_error_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragments: list[str]
) -> None:
    code, _, err = cli(capsys, *argv)
    assert code == 2
    one_error(err, *fragments)


def test_duplicate_name(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "keys", "create", "--name", "acme")
    code, _, err = cli(capsys, "keys", "create", "--name", "acme")
    assert code == 2
    one_error(err, "already named 'acme'")


def test_unreachable_postgres(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = cli(capsys, "keys", "list", "--db", f"postgresql://tunelab@127.0.0.1:{port}/tunelab")
    assert code == 2
    one_error(err, f"127.0.0.1:{port}", "must be running")


def seed_usage(data_dir: Path) -> tuple[str, str]:
    """Two keys; acme makes 3 requests in November (one refused) and 1 in December; beta one."""
    with open_store(None, data_dir) as store:
        access = AccessControl(store)
        acme, _ = access.create_key("acme", rate=None, quota=None)
        beta, _ = access.create_key("beta", rate=None, quota=None)
        rows = [
            (acme, datetime(2026, 11, 2, 9, tzinfo=UTC), 200, 3),
            (acme, datetime(2026, 11, 3, 9, tzinfo=UTC), 200, 2),
            (acme, datetime(2026, 11, 4, 9, tzinfo=UTC), 429, 4),
            (beta, datetime(2026, 11, 5, 9, tzinfo=UTC), 200, 1),
            (acme, datetime(2026, 12, 1, 0, tzinfo=UTC), 200, 5),
        ]
        for i, (key, at, status, texts) in enumerate(rows):
            store.record_usage(
                UsageRecord(
                    at=at,
                    key_id=key.key_id,
                    key_name=key.name,
                    model="banking77",
                    version="2",
                    texts=texts,
                    tokens=texts * 11 if status == 200 else 0,
                    status=status,
                    latency_ms=20.0,
                    request_id=f"req-{i}",
                )
            )
    return acme.key_id, beta.key_id


def test_usage_summary(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_usage(data_dir)
    code, out, _ = cli(capsys, "usage", "--since", "2026-11-01", "--until", "2026-12-01")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    # key, key id, model, requests, ok, errors, texts, tokens, mean ms
    assert rows["acme"][3:8] == ["3", "2", "1", "5", "55"]
    assert rows["beta"][3:8] == ["1", "1", "0", "1", "11"]
    assert rows["total"][1:6] == ["4", "3", "1", "6", "66"]
    code, out, _ = cli(capsys, "usage", "--since", "2030-01-01")
    assert "no usage recorded" in out


def test_usage_csv(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acme_id, _ = seed_usage(data_dir)
    code, out, _ = cli(capsys, "usage", "--key", "acme", "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["request_id"] for r in rows] == ["req-0", "req-1", "req-2", "req-4"]
    assert rows[0] == {
        "time": "2026-11-02T09:00:00.000Z",
        "key": "acme",
        "key_id": acme_id,
        "model": "banking77",
        "version": "2",
        "texts": "3",
        "tokens": "33",
        "status": "200",
        "latency_ms": "20.000",
        "request_id": "req-0",
    }
    # the refused request (429) bills nothing: its texts are 0, as in the summary (they were 4)
    assert (rows[2]["status"], rows[2]["texts"], rows[2]["tokens"]) == ("429", "0", "0")
    target = tmp_path / "bills" / "november.csv"
    code, out, err = cli(
        capsys,
        "usage",
        "--since",
        "2026-11-01",
        "--until",
        "2026-12-01",
        "--key",
        acme_id,
        "--csv",
        str(target),
    )
    assert code == 0 and "wrote 3 requests" in err
    assert len(target.read_text().splitlines()) == 1 + 3


def test_usage_csv_into_a_folder_is_refused_in_one_line(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was "unexpected IsADirectoryError" at the rename, after the query."""
    code, _, err = cli(capsys, "usage", "--csv", str(tmp_path))
    assert code != 0
    one_error(err, f"--csv {tmp_path}: a folder", "usage.csv")


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["keys", "--help"], ["keys", "create", "--help"], ["usage", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
        assert "example" in capsys.readouterr().out


def test_a_key_named_after_another_keys_id_is_refused(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``keys revoke NAME`` reads an id first: a key named after the admin key's id, revoked by that
    name, revoked the admin key and left the named one active."""
    assert main(["keys", "create", "--name", "ops", "--admin", "--json"]) == 0
    ops = json.loads(capsys.readouterr().out)["key"]
    assert main(["keys", "create", "--name", ops["id"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: key name {ops['id']!r} is the id of key 'ops'; choose another name"], err
    assert main(["keys", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(k["name"], k["revoked_at"]) for k in listed] == [("ops", None)]  # nothing made, nothing revoked
