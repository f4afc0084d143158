"""``tunelab runs``: every run with its model, method, data and headline metrics."""

from __future__ import annotations

import argparse

from tunelab.cli.output import pct, table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runs",
        help="list runs",
        description="List every run (finished or not) with model, method, data and headline metrics.",
        epilog="example:\n  tunelab runs --dir runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dir", default="runs", help="folder holding the runs (default: runs)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tunelab.runs import list_runs

    infos = list_runs(args.dir)
    if not infos:
        print(f"no runs in {args.dir}/ yet: start one with `tunelab train CONFIG`")
        return 0
    rows = []
    for info in infos:
        s = info.summary
        head = s.get("headline", {})
        rows.append(
            [
                info.path.name,
                info.status,
                s.get("model"),
                s.get("method"),
                (s.get("data") or {}).get("train"),
                pct(head.get("dev", {}).get("accuracy")),
                pct(head.get("test", {}).get("accuracy")),
                pct(head.get("test", head.get("dev", {})).get("macro_f1")),
                s.get("finished_at", "")[:16].replace("T", " ") or None,
            ]
        )
    print(
        table(
            ["run", "status", "model", "method", "train data", "dev acc", "test acc", "macro F1", "finished"],
            rows,
        )
    )
    return 0
