"""``tunelab merge``: fold a run's LoRA-family adapter into its base model and write a plain run."""

from __future__ import annotations

import argparse

from tunelab.cli.config_args import add_file_with_options, file_and_options
from tunelab.cli.signals import sigterm_interrupts

#: The built-in methods each help text names, by what they can do. Written out, not read from the
#: registry: it imports torch and every method, and no command's --help may (test_startup.py);
#: tests/unit/test_arch_review_fixes.py fails when a list no longer matches the methods' folders.
MERGING_METHODS = ("adalora", "ia3", "loha", "lokr", "lora")
SHARING_METHODS = ("ia3", "loha", "lokr", "lora")
MIXING_METHODS = ("lora",)
WHOLE_METHODS = ("adalora", "adapter", "full", "prefix", "prompt", "setfit")


HELP = """examples:
  tunelab merge runs/banking77-lora                        # -> runs/banking77-lora-merged
  tunelab merge runs/banking77-lora --out runs/intents-v2  # choose the merged run's folder
  tunelab merge runs/banking77-ia3 --data ../shared/data/banking77/test.csv   # compare on this file
  tunelab merge runs/banking77-lora --data other.tsv data.header=false data.column_names=[text,category]
  tunelab predict runs/banking77-lora-merged "I still have not received my new card"

The methods whose runs merge: {merging}, and a plug-in method that registers a merge.
Their adapter's update is added into the base weights, so the merged run is one plain transformers
model (method full), as fast as the base, loadable without the base weights or peft. Before writing,
its logits are compared with the adapter run's on the run's test file or dev split (or --data FILE,
read as eval reads it, with data.* reading options after it when the guess is wrong); a difference
above 1e-4 fails and writes nothing. The run is written under a temporary name and renamed at the
end (such a folder left by a killed merge is removed by the next merge to that folder). Runs of the
other methods cannot merge (their weights are not a change to the base weights) and say why; a full
run is plain already.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="fold a run's LoRA-family adapter into the base: a plain run",
        description="Fold a run's adapter into its base model and write a plain run whose logits match "
        f"the adapter run's within 1e-4 (methods that merge: {', '.join(MERGING_METHODS)}).",
        epilog=HELP.format(merging=", ".join(MERGING_METHODS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="trained adapter run folder, e.g. runs/banking77-lora")
    p.add_argument(
        "--out", "--output", dest="out", help="merged run folder (default <run>-merged beside the run)"
    )
    add_file_with_options(
        p,
        "--data",
        "labelled file to compare logits on (default the run's test/dev data), then any data.* "
        "reading options for it, as for eval",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run, stdout_summary=True)


def run(args: argparse.Namespace) -> int:
    from tunelab.compress import merge

    data, options = file_and_options(args.data)
    # SIGTERM as Ctrl-C: its default killed the process with the merged run's temporary folder left
    with sigterm_interrupts():
        result = merge(
            args.run, output=args.out, data=data, data_options=options, show_progress=not args.quiet
        )
    print(
        f"merged the {result.method} adapter of {result.source} into its base: {result.path}\n"
        f"largest logit difference {result.max_logit_diff:.2e} on {result.data} ({result.rows} rows)"
    )
    return 0
