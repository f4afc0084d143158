"""ChnSentiCorp benchmark: Chinese review sentiment with the multilingual encoder, dev accuracy.

Trains ``e5-small-multilingual`` (method full, configs/chnsenticorp.yaml) on the 9,600-review
train split in a ``tunelab train`` subprocess, so that peak memory (max RSS) is the run's own.
The test labels are hidden (LUGE release), so the figures are on dev, which also picks the best
checkpoint: ``dev`` is all 1,200 dev reviews, ``dev, no train overlap`` the dev reviews whose
text does not occur verbatim in train (SOURCE.md: 338 do), evaluated once as the run's test
split. Prints a table next to the published anchors and writes the results as JSON.

    .venv/bin/python benchmarks/chnsenticorp.py --limit 300 --set train.epochs=1   # a quick check
    .venv/bin/python benchmarks/chnsenticorp.py                                    # the full benchmark
    .venv/bin/python benchmarks/chnsenticorp.py --set train.learning_rate=3e-5 --json out.json
    .venv/bin/python benchmarks/chnsenticorp.py --resume runs/benchmarks/bench-chnsenticorp-N.partial
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

from bench_common import positive_int, run_costs, train_run  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "chnsenticorp" / "ChnSentiCorp"
ANCHORS = {"RBT3 (38M parameters)": 92.8, "BERT-base (Chinese)": 94.7}


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a ChnSentiCorp TSV (tab-separated, no quoting)."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], rows[1:]


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """As the source is written: tab-separated, unquoted (tunelab reads such TSV as it is)."""
    path.write_text("".join("\t".join(row) + "\n" for row in [header, *rows]), encoding="utf-8")


def prepare(data: Path, work: Path, limit: int | None, seed: int) -> tuple[dict[str, Path], dict[str, int]]:
    """Write train, dev and dev-without-train-overlap TSVs into ``work``; a ``limit`` samples rows."""
    train_header, train = read_tsv(data / "train.tsv")
    dev_header, dev = read_tsv(data / "dev.tsv")
    if limit:
        rng = random.Random(seed)
        train = rng.sample(train, min(limit, len(train)))
        dev = rng.sample(dev, min(max(limit // 4, 50), len(dev)))
    train_texts = {row[train_header.index("text_a")] for row in train}
    text_at = dev_header.index("text_a")
    clean = [row for row in dev if row[text_at] not in train_texts]
    files = {"train": work / "train.tsv", "dev": work / "dev.tsv", "dev_clean": work / "dev_clean.tsv"}
    write_tsv(files["train"], train_header, train)
    write_tsv(files["dev"], dev_header, dev)
    write_tsv(files["dev_clean"], dev_header, clean)
    return files, {"train": len(train), "dev": len(dev), "dev_clean": len(clean)}


def run(files: dict[str, Path], overrides: list[str], out: Path, resume: Path | None = None) -> dict:
    """Train in a subprocess (or finish the killed run ``resume``) and read its run.json."""
    data = [f"data.train={files['train']}", f"data.dev={files['dev']}", f"data.test={files['dev_clean']}"]
    run_dir, summary, wall = train_run(
        ROOT / "configs" / "chnsenticorp.yaml", [*data, *overrides], out,
        f"bench-chnsenticorp-{int(time.time())}", resume=resume,
    )  # fmt: skip
    dev, clean = summary["headline"]["dev"], summary["headline"]["test"]
    return {
        "overrides": overrides,
        "dev_accuracy": round(100 * dev["accuracy"], 2),
        "dev_macro_f1": round(100 * dev["macro_f1"], 2),
        "dev_clean_accuracy": round(100 * clean["accuracy"], 2),
        **run_costs(summary, wall),
        "run": str(run_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DATA), help="folder with train.tsv and dev.tsv")
    parser.add_argument("--limit", type=positive_int, help="train on this many sampled rows (dev: a quarter)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed for --limit")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--out", default=str(ROOT / "runs" / "benchmarks"), help="where run folders go")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    parser.add_argument(
        "--resume", metavar="RUN.partial", help="finish a killed benchmark run from its last checkpoint"
    )
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "train.tsv").is_file() or not (data / "dev.tsv").is_file():
        sys.exit(f"ChnSentiCorp not found at {data}: this benchmark reads ../shared/data/chnsenticorp")
    # The prepared files stay beside the run folder, so that a killed run can be resumed
    # (`tunelab train --resume OUT/NAME.partial`) and its config still names existing files.
    work = Path(args.out) / f"chnsenticorp-data-{args.limit or 'all'}-{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    files, rows = prepare(data, work, args.limit, args.seed)
    result = run(files, args.set, Path(args.out), Path(args.resume) if args.resume else None)
    result["rows"] = rows
    result["limit"] = args.limit
    print(f"\nChnSentiCorp dev accuracy, e5-small-multilingual (train {rows['train']:,} reviews)")
    print(f"{'split':<24} {'rows':>6} {'accuracy':>9}")
    print(f"{'dev':<24} {rows['dev']:>6} {result['dev_accuracy']:>9.2f}")
    print(f"{'dev, no train overlap':<24} {rows['dev_clean']:>6} {result['dev_clean_accuracy']:>9.2f}")
    print(
        f"epochs {result['epochs_run']}, train {result['train_seconds']:.0f}s, {result['samples_per_s']} "
        f"samples/s, peak memory {result['peak_memory_mb']:.0f} MB"
    )
    for name, value in ANCHORS.items():
        print(f"anchor: {name}: {value}")
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")


if __name__ == "__main__":
    main()
