"""CoNLL-2003 English NER benchmark: test entity F1 per type and overall (seqeval, strict IOB2).

Trains ``configs/conll2003.yaml`` on ``../shared/data/conll2003/train.txt`` in a ``tunelab train``
subprocess (so peak memory, max RSS, is the run's own), selects the checkpoint on ``valid.txt``
(dev entity F1; test is only scored at the end) and prints test precision, recall and F1 per
entity type, micro and macro, with training time and peak memory, next to published anchors.
Writes the figures as JSON (``--json``).

    .venv/bin/python benchmarks/conll2003.py                                  # minilm-l6, the config's recipe
    .venv/bin/python benchmarks/conll2003.py --model e5-small-multilingual
    .venv/bin/python benchmarks/conll2003.py --limit 200 --set train.epochs=1  # a quick check of the pipeline
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_common import positive_int, run_costs, train_run  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "conll2003"
SPLITS = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}
# Test entity F1 published for fine-tuned encoders (the targets).
ANCHORS = {"DistilBERT (66M)": 89.5, "BERT-base (110M)": "91.3-92.4"}


def first_sentences(source: Path, target: Path, limit: int) -> Path:
    """The first ``limit`` sentences of a CoNLL file (``-DOCSTART-`` blocks dropped), for a quick run."""
    blocks = [b for b in source.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    kept = [b.strip("\n") for b in blocks if not b.lstrip().startswith("-DOCSTART-")][:limit]
    target.write_text("\n\n".join(kept) + "\n", encoding="utf-8")
    return target


def train(model: str, files: dict[str, Path], overrides: list[str], out: Path, *, quiet: bool) -> dict:
    data = [f"data.train={files['train']}", f"data.dev={files['dev']}", f"data.test={files['test']}"]
    run, summary, wall = train_run(
        ROOT / "configs" / "conll2003.yaml", [*data, f"model.name={model}", *overrides], out,
        f"bench-conll2003-{model.replace('/', '_')}-{int(time.time())}", echo=True, quiet=quiet,
    )  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    test, dev = metrics["test"], metrics.get("dev", {})
    return {
        "model": model,
        "overrides": overrides,
        "test_entity_f1": _pct(test["entity_f1"]),
        "test_entity_precision": _pct(test["entity_precision"]),
        "test_entity_recall": _pct(test["entity_recall"]),
        "test_macro_f1": _pct(test["macro_f1"]),
        "test_token_accuracy": _pct(test["token_accuracy"]),
        "test_per_type": {
            row["label"]: {k: _pct(row[k]) for k in ("precision", "recall", "f1")}
            | {"support": row["support"]}
            for row in test["per_type"]
        },
        "dev_entity_f1": _pct(dev["entity_f1"]) if dev else None,
        "sentences": summary["rows"],
        "best_step": summary["best_step"],
        **run_costs(summary, wall),
        "run": str(run),
    }


def _pct(value: float) -> float:
    return round(100 * float(value), 2)


def print_table(r: dict) -> None:
    print(f"\nCoNLL-2003 test, {r['model']} ({r['total_parameters'] / 1e6:.0f}M parameters)")
    print(f"{'type':<8} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}")
    for t, v in sorted(r["test_per_type"].items()):
        print(f"{t:<8} {v['precision']:>9.2f} {v['recall']:>7.2f} {v['f1']:>6.2f} {v['support']:>8}")
    print(
        f"{'micro':<8} {r['test_entity_precision']:>9.2f} {r['test_entity_recall']:>7.2f} "
        f"{r['test_entity_f1']:>6.2f}"
    )
    print(f"{'macro':<8} {'':>9} {'':>7} {r['test_macro_f1']:>6.2f}")
    print(
        f"dev entity F1 {r['dev_entity_f1']}, test token accuracy {r['test_token_accuracy']}, "
        f"{r['epochs_run']} epochs (best step {r['best_step']}), train {r['train_seconds']:.0f}s "
        f"({r['samples_per_s']} windows/s), wall {r['wall_seconds']:.0f}s, "
        f"peak memory {r['peak_memory_mb']:.0f} MB"
    )
    for name, value in ANCHORS.items():
        print(f"anchor: {name}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DATA), help="folder with train.txt, valid.txt, test.txt")
    parser.add_argument("--model", default="minilm-l6", help="model name or folder (default: minilm-l6)")
    parser.add_argument(
        "--limit", type=positive_int, help="use only the first N sentences of each split (a quick check)"
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--out", default=str(ROOT / "runs" / "benchmarks"), help="where the run folder goes")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar (for a log file)")
    parser.add_argument("--json", help="write the figures to this file (default: <run>/conll2003.json)")
    args = parser.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        sys.exit(f"CoNLL-2003 not found at {data}: give --data (default ../shared/data/conll2003)")
    files = {k: data / f for k, f in SPLITS.items()}
    if args.limit:
        # beside the runs, as the other benchmarks keep their cut files: in a temporary folder the
        # run's config named files gone after training, and export's parity check could not read them
        cut = Path(args.out) / f"conll2003-first-{args.limit}"
        cut.mkdir(parents=True, exist_ok=True)
        files = {k: first_sentences(p, cut / p.name, args.limit) for k, p in files.items()}
    result = train(args.model, files, args.set, Path(args.out), quiet=args.quiet)
    result["limit"] = args.limit
    print_table(result)
    target = Path(args.json) if args.json else Path(result["run"]) / "conll2003.json"
    atomic_write_json(target, result)
    print(f"figures: {target}")


if __name__ == "__main__":
    main()
