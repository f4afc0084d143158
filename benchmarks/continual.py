"""Continual learning on BANKING77: 60 intents first, then the other 17 from their own data.

The 77 intents are split once (seeded): 17 *new* intents, 60 *old* ones. 10% of each intent's
training rows are held out as dev (seeded, stratified); test is BANKING77's test file, read
once at the end for the chosen settings only. Runs (all ``configs/banking77.yaml``: full
fine-tuning of MiniLM, max_length 64, batch 32, lr 5e-5, probe head; ``first`` and ``retrain``
train ``--epochs`` (5, the config's, as a user retraining would), the continued runs
``--continued-epochs`` (2: the most that keeps rehearsal under a third of the retraining time)):

    first      the old intents' training rows (dev: their dev rows); stores its rehearsal sample
    naive      tunelab train --from first, the new intents' rows only, continual.rehearsal=0
    rehearsal  --from first, the new rows + R stored rows per old intent, R chosen on dev
    distill    rehearsal with the chosen R + continual.distill=W, W chosen on dev
    retrain    from scratch on old + new rows (the upper bound)

Every continued run selects its checkpoint on the dev rows of all 77 intents; the settings
(R, W) are chosen by dev accuracy over the 77 intents. Reported: test accuracy on the old
intents before (``first``) and after, forgetting (before - after), accuracy on the new intents and
on all, the seconds of run.json (``train_seconds``: the loop's steps; ``setup_seconds``: the work
before the loop, among it the probe head's fit and distillation's teacher pass) and their sum's
share of retrain's sum. Every --out keeps the split it was made with (split.json: seed,
--rows-per-class, the new intents, a hash of the CSVs); another split needs another --out.
Runs already in ``--out`` are reused and one killed while training (``runs/<name>.partial``) is
resumed, so a killed benchmark goes on where it stopped. ``--set`` needs ``--tag``: the continued
runs are reused by name, and one trained with other settings must not pass for the plain one.

    .venv/bin/python benchmarks/continual.py                  # R in {20, 50, 100}, W in {0.3, 1}
    .venv/bin/python benchmarks/continual.py --rehearsal 50 --set train.class_weights=true --tag=-cw \\
        --dev-only
    .venv/bin/python benchmarks/continual.py --out DIR --rehearsal all --continued-epochs 1.5 \\
        --distill 0.3             # every stored row replayed: the recipe that met the target (README)
    .venv/bin/python benchmarks/continual.py --rows-per-class 8 --epochs 1 --continued-epochs 1 \\
        --model TINY --out /tmp/c  # smoke
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from bench_common import read_json, require_data, saved_setting, unfinished  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_bytes, atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77"
CONFIG = ROOT / "configs" / "banking77.yaml"
N_NEW = 17
SPLIT_JSON = "split.json"
CSV_FILES = tuple(f"{part}_{split}.csv" for part in ("old", "new", "all") for split in ("train", "dev"))


def make_split(
    train: pd.DataFrame, *, seed: int, rows_per_class: int | None
) -> tuple[list[str], list[str], dict[str, str]]:
    """(old intents, new intents, {file name: CSV text}) of the old/new/all train and dev files.

    Made in memory, so that ``split_conflict`` can compare them with ``--out``'s before a file is
    overwritten.
    """
    intents = sorted(train["category"].unique())
    rng = random.Random(seed)
    new = sorted(rng.sample(intents, N_NEW))
    old = [i for i in intents if i not in new]
    parts: dict[str, list[pd.DataFrame]] = {"train": [], "dev": []}
    for _, rows in train.groupby("category", sort=True):
        rows = rows.sample(frac=1.0, random_state=seed)
        n_dev = max(1, round(0.1 * len(rows)))
        dev, rest = rows.iloc[:n_dev], rows.iloc[n_dev:]
        if rows_per_class is not None:
            rest = rest.iloc[:rows_per_class]
        parts["dev"].append(dev)
        parts["train"].append(rest)
    files: dict[str, str] = {}
    for split, frames in parts.items():
        table = pd.concat(frames)
        files[f"old_{split}.csv"] = table[table["category"].isin(old)].to_csv(index=False)
        files[f"new_{split}.csv"] = table[table["category"].isin(new)].to_csv(index=False)
        files[f"all_{split}.csv"] = table.to_csv(index=False)
    return old, new, files


def csv_hash(texts: dict[str, bytes]) -> str:
    """sha256 over the files' names and bytes, in name order: one value for the whole split."""
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(name.encode("utf-8") + b"\x00" + texts[name] + b"\x00")
    return digest.hexdigest()


