"""Training speed against the peers: the plain recipe, Hugging Face Trainer at its best, tunelab.

Every recipe fine-tunes the bundled MiniLM on the same BANKING77 rows (a seeded slice of
train.csv) for the same number of epochs, with full fine-tuning and with LoRA, and is scored on
the same held-out slice of train.csv (BANKING77 has no dev split; test.csv is never read):

- ``plain``: a first fine-tuning script: pad to 128, fp32, batch 16, random order, AdamW.
- ``trainer``: ``transformers.Trainer`` as a user tuning it for speed would set it:
  ``train_sampling_strategy="group_by_length"``, ``DataCollatorWithPadding``, batch 32, max length
  64, torch threads as given (default 2); its default optimizer (fused AdamW); LoRA through peft.
- ``trainer-bf16``: the same with ``bf16=True`` (Trainer's bf16 autocast on the CPU): not the
  issue's baseline, measured so that the README can say how much of tunelab's lead is the precision
  a Trainer user could also switch on.
- ``tunelab``: ``tunelab.train`` with its defaults (what ``tunelab train`` runs: linear-probe head,
  length-grouped batches, ``train.precision=auto``), max length 64, batch 32, no dev split.
- ``tunelab-fp32``: the same with ``train.precision=fp32`` (the accuracy reference for bf16).
- ``tunelab:KEY=VALUE+KEY=VALUE``: tunelab with those overrides on top of its defaults, to measure
  one lever in the same alternation (``tunelab:train.fast_dropout=false``: torch's dropout).

Each (recipe, method) runs in its own process, the recipes alternating, so each process's peak
RSS is its own. Reported: samples/s over the training loop (samples trained / seconds of the
training call: ``Trainer.train()``, tunelab's ``run_loop``, the plain loop), the wall time of the
whole process (imports, data, model, linear probe, training, scoring), peak RSS, dev accuracy, and
ratios against Trainer. Run it alone on the machine (``flock``) for clean timings:

    flock /work/notes/cpu.lock .venv/bin/python benchmarks/train_peers.py
    .venv/bin/python benchmarks/train_peers.py --recipes tunelab,tunelab:train.fast_dropout=false
    .venv/bin/python benchmarks/train_peers.py --samples 512 --epochs 1 --recipes trainer,tunelab
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import positive_int  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_text

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77" / "train.csv"
RECIPES = ("plain", "trainer", "trainer-bf16", "tunelab", "tunelab-fp32")
LEARNING_RATE = {"full": 5e-5, "lora": 1e-3}  # tunelab's method defaults, used by every recipe
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"]}


def split_rows(samples: int, dev: int, seed: int) -> tuple[Any, Any, list[str]]:
    """``(train, dev, labels)``: two disjoint seeded slices of BANKING77's train.csv."""
    import pandas as pd

    frame = pd.read_csv(DATA).rename(columns={"category": "label"})
    frame["text"] = frame["text"].str.strip()
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    train, held = frame.iloc[:samples], frame.iloc[samples : samples + dev]
    held = held[held["label"].isin(set(train["label"]))]  # only with --samples too few for 77 intents
    return train, held, sorted(train["label"].unique())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def hf_model(path: Path, labels: list[str], method: str) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=len(labels))
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", bias="none", **LORA))
    return model


