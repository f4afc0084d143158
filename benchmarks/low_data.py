"""Low-data benchmark: BANKING77 with 10% of the training set, with and without each low-data aid.

For each seed, a stratified 10% of BANKING77's training rows (about 1,000 rows, 13 per intent;
the sample changes with the seed) trains the bundled MiniLM with one fixed recipe, and the test
set (3,080 texts) is read once per run. Variants, all fixed before any result was seen:

    baseline   configs/banking77.yaml (full fine-tuning, probe head, max_length 64, batch 32), 10 epochs
    eda        + augment: synonym, insert, swap, delete; 4 new rows per row, alpha 0.05, no filter
               (Wei & Zou suggest 8-16 rows per row at this size; 4 keeps a run under 5x the baseline)
    eda-filter + the same, with the frozen-encoder label filter
    fgm        + train.adversarial=fgm, epsilon 1.0
    pgd        + train.adversarial=pgd, epsilon 1.0, 3 steps of 0.3
    ensemble3  the baseline and two more baseline runs (training seeds +1000, +2000) on the same
               rows, probabilities averaged (uncalibrated: the recipe has no dev split to fit
               temperatures on, and a team with 1,000 rows would not hold 100 of them out)

Prints mean, standard deviation, min and max of test accuracy over the seeds, and the paired
difference to the baseline (mean and standard deviation over seeds). Results are appended to
``<out>/results.jsonl`` as they come, and a rerun skips the (variant, seed) pairs already there,
so a killed benchmark goes on where it stopped (a run killed while training, ``<name>.partial``,
is resumed from its last checkpoint). It takes hours on 2 cores (the baseline about
3 minutes a run; eda 5x that, pgd 4x, fgm 2x).

Each row keeps the overrides its runs were trained with, and a run folder reused by name is
checked against its config.json: an --out measured with other settings is refused (one line).
Neither can see a change of code: to measure a variant again after one (as the README's EDA
re-measure), give a fresh --out; one that has the (variant, seed) already measures nothing.

    .venv/bin/python benchmarks/low_data.py                     # 5 seeds, every variant
    .venv/bin/python benchmarks/low_data.py --variants baseline fgm --seeds 1 2 --out DIR   # DIR: a fresh one
    .venv/bin/python benchmarks/low_data.py --quick             # minutes: tiny model, tiny subset
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from bench_common import (  # benchmarks/bench_common.py
    append_jsonl,
    check_settings,
    measured_with,
    read_jsonl,
    train_run,
    unfinished,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77"
CONFIG = ROOT / "configs" / "banking77.yaml"
SEEDS = (1, 2, 3, 4, 5)
FRACTION = 0.10
# train.label_smoothing=0: the recipe seeds 1-5 were measured with, fixed before
# configs/banking77.yaml took label smoothing (issue 16), so every seed runs the same recipe.
BASE = ["train.epochs=10", "train.label_smoothing=0"]
VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "eda": ["augment.methods=[synonym,insert,swap,delete]", "augment.per_example=4", "augment.alpha=0.05"],
    "eda-filter": [
        "augment.methods=[synonym,insert,swap,delete]",
        "augment.per_example=4",
        "augment.alpha=0.05",
        "augment.filter=true",
    ],
    "fgm": ["train.adversarial=fgm", "train.adversarial_epsilon=1.0"],
    "pgd": [
        "train.adversarial=pgd",
        "train.adversarial_epsilon=1.0",
        "train.adversarial_steps=3",
        "train.adversarial_alpha=0.3",
    ],
    "ensemble3": [],  # built from the baseline and two more seeds, see ensemble_accuracy
}
ENSEMBLE_SEED_OFFSETS = (1000, 2000)


def subset(seed: int, out: Path, *, fraction: float, quick: bool) -> tuple[Path, Path]:
    """A stratified ``fraction`` of the training rows (and the test file), written as CSV."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    train, test = pd.read_csv(DATA / "train.csv"), pd.read_csv(DATA / "test.csv")
    if quick:  # 6 intents, 12 rows each; 5 test rows each
        intents = sorted(train["category"].unique())[:6]
        train = train[train["category"].isin(intents)].groupby("category").head(60)
        test = test[test["category"].isin(intents)].groupby("category").head(5)
    part, _ = train_test_split(train, train_size=fraction, random_state=seed, stratify=train["category"])
    out.mkdir(parents=True, exist_ok=True)
    paths = out / f"train-{seed}.csv", out / "test.csv"
    part.to_csv(paths[0], index=False)
    test.to_csv(paths[1], index=False)
    return paths


