"""``tunelab ensemble``: average several runs' (calibrated) probabilities into one run folder."""

from __future__ import annotations

import argparse

from tunelab.cli.config_args import add_file_with_options, file_and_options
from tunelab.cli.output import headline_lines
from tunelab.cli.signals import sigterm_interrupts

HELP = """examples:
  tunelab ensemble runs/a runs/b runs/c --out runs/abc
  tunelab ensemble runs/a runs/b --out runs/ab --dev dev.csv        # calibrate on this file
  tunelab ensemble runs/a runs/b --out runs/ab --no-calibrate
  tunelab eval runs/abc --data ../shared/data/banking77/test.csv
  tunelab predict runs/abc "I still have not received my new card"
  tunelab export runs/abc --format onnx-int8                       # exports every member
  tunelab serve runs/abc

The members must share a task, a label set and a tokenizer (one base model; methods may differ).
Each single-label member's logits are divided by a temperature fitted on dev data (--dev FILE,
else the member's own dev split) before the softmax, then the probabilities are averaged. The
members are copied (hard-linked where possible) into <out>/weights/, so the ensemble is a run folder
of its own; it is written under a temporary name and renamed at the end.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ensemble",
        help="average several runs' probabilities into one run",
        description="Average the (calibrated) probabilities of runs with the same label set into a "
        "new run folder that eval, predict, export and serve take like any run.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "runs",
        nargs="+",
        help="two or more run folders (or exported artifacts); not ensembles: give their members",
    )
    p.add_argument("--out", "--output", dest="out", required=True, help="the ensemble's run folder")
    add_file_with_options(
        p,
        "--dev",
        "labelled file to fit temperatures on (default: each run's dev split), then data.* options",
    )
    p.add_argument(
        "--no-calibrate", dest="calibrate", action="store_false", help="average uncalibrated probabilities"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result line")
    p.set_defaults(handler=run, stdout_summary=True)


def run(args: argparse.Namespace) -> int:
    from tunelab.ensembling import ensemble

    dev, options = file_and_options(args.dev)
    # SIGTERM as Ctrl-C: its default killed the process with the ensemble's .partial folder left
    with sigterm_interrupts():
        result = ensemble(args.runs, args.out, calibrate=args.calibrate, dev=dev, dev_options=options)
    print(f"ensemble of {len(result.members)} members: {result.path}")
    if not args.quiet:
        for member in result.members:
            print(f"  {member['source']}: temperature {member['temperature']:.3f} ({member['calibration']})")
        for split, metrics in result.metrics.items():
            print(f"{split}:")
            print("\n".join(headline_lines(metrics)))
    return 0
