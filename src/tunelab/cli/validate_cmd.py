"""``tunelab validate``: every problem ``tunelab train`` would hit, at once, and a data summary."""

from __future__ import annotations

import argparse
import json
import sys

from tunelab.cli.config_args import (
    add_config_arguments,
    add_from_argument,
    config_and_overrides,
    from_run_and_overrides,
)
from tunelab.cli.streams import json_ascii

HELP = """examples:
  tunelab validate configs/banking77.yaml method=lora
  tunelab validate data.train=tickets.csv data.text_column=body data.label_column=queue
  tunelab validate data.train=export.csv data.separator=";"        # usually sniffed: , tab ; | @
  tunelab validate data.train=book.xlsx data.sheet=Labelled name=first-try
  tunelab validate configs/banking77.yaml --json > check.json
  tunelab validate --from runs/demo data.train=tickets.csv    # the checks tunelab train --from makes

It checks what train checks before training (the config, data.train given, the method and its
options, the model, a free run name, every data file: columns, labels, splits) and reports every
problem, one per line, exiting 2 if there is any. Each refused config field is a line of its own; the
checks that do not read its section still run (with train.epochs=0 the data files, the method
options and the model are still checked). It also prints a data summary: rows per split,
examples per label with rare labels and likely typos (`postive` beside `positive`), the
imbalance, duplicate texts, texts shared between train and dev/test, and how many inputs are
longer than model.max_length tokens (counted with the model's own tokenizer). Lines starting with
"!" deserve a look. Row numbers in messages count data rows from 1, the header line not counted.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a config and its data without training, and summarise the data",
        description="Report every problem `tunelab train` would hit, all at once, and summarise the data.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(p)
    add_from_argument(p)
    p.add_argument("--json", action="store_true", help="print the problems and the summary as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tunelab.preflight import validate_run

    config, overrides = config_and_overrides(args)
    from_run, overrides = from_run_and_overrides(args, overrides)
    report = validate_run(config, overrides=overrides, from_run=from_run)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=json_ascii()))
        return 0 if report.ok else 2
    cfg = report.config
    if cfg is not None and report.model_source is not None:
        print(
            f"config{' ok' if report.ok else ''}: model {cfg.model.name} ({report.model_source}: "
            f"{report.model_path}), method {cfg.method.name}"
        )
    if report.summary is not None:
        s = report.summary
        sizes = ", ".join(f"{name} {n}" for name, n in s.rows.items())
        print(f"data ok: {s.num_labels} labels ({s.task}); rows: {sizes}")
        for note in report.notes:
            print(f"  note: {note}")
        print("\n".join(s.lines()))
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 0 if report.ok else 2
