"""``tunelab zeroshot``: a label file -> a run folder that classifies by descriptions, no training."""

from __future__ import annotations

import argparse

from tunelab.cli.config_args import add_file_with_options, file_and_options
from tunelab.cli.output import headline_lines
from tunelab.cli.signals import sigterm_interrupts

HELP = """examples:
  tunelab zeroshot examples/zeroshot/banking77_labels.yaml --out runs/banking-zs
  tunelab predict runs/banking-zs "The ATM ate my card"
  tunelab zeroshot labels.yaml --out runs/zs-scored --test test.csv    # and score it on a file
  tunelab zeroshot labels.yaml --out runs/zs-nli --nli models/nli      # by NLI entailment
  tunelab predict --zero-shot examples/zeroshot/banking77_labels.yaml "The ATM ate my card"
  tunelab serve runs/banking77 runs/banking-zs                         # served like any run

labels.yaml holds one 'label: description' per line, e.g.
  card_arrival: my new card has not arrived yet
  top_up_failed: my top-up did not work
or a list of label names (- card_arrival), whose names become the descriptions (card arrival).

By default a text gets the label whose description's sentence embedding (the bundled MiniLM, or
--encoder) is the most similar; the scores are a softmax over 20 x the cosine similarities. With
--nli MODEL (a local NLI sequence classifier with an 'entailment' output) each label is scored by
the entailment of "This example is {description}." (--template changes the sentence; {} is the
description). The run folder references the model by name or folder; it is not copied.
"""


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options shared with ``tunelab predict --zero-shot``."""
    p.add_argument("--encoder", help="sentence encoder to compare embeddings with (default minilm-l6)")
    p.add_argument("--nli", metavar="MODEL", help="NLI model folder: score labels by entailment instead")
    p.add_argument(
        "--template",
        help="sentence made of each description, {} for it (default '{}'; with --nli 'This example is {}.')",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "zeroshot",
        help="classify by label descriptions, no training",
        description="Write a zero-shot classifier for labels described in a YAML file as a run folder "
        "that eval, predict and serve take like any run.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("labels", help="YAML file of 'label: description' lines, or a list of label names")
    p.add_argument("--out", "--output", dest="out", required=True, help="the run folder to write")
    add_model_options(p)
    p.add_argument("--max-length", type=int, default=128, help="tokens read per text (default 128)")
    add_file_with_options(p, "--test", "labelled file to score the classifier on, then data.* options")
    p.set_defaults(handler=run, stdout_summary=True)


def run(args: argparse.Namespace) -> int:
    from tunelab.zeroshot import zero_shot

    test, options = file_and_options(args.test)
    # SIGTERM as Ctrl-C: its default killed the process with the run's .partial folder left
    with sigterm_interrupts():
        result = zero_shot(
            args.labels,
            args.out,
            encoder=args.encoder,
            nli=args.nli,
            template=args.template,
            max_length=args.max_length,
            test=test,
            test_options=options,
        )
    print(f"zero-shot classifier of {len(result.descriptions)} labels: {result.path}")
    for split, metrics in result.metrics.items():
        print(f"{split}:")
        print("\n".join(headline_lines(metrics)))
    return 0