def accuracy(model: Any, tokenizer: Any, texts: list[str], targets: list[int], max_length: int) -> float:
    """Dev accuracy in fp32, batches of 64 padded to their longest text."""
    import torch

    model.eval()
    hits = 0
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            batch = tokenizer(
                texts[i : i + 64], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            hits += (model(**batch).logits.argmax(-1) == torch.tensor(targets[i : i + 64])).sum().item()
    return hits / len(texts)


def run_plain(args: argparse.Namespace, train: Any, dev: Any, labels: list[str], path: Path) -> dict:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = hf_model(path, labels, args.method)
    enc = tokenizer(
        train["text"].tolist(), truncation=True, max_length=128, padding="max_length", return_tensors="pt"
    )
    targets = torch.tensor([labels.index(c) for c in train["label"]])
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE[args.method]
    )
    generator = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    for _ in range(args.epochs):
        for idx in torch.randperm(len(targets), generator=generator).split(16):
            out = model(
                input_ids=enc["input_ids"][idx],
                attention_mask=enc["attention_mask"][idx],
                token_type_ids=enc["token_type_ids"][idx],
            )
            torch.nn.functional.cross_entropy(out.logits, targets[idx]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    loop_s = time.perf_counter() - start
    dev_targets = [labels.index(c) for c in dev["label"]]
    return {
        "loop_s": loop_s,
        "dev_accuracy": accuracy(model, tokenizer, dev["text"].tolist(), dev_targets, 128),
    }


def run_trainer(
    args: argparse.Namespace, train: Any, dev: Any, labels: list[str], path: Path, *, bf16: bool = False
) -> dict:
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = hf_model(path, labels, args.method)
    enc = tokenizer(train["text"].tolist(), truncation=True, max_length=64)
    rows = [
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels.index(c)}
        for ids, mask, types, c in zip(
            enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], train["label"], strict=True
        )
    ]
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=32,
            num_train_epochs=args.epochs,
            learning_rate=LEARNING_RATE[args.method],
            weight_decay=0.01,
            warmup_steps=0.1,
            train_sampling_strategy="group_by_length",
            use_cpu=True,
            bf16=bf16,  # trainer-bf16: Trainer's own bf16 autocast, what a user who knows the flag sets
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=rows,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        start = time.perf_counter()
        trainer.train()
        loop_s = time.perf_counter() - start
    dev_targets = [labels.index(c) for c in dev["label"]]
    return {
        "loop_s": loop_s,
        "dev_accuracy": accuracy(model, tokenizer, dev["text"].tolist(), dev_targets, 64),
    }


def run_tunelab(
    args: argparse.Namespace, train: Any, dev: Any, precision: str, extra: list[str] | None = None
) -> dict:
    import tunelab
    from tunelab.train import trainer as trainer_mod

    loop_seconds: list[float] = []
    run_loop = trainer_mod.run_loop

    def timed_loop(*a: Any, **kw: Any) -> Any:  # the whole loop, final checkpoint included
        start = time.perf_counter()
        try:
            return run_loop(*a, **kw)
        finally:
            loop_seconds.append(time.perf_counter() - start)

    trainer_mod.run_loop = timed_loop
    with tempfile.TemporaryDirectory() as out:
        result = tunelab.train(
            None,
            overrides=[
                "model.name=minilm-l6",
                "model.max_length=64",
                f"method={args.method}",
                f"train.epochs={args.epochs}",
                "data.dev_size=0",
                f"train.precision={precision}",
                f"output_dir={out}",
                *(extra or []),
            ],
            train=train,
            test=dev,  # the benchmark's dev slice of train.csv, scored once after training
            show_progress=False,
        )
    return {
        "loop_s": loop_seconds[0],
        "dev_accuracy": result.metrics["test"]["accuracy"],
        "precision": result.summary["precision"],
        "step_samples_per_s": result.summary["train_samples_per_s"],
    }


def child(args: argparse.Namespace) -> None:
    """One (recipe, method) in this process; prints one JSON line."""
    import torch

    from tunelab.models import resolve_model

    torch.set_num_threads(args.threads)
    train, dev, labels = split_rows(args.samples, args.dev, args.seed)
    path = resolve_model("minilm-l6").path
    if args.child == "plain":
        out = run_plain(args, train, dev, labels, path)
    elif args.child in ("trainer", "trainer-bf16"):
        out = run_trainer(args, train, dev, labels, path, bf16=args.child == "trainer-bf16")
    else:
        name, _, extra = args.child.partition(":")
        precision = "fp32" if name == "tunelab-fp32" else "auto"
        out = run_tunelab(args, train, dev, precision, [o for o in extra.split("+") if o])
    out["samples_per_s"] = args.samples * args.epochs / out["loop_s"]
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


def recipe_name(text: str) -> str:
    """A recipe of RECIPES, or ``tunelab:OVERRIDES`` / ``tunelab-fp32:OVERRIDES`` (argparse type)."""
    name, colon, extra = text.partition(":")
    if name not in RECIPES or (colon and (not name.startswith("tunelab") or not extra)):
        raise argparse.ArgumentTypeError(
            f"unknown recipe {text!r}: use {', '.join(RECIPES)}, or tunelab:KEY=VALUE+KEY=VALUE"
        )
    return text


