"""Few-shot BANKING77: SetFit (``method=setfit``) against a frozen encoder + logistic regression.

For each number of examples per intent (8 and 16) and each seed, ``data.shots`` draws that many
training rows of every intent (``data.shots_seed`` = the seed) from BANKING77's training file,
after a fixed stratified 10% dev split (``data.split_seed=42``) was carved from it, so the dev
rows never change and never reach training. On that same sample:

    setfit     tunelab train configs/banking77.yaml method=setfit data.shots=N ... : contrastive
               tuning of MiniLM on bounded pairs, a logistic-regression head, a short head-only loop
    baseline   frozen MiniLM (mean pooling, the run's own pooled features) + scikit-learn
               LogisticRegression (max_iter 1000, the project's probe head), fitted on the same rows
    full       (``--recipes full``) the same fine-tuning as selftrain on the labelled rows alone
    selftrain  (``--recipes selftrain``; semi-supervised, not SetFit) ``self_training.unlabeled``: the
               probe above, refined by its own self-training, labels BANKING77's other training
               texts (their label column is never read), each intent's 128 most confident join
               the N labelled rows, and MiniLM is fine-tuned on both for 3 epochs

Two stages, so that the recipe is never chosen on test:

    --stage dev    every recipe in --recipes on the dev split (no test file is read)
    --stage test   the chosen --recipe, test accuracy (3,080 texts), read once at the end
    --stage both   dev (--dev-shots, --dev-seeds), then test with the recipe of the best mean
                   dev accuracy over those shots and seeds only (ties: the first listed), in one
                   command

Prints mean, standard deviation, min and max over the seeds, and the paired gain over the
baseline. Results are appended to ``<out>/results.jsonl`` as they come; a rerun skips the
(stage, recipe, shots, seed) rows already there (one measured with other overrides, a recipe edited
since, ends it: give a fresh --out), reads a run that finished before its row was
written, and resumes one killed while training (``<name>.partial``). Anchors (issue 14): frozen
all-MiniLM-L6-v2 + logistic regression at 8 per intent 80.0 (MTEB) and 83.9 (measured here); 10 per intent:
USE+ConveRT 85.2, fine-tuned BERT 83.4, the best published augmentation 89.8. Targets: >= 87
(8 per intent) and >= 90 (16 per intent).

    .venv/bin/python benchmarks/fewshot.py --stage both --recipes p4n4-head p4n4-lr1e-4-e2e4 \\
        --dev-shots 8 --dev-seeds 0 --shots 8 16 --seeds 0 1 2 3 4   # as run
    .venv/bin/python benchmarks/fewshot.py --stage dev --recipes p4n4 --shots 8 --seeds 0
    .venv/bin/python benchmarks/fewshot.py --stage test --recipe p4n4-head --seeds 0 1 2 3 4
    .venv/bin/python benchmarks/fewshot.py --stage dev --recipes selftrain --shots 8 --seeds 0
    .venv/bin/python benchmarks/fewshot.py --stage test --recipe selftrain --shots 8 16 --seeds 0 1 2 3 4

The dev stage draws its rows with the seeds it is given (``--stage dev``: ``--seeds``, default 0-4;
``--stage both``: ``--dev-seeds``, default 100, rows test never draws; ``--seeds 0`` gives test's
first seed's 616 training rows, scored on dev instead of test, as the README's dev figures were).
On 2 shared cores a run takes 6-15 minutes
(8 per intent) and about twice that at 16: the contrastive stage is most of it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "banking77.yaml"
sys.path.insert(0, str(ROOT / "src"))

# Every run: a fixed 10% dev split to draw the shots after (and to choose recipes on), no early
# stopping, a one-epoch head-only loop after the logistic-regression head (it starts at its optimum).
# train.label_smoothing=0: the recipe the README's figures were measured with, before
# configs/banking77.yaml took label smoothing (issue 16).
BASE = [
    "method=setfit",
    "data.dev_size=0.1",
    "data.split_seed=42",
    "train.epochs=1",
    "train.patience=null",
    "train.label_smoothing=0",
]
RECIPES: dict[str, list[str]] = {
    # pairs per row (positives, negatives); head: only the head trains in the loop (SetFit's default)
    "p4n4-head": ["method.positives=4", "method.negatives=4", "method.end_to_end=false"],
    "p4n4": ["method.positives=4", "method.negatives=4", "method.end_to_end=true"],
    # the in-batch losses (method.loss): as many steps as p4n4's pairs take, 32 texts a step
    "mnrl-head": ["method.positives=4", "method.negatives=4", "method.loss=mnrl", "method.end_to_end=false"],
    "triplet-head": [
        "method.positives=4",
        "method.negatives=4",
        "method.loss=triplet",
        "method.end_to_end=false",
    ],
    # SetFit's own default: 20 + 20 pairs per row (num_iterations=20), capped at 20,000 pairs
    "p20n20-head": ["method.positives=20", "method.negatives=20", "method.end_to_end=false"],
    # self-training (not SetFit): the frozen MiniLM probe, refined by 3 rounds of its own
    # self-training, labels BANKING77's other training texts (the file without its label column;
    # the run drops the texts it holds as labelled rows or as dev rows), each intent's 128 most
    # confident join the labelled rows, and the whole model is fine-tuned on them for 3 epochs
    # with the config's label smoothing (0.2). Semi-supervised: it reads unlabelled texts the
    # other recipes do not.
    "selftrain": [
        "method=full",
        "train.epochs=3",
        "train.label_smoothing=0.2",
        "self_training.unlabeled={unlabeled}",
    ],
    # the same fine-tuning on the labelled rows alone: what the unlabelled texts add
    "full": ["method=full", "train.epochs=3", "train.label_smoothing=0.2"],
    # a larger contrastive step (SetFit's 2e-5 is for ~5x more pairs per row), then LP-FT: the
    # whole model fine-tuned from the logistic-regression head for 4 epochs
    "p4n4-lr1e-4-e2e4": [
        "method.positives=4",
        "method.negatives=4",
        "method.learning_rate=1e-4",
        "method.end_to_end=true",
        "train.epochs=4",
        "train.learning_rate=5e-5",
    ],
}


def _overrides(stage: str, recipe: str, shots: int, seed: int, extra: list[str], out: Path) -> list[str]:
    test = [] if stage == "test" else ["data.test=null"]  # the dev stage never reads test
    steps = [s.format(unlabeled=unlabeled_file(out)) if "{unlabeled}" in s else s for s in RECIPES[recipe]]
    return [*BASE, *steps, f"data.shots={shots}", f"data.shots_seed={seed}", *test, *extra]


def unlabeled_file(out: Path) -> Path:
    """BANKING77's training texts without their labels (written once into ``out``), for ``selftrain``."""
    import pandas as pd
    import yaml

    path = out / "banking77-train-unlabeled.csv"
    if not path.is_file():
        data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["data"]
        texts = pd.read_csv(ROOT / data["train"])[[data["text_column"]]]
        tmp = path.with_suffix(".tmp")
        texts.to_csv(tmp, index=False)
        tmp.replace(path)
    return path


