"""``tunelab eval``: score a finished run on a labelled file and write a report."""

from __future__ import annotations

import argparse

from tunelab.cli.config_args import add_file_with_options, file_and_options
from tunelab.cli.file_guess import ENCODING_GUESS
from tunelab.cli.output import headline_lines
from tunelab.cli.signals import sigterm_interrupts
from tunelab.errors import TunelabError

HELP = """examples:
  tunelab eval runs/banking77 --data ../shared/data/banking77/test.csv
  tunelab eval runs/banking77                 # show the metrics saved at training time

The run's column names (data.text_column, data.label_column) are what the file must have; how the
file is laid out is its own: format by extension, separator sniffed, header row, encoding
{ENCODING_GUESS}. Give data.* reading options after the file when the guess is wrong, e.g.
  tunelab eval runs/phrasebank --data other.txt data.separator=@ data.header=false \\
      data.column_names=[sentence,label] data.encoding=latin-1
(options: format, separator, encoding, header, column_names, text_column, text_pair_column,
label_column, label_delimiter, empty_text, sheet, tag_column, token_column; a pair run's text_pair_column may
be renamed, not cleared, and a single-text run takes none)
""".replace("{ENCODING_GUESS}", ENCODING_GUESS)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a run on labelled data",
        description="Evaluate a finished run on a labelled file: metrics, report.md, report.html, plots.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run folder, e.g. runs/banking77")
    add_file_with_options(
        p, "--data", "labelled CSV/TSV/JSONL/Parquet file, then any data.* reading options for it"
    )
    p.add_argument(
        "--out",
        help="report folder (default <run>/evals/<file stem>; <stem>-2, ... for another file with that stem)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    p.set_defaults(handler=run, stdout_summary=True)


def run(args: argparse.Namespace) -> int:
    from tunelab.evaluate.on_run import evaluate

    if args.batch_size < 1:
        raise TunelabError(f"--batch-size {args.batch_size}: use 1 or more")
    data, options = file_and_options(args.data)
    # SIGTERM as Ctrl-C: its default killed the process with a report file's hidden temporary left
    with sigterm_interrupts():
        metrics = evaluate(args.run, data, out_dir=args.out, batch_size=args.batch_size, options=options)
    what = data or f"saved {metrics.get('split', '')} metrics".replace("  ", " ")
    print(f"{what} ({metrics.get('n', '?')} rows):")
    print("\n".join(headline_lines(metrics, _task_of(args.run))))
    if "report" in metrics:
        print(f"report: {metrics['report']}")
    return 0


def _task_of(run: str) -> str | None:
    """The run's task, for its own headline scores (a plug-in task's too); None where unreadable."""
    from tunelab.runs import find_run

    try:
        task = find_run(run).read_summary().get("task")
    except TunelabError:
        return None
    return task if isinstance(task, str) else None