def split_record(
    seed: int, rows_per_class: int | None, new: list[str], files: dict[str, str]
) -> dict[str, Any]:
    """What split.json keeps of a split: how it was drawn and a hash of the CSVs it wrote."""
    return {
        "seed": seed,
        "rows_per_class": rows_per_class,
        "new_intents": new,
        "csv_sha256": csv_hash({name: text.encode("utf-8") for name, text in files.items()}),
    }


def split_conflict(out: Path, record: dict[str, Any]) -> str | None:
    """One line when ``out`` holds another split than ``record``'s; None when it holds this one or none.

    Runs are reused by name and their config.json names the CSVs by path, the same for any
    ``--seed`` or ``--rows-per-class``: a second seed into one ``--out`` rewrote the CSVs, reused
    the first seed's runs and scored them against the second seed's intents. A folder from before
    split.json was kept is judged by the CSVs it holds (the last split written there).
    """
    kept = out / SPLIT_JSON
    if kept.is_file():
        have = read_json(kept, remedy="give another --out")
        if not isinstance(have, dict):
            sys.exit(f"{kept}: not a split record (a JSON object); give another --out")
    else:
        on_disk = {name: (out / name).read_bytes() for name in CSV_FILES if (out / name).is_file()}
        if not on_disk:
            return None
        have = {"csv_sha256": csv_hash(on_disk) if len(on_disk) == len(CSV_FILES) else "incomplete"}
    if have.get("csv_sha256") == record["csv_sha256"]:
        return None
    if "seed" not in have:
        return f"--out {out} holds the CSVs of another split (no {SPLIT_JSON} says which); give another --out"
    rows = have.get("rows_per_class")
    drawn = f"seed {have['seed']}" + (f", --rows-per-class {rows}" if rows is not None else "")
    if (have["seed"], rows) != (record["seed"], record["rows_per_class"]):
        return f"--out {out} holds the split of {drawn}; give another --out"
    return (
        f"--out {out} holds another split of {drawn} (the data or its sampling changed); give another --out"
    )


def split_data(
    out: Path, *, seed: int, rows_per_class: int | None, train: pd.DataFrame | None = None
) -> tuple[list[str], list[str]]:
    """Write the old/new/all train and dev CSVs and split.json into ``out``; (old intents, new intents).

    Exits with one line, before writing anything, when ``out`` holds another split (``split_conflict``).
    split.json goes first and every file is renamed into place whole: a kill while they are written
    leaves this split's split.json, so a rerun of the same split passes ``split_conflict`` and writes
    the CSVs again (written first, a kill left CSVs of no known split and the rerun refused them).
    """
    train = pd.read_csv(DATA / "train.csv") if train is None else train
    old, new, files = make_split(train, seed=seed, rows_per_class=rows_per_class)
    record = split_record(seed, rows_per_class, new, files)
    conflict = split_conflict(out, record)
    if conflict is not None:
        sys.exit(conflict)
    atomic_write_json(out / SPLIT_JSON, record)
    for name, text in files.items():
        atomic_write_bytes(out / name, text.encode("utf-8"))
    return old, new