def measured(rows: list[dict[str, Any]], variant: str, seed: int, overrides: list[str], where: Path) -> bool:
    """Whether ``rows`` (results.jsonl) hold ``variant`` on ``seed`` measured with ``overrides``.

    A (variant, seed) was skipped whatever settings measured it, so an --out from another recipe
    (another BASE, a VARIANTS edit) reported its old figure as this one's. Exits with one line
    when the row was measured with other overrides. A row from before they were kept is measured
    again (False): its run folders are reused only if their config.json matches (``train_accuracy``).
    """
    for row in rows:
        if (row["variant"], row["seed"]) == (variant, seed) and "overrides" in row:
            return measured_with(row, overrides, where, f"{variant} seed {seed}")
    return False


def train_accuracy(overrides: list[str], out: Path, name: str) -> tuple[Path, float]:
    """Train one run (or reuse a finished one of that name trained so); its test accuracy.

    A run a killed benchmark left unfinished (``<name>.partial``) is resumed: ``tunelab train
    name=<name>`` refuses while it exists.

    Raises:
        SystemExit: the run of that name was trained (or begun) with other settings (one line).
    """
    run = out / name
    if (run / "run.json").is_file():
        check_settings(run, overrides, "trained")
        summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    else:
        partial = unfinished(out, name)
        if partial is not None:
            check_settings(partial, overrides, "begun")
        run, summary, _ = train_run(CONFIG, overrides, out, name, resume=partial, quiet=True)
    return run, 100 * summary["headline"]["test"]["accuracy"]


def ensemble_accuracy(members: list[Path], out: Path) -> float:
    from tunelab.ensembling import ensemble

    target = out / f"{members[0].name}-ensemble3"
    if not (target / "metrics.json").is_file():
        ensemble(members, target, calibrate=False)
    metrics = json.loads((target / "metrics.json").read_text(encoding="utf-8"))
    return 100 * metrics["test"]["accuracy"]


def variant_overrides(variant: str, seed: int, data: list[str]) -> list[str]:
    """The overrides of ``variant``'s run on seed ``seed`` (ensemble3: of its first member)."""
    return [*data, f"train.seed={seed}", *VARIANTS[variant]]


def run_variant(variant: str, seed: int, data: list[str], out: Path) -> float:
    """Test accuracy of ``variant`` on seed ``seed``'s rows; ``data`` holds the recipe's overrides."""
    common = variant_overrides("baseline", seed, data)
    if variant != "ensemble3":
        return train_accuracy(variant_overrides(variant, seed, data), out, f"{variant}-s{seed}")[1]
    members = [train_accuracy(common, out, f"baseline-s{seed}")[0]]
    for offset in ENSEMBLE_SEED_OFFSETS:
        overrides = [*data, f"train.seed={seed + offset}"]
        members.append(train_accuracy(overrides, out, f"baseline-s{seed}-t{seed + offset}")[0])
    return ensemble_accuracy(members, out)


def tiny_model(folder: Path) -> Path:
    """The tests' random 2-layer BERT (``tunelab.models.tiny``), made once.

    ``save_tiny_bert`` writes config.json first and the tokenizer last, so a kill can leave a folder
    with a config.json that no run can load: one lacking a file is removed and made again, in a
    temporary folder renamed into place once whole.
    """
    from tunelab.models.tiny import save_tiny_bert

    if tiny_model_complete(folder):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # one a kill left
    save_tiny_bert(tmp)
    os.replace(tmp, folder)
    return folder


