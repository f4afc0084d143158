"""Every fine-tuning method on BANKING77 (full training set) and CoNLL-2003, against full fine-tuning.

Each (dataset, method) trains in its own ``tunelab train`` subprocess on the dataset's shipped
recipe (``configs/banking77.yaml``, ``configs/conll2003.yaml``) with only ``method=...`` changed
and, where the recipe sets a learning rate for full fine-tuning, ``train.learning_rate`` reset to
the method's own default (each method declares one, chosen for BANKING77 in issue 13). Full fine-
tuning runs in the same invocation, so the deltas compare like with like on this machine.

Printed per dataset: the test metric (BANKING77 accuracy, CoNLL-2003 entity F1), its difference
from full fine-tuning, trainable parameters (count and share of the model), the saved weights'
size on disk, training samples/s and peak memory (max RSS of the training process), and at the
end the recommended method per dataset: the smallest trainable share within ``--within`` points
(0.3) of full fine-tuning, else the most accurate parameter-efficient method.

Anchors (GLUE, RoBERTa-base; other models and data, for scale only): LoRA 87.2 against full
fine-tuning 86.4; Houlsby adapters within 0.4 points with 3.6% of the parameters. Target: a
method under 2% trainable parameters within 0.3 points of full fine-tuning on BANKING77.

    .venv/bin/python benchmarks/methods.py                                  # everything (hours on a CPU)
    .venv/bin/python benchmarks/methods.py --datasets banking77 --methods full lora houlsby
    .venv/bin/python benchmarks/methods.py --limit 300 --set train.epochs=1 # a quick check
    .venv/bin/python benchmarks/methods.py --json methods.json              # rerun after a kill: resumes

With ``--json FILE`` each finished run is written to FILE at once, and a rerun with the same FILE,
``--set`` and ``--limit`` reuses the (dataset, method) rows already there instead of training them
again: the whole table takes hours on 2 cores, and a session can end in the middle of it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import positive_int, run_costs, train_run  # benchmarks/bench_common.py

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TARGET = {"max_trainable_share": 0.02, "within_points": 0.3}
ANCHORS = {
    "LoRA vs full fine-tuning, GLUE, RoBERTa-base": "87.2 vs 86.4",
    "Houlsby adapters, GLUE": "within 0.4 points of full fine-tuning with 3.6% of the parameters",
}


@dataclass(frozen=True)
class Dataset:
    """A dataset's shipped recipe, the data it needs and the headline metric in its run.json."""

    name: str
    config: str
    needs: str  # a file under ../shared/data that must exist
    metric: str  # key of summary["headline"]["test"]
    label: str  # how the table names the metric


DATASETS = {
    "banking77": Dataset(
        "banking77", "configs/banking77.yaml", "banking77/train.csv", "accuracy", "test acc"
    ),
    "conll2003": Dataset(
        "conll2003", "configs/conll2003.yaml", "conll2003/train.txt", "entity_f1", "test F1"
    ),
}
#: name -> the overrides that select it (``adapter`` is Houlsby's by default).
METHODS: dict[str, list[str]] = {
    "full": ["method=full"],
    "lora": ["method=lora"],
    "adalora": ["method=adalora"],
    "ia3": ["method=ia3"],
    "loha": ["method=loha"],
    "lokr": ["method=lokr"],
    "prompt": ["method=prompt"],
    "prefix": ["method=prefix"],
    "houlsby": ["method=adapter", "method.kind=houlsby"],
    "pfeiffer": ["method=adapter", "method.kind=pfeiffer"],
    "setfit": ["method=setfit"],
}
# SetFit draws its pairs by label, so it refuses token classification; its few-shot figures are
# benchmarks/fewshot.py's.
SINGLE_LABEL_ONLY = {"setfit"}


def weights_size_mb(run: Path) -> float:
    """What a user ships: the saved weights (the method's own parameters and the head)."""
    files = [p for p in (run / "weights").rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 2)


