"""``tunelab train``: fine-tune from a YAML run file plus key=value overrides, or resume."""

from __future__ import annotations

import argparse

from tunelab.cli.config_args import (
    add_config_arguments,
    add_from_argument,
    config_and_overrides,
    from_run_and_overrides,
)
from tunelab.cli.output import headline_lines
from tunelab.cli.signals import sigterm_interrupts as _sigterm_interrupts  # the name tests import

#: The registered methods (``method=``), written out: ``--help`` must not import torch, which the
#: registry does; tests/unit/test_cli_method_names.py checks the list against the registry.
METHOD_NAMES = ("full", "lora", "adalora", "ia3", "loha", "lokr", "adapter", "prefix", "prompt", "setfit")

HELP = """examples:
  tunelab train configs/banking77.yaml
  tunelab train configs/banking77.yaml data.train=../shared/data/banking77/train.csv method=lora
  tunelab train configs/banking77.yaml train.epochs=3 train.batch_size=16 name=quick
  tunelab train configs/banking77.yaml method=setfit data.shots=8 train.epochs=1 name=few   # 8 per intent
  tunelab train configs/banking77.yaml data.shots=8 self_training.unlabeled=tickets.csv train.epochs=3
  tunelab train --resume runs/quick.partial          # continue a killed run from its last checkpoint
  tunelab train --from runs/demo data.train=tickets.csv data.dev=dev.csv   # new rows and new labels
  tunelab train --from runs/demo data.train=tickets.csv train.epochs=2 continual.distill=0.3

overrides use the config's section.field names: data.*, model.*, method (name or method.<option>),
train.*, augment.*, continual.*, self_training.*, output_dir, name. `tunelab validate CONFIG` checks
a config without training.
methods (method=NAME, full fine-tuning by default):
  {methods}
their options (method.r=16, method.target_modules=...) are in the README's "Fine-tuning methods and
merging"; an option a method does not know is refused naming those it does.
Ctrl-C, or SIGTERM (docker stop, scancel, kill), stops training and prints the `--resume` command that
continues it; the exit status is 130 after Ctrl-C and 143 after SIGTERM. A full disk says which file
it could not write and how to resume once space is freed.
--from RUN keeps RUN's settings and label ids (new labels are appended), replays a stratified sample
of its training rows (continual.rehearsal per label, or all) and names the new data with data.train=...
""".format(methods=", ".join(METHOD_NAMES))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a model and write a run folder",
        description="Fine-tune a pre-trained model on labelled text; the result is a run folder.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(p)
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an unfinished run (runs/<name>.partial) from its last checkpoint, or from the "
        "start with the same settings if it had none",
    )
    add_from_argument(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run, stdout_summary=True)


def run(args: argparse.Namespace) -> int:
    from tunelab.train import train

    config, overrides = config_and_overrides(args)
    from_run, overrides = from_run_and_overrides(args, overrides)
    with _sigterm_interrupts():  # stops training as Ctrl-C does, with its --resume hint
        result = train(
            config,
            overrides=overrides,
            resume=args.resume,
            from_run=from_run,
            show_progress=not args.quiet,
        )
    s = result.summary
    print(f"run: {result.run_dir}")
    print(
        f"model {s['model']}, method {s['method']}: {s['trainable_parameters']:,} trainable parameters, "
        f"{s['steps']} steps in {s['train_seconds']:.0f}s ({s['train_samples_per_s']} samples/s), "
        f"peak memory {s['peak_memory_mb']:.0f} MB"
    )
    for split in ("dev", "test"):
        if split in result.metrics:
            print(f"{split} ({s['rows'][split]} rows):")
            print("\n".join(headline_lines(result.metrics[split], s.get("task"))))
    report = result.run_dir / "report.html"
    print(f"report: {report}" if report.is_file() else "report: none (no dev or test data to report on)")
    return 0