def train(
    out: Path, name: str, args: list[str], *, at_least: tuple[str, ...] = ()
) -> tuple[Path, dict[str, Any]]:
    """``tunelab train ARGS name=NAME``; a run already in ``out`` is reused.

    One a killed benchmark left unfinished (``<name>.partial``) is resumed (``tunelab train
    --resume``) once its config.json is checked like a finished run's: ``tunelab train
    name=NAME`` refuses while it exists.
    """
    run = out / "runs" / name
    partial = unfinished(out / "runs", name)
    if (run / "config.json").is_file():
        _same_recipe(run, args, at_least=at_least)
    if not (run / "run.json").is_file() or json.loads((run / "run.json").read_text())["status"] != "finished":
        cmd = [sys.executable, "-m", "tunelab.cli.main", "train"]
        if partial is not None:
            if (partial / "config.json").is_file():
                _same_recipe(partial, args, at_least=at_least)
            cmd += ["--resume", str(partial)]
        else:
            cmd += [*args, f"name={name}", f"output_dir={out / 'runs'}"]
        print("$", " ".join(cmd), flush=True)
        start = time.perf_counter()
        try:
            subprocess.run([*cmd, "--quiet"], check=True, stdout=subprocess.DEVNULL)
        except subprocess.CalledProcessError as exc:  # its one-line error went to stderr, above
            sys.exit(f"tunelab train {name}: failed (exit {exc.returncode}); see the error above")
        print(f"  {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return run, json.loads((run / "run.json").read_text(encoding="utf-8"))


def _same_recipe(run: Path, args: list[str], *, at_least: tuple[str, ...] = ()) -> None:
    """Exit when a run kept in ``--out`` was trained with other settings than asked.

    Runs are reused by name; one from an older protocol (2 epochs, 20 stored rows) would otherwise
    stand in for this one silently. Every ``section.field=value`` argument but the data files, and
    ``method=NAME``, is compared with the run's config.json (``bench_common.saved_setting``: method
    options under ``method.options``), the last one of a key winning and values read as YAML, as
    ``tunelab train`` reads them. ``at_least``: keys where a larger saved value will do (``first``
    storing more rows a label than this invocation replays).
    """
    saved = json.loads((run / "config.json").read_text(encoding="utf-8"))
    pairs = (arg.split("=", 1) for arg in args if "=" in arg)
    wanted = {key: text for key, text in pairs if "." in key or key == "method"}  # the last of a key wins
    for key, text in wanted.items():
        found = None if key.startswith("data.") else saved_setting(saved, key, text)
        if found is None:
            continue
        have, value = found
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (have, value))
        if key in at_least and have == "all":  # every row stored: any number of them will do
            same = True
        elif numbers:
            same = have >= value if key in at_least else float(have) == float(value)
        else:
            same = have == value
        if not same:
            sys.exit(f"{run}: trained with {key}={have}, not {text}; use another --out or delete that run")


def _rows_per_label(text: str) -> int | str:
    """``--rehearsal`` values: a whole number of rows per old intent, or ``all``."""
    if text.strip().lower() == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use a whole number of rows or all") from None


def _most(values: list[int | str]) -> int | str:
    """The largest sample asked for, ``all`` above every number: what ``first`` must store."""
    return "all" if "all" in values else max(int(v) for v in values)


def seconds(run: Path, summary: dict[str, Any]) -> tuple[float, float]:
    """(train_seconds, setup_seconds) of a run's run.json: the loop's steps, and the work before the loop.

    A share of the retraining time from train_seconds alone left out what ran before the loop:
    distillation's teacher pass over the training rows and the probe head's fit (``retrain``'s).
    A run trained before run.json kept setup_seconds cannot be timed so: one line to retrain it.
    """
    if not isinstance(summary.get("setup_seconds"), int | float):
        sys.exit(f"{run}: its run.json has no setup_seconds (trained before it was kept); delete that run")
    return float(summary["train_seconds"]), float(summary["setup_seconds"])


