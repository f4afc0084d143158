"""``tunelab eval``: score a finished run on a labelled file and write a report."""

from __future__ import annotations

import argparse

from tunelab.cli.output import headline_lines

HELP = """examples:
  tunelab eval runs/banking77 --data ../shared/data/banking77/test.csv
  tunelab eval runs/banking77                 # show the metrics saved at training time

The file is read with the run's data settings (columns, separator, encoding).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a run on labelled data",
        description="Evaluate a finished run on a labelled file: metrics, report.md, report.html, plots.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run folder, e.g. runs/banking77")
    p.add_argument("--data", help="labelled CSV/TSV/JSONL/Parquet file")
    p.add_argument("--out", help="report folder (default <run>/evals/<file stem>)")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tunelab.evaluate.on_run import evaluate

    metrics = evaluate(args.run, args.data, out_dir=args.out, batch_size=args.batch_size)
    print(f"{args.data or 'saved metrics'} ({metrics.get('n', '?')} rows):")
    print("\n".join(headline_lines(metrics)))
    if "report" in metrics:
        print(f"report: {metrics['report']}")
    return 0