def tiny_model_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a whole model: config.json, weights and the tokenizer's files."""

    def present(name: str) -> bool:
        return (folder / name).is_file() and (folder / name).stat().st_size > 0

    weights = any(present(p.name) for p in folder.glob("*.safetensors")) or present("pytorch_model.bin")
    tokenizer = present("tokenizer.json") or present("vocab.txt")
    return present("config.json") and weights and present("tokenizer_config.json") and tokenizer


def table(results: list[dict[str, Any]], variants: list[str]) -> str:
    by = {(r["variant"], r["seed"]): r["test_accuracy"] for r in results}
    base = {seed: acc for (v, seed), acc in by.items() if v == "baseline"}
    lines = [
        f"{'variant':<11} {'seeds':>5} {'mean':>7} {'std':>6} {'min':>7} {'max':>7} {'vs baseline':>16}",
    ]
    for variant in variants:
        accs = {seed: acc for (v, seed), acc in by.items() if v == variant}
        if not accs:
            continue
        values = list(accs.values())
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        paired = [accs[s] - base[s] for s in accs if s in base]
        if variant == "baseline" or not paired:
            delta = "-"
        else:
            spread = statistics.stdev(paired) if len(paired) > 1 else 0.0
            delta = f"{statistics.mean(paired):+.2f} +- {spread:.2f}"
        lines.append(
            f"{variant:<11} {len(values):>5} {statistics.mean(values):>7.2f} {std:>6.2f} "
            f"{min(values):>7.2f} {max(values):>7.2f} {delta:>16}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument(
        "--out",
        default=str(ROOT / "runs" / "benchmarks" / "low_data"),
        help="results and runs; (variant, seed) pairs already here are reused: a fresh one to measure again",
    )
    parser.add_argument("--quick", action="store_true", help="tiny model, 6 intents, 1 epoch, 2 seeds")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"BANKING77 not found at {DATA}: this benchmark reads ../shared/data/banking77")
    out = Path(args.out) / ("quick" if args.quick else "full")
    fraction, recipe = FRACTION, list(BASE)
    if args.quick:
        model = tiny_model(out / "tiny-bert")
        recipe = [
            "train.epochs=1",
            "train.batch_size=8",
            "train.learning_rate=0.005",
            "train.head_init=random",
        ]
        recipe += [f"model.name={model}", "model.max_length=32", "model.pooling=mean"]
        VARIANTS["eda"][1] = VARIANTS["eda-filter"][1] = "augment.per_example=1"
        VARIANTS["pgd"][2] = "train.adversarial_steps=2"
        fraction = 0.2
        args.seeds = args.seeds if args.seeds != list(SEEDS) else [1, 2]
    results_path = out / "results.jsonl"
    done = read_jsonl(results_path)  # a torn last row (a kill while it was written) is skipped, with a note
    for seed in args.seeds:
        train, test = subset(seed, out / "data", fraction=fraction, quick=args.quick)
        data = [f"data.train={train}", f"data.test={test}", *recipe]
        for variant in args.variants:
            overrides = variant_overrides(variant, seed, data)
            if measured(done, variant, seed, overrides, results_path):
                continue
            accuracy = run_variant(variant, seed, data, out / "runs")
            record = {
                "variant": variant,
                "seed": seed,
                "test_accuracy": round(accuracy, 2),
                "overrides": overrides,  # compared by the next invocation (measured)
            }
            print(json.dumps(record), flush=True)
            append_jsonl(results_path, record)  # the whole file again, renamed into place: never a torn row
            done.append(record)
    what = (
        "6 intents, tiny random model: a smoke test, the figures mean nothing" if args.quick else "77 intents"
    )
    print(f"\nBANKING77 ({what}), {fraction:.0%} of the training rows per seed: test accuracy (%)")
    print(table(done, args.variants))


if __name__ == "__main__":
    main()
