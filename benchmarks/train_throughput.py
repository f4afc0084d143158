"""Training throughput: the plain recipe against tunelab's default training, same model and data.

The plain recipe is what a first fine-tuning script does: pad every text to 128 tokens, fp32,
batch 16, random order, every weight trained. tunelab's batching pads each batch to its longest
text, groups similar lengths together and uses batch 32, with the method's default options (``full``
keeps the token embeddings frozen), still in fp32: the bf16 autocast and cheap dropout masks that
``tunelab train`` adds on CPUs that have bf16 are measured by ``train_peers.py``, against the
Hugging Face Trainer. Both train the bundled MiniLM (full fine-tuning, the same
optimizer) on the same BANKING77 samples, for the same number of samples, in this one process,
and each is timed over its optimizer steps only (tokenisation excluded for both).

    .venv/bin/python benchmarks/train_throughput.py                  # 1,024 samples each
    .venv/bin/python benchmarks/train_throughput.py --samples 4096 --method lora
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from bench_common import positive_int  # benchmarks/bench_common.py

from tunelab.config import TrainConfig
from tunelab.data.encoding import collate, encode_texts, training_batches
from tunelab.methods import get_method
from tunelab.models import build_classifier, load_tokenizer, resolve_model
from tunelab.tasks import get_task
from tunelab.train.optim import build_optimizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77" / "train.csv"


def measure(
    *, samples: int, batch_size: int, pad_to: int | None, group: bool, method: str, seed: int, plain: bool
) -> float:
    """Samples per second over ``samples`` training samples (after one warm-up batch)."""
    frame = pd.read_csv(DATA)
    labels = sorted(frame["category"].unique())
    path = resolve_model("minilm-l6").path
    tokenizer = load_tokenizer(path)
    ids = [labels.index(c) for c in frame["category"]]
    enc = encode_texts(tokenizer, frame["text"].str.strip().tolist(), max_length=128, labels=ids)
    task = get_task("single_label")
    spec = get_method(method)
    options = spec.parse_options({})
    if plain and hasattr(options, "freeze_word_embeddings"):
        # A first script trains every weight; tunelab's full freezes the token embeddings by default.
        options = dataclasses.replace(options, freeze_word_embeddings=False)
    model = spec.apply(build_classifier(path, labels, seed=seed), options)
    optimizer = build_optimizer(model, TrainConfig(), spec.default_learning_rate)
    batches = training_batches(enc.lengths, batch_size, seed=seed, epoch=0, group_by_length=group)
    model.train()
    done, start = 0, None
    for i, idx in enumerate(batches):
        if i == 1:  # the first batch pays one-off allocation costs
            done, start = 0, time.perf_counter()
        batch = collate(enc, idx, task=task, num_labels=len(labels), pad_to=pad_to)
        target = batch.pop("labels")
        loss = task.loss(model(**batch).logits, target, None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done += len(idx)
        if start is not None and done >= samples:
            break
    assert start is not None
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=positive_int, default=1024, help="training samples timed for each recipe"
    )
    parser.add_argument("--method", default="full", help="fine-tuning method for both recipes (default full)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()
    from tunelab.errors import ConfigError

    try:
        get_method(args.method)
    except ConfigError as err:  # a traceback before
        parser.error(f"--method: {err}")
    if not DATA.is_file():
        sys.exit(f"BANKING77 not found at {DATA}: this benchmark reads ../shared/data/banking77")
    if args.threads:
        torch.set_num_threads(args.threads)
    common = {"samples": args.samples, "method": args.method, "seed": 0}
    plain = measure(batch_size=16, pad_to=128, group=False, plain=True, **common)
    default = TrainConfig()
    ours = measure(
        batch_size=default.batch_size, pad_to=None, group=default.group_by_length, plain=False, **common
    )
    print(f"BANKING77 train, minilm-l6, method {args.method}, {args.samples} samples each, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    plain_recipe = "plain recipe (pad to 128, fp32, batch 16, random order, every weight trained)"
    print(f"{plain_recipe}: {plain:8.1f} samples/s")
    frozen = ", token embeddings frozen" if args.method == "full" else ""
    recipe = f"tunelab's batching (dynamic padding, length-grouped, batch {default.batch_size}, fp32{frozen})"
    print(f"{recipe}: {ours:8.1f} samples/s")
    print(f"ratio: {ours / plain:.2f}x (target >= 5x)")


if __name__ == "__main__":
    main()
