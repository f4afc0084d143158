"""Leakage, review fixes 2: ``tunelab eval RUN --data FILE`` on a continued run (``train --from``)
counts the rows it replayed from its previous run's stored sample and, back along the chain, the
rows of every run it continued (their training rows as training rows, their dev rows as dev rows)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest


def _topic_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _rows(tag: str) -> list[tuple[str, str]]:
    """15 distinct texts, 5 per label: a 0.2 dev split holds 3 of them, training the other 12."""
    words = {"sports": "match goal team", "food": "soup bread cheese", "weather": "rain wind snow"}
    return [(f"{topic} {tag} number {i}", label) for label, topic in words.items() for i in range(5)]


@pytest.fixture(scope="module")
def chain(tiny_bert: Path, tiny_overrides, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run a on old.csv (every training row stored), b continued from a on new.csv replaying all of
    a's sample, and c continued from b on newer.csv replaying nothing: one epoch each."""
    import tunelab

    folder = tmp_path_factory.mktemp("lineage")
    old = _topic_csv(folder / "old.csv", _rows("old"))
    out = folder / "runs"
    recipe = [*tiny_overrides(tiny_bert, old, None, out, epochs=1), "data.dev_size=0.2"]
    a = tunelab.train(None, overrides=[*recipe, "name=a", "continual.rehearsal=all"], show_progress=False)
    runs = {"old": old, "a": a.run_dir}
    for name, previous, extra in (
        ("b", a.run_dir, "continual.rehearsal=all"),
        ("c", None, "continual.rehearsal=0"),
    ):
        new = _topic_csv(folder / f"{name}.csv", _rows(name))
        given = [f"data.train={new}", f"output_dir={out}", f"name={name}", "train.epochs=1", extra]
        result = tunelab.train(from_run=previous or runs["b"], overrides=given, show_progress=False)
        runs[name] = result.run_dir
    return runs


def test_eval_of_a_continued_run_counts_the_rows_of_the_runs_it_continued(
    chain: dict[str, Path], tmp_path: Path, caplog
) -> None:
    from tunelab.evaluate.on_run import evaluate

    # b replayed a's 12 training rows and started from a's weights (chosen with a's 3 dev rows);
    # c replayed nothing, but started from b's weights, which started from a's.
    for name in ("b", "c"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tunelab"):
            metrics = evaluate(chain[name], chain["old"], out_dir=tmp_path / name)
        assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (12, 3), name
        line = (
            "12 of the 15 rows of old.csv are training rows of this run or of the runs it continued "
            "(3 more are their dev rows): the score is not a held-out one"
        )
        assert [r.getMessage() for r in caplog.records if "held-out" in r.getMessage()] == [line]
        assert line in (tmp_path / name / "report.md").read_text(encoding="utf-8")
        saved = json.loads((tmp_path / name / "metrics.json").read_text(encoding="utf-8"))
        assert (saved["rows_in_training"], saved["rows_in_dev"]) == (12, 3)
    # c's own rows are counted as before; b's are training rows of a run c continued.
    metrics = evaluate(chain["c"], chain["a"].parent.parent / "b.csv", out_dir=tmp_path / "b-rows")
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (12, 3)


def test_eval_of_a_continued_run_says_so_when_the_previous_run_is_gone_or_changed(
    chain: dict[str, Path], tmp_path: Path, caplog
) -> None:
    from tunelab.evaluate.on_run import evaluate

    def unchecked(target: str) -> str:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tunelab"):
            metrics = evaluate(chain["b"], chain["old"], out_dir=tmp_path / target)
        assert "accuracy" in metrics
        assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (None, None)
        said = [r.getMessage() for r in caplog.records if "could not be compared" in r.getMessage()]
        assert len(said) == 1 and "\n" not in said[0], said
        assert "Traceback" not in said[0]
        return said[0]

    a = chain["a"]
    moved = a.with_name("a-moved")
    a.rename(moved)
    try:
        assert f"{a}, the run it was continued from, is gone" in unchecked("gone")
    finally:
        moved.rename(a)
    stored = a / "rehearsal.jsonl"
    before = stored.read_text(encoding="utf-8")
    edited = before.replace("old number 0", "old number zero", 1)
    assert edited != before
    stored.write_text(edited, encoding="utf-8")
    try:
        assert "the sample it replayed, changed since it trained" in unchecked("edited")
    finally:
        stored.write_text(before, encoding="utf-8")
    assert evaluate(chain["b"], chain["old"], out_dir=tmp_path / "restored")["rows_in_training"] == 12


def test_eval_follows_a_chain_of_continued_runs_only_so_far_and_once_around_a_loop(
    chain: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.evaluate import on_run
    from tunelab.evaluate.on_run import evaluate

    with monkeypatch.context() as patched:
        patched.setattr(on_run, "_MAX_CONTINUED", 1)  # c -> b is followed, b -> a is not
        metrics = evaluate(chain["c"], chain["old"], out_dir=tmp_path / "short")
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (None, None)
    # a's config made to name c as the run it continued: a loop, each run read once.
    config = chain["a"] / "config.json"
    before = config.read_text(encoding="utf-8")
    raw = json.loads(before)
    raw["continual"] = {**raw["continual"], "from_run": str(chain["c"]), "rehearsal": 0}
    config.write_text(json.dumps(raw), encoding="utf-8")
    try:
        metrics = evaluate(chain["c"], chain["old"], out_dir=tmp_path / "loop")
    finally:
        config.write_text(before, encoding="utf-8")
    assert (metrics["rows_in_training"], metrics["rows_in_dev"]) == (12, 3)


def test_a_run_continued_weekly_for_a_year_keeps_its_overlap_check() -> None:
    """At 20 runs followed back, a run continued weekly lost eval's training-overlap check after five
    months (``rows_in_training`` null, "continued from more than 20 runs"); a loop of replaced
    folders is stopped by the runs already seen (the test above), so the bound only limits reading."""
    from tunelab.evaluate import on_run, trained_rows

    assert trained_rows.MAX_CONTINUED >= 52 * 5 and on_run._MAX_CONTINUED == trained_rows.MAX_CONTINUED
