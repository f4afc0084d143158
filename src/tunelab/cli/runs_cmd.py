"""``tunelab runs``: every run and exported artifact with its format, model, method, data and metrics."""

from __future__ import annotations

import argparse

from tunelab.cli.output import pct, table

HELP = """examples:
  tunelab runs
  tunelab runs --dir experiments/runs

One row per folder: trained runs (format torch), artifacts written by `tunelab export` (status
exported, their format, and the export time under "finished"), ensembles built by `tunelab
ensemble` (method "ensemble of N runs", their build time under "finished"), and unfinished runs or exports
(status unfinished, with the data they were given; `tunelab train --resume runs/<name>.partial`
continues a run). A --dir that does not exist is an error.
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
                else s.get("method"),
                info.format or "?",
                _dict(info.data).get("train"),
                pct(dev.get("accuracy")),
                pct(test.get("accuracy")),
                pct((test or dev).get("macro_f1")),
                pct((test or dev).get("entity_f1")),
                (info.when or "")[:16].replace("T", " ") or None,
            ]
        )
    headers = ["run", "status", "model", "method", "format", "train data", "dev acc", "test acc", "macro F1"]
    headers = [*headers, "entity F1", "finished/exported"]
    if not any(row[-2] != "-" for row in rows):
        # NER's headline is entity F1 (it has no accuracy: its runs showed no score at all); the
        # column is there only when a listed run has one, so a classification listing is unchanged.
        headers.pop(-2)
        rows = [[*row[:-2], row[-1]] for row in rows]
    print(table(headers, rows))
    return 0


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}
