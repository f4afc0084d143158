"""How much of a training loop is data work: is caching the encoded rows, or overlapping batch
preparation with compute, worth building (issue 16, item 3)?

tunelab tokenises a run's rows once, before the loop, and collates each batch in the loop. This
times both on the rows `train_peers.py` uses (1,024 BANKING77 training rows, max length 64,
length-grouped batches of 32) and sets them against the loop's time at a given speed.

    .venv/bin/python benchmarks/train_data_share.py                       # against 280 samples/s
    .venv/bin/python benchmarks/train_data_share.py --samples-per-s 345
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from bench_common import positive_int, require_data  # benchmarks/bench_common.py

from tunelab.data.dataset import Dataset
from tunelab.data.encoding import collate, training_batches
from tunelab.models import load_tokenizer, resolve_model
from tunelab.tasks import get_task

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77" / "train.csv"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=positive_int, default=1024, help="training rows (1,024, as train_peers.py)"
    )
    parser.add_argument(
        "--samples-per-s", type=float, default=280.0, help="the loop's speed to compare with (train_peers.py)"
    )
    args = parser.parse_args()
    if args.samples_per_s <= 0:
        parser.error(f"--samples-per-s {args.samples_per_s:g}: give the loop's speed, above 0")
    require_data(DATA, "BANKING77's train.csv")
    frame = pd.read_csv(DATA).sample(frac=1.0, random_state=0).iloc[: args.samples]
    labels = sorted(set(frame["category"]))
    rows = Dataset(
        texts=frame["text"].tolist(),
        text_pairs=None,
        labels=[labels.index(c) for c in frame["category"]],
        source=str(DATA),
    )
    task = get_task("single_label")
    tokenizer = load_tokenizer(resolve_model("minilm-l6").path)
    t0 = time.perf_counter()
    enc = task.encode(tokenizer, rows, max_length=64)
    encode_s = time.perf_counter() - t0
    batches = training_batches(enc.lengths, 32, seed=42, epoch=0, group_by_length=True)
    t0 = time.perf_counter()
    for batch in batches:
        collate(enc, batch, task=task, num_labels=len(labels))
    collate_s = time.perf_counter() - t0
    loop_s = len(rows) / args.samples_per_s
    print(
        f"tokenise {len(rows):,} rows (once a run): {encode_s * 1000:.0f} ms, "
        f"{100 * encode_s / loop_s:.1f}% of a {loop_s:.2f} s epoch; "
        f"collate {len(batches)} batches: {collate_s * 1000:.0f} ms, "
        f"{100 * collate_s / loop_s:.1f}%"
    )


if __name__ == "__main__":
    main()
