"""Which training levers pay on this CPU: precision x optimizer kernel, and torch.compile.

tunelab's own batches (BANKING77 rows tokenised once to 64 tokens, length-grouped batches of 32,
``collate``) train the bundled MiniLM (full fine-tuning) in several variants side by side: each
batch is run by every variant in turn, so a busy machine slows them alike. Reported: samples/s of
each variant over the same batches (the first two batches are warm-up, not timed).

    .venv/bin/python benchmarks/train_levers.py                       # fp32/bf16 x for-loop/fused
    .venv/bin/python benchmarks/train_levers.py --compile             # adds bf16 + torch.compile
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import torch
from bench_common import positive_int  # benchmarks/bench_common.py

from tunelab.data.encoding import collate, encode_texts, training_batches
from tunelab.models import build_classifier, load_tokenizer, resolve_model
from tunelab.tasks import get_task
from tunelab.train.precision import autocast

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77" / "train.csv"
WARMUP = 2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=positive_int, default=1024, help="training rows, one epoch (default 1024)"
    )
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--compile", action="store_true", help="also bf16 + fused + torch.compile(dynamic=True)"
    )
    args = parser.parse_args()
    if args.samples <= 2 * 32:
        parser.error(f"--samples {args.samples}: the first two batches of 32 are warm-up; give more than 64")
    if not DATA.is_file():
        sys.exit(f"BANKING77 not found at {DATA}")
    torch.set_num_threads(args.threads)
    frame = pd.read_csv(DATA).sample(n=args.samples, random_state=0)
    labels = sorted(frame["category"].unique())
    path = resolve_model("minilm-l6").path
    tokenizer = load_tokenizer(path)
    ids = [labels.index(c) for c in frame["category"]]
    enc = encode_texts(tokenizer, frame["text"].str.strip().tolist(), max_length=64, labels=ids)
    task = get_task("single_label")
    variants = {"fp32 for-loop": ("fp32", False), "fp32 fused": ("fp32", True)}
    variants |= {"bf16 for-loop": ("bf16", False), "bf16 fused": ("bf16", True)}
    if args.compile:
        variants["bf16 fused compiled"] = ("bf16", True)
    models, optimizers, seconds, done = {}, {}, dict.fromkeys(variants, 0.0), dict.fromkeys(variants, 0)
    for name, (_, fused) in variants.items():
        torch.manual_seed(0)
        model = build_classifier(path, labels, seed=0)
        model.train()
        # not fused: torch's default on CPU tensors, the single-tensor for-loop (not the multi-tensor
        # foreach kernel, which these variants were once named after)
        optimizers[name] = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=fused or None)
        models[name] = torch.compile(model, dynamic=True) if "compiled" in name else model
    batches = training_batches(enc.lengths, 32, seed=0, epoch=0, group_by_length=True)
    first_compiled = None
    for i, idx in enumerate(batches):
        batch = collate(enc, idx, task=task, num_labels=len(labels))
        target = batch.pop("labels")
        for name, (precision, _) in variants.items():
            t0 = time.perf_counter()
            with autocast(precision):
                logits = models[name](**batch).logits
            task.loss(logits.float(), target, None).backward()
            optimizers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            spent = time.perf_counter() - t0
            if i == 0 and "compiled" in name:
                first_compiled = spent
            if i >= WARMUP:
                seconds[name] += spent
                done[name] += len(idx)
    print(
        f"BANKING77 {args.samples} rows, 1 epoch, batch 32, max length 64, {args.threads} threads, "
        "minilm-l6, full fine-tuning"
    )
    base = done["fp32 for-loop"] / seconds["fp32 for-loop"]
    for name in variants:
        rate = done[name] / seconds[name]
        print(f"{name:22s} {rate:7.1f} samples/s  {rate / base:.2f}x fp32 for-loop")
    if first_compiled is not None:
        print(f"torch.compile: the first batch took {first_compiled:.1f} s (compilation)")


if __name__ == "__main__":
    main()