def setfit_accuracy(overrides: list[str], out: Path, name: str, split: str) -> tuple[float, dict[str, Any]]:
    """``split`` accuracy and run.json of run ``out/name``: trained, or finished where a killed benchmark
    stopped.

    A run finished before its results.jsonl row was written is read, not trained again (a run of
    that name exists); one killed while training (``<name>.partial``) is resumed.
    """
    from bench_common import check_settings, unfinished  # benchmarks/bench_common.py

    import tunelab

    run, partial = out / name, unfinished(out, name)
    if (run / "run.json").is_file() and (run / "metrics.json").is_file():
        summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
        if summary.get("status") == "finished":
            check_settings(run, overrides, "trained")
            metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
            return float(metrics[split]["accuracy"]), summary
    if partial is not None:
        check_settings(partial, overrides, "begun")
        result = tunelab.train(resume=str(partial), show_progress=False)
    else:
        result = tunelab.train(
            str(CONFIG), overrides=[*overrides, f"output_dir={out}", f"name={name}"], show_progress=False
        )
    return float(result.metrics[split]["accuracy"]), result.summary


class Baseline:
    """Frozen MiniLM features (computed once per text) + logistic regression on a run's sample."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def accuracy(self, overrides: list[str], split: str, seed: int) -> float:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        from tunelab.preflight import load_config

        cfg = load_config(str(CONFIG), overrides)
        from tunelab.data import load_splits

        splits = load_splits(cfg.data)
        held = splits.dev if split == "dev" else splits.test
        x_train = self._features(cfg, splits.train.texts, splits.labels)
        x_eval = self._features(cfg, held.texts, splits.labels)
        clf = LogisticRegression(max_iter=1000, random_state=seed).fit(x_train, splits.train.labels)
        return float(np.mean(clf.predict(x_eval) == np.asarray(held.labels)))

    def _features(self, cfg: Any, texts: list[str], labels: Any) -> Any:
        import numpy as np

        from tunelab.data.encoding import encode_texts
        from tunelab.models import load_tokenizer, resolve_model
        from tunelab.tasks import get_task
        from tunelab.train.head_init import pooled_features

        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            path = resolve_model(cfg.model.name).path
            if "model" not in self._cache:
                model = get_task(cfg.data.task).build_model(path, labels, pooling=cfg.model.pooling, seed=0)
                self._cache["model"], self._cache["tokenizer"] = model, load_tokenizer(path)
            enc = encode_texts(self._cache["tokenizer"], missing, max_length=cfg.model.max_length)
            for text, row in zip(missing, pooled_features(self._cache["model"], enc), strict=True):
                self._cache[text] = row
        return np.stack([self._cache[t] for t in texts])


def _done(results: Path) -> dict[tuple, dict[str, Any]]:
    """What ``results`` holds, keyed by the ``--set`` overrides too: a sweep of one option into one
    ``--out`` (``--set self_training.per_label=32``, then 64) trained only its first value. Each key
    maps to its last row, whose overrides ``run_stage`` compares with the recipe's now."""
    from bench_common import read_jsonl  # benchmarks/bench_common.py

    rows = read_jsonl(results)  # a torn last row (a kill while it was written) is skipped, with a note
    keys = {}
    for r in rows:
        extra = _set_of(r, results.parent)
        keys[(r["stage"], r["recipe"], r["shots"], r["seed"], None if extra is None else tuple(extra))] = r
    return keys