def accuracies(run: Path, table: pd.DataFrame, old: list[str], new: list[str]) -> dict[str, float]:
    """Accuracy on the rows of old intents, of new intents (when the run knows them), and on all."""
    from tunelab.inference.predictor import Predictor

    predictor = Predictor.load(run)
    known = set(predictor.labels.names)
    rows = table[table["category"].isin(known)]
    logits = predictor.logits(rows["text"].tolist())
    predicted = pd.Series([predictor.labels.names[i] for i in logits.argmax(axis=1)], index=rows.index)
    hit = predicted == rows["category"]
    result = {"old": 100 * hit[rows["category"].isin(old)].mean()}
    if set(new) <= known:
        result["new"] = 100 * hit[rows["category"].isin(new)].mean()
        result["all"] = 100 * hit.mean()
    return {k: round(float(v), 2) for k, v in result.items()}


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What produced a results file: a ``--set``/``--tag`` run's file said nothing of them."""
    return {"set": args.set, "tag": args.tag, "model": args.model, "rehearsal": args.rehearsal,
            "distill": args.distill}  # fmt: skip


def results_path(out: Path, tag: str) -> Path:
    """``results.json``, or ``results-cw.json`` for ``--tag=-cw``: a tagged run replaced the plain
    run's figures."""
    return out / f"results{tag}.json"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-continual")
    parser.add_argument(
        "--epochs", type=float, default=5.0, help="train.epochs of first and retrain (5: the config's)"
    )
    parser.add_argument(
        "--continued-epochs", type=float, default=2.0, help="train.epochs of the continued runs"
    )
    parser.add_argument(
        "--rehearsal",
        type=_rows_per_label,
        nargs="+",
        default=[20, 50, 100],
        help="R candidates (rows per old intent, or all: every stored row)",
    )
    parser.add_argument("--distill", type=float, nargs="+", default=[0.3, 1.0], help="W candidates")
    parser.add_argument("--rows-per-class", type=int, default=None, help="train on at most N rows per intent")
    parser.add_argument("--seed", type=int, default=0, help="which 17 intents are new, and the dev split")
    parser.add_argument("--model", default=None, help="model.name instead of the config's (a smoke test)")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides of every continued run")
    parser.add_argument("--tag", default="", help="appended to the continued runs' names (needed with --set)")
    parser.add_argument("--dev-only", action="store_true", help="choose on dev and stop: no test read")
    args = parser.parse_args()
    require_data(DATA / "train.csv", "BANKING77")
    if args.set and not args.tag:
        sys.exit(
            "--set without --tag: give --tag NAME so runs trained with other settings keep their own names"
        )
    out: Path = args.out
    (out / "runs").mkdir(parents=True, exist_ok=True)
    old, new = split_data(out, seed=args.seed, rows_per_class=args.rows_per_class)
    print(f"new intents ({len(new)}): {', '.join(new)}", flush=True)
    # train.label_smoothing=0: the recipe the README's figures were measured with, before
    # configs/banking77.yaml took label smoothing (issue 16).
    common = [
        "train.patience=null",
        "data.test=null",
        "data.dev_size=0",
        "train.label_smoothing=0",
    ]
    common += [f"model.name={args.model}"] if args.model else []
    dev_all = f"data.dev={out / 'all_dev.csv'}"
    scratch = [*common, f"train.epochs={args.epochs}"]
    first, first_summary = train(
        out,
        "first",
        [str(CONFIG), *scratch, f"data.train={out / 'old_train.csv'}", f"data.dev={out / 'old_dev.csv'}",
         f"continual.rehearsal={_most(args.rehearsal)}"],
        at_least=("continual.rehearsal",),
    )  # fmt: skip

    def cont(name: str, *extra: str) -> tuple[Path, dict[str, Any]]:
        argv = [
            "--from",
            str(first),
            *common,
            f"train.epochs={args.continued_epochs}",
            f"data.train={out / 'new_train.csv'}",
            dev_all,
            *args.set,
            *extra,
        ]
        return train(out, name + args.tag, argv)

    runs: dict[str, tuple[Path, dict[str, Any]]] = {}
    runs["retrain"] = train(
        out, "retrain", [str(CONFIG), *scratch, f"data.train={out / 'all_train.csv'}", dev_all]
    )
    # Naive: no rehearsal and no penalty whatever --set says (head=probe and ewc need rehearsal rows).
    naive = ("continual.rehearsal=0", "continual.head=copy", "continual.ewc=0", "continual.distill=0")
    runs["naive"] = cont("naive", *naive)
    dev = pd.read_csv(out / "all_dev.csv")
    selection: list[dict[str, Any]] = []

    def choose(candidates: dict[str, tuple[Path, dict[str, Any]]]) -> str:
        scored = {name: accuracies(run, dev, old, new) for name, (run, _) in candidates.items()}
        for name, acc in scored.items():
            summary = candidates[name][1]  # setup_seconds: None for a run from before run.json kept it
            selection.append(
                {
                    "run": name,
                    "dev": acc,
                    "train_seconds": summary["train_seconds"],
                    "setup_seconds": summary.get("setup_seconds"),
                }
            )
            print(f"  dev {name}: {acc}", flush=True)
        return max(scored, key=lambda n: scored[n]["all"])

    rehearsal = {
        f"rehearsal-r{r}": cont(f"rehearsal-r{r}", f"continual.rehearsal={r}") for r in args.rehearsal
    }
    chosen_r = choose(rehearsal)
    r = chosen_r.removeprefix("rehearsal-r").removesuffix(args.tag)
    runs["rehearsal"] = rehearsal[chosen_r]
    distill = {
        f"distill-r{r}-w{w:g}": cont(
            f"distill-r{r}-w{w:g}", f"continual.rehearsal={r}", f"continual.distill={w}"
        )
        for w in args.distill
    }
    runs["rehearsal + distillation"] = distill[choose(distill)]
    if args.dev_only:
        for name in ("retrain", "naive"):
            print(f"  dev {name}: {accuracies(runs[name][0], dev, old, new)}", flush=True)
        return 0

    # Test, read once, for the chosen settings only.
    test = pd.read_csv(DATA / "test.csv")
    before = accuracies(first, test, old, new)["old"]
    retrain_s = sum(seconds(*runs["retrain"]))  # the loop and the probe's fit before it
    results = []
    for label, (run, summary) in runs.items():
        acc = accuracies(run, test, old, new)
        train_s, setup_s = seconds(run, summary)
        results.append(
            {
                "variant": label,
                "run": run.name,
                "old_before": before,
                "old_after": acc["old"],
                "forgetting": round(before - acc["old"], 2),
                "new": acc["new"],
                "all": acc["all"],
                "train_rows": summary["rows"]["train"],
                "train_seconds": train_s,
                "setup_seconds": setup_s,  # before the loop: the probe's fit, the teacher's pass
                "share_of_retrain_time": round((train_s + setup_s) / retrain_s, 3),
            }
        )
    first_s = seconds(first, first_summary)
    record = {
        "epochs": args.epochs,
        "continued_epochs": args.continued_epochs,
        "rows_per_class": args.rows_per_class,
        "seed": args.seed,
        "new_intents": new,
        "first_train_seconds": first_s[0],
        "first_setup_seconds": first_s[1],
        "selection_on_dev": selection,
        "test": results,
        "settings": settings_of(args),
    }
    results_file = results_path(out, args.tag)
    atomic_write_json(results_file, record)
    print(
        "\n| variant | old before | old after | forgetting | new 17 | all 77 | train rows | train s "
        "| setup s | share |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for x in results:
        print(
            f"| {x['variant']} | {x['old_before']:.2f} | {x['old_after']:.2f} | {x['forgetting']:.2f} | "
            f"{x['new']:.2f} | {x['all']:.2f} | {x['train_rows']} | {x['train_seconds']:.0f} | "
            f"{x['setup_seconds']:.0f} | {x['share_of_retrain_time']:.2f} |"
        )
    print(
        f"first (60 intents): {first_s[0]:.0f} s of training + {first_s[1]:.0f} s before it; "
        f"share = (train s + setup s) / retrain's; see {results_file}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
