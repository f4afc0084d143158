"""``tunelab runs``: every run and exported artifact with its format, model, method, data and metrics."""

from __future__ import annotations

import argparse

from tunelab.cli.output import pct, score, table

HELP = """examples:
  tunelab runs
  tunelab runs --dir experiments/runs

One row per folder: trained runs (format torch), artifacts written by `tunelab export` (status
exported, their format, and the export time under "finished"), ensembles built by `tunelab
ensemble` (method "ensemble of N runs", their build time under "finished"), and unfinished runs or exports
(status unfinished, with the data they were given; `tunelab train --resume runs/<name>.partial`
continues a run). "macro F1", "entity F1" and "score" are on test where the run was scored there,
else on dev, marked "(dev)". A run folder whose run.json is missing or unreadable is listed as
damaged (it cannot be evaluated or served: train it again). A --dir that does not exist is an error.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs",
        help="list runs and exported artifacts",
        description="List every run and exported artifact (finished or not) with its format, model, "
        "method, data and headline metrics.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dir", default="runs", help="folder holding the runs (default: runs)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import tunelab.runs

    infos = tunelab.runs.list_runs(args.dir)
    if not infos:
        print(f"no runs in {args.dir}/ yet: start one with `tunelab train CONFIG`")
        return 0
    rows = []
    for info in infos:
        s = info.summary
        head = _dict(s.get("headline"))  # a damaged run.json shows "-" instead of hiding every run
        dev, test = _dict(head.get("dev")), _dict(head.get("test"))
        members = s.get("members")
        rows.append(
            [
                info.path.name,
                info.status,
                s.get("model"),
                f"ensemble of {len(members)} runs"
                if info.kind == "ensemble" and isinstance(members, list)
                else _method_shown(s),
                info.format or "?",
                _dict(info.data).get("train"),
                pct(dev.get("accuracy")),
                pct(test.get("accuracy")),
                _test_or_dev(test, dev, "macro_f1"),
                _test_or_dev(test, dev, "entity_f1"),
            ]
        )
        # A task whose scores none of the columns above names (a plug-in's "toy_acc") showed "-"
        # everywhere: its own selection metric is shown instead, where the row shows no other score.
        shown = any(cell != "-" for cell in rows[-1][-4:])
        rows[-1] += [
            "-" if shown else _own_score(s, dev, test),
            (info.when or "")[:16].replace("T", " ") or None,
        ]
    headers = ["run", "status", "model", "method", "format", "train data", "dev acc", "test acc", "macro F1"]
    headers = [*headers, "entity F1", "score", "finished/exported (UTC)"]  # as keys list says
    # NER's headline is entity F1 (it has no accuracy: its runs showed no score at all); this column
    # and "score" are there only when a listed run has one, so a classification listing is unchanged.
    for column in ("score", "entity F1"):
        at = headers.index(column)
        if all(row[at] == "-" for row in rows):
            headers.pop(at)
            rows = [[*row[:at], *row[at + 1 :]] for row in rows]
    print(table(headers, rows))
    return 0


def _method_shown(summary: dict) -> object:
    """The run's method; a merged run's says what was merged (``full (merged lora)``): shown as
    plain ``full`` it read as a run trained that way, which it was not."""
    merged = _dict(summary.get("merged_from")).get("method")
    method = summary.get("method")
    return f"{method} (merged {merged})" if isinstance(merged, str) and merged else method


def _test_or_dev(test: dict, dev: dict, key: str) -> str:
    """The test score where the run has one, else the dev score marked " (dev)": one column holds
    both, and a dev score (the split checkpoints were chosen on) read as test flatters the run."""
    if test.get(key) is not None:
        return pct(test[key])
    return "-" if dev.get(key) is None else f"{pct(dev[key])} (dev)"


def _own_score(summary: dict, dev: dict, test: dict) -> str:
    """``metric value`` of the run's own selection metric (``train.metric``, recorded with its best dev
    value), on test where the run was scored there, else on dev marked " (dev)"; "-" where the run
    has none."""
    best = _dict(summary.get("best_dev_metric"))
    if not (best or dev or test):  # unscored (unfinished): no need to look the task up
        return "-"
    metric = next(iter(best), None)
    if metric is None:  # an export or ensemble may lack it: the task's default, if registered here
        metric = _task_metric(summary.get("task"))
    if not isinstance(metric, str):
        return "-"
    # An export or ensemble copies its source's best_dev_metric: that is the source's score, not its own
    own_best = None if summary.get("source_run") or summary.get("members") else best.get(metric)
    if test.get(metric) is not None:
        return f"{metric} {score(test[metric], metric)}"
    value = next((v for v in (dev.get(metric), own_best) if v is not None), None)
    return "-" if value is None else f"{metric} {score(value, metric)} (dev)"


def _task_metric(task: object) -> str | None:
    from tunelab.errors import ConfigError
    from tunelab.tasks import get_task

    if not isinstance(task, str):
        return None
    try:
        return get_task(task).metrics[0]
    except ConfigError:
        return None


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}