def cpu_line() -> str:
    from tunelab.train.precision import cpu_flags

    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma")))
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{model}, {os.cpu_count()} cores; flags: {' '.join(flags) or 'none found'}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=positive_int, default=1024, help="training rows (default 1024)")
    parser.add_argument(
        "--dev", type=int, default=2000, help="held-out rows of train.csv scored (default 2000)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs for every recipe (default 2)")
    parser.add_argument("--methods", default="full,lora", help="full and/or lora (default both)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"some of {','.join(RECIPES)}")
    parser.add_argument(
        "--rounds", type=positive_int, default=1, help="repeat the alternation; medians reported"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=2, help="torch threads in every recipe (default 2)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which rows are train and dev")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--child", type=recipe_name, help=argparse.SUPPRESS)
    parser.add_argument("--method", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"BANKING77 not found at {DATA}: this benchmark reads ../shared/data/banking77")
    if args.child:
        child(args)
        return
    started = time.perf_counter()
    try:
        recipes = [recipe_name(r) for r in args.recipes.split(",")]
    except argparse.ArgumentTypeError as err:
        sys.exit(f"--recipes: {err}")
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in LEARNING_RATE]
    if unknown:  # the child failed with a KeyError traceback
        sys.exit(f"--methods: {', '.join(unknown)} not measured here; give some of {','.join(LEARNING_RATE)}")
    print(f"CPU: {cpu_line()}")
    print(
        f"BANKING77: {args.samples} train rows, {args.dev} dev rows (held out of train.csv), "
        f"{args.epochs} epochs, {args.threads} torch threads, minilm-l6"
    )
    results: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for method in methods:
            order = recipes[r % len(recipes) :] + recipes[: r % len(recipes)]  # alternate who goes first
            for recipe in order:
                cmd = [sys.executable, __file__, "--child", recipe, "--method", method]
                for name in ("samples", "dev", "epochs", "threads", "seed"):
                    cmd += [f"--{name}", str(getattr(args, name))]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    sys.exit(f"{recipe}/{method} failed:\n{proc.stderr[-3000:]}")
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                out["wall_s"] = time.perf_counter() - t0
                results.setdefault((method, recipe), []).append(out)
                print(
                    f"  round {r + 1} {method:4s} {recipe:12s} {out['samples_per_s']:7.1f} samples/s  "
                    f"wall {out['wall_s']:6.1f} s  dev {100 * out['dev_accuracy']:.2f}",
                    flush=True,
                )
    table = {
        key: {
            k: statistics.median(o[k] for o in runs)
            for k in ("samples_per_s", "wall_s", "peak_rss_mb", "dev_accuracy")
        }
        for key, runs in results.items()
    }
    print(
        "\n| method | recipe | samples/s | x Trainer | x Trainer bf16 | wall s | x Trainer | x Trainer bf16 "
        "| peak RSS MB | dev acc |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method in methods:
        bases = [table.get((method, "trainer")), table.get((method, "trainer-bf16"))]
        for recipe in recipes:
            row = table[(method, recipe)]
            name = recipe + (f" ({results[(method, recipe)][0]['precision']})" if recipe == "tunelab" else "")
            speed = [f"{row['samples_per_s'] / b['samples_per_s']:.2f}x" if b else "-" for b in bases]
            wall = [f"{b['wall_s'] / row['wall_s']:.2f}x" if b else "-" for b in bases]
            print(
                f"| {method} | {name} | {row['samples_per_s']:.1f} | {speed[0]} | {speed[1]} "
                f"| {row['wall_s']:.1f} | {wall[0]} | {wall[1]} | {row['peak_rss_mb']:.0f} "
                f"| {100 * row['dev_accuracy']:.2f} |"
            )
        if (method, "tunelab") in table and (method, "tunelab-fp32") in table:
            gap = 100 * (
                table[(method, "tunelab")]["dev_accuracy"] - table[(method, "tunelab-fp32")]["dev_accuracy"]
            )
            print(f"{method}: tunelab default minus tunelab fp32, dev accuracy: {gap:+.2f} points")
    print(
        "(x Trainer: samples/s ratio, and for wall time Trainer's seconds / the recipe's: above 1 is faster)"
    )
    print(f"whole benchmark: {time.perf_counter() - started:.0f} s")
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps(
                {
                    # what produced them: samples, epochs, threads, seed, rounds
                    "settings": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"
                    },
                    "runs": [
                        {"method": m, "recipe": r, **o} for (m, r), runs in results.items() for o in runs
                    ],
                },
                indent=1,
            ),
        )


if __name__ == "__main__":
    main()
