"""``tunelab app recommend build | rank`` (issue 12): output, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from recommend_fixtures import config_dict, write_world

from tunelab.cli.main import main


@pytest.fixture
def rec_yaml(tmp_path: Path, tiny_bert: Path) -> Path:
    path = tmp_path / "rec.yaml"
    raw = config_dict(write_world(tmp_path, unknown=3), encoder=tiny_bert)
    tags = tmp_path / "tags.csv"
    tags.write_text("movie,tag\nspa0,epic\nZZZ1,x\nZZZ1,y\n", encoding="utf-8")
    raw["items"]["extra_text"] = [{"name": "tags", "path": str(tags), "id_column": "movie", "field": "tag"}]
    path.write_text(yaml.safe_dump(raw))
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_build_then_rank(rec_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "recs" / "tiny"
    assert (
        main(["app", "recommend", "build", "--config", str(rec_yaml), "--out", str(out), "--no-progress"])
        == 0
    )
    printed = capsys.readouterr()
    assert f"recommender tiny: {out}" in printed.out
    assert "40 items, 15 users" in printed.out and "ranker: logistic" in printed.out
    assert "3 interactions name 3 items the items file lacks; left out: 'ghost-0' (row " in printed.err
    # extra-text rows on unknown items were counted in build_report.json only
    assert "tags.csv: 2 tags rows name 1 items the items file lacks; left out: 'ZZZ1' (row 3)" in printed.err

    assert main(["app", "recommend", "rank", str(out), "--user", "u1", "--k", "3"]) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert lines[0] == "top 3 for user u1:"
    assert lines[1].lstrip().startswith("1. ") and "because of: The " in lines[2]

    assert main(["app", "recommend", "rank", str(out), "--user", "u1", "--k", "2", "--json"]) == 0
    ranking = json.loads(capsys.readouterr().out)
    assert ranking["user_id"] == "u1" and len(ranking["items"]) == 2 and ranking["fallback"] is False
    assert set(ranking["items"][0]) == {"item_id", "score", "text", "reasons"}

    assert main(["app", "recommend", "rank", str(out), "--user", "nobody", "--k", "2"]) == 0
    printed = capsys.readouterr()
    assert "note: unknown user 'nobody': popular and fresh items" in printed.err

    # bad input on a real folder: one line each, exit 2
    assert main(["app", "recommend", "rank", str(out), "--user", "u1", "--k", "0"]) == 2
    assert "k=0 is out of range: give 1 to 40" in _one_error_line(capsys.readouterr().err)
    assert main(["app", "recommend", "build", "--config", str(rec_yaml), "--out", str(out)]) == 2
    assert "a recommender is already there; give --overwrite" in _one_error_line(capsys.readouterr().err)

    # a damaged live.sqlite is named (it was "unexpected DatabaseError", and serve said to rebuild,
    # which would drop the live items and events)
    (out / "live.sqlite").write_bytes(b"SQLite format 3\x00" + b"garbage" * 20)
    assert main(["app", "recommend", "rank", str(out), "--user", "u1"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "live.sqlite: the live items and events cannot be read" in line and "build it again" not in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["build", "--config", "{tmp}/missing.yaml", "--out", "{tmp}/r"],
            "missing.yaml: recommender config not found",
        ),
        (["rank", "{tmp}/nothing", "--user", "u"], "nothing: no such folder; build one with"),
        (["rank", "{tmp}", "--user", "u"], "not a recommender folder (no recommender.json)"),
        (["build", "--config", "{yaml}", "--out", "{tmp}/r", "--max-pairs", "-1"], "--max-pairs -1: give 0"),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], expected: str, rec_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(tmp=tmp_path, yaml=rec_yaml) for a in argv]
    assert main(["app", "recommend", *args]) == 2
    assert expected in _one_error_line(capsys.readouterr().err)


def test_a_bad_data_file_is_one_line(
    rec_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(ratings.read_text().replace(",1600", ",soon", 1))
    assert main(["app", "recommend", "build", "--config", str(rec_yaml), "--out", str(tmp_path / "r")]) == 2
    assert "ratings.csv: row 2: ts 'soon" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["app", "recommend", "--help"], ["app", "recommend", "build", "--help"],
                 ["app", "recommend", "rank", "--help"], ["app", "--help"]):  # fmt: skip
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out
        assert "tunelab app recommend build --config" in out or "tunelab app recommend rank recs/" in out


def test_build_says_when_it_fitted_a_second_cf_model_and_a_pool_model(
    tmp_path: Path, tiny_bert: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = config_dict(write_world(tmp_path), encoder=tiny_bert)
    raw["cf"]["second"] = {"algorithm": "ease", "factors": 8, "lam": 5.0}
    raw["ranker"].update(rows="pool", hard_pool=10)
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "recs" / "two"
    assert main(["app", "recommend", "build", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "collaborative: als, with ease beside it" in printed
    assert "candidate-pool rows" in printed and "reorders each ranking's top 10" in printed
    assert main(["app", "recommend", "rank", str(out), "--user", "u1", "--k", "3"]) == 0
    assert (
        len([line for line in capsys.readouterr().out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")])
        == 3
    )


def test_build_out_under_a_file_is_refused_before_anything_is_read(
    rec_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It ran the whole build, then failed writing the folder as "unexpected FileExistsError"."""
    import tunelab.apps.recommend.builder as builder

    (tmp_path / "afile").write_text("x", encoding="utf-8")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the data was read")

    monkeypatch.setattr(builder, "load_dataset", never)
    out = tmp_path / "afile" / "rec"
    assert main(["app", "recommend", "build", "--config", str(rec_yaml), "--out", str(out)]) == 2
    assert f"{tmp_path / 'afile'} is a file, not a folder" in _one_error_line(capsys.readouterr().err)


def test_recommend_build_takes_q_as_the_other_commands_do() -> None:
    """The README says -q turns off every command's progress bars; build refused it (--no-progress only)."""
    from tunelab.cli.main import build_parser

    for flag in ("-q", "--quiet", "--no-progress"):
        args = build_parser().parse_args(
            ["app", "recommend", "build", "--config", "c.yaml", "--out", "o", flag]
        )
        assert args.no_progress is True
    assert (
        build_parser().parse_args(["app", "recommend", "build", "--config", "c", "--out", "o"]).no_progress
        is False
    )
