"""BANKING77 accuracy benchmark: the full training set, test accuracy for each method.

Each method trains in its own ``tunelab train`` subprocess so that peak memory (max RSS) is the
run's own. Prints test accuracy, macro-F1, training time and samples/s, and peak memory, next to
the published anchors.

    .venv/bin/python benchmarks/banking77.py                       # full and lora, configs/banking77.yaml
    .venv/bin/python benchmarks/banking77.py --methods lora --set train.epochs=10 method.r=16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_common import run_costs, train_run  # benchmarks/bench_common.py

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77"
ANCHORS = {"BERT-base fine-tuned": 93.66, "frozen MiniLM embeddings + logistic regression": 93.0}


def run_method(method: str, overrides: list[str], out: Path) -> dict:
    data = [f"data.train={DATA / 'train.csv'}", f"data.test={DATA / 'test.csv'}", f"method={method}"]
    name = f"bench-banking77-{method}-{int(time.time())}"
    config = ROOT / "configs" / "banking77.yaml"
    run_dir, summary, wall = train_run(config, [*data, *overrides], out, name, quiet=False)
    test = summary["headline"]["test"]
    return {
        "method": method,
        "overrides": overrides,
        "test_accuracy": round(100 * test["accuracy"], 2),
        "test_macro_f1": round(100 * test["macro_f1"], 2),
        "dev_accuracy": round(100 * dev["accuracy"], 2) if (dev := summary["headline"].get("dev")) else None,
        **run_costs(summary, wall),
        "run": str(run_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--methods", nargs="+", default=["full", "lora"], help="methods to train (default full lora)"
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument(
        "--out", default=str(ROOT / "runs" / "benchmarks"), help="where the runs go (default runs/benchmarks)"
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"BANKING77 not found at {DATA}: this benchmark reads ../shared/data/banking77")
    results = [run_method(m, args.set, Path(args.out)) for m in args.methods]
    print("\nBANKING77 test accuracy (3,080 texts, 77 intents)")
    print(f"{'method':<8} {'test acc':>8} {'macro F1':>8} {'dev acc':>8} {'epochs':>6} {'train s':>8} "
          f"{'samples/s':>9} {'peak MB':>8}")  # fmt: skip
    for r in results:
        dev = "-" if r["dev_accuracy"] is None else f"{r['dev_accuracy']:.2f}"
        row = (r["method"], r["test_accuracy"], r["test_macro_f1"], dev, r["epochs_run"],
               r["train_seconds"], r["samples_per_s"], r["peak_memory_mb"])  # fmt: skip
        print("{:<8} {:>8.2f} {:>8.2f} {:>8} {:>6} {:>8.0f} {:>9} {:>8.0f}".format(*row))
    for name, value in ANCHORS.items():
        print(f"anchor: {name}: {value}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
