"""``tunelab export``: a trained run -> an ONNX / int8 artifact folder, parity-checked on held-out data."""

from __future__ import annotations

import argparse

from tunelab.cli.config_args import add_file_with_options, file_and_options
from tunelab.cli.output import table
from tunelab.cli.signals import sigterm_interrupts
from tunelab.errors import ConfigError

# tunelab.compress.FORMATS and PRUNE_METHODS, without importing it for --help
FORMATS = ("onnx", "onnx-int8", "torch-int8")
PRUNE_METHODS = ("magnitude", "heads", "ffn", "structured")

HELP = """examples:
  tunelab export runs/banking77                          # onnx-int8 -> runs/banking77-onnx-int8
  tunelab export runs/banking77 --format onnx            # fp32 ONNX Runtime, same accuracy
  tunelab export runs/banking77 --format torch-int8      # PyTorch int8, no ONNX Runtime needed
  tunelab export runs/banking77 --prune 0.6 --prune-method structured --recover-epochs 4
                  # 60% of heads and FFN neurons cut, refit, distilled: fastest (BANKING77: 3.8x
                  # eager at batch 32, -0.4 points; about 12 minutes on 2 cores)
  tunelab export runs/banking77 --prune 0.25 --prune-method heads   # a quarter of the heads, refit
  tunelab export runs/banking77 --prune 0.3 --max-drop 2 # zero 30% of the linear weights, accept 2 points
  tunelab predict runs/banking77-onnx-int8 "I still have not received my new card"

Structured pruning (heads, ffn, structured) removes whole attention heads and/or feed-forward
neurons, the least used first, and refits each layer's output projection by least squares on
2,048 training texts; --recover-epochs N then fine-tunes the pruned model for N epochs on the
run's training texts to reproduce the original model's predictions (minutes, not seconds).

Every export is compared with the run (PyTorch eager) on the run's test file or dev split (or
--data FILE): the run's selection metric (train.metric: accuracy when it is loss, micro-F1 for
multi-label, entity F1 for NER), agreement, largest logit difference, size and latency at batch 1
and 32 go to <artifact>/parity.json and parity.md. If the metric drops by more than --max-drop
points the export fails and no artifact is left behind.
--data FILE is read as eval reads it (its own layout, the run's columns); give data.* reading
options after the file when the guess is wrong, e.g. --data other.txt data.separator=@ data.header=false \
data.column_names=[sentence,label]
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a run to ONNX / int8, with a parity check",
        description="Export a trained run (adapters merged) to ONNX or int8; predict, eval and serve "
        "accept the artifact folder like a run.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="trained run folder, e.g. runs/banking77")
    p.add_argument(
        "--format", choices=FORMATS, default="onnx-int8", help="artifact format (default onnx-int8)"
    )
    p.add_argument("--prune", type=float, metavar="FRACTION", help="prune this fraction first, e.g. 0.3")
    p.add_argument(
        "--prune-method",
        choices=PRUNE_METHODS,
        help="with --prune: magnitude: zero the smallest weights (default); heads, ffn: remove whole "
        "attention heads or feed-forward neurons; structured: both",
    )
    p.add_argument(
        "--recover-epochs",
        type=float,
        default=0.0,
        metavar="N",
        help="after structured pruning, distil the original model into the pruned one (e.g. 4; default 0)",
    )
    p.add_argument(
        "--output",
        help="artifact folder (default <run>-<format>[-pruned|heads|ffn|structured<percent>] beside the run)",
    )
    add_file_with_options(
        p,
        "--data",
        "labelled file for the parity check (default the run's test/dev data), then any data.* "
        "reading options for it, as for eval",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=1.0,
        metavar="POINTS",
        help="largest accepted metric drop (default 1.0)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run, stdout_summary=True)


def run(args: argparse.Namespace) -> int:
    from tunelab.compress import export
    from tunelab.compress.parity import points_change, speed_change

    if args.prune_method is not None and args.prune is None:
        raise ConfigError(
            f"--prune-method {args.prune_method} prunes nothing by itself; add --prune FRACTION"
        )
    data, options = file_and_options(args.data)
    # SIGTERM as Ctrl-C: its default killed the process with the artifact's .partial folder left
    with sigterm_interrupts():
        result = export(
            args.run,
            format=args.format,
            prune=args.prune,
            prune_method=args.prune_method or "magnitude",
            recover_epochs=args.recover_epochs,
            output=args.output,
            data=data,
            data_options=options,
            max_drop=args.max_drop,
            show_progress=not args.quiet,
        )
    report = result.parity
    metric, before, after = report["metric"], report["before"], report["after"]
    rows = [
        (metric, f"{before[metric]:.2f}%", f"{after[metric]:.2f}%", points_change(report["drop_points"])),
        ("size MB", f"{before['size_mb']:.1f}", f"{after['size_mb']:.1f}", f"x{report['size_ratio']}"),
    ]
    for key, gain in report["speedup"].items():
        label = f"latency {key.replace('_', ' ')} ms"
        rows.append(
            (
                label,
                f"{before['latency_ms'][key]:.2f}",
                f"{after['latency_ms'][key]:.2f}",
                speed_change(gain),
            )
        )
    print(f"parity on {report['data']['name']} ({report['data']['rows']} rows):")
    print(table(["", "pytorch eager", result.format, "change"], rows))
    print(
        f"agreement {100 * report['agreement']:.2f}%, largest logit difference {report['max_logit_diff']:.3g}"
    )
    print(f"artifact: {result.path}")
    return 0