def read_recipe(config: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(config.read_text(encoding="utf-8"))


def limited_data(dataset: Dataset, limit: int, out: Path) -> list[str]:
    """``--limit``: a quick check on ``limit`` training rows, written beside the runs.

    CSV rows are sampled at random (seed 0; the file is sorted by label) and the test file keeps
    only the labels the sample holds; CoNLL keeps its first ``limit`` sentences.
    """
    source = DATA / dataset.needs
    if dataset.name == "conll2003":  # sentences are blank-line separated blocks
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
        blocks, block = [], []
        for line in lines:
            block.append(line)
            if not line.strip():
                blocks.append("".join(block))
                block = []
        target = out / f"{dataset.name}-first-{limit}.txt"
        target.write_text("".join(blocks[: limit + 1]), encoding="utf-8")  # the -DOCSTART- block first
        return [f"data.train={target}"]
    import pandas as pd

    train = pd.read_csv(source).sample(n=limit, random_state=0)
    test = pd.read_csv(source.with_name("test.csv"))
    label = next(c for c in train.columns if c != "text")
    test = test[test[label].isin(set(train[label]))]
    paths = {
        "train": out / f"{dataset.name}-sample-{limit}.csv",
        "test": out / f"{dataset.name}-sample-{limit}-test.csv",
    }
    train.to_csv(paths["train"], index=False)
    test.to_csv(paths["test"], index=False)
    return [f"data.{split}={path}" for split, path in paths.items()]


def run_one(dataset: Dataset, method: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    config = ROOT / dataset.config
    overrides = list(METHODS[method])
    recipe = read_recipe(config)
    if method != "full" and (recipe.get("train") or {}).get("learning_rate") is not None:
        overrides.append("train.learning_rate=null")  # the method's own default
    data = [f"{key}={DATA / dataset.name / Path(value).name}" for key, value in data_paths(recipe).items()]
    if args.limit:
        data += limited_data(dataset, args.limit, out)
    name = f"bench-methods-{dataset.name}-{method}-{int(time.time())}"
    try:
        run, summary, wall = train_run(
            config, [*data, *overrides, *args.set], out, name, quiet=True, echo=True
        )
    except subprocess.CalledProcessError as exc:  # its own one-line error is printed above
        sys.exit(f"{dataset.name} {method}: tunelab train failed (exit {exc.returncode}); see above")
    test = summary["headline"]["test"]
    costs = run_costs(summary, wall)
    return {
        "dataset": dataset.name,
        "method": method,
        "overrides": overrides + args.set,
        "test": round(100 * test[dataset.metric], 2),
        "trainable_share": costs["trainable_parameters"] / costs["total_parameters"],
        "weights_mb": weights_size_mb(run),
        **costs,
        "run": str(run),
    }


def data_paths(recipe: dict[str, Any]) -> dict[str, str]:
    """The recipe's data paths (relative to the repository root); the caller re-roots them."""
    return {f"data.{k}": recipe["data"][k] for k in ("train", "dev", "test") if recipe["data"].get(k)}


def recommend(rows: list[dict[str, Any]], within: float) -> dict[str, Any] | None:
    """The smallest trainable share within ``within`` points of full, else the best efficient one."""
    full = next((r for r in rows if r["method"] == "full"), None)
    efficient = [r for r in rows if r["method"] != "full"]
    if full is None or not efficient:
        return None
    close = [r for r in efficient if r["test"] >= full["test"] - within]
    if close:
        pick = min(close, key=lambda r: r["trainable_share"])
        why = f"the smallest trainable share within {within} points of full fine-tuning"
    else:
        pick = max(efficient, key=lambda r: r["test"])
        why = f"no method came within {within} points of full fine-tuning: the most accurate one"
    return {"method": pick["method"], "test": pick["test"], "delta": round(pick["test"] - full["test"], 2),
            "trainable_share": pick["trainable_share"], "why": why}  # fmt: skip


def report(dataset: Dataset, rows: list[dict[str, Any]], within: float) -> dict[str, Any]:
    full = next((r for r in rows if r["method"] == "full"), None)
    print(f"\n{dataset.name}: {dataset.label}, against full fine-tuning in the same run")
    head = "{:<9} {:>8} {:>7} {:>11} {:>8} {:>10} {:>9} {:>8} {:>7}"
    print(head.format("method", dataset.label, "delta", "trainable", "share", "weights MB", "samples/s",
                      "peak MB", "train s"))  # fmt: skip
    for r in rows:
        delta = "-" if full is None else f"{r['test'] - full['test']:+.2f}"
        print(head.format(r["method"], f"{r['test']:.2f}", delta, f"{r['trainable_parameters']:,}",
                          f"{100 * r['trainable_share']:.2f}%", f"{r['weights_mb']:.1f}", r["samples_per_s"],
                          f"{r['peak_memory_mb']:.0f}", f"{r['train_seconds']:.0f}"))  # fmt: skip
    pick = recommend(rows, within)
    if pick:
        print(f"recommended for {dataset.name}: {pick['method']} ({pick['test']:.2f}, {pick['delta']:+.2f} "
              f"against full, {100 * pick['trainable_share']:.2f}% trainable): {pick['why']}")  # fmt: skip
    return {"rows": rows, "recommended": pick}


def target(results: dict[str, Any]) -> str:
    rows = results.get("banking77", {}).get("rows", [])
    full = next((r for r in rows if r["method"] == "full"), None)
    if full is None:
        return "target not checked: BANKING77 full fine-tuning did not run"
    hits = [r["method"] for r in rows if r["method"] != "full"
            and r["trainable_share"] < TARGET["max_trainable_share"]
            and r["test"] >= full["test"] - TARGET["within_points"]]  # fmt: skip
    verdict = f"holds ({', '.join(hits)})" if hits else "does not hold"
    return (f"target: a method under {100 * TARGET['max_trainable_share']:.0f}% trainable parameters within "
            f"{TARGET['within_points']} points of full fine-tuning on BANKING77 -> {verdict}")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    parser.add_argument(
        "--limit",
        type=positive_int,
        help="N training rows, a quick check: a seeded sample of a CSV (its test file cut to "
        "the sampled labels), the first N sentences of CoNLL",
    )
    parser.add_argument("--within", type=float, default=TARGET["within_points"],
                        help="points of full fine-tuning a recommended method may lose (0.3)")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "runs" / "benchmarks"), help="where the runs go")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE (after each run)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    missing = [d for d in args.datasets if not (DATA / DATASETS[d].needs).is_file()]
    if missing:
        sys.exit(f"{', '.join(missing)} not found under {DATA}: this benchmark reads ../shared/data")
    methods = ["full", *[m for m in args.methods if m != "full"]]  # the reference first
    done = finished_rows(args)
    results: dict[str, Any] = {}
    for name in args.datasets:
        dataset, rows = DATASETS[name], []
        for method in methods:
            if method in SINGLE_LABEL_ONLY and name == "conll2003":
                continue
            row = done.get((name, method))
            if row is not None:
                print(f"{name} {method}: reusing the finished run {row['run']} from {args.json}")
            rows.append(row or run_one(dataset, method, args, out))
            results[name] = {"rows": rows}
            if args.json:
                write_json(
                    Path(args.json), {"settings": settings(args), **done_payload(done, results), **results}
                )
        results[name] = report(dataset, rows, args.within)
    for name, value in ANCHORS.items():
        print(f"anchor: {name}: {value}")
    results["target"] = target(results)
    print(results["target"])
    if args.json:
        write_json(Path(args.json), {"settings": settings(args), **done_payload(done, results), **results})


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What makes two invocations' rows comparable: the overrides and the row limit."""
    return {"set": list(args.set), "limit": args.limit}


def finished_rows(args: argparse.Namespace) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows of an earlier invocation with the same ``--json``, ``--set`` and ``--limit``."""
    if not args.json or not Path(args.json).is_file():
        return {}
    try:
        earlier = json.loads(Path(args.json).read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        sys.exit(f"{args.json}: not JSON (a damaged results file?); give another --json or delete it")
    if earlier.get("settings", settings(args)) != settings(args):
        sys.exit(
            f"{args.json} holds runs with other --set/--limit ({earlier['settings']}); give another --json"
        )
    return {
        (r["dataset"], r["method"]): r
        for name, value in earlier.items()
        if name in DATASETS
        for r in value.get("rows", [])
        if Path(r["run"]).is_dir()  # a row whose run folder is gone is trained again
    }


def done_payload(done: dict[tuple[str, str], dict[str, Any]], results: dict[str, Any]) -> dict[str, Any]:
    """Earlier rows of datasets this invocation has not reached yet: kept in the file."""
    kept: dict[str, Any] = {}
    for (name, _), row in done.items():
        if name not in results:
            kept.setdefault(name, {"rows": []})["rows"].append(row)
    return kept


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Through a temporary file and a rename: a kill mid-write never damages the earlier results."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    main()
