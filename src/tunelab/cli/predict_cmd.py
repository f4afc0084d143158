"""``tunelab predict``: label texts given as arguments, or a whole file into JSONL."""

from __future__ import annotations

import argparse
import json

from tunelab.errors import TunelabError

HELP = """examples:
  tunelab predict runs/banking77 "I still have not received my new card"
  tunelab predict runs/banking77 "card not working" "how do I top up?" --top-k 5 --json
  tunelab predict runs/banking77 --input tickets.csv --output predictions.jsonl
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="predict labels for texts or a file",
        description="Predict labels with a finished run.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run folder, e.g. runs/banking77")
    p.add_argument("texts", nargs="*", help="texts to label")
    p.add_argument("--input", help="CSV/TSV/JSONL/Parquet file with the run's text column (or 'text')")
    p.add_argument("--output", help="JSONL file to write (required with --input)")
    p.add_argument("--top-k", type=int, default=3, help="how many ranked labels to return (default 3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tunelab.predict import load, predict_file

    if bool(args.input) == bool(args.texts):
        raise TunelabError("give texts to label, or --input FILE --output FILE (not both)")
    if args.input and not args.output:
        raise TunelabError("--input needs --output FILE.jsonl for the predictions")
    if args.top_k < 1:
        raise TunelabError(f"--top-k {args.top_k}: use 1 or more")
    predictor = load(args.run)
    if args.input:
        n = predict_file(predictor, args.input, args.output, top_k=args.top_k, batch_size=args.batch_size)
        print(f"wrote {n} predictions to {args.output}")
        return 0
    results = predictor.predict(list(args.texts), top_k=args.top_k, batch_size=args.batch_size)
    for text, result in zip(args.texts, results, strict=True):
        if args.json:
            print(json.dumps({"text": text, **result}, ensure_ascii=False))
            continue
        label = ", ".join(result["labels"]) if "labels" in result else result["label"]
        print(f"{text}\n  -> {label} ({result['score']:.3f})")
        others = ", ".join(f"{t['label']} {t['score']:.3f}" for t in result["top_k"][1:])
        if others:
            print(f"     also: {others}")
    return 0