def _set_of(row: dict[str, Any], out: Path) -> list[str] | None:
    """A row's ``--set`` overrides: its ``set``, or for a row written before that was kept, what
    its ``overrides`` hold past the recipe's own (None: a recipe no longer known, never matched)."""
    if "set" in row:
        return list(row["set"])
    if row["recipe"] not in RECIPES:
        return None
    own = _overrides(row["stage"], row["recipe"], row["shots"], row["seed"], [], out)
    given = list(row.get("overrides", []))
    return given[len(own) :] if given[: len(own)] == own else None


def _rows(results: Path, stage: str, extra: list[str]) -> list[dict[str, Any]]:
    """The rows of ``stage`` run with exactly these ``--set`` overrides."""
    from bench_common import read_jsonl  # benchmarks/bench_common.py

    rows = read_jsonl(results)
    return [r for r in rows if r["stage"] == stage and _set_of(r, results.parent) == list(extra)]


def _summary(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    low, high = 100 * min(values), 100 * max(values)
    mean = 100 * statistics.mean(values)
    return f"{mean:.2f} ± {100 * sd:.2f} (min {low:.2f}, max {high:.2f}, n={len(values)})"


def report(results: Path, stage: str, extra: list[str] | None = None) -> None:
    rows = _rows(results, stage, extra or [])
    with_set = f", --set {' '.join(extra)}" if extra else ""
    # the model a --set names, not always MiniLM-L6
    named = [e.split("=", 1)[1] for e in extra or [] if e.startswith("model.name=")]
    model = named[-1] if named else "MiniLM-L6"
    print(f"\n{stage} accuracy, mean ± standard deviation over seeds (BANKING77, {model}{with_set}):")
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        for shots in sorted({r["shots"] for r in rows if r["recipe"] == recipe}):
            sel = [r for r in rows if r["recipe"] == recipe and r["shots"] == shots]
            gains = [r["setfit"] - r["baseline"] for r in sel]
            print(f"  {shots:>2}/intent {recipe:<12} recipe   {_summary([r['setfit'] for r in sel])}")
            print(f"  {shots:>2}/intent {'':<12} baseline {_summary([r['baseline'] for r in sel])}")
            print(
                f"  {shots:>2}/intent {'':<12} gain     {100 * statistics.mean(gains):+.2f} points; "
                f"recipe {statistics.mean(r['seconds'] for r in sel):.0f} s a run"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )  # the whole protocol and its examples, not the first line only
    parser.add_argument("--stage", choices=("dev", "test", "both"), required=True)
    parser.add_argument("--dev-shots", nargs="+", type=int, default=[8], help="both: shots for the dev stage")
    parser.add_argument(
        "--dev-seeds", nargs="+", type=int, default=[100], help="both: seeds for the dev stage"
    )
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=[r for r in RECIPES if r not in ("selftrain", "full", "mnrl-head", "triplet-head")],
        choices=list(RECIPES),
        help="dev stage: recipes to compare (default: the SetFit ones with the cosine loss; selftrain "
        "reads unlabelled texts)",
    )
    parser.add_argument(
        "--recipe", default="p4n4-head", choices=list(RECIPES), help="test stage: the recipe chosen on dev"
    )
    parser.add_argument("--shots", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value overrides for every run")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-fewshot")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # progress on stderr
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    from tunelab.errors import TunelabError

    try:  # training runs in this process: a bad --set field is tunelab's one line, not a traceback
        baseline = Baseline()
        if args.stage == "both":
            run_stage(args, results, baseline, "dev", args.recipes, args.dev_shots, args.dev_seeds)
            report(results, "dev", args.set)
            args.recipe = best_recipe(
                results, args.recipes, args.set, shots=args.dev_shots, seeds=args.dev_seeds
            )
            print(f"\nchosen on dev: {args.recipe}", flush=True)
            args.stage = "test"
        recipes = args.recipes if args.stage == "dev" else [args.recipe]
        run_stage(args, results, baseline, args.stage, recipes, args.shots, args.seeds)
        report(results, args.stage, args.set)
    except TunelabError as exc:
        sys.exit(f"error: {exc}")
    return 0


