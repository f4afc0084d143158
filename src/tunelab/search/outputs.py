"""A search's table (CSV and Markdown), its plot, and the link to the best run folder.

Rewritten after every trial, atomically, so a killed search leaves them describing every trial
that finished. The table lists dev metrics only: the search chooses on dev, and a table of test
numbers per trial would invite choosing on test by eye.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.atomic import atomic_write_bytes, atomic_write_text
from tunelab.evaluate.render import Section, Table, Text, to_markdown

if TYPE_CHECKING:
    import optuna

    from tunelab.search.space import Dimension

BEST_LINK = "best"


def trial_rows(study: optuna.Study, dims: list[Dimension], metric: str) -> list[dict[str, Any]]:
    """One row per trial: number, state, dev metric (a pruned trial's last reported), values, run, and
    why a failed trial failed (diverged, out of memory)."""
    rows = []
    for t in study.trials:
        value = t.value
        if value is None and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        state, reason = t.state.name.lower(), t.user_attrs.get("failed", "")  # study.FAILED
        ended = t.user_attrs.get("ended the search")  # study.ENDED
        if state == "fail" and not reason and ended:
            reason = f"{ENDED_PREFIX}{ended}"
        left = t.user_attrs.get("left running")  # study.LEFT_RUNNING
        if state == "fail" and left and not reason:
            # left running by a Ctrl-C or a killed process (study._requeue_interrupted): its values
            # ran again as a later trial. Shown as "fail" without a reason, it read as a failure of
            # its values, and the search as one trial more than --trials asked for.
            state = "interrupted"
            how = "stopped by Ctrl-C" if left == "ctrl-c" else "the search process was killed"
            reason = f"{how}; its values were queued to run again"
        rows.append(
            {
                "trial": t.number,
                "state": state,
                f"dev {metric}": value,
                **{d.key: t.params.get(d.key) for d in dims},
                "evaluations": len(t.intermediate_values),
                "seconds": t.user_attrs.get("seconds"),
                "run": f"trials/{t.user_attrs['run']}" if t.state.name == "COMPLETE" else "",
                "reason": reason,
            }
        )
    return rows


def write_outputs(folder: Path, study: optuna.Study, dims: list[Dimension], metric: str) -> dict[str, Path]:
    """``trials.csv``, ``trials.md`` and ``trials.png`` of every trial so far."""
    rows = trial_rows(study, dims, metric)
    files = {"trials.csv": atomic_write_text(folder / "trials.csv", _csv(rows))}
    files["trials.md"] = atomic_write_text(folder / "trials.md", _markdown(rows, metric, best_trial(study)))
    png = trials_png(rows, metric, minimize=study.direction.name == "MINIMIZE")
    if png is not None:
        files["trials.png"] = atomic_write_bytes(folder / "trials.png", png)
    return files


def link_best(folder: Path, run: Path) -> Path | None:
    """Point ``folder/best`` at ``run`` (a relative link, replaced atomically); copy where links fail."""
    link = folder / BEST_LINK
    target = os.path.relpath(run, folder)
    temp = folder / f".{BEST_LINK}.tmp"
    try:
        if temp.is_symlink() or temp.exists():
            temp.unlink()
        temp.symlink_to(target, target_is_directory=True)
        if link.exists() and not link.is_symlink():  # an earlier copy
            shutil.rmtree(link)
        os.replace(temp, link)
    except OSError:  # no symlinks here (Windows without the privilege): a copy, built then renamed
        shutil.rmtree(temp, ignore_errors=True)
        shutil.copytree(run, temp)
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        os.replace(temp, link)
    return link


#: The user attribute of a finished trial's dev loss (its best checkpoint's), what a tie is broken by
DEV_LOSS = "dev loss"


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best finished trial, by training's own rule: the best dev metric, then, on a tie, the lower
    dev loss (``train.loop``'s choice of checkpoint); None before any trial finished.

    Optuna's ``study.best_trial`` kept the earliest of tied trials, so a search could pick a trial that
    its trials' own training would not have (a tie is common on a small dev set). best.json, best/ and
    trials.md all name this one. A tie where a trial has no dev loss recorded (a study from before it
    was) keeps the earliest, as before.
    """
    done = [t for t in study.trials if t.state.name == "COMPLETE" and t.value is not None]
    if not done:
        return None
    pick = min if study.direction.name == "MINIMIZE" else max
    top = pick(t.value for t in done)
    tied = [t for t in done if t.value == top]  # in trial order
    losses = [t.user_attrs.get(DEV_LOSS) for t in tied]
    if len(tied) == 1 or not all(_finite(loss) for loss in losses):
        return tied[0]
    return min(zip(losses, range(len(tied)), tied, strict=True))[2]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        # Full precision here (a spreadsheet formats it); the Markdown table rounds.
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


#: How the reason of a trial whose error ended the search starts (study.ENDED)
ENDED_PREFIX = "ended the search: "


def _ended(row: dict[str, Any]) -> bool:
    return str(row.get("reason") or "").startswith(ENDED_PREFIX)


def _markdown(rows: list[dict[str, Any]], metric: str, top: optuna.trial.FrozenTrial | None) -> str:
    pruned = sum(r["state"] == "pruned" for r in rows)
    # A failed trial with a reason was recorded and the search went on (diverged, out of memory);
    # one without ended the search with its error: "went on without them" was said of both.
    failed = sum(r["state"] == "fail" and bool(r.get("reason")) and not _ended(r) for r in rows)
    ended = [r for r in rows if r["state"] == "fail" and (_ended(r) or not r.get("reason"))]
    interrupted = sum(r["state"] == "interrupted" for r in rows)
    best = None if top is None else top.number
    if top is None:
        lead = "No trial has finished yet."
    else:
        values = ", ".join(f"{k}={_cell(v)}" for k, v in top.params.items())
        lead = f"Best: trial {best}, dev {metric} {top.value:.4f} ({values}); its run folder is best/."
    notes = [
        Text(lead),
        Text(
            f"{len(rows)} trial(s), {pruned} pruned (stopped early: their dev {metric} trailed the median "
            "of earlier trials at the same evaluation; the value shown is their last). Chosen on dev only."
        ),
    ]
    if failed:
        notes.append(Text(f"{failed} failed (see reason): the search went on without them."))
    for row in ended:
        # past tense: still true after a rerun went on past it
        see = " (see reason)" if row.get("reason") else ""
        notes.append(Text(f"Trial {row['trial']} failed and ended that run of the search{see}."))
    if interrupted:
        notes.append(Text(f"{interrupted} interrupted: their values ran again as later trials."))
    headers = list(rows[0]) if rows else ["trial"]
    body = [
        [("★ " if r["trial"] == best else "") + str(r["trial"]), *map(_cell, list(r.values())[1:])]
        for r in rows
    ]
    right = frozenset(
        i for i, h in enumerate(headers) if h.startswith("dev ") or h in ("evaluations", "seconds")
    )
    return to_markdown(
        f"tunelab search: dev {metric} per trial", [Section("Trials", [*notes, Table(headers, body, right)])]
    )


def trials_png(rows: list[dict[str, Any]], metric: str, *, minimize: bool) -> bytes | None:
    """Each trial's dev metric (pruned ones hollow, failed or interrupted ones crosses) and the best
    so far, against the trial number.

    A failed or interrupted trial was drawn as "pruned": it was not stopped for trailing the others,
    and its last value may come from before anything was learned. One with no value (it failed
    before its first evaluation: diverged, out of memory) is a cross at the foot of the axis (such
    trials were left out of the plot).
    """
    from tunelab.evaluate.plots import figure_png, finite_number, new_figure

    points = [(r["trial"], finite_number(r[f"dev {metric}"]), r["state"]) for r in rows]
    lost = [n for n, v, s in points if v is None and s in ("fail", "interrupted")]
    points = [(n, v, s) for n, v, s in points if v is not None]
    if not points and not lost:
        return None
    fig = new_figure(7.0, 4.0)
    ax = fig.add_subplot()
    done = [(n, v) for n, v, s in points if s == "complete"]
    cut = [(n, v) for n, v, s in points if s == "pruned"]
    failed = [(n, v) for n, v, s in points if s not in ("complete", "pruned")]  # fail, running
    if done:
        ax.plot(*zip(*done, strict=True), "o", color="tab:blue", label="finished trial")
        best, steps = None, []
        for n, v in done:
            best = v if best is None or (v < best if minimize else v > best) else best
            steps.append((n, best))
        last = max([n for n, _, _ in points] + lost)
        if steps[-1][0] < last:  # carry the best on past later pruned or failed trials
            steps.append((last, steps[-1][1]))
        ax.step(
            *zip(*steps, strict=True), where="post", color="tab:green", linewidth=1.5, label="best so far"
        )
    if cut:
        ax.plot(*zip(*cut, strict=True), "o", mfc="none", color="tab:gray", label="pruned (last value)")
    if failed:
        ax.plot(*zip(*failed, strict=True), "x", color="tab:red", label="failed or interrupted (last value)")
    if lost:
        low, high = ax.get_ylim() if points else (0.0, 1.0)
        ax.plot(lost, [low] * len(lost), "x", color="tab:red", clip_on=False, label="failed (no value)")
        ax.set_ylim(low, high)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    numbers = [n for n, _, _ in points] + lost
    ax.set_xlim(min(numbers) - 0.5, max(numbers) + 0.5)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(f"Search: dev {metric} per trial")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return figure_png(fig)