def best_recipe(
    results: Path,
    recipes: list[str],
    extra: list[str] | None = None,
    *,
    shots: list[int],
    seeds: list[int],
) -> str:
    """The recipe with the highest mean dev accuracy with these ``--set`` overrides (the first
    listed on a tie), over the dev rows of ``shots`` x ``seeds`` only.

    results.jsonl keeps every dev row an ``--out`` ever ran: averaged whole, a recipe tried at 16
    shots or on more seeds by an earlier ``--stage dev`` was compared on other draws than the rest.
    So each recipe must have a row for every (shots, seed) asked, the same set for all of them.

    Raises:
        SystemExit: a recipe lacks some of them (one line naming the recipe and what it lacks).
    """
    rows = _rows(results, "dev", extra or [])
    grid = {(n, s) for n in shots for s in seeds}
    means: dict[str, float] = {}
    for recipe in recipes:
        # one row a (shots, seed): the last written, should an --out hold the same run twice
        scores = {
            (x["shots"], x["seed"]): x["setfit"]
            for x in rows
            if x["recipe"] == recipe and (x["shots"], x["seed"]) in grid
        }
        missing = sorted(grid - scores.keys())
        if missing:
            lacks = ", ".join(f"{n} shots seed {s}" for n, s in missing)
            sys.exit(
                f"{results}: recipe {recipe} has no dev row for {lacks}; every recipe needs one for each "
                "--dev-shots and --dev-seeds to be compared on the same draws"
            )
        means[recipe] = statistics.mean(scores.values())
    return max(means, key=lambda r: (means[r], -recipes.index(r)))


def run_stage(
    args: argparse.Namespace,
    results: Path,
    baseline: Baseline,
    stage: str,
    recipes: list[str],
    shots_list: list[int],
    seeds: list[int],
) -> None:
    from bench_common import append_jsonl, measured_with  # benchmarks/bench_common.py

    done = _done(results)
    split = stage
    # Seed by seed, both sizes each: a benchmark cut short still has every size at some seeds.
    for seed in seeds:
        for shots in shots_list:
            for recipe in recipes:
                overrides = _overrides(stage, recipe, shots, seed, args.set, args.out)
                # Not by its key alone: a row of a recipe edited since (RECIPES) was reported as its figure.
                kept = done.get((stage, recipe, shots, seed, tuple(args.set)))
                what = f"{stage} {recipe} {shots} shots seed {seed}"
                if kept is not None and measured_with(kept, overrides, results, what):
                    continue
                started = time.perf_counter()
                name = f"{stage}-{recipe}-{shots}shot-seed{seed}"
                if args.set:  # its own run folder beside the plain recipe's
                    name += "-set" + hashlib.sha256("\n".join(args.set).encode()).hexdigest()[:8]
                acc, summary = setfit_accuracy(overrides, args.out, name, split)
                seconds = time.perf_counter() - started
                base = baseline.accuracy(overrides, split, seed)
                row = {
                    "stage": stage,
                    "recipe": recipe,
                    "shots": shots,
                    "seed": seed,
                    "setfit": acc,
                    "baseline": base,
                    "seconds": round(seconds, 1),
                    "train_rows": summary["rows"]["train"],
                    "overrides": overrides,
                    "set": list(args.set),
                }
                append_jsonl(results, row)  # the whole file again, renamed into place: never a torn row
                print(
                    f"{name}: recipe {100 * acc:.2f}, baseline {100 * base:.2f} ({seconds:.0f} s)", flush=True
                )


if __name__ == "__main__":
    sys.exit(main())
