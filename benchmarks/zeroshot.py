"""Zero-shot BANKING77: test accuracy from the 77 intent names alone, and what describing 10 by hand buys.

No training and no labelled example reaches the classifier. Two label sets:

- ``auto``: every intent's description is its name turned into words by a fixed rule
  (``tunelab.zeroshot.describe_label``: ``card_arrival`` -> ``card arrival``);
- ``hand10``: the same, except the 10 intents of ``examples/zeroshot/banking77_labels.yaml``,
  whose descriptions were written by hand before anything was measured.

The sentence the encoder compares texts with is ``template.format(description)``; the template is
chosen among ``TEMPLATES`` by accuracy on the *training* set with the automatic descriptions (the
test set is read once, at the end, with that template). Printed per label set: accuracy on all
test rows, on the rows of the 10 hand-described intents, and on the other 67 intents' rows (a
description can also pull other intents' texts towards its label); the same on the training set.

    .venv/bin/python benchmarks/zeroshot.py                       # bundled MiniLM, ~5 min on 2 cores
    .venv/bin/python benchmarks/zeroshot.py --limit 5             # 5 rows per intent: a quick check
    .venv/bin/python benchmarks/zeroshot.py --nli path/to/nli-model   # also by NLI (77 passes a text)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_common import positive_int, require_data  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77"
HAND = ROOT / "examples" / "zeroshot" / "banking77_labels.yaml"
# Candidates for the sentence around a description, tried on the training set only.
TEMPLATES = (
    "{}",
    "This is about {}.",
    "A bank customer asks about {}.",
    "Question about my bank account: {}",
)


def read_split(path: Path, limit: int | None) -> tuple[list[str], list[str]]:
    """Texts (whitespace stripped, see SOURCE.md) and intents; ``limit`` rows per intent, the first ones."""
    frame = pd.read_csv(path)
    frame["text"] = frame["text"].str.strip()
    if limit:
        frame = frame.groupby("category", sort=False).head(limit)
    return frame["text"].tolist(), frame["category"].tolist()


def label_sets(intents: list[str]) -> tuple[dict[str, dict[str, str]], set[str]]:
    """The two label sets (``auto``, ``hand10``) and the hand-described intents."""
    from tunelab.zeroshot import describe_label, read_label_descriptions

    auto = {name: describe_label(name) for name in intents}
    hand = read_label_descriptions(HAND)
    unknown = sorted(set(hand) - set(intents))
    if unknown:
        sys.exit(f"{HAND}: not BANKING77 intents: {', '.join(unknown)}")
    return {"auto": auto, "hand10": {**auto, **hand}}, set(hand)


def accuracies(predicted: list[str], gold: list[str], hand: set[str]) -> dict[str, float]:
    """Accuracy on all rows, on the hand-described intents' rows and on the others' rows."""
    right = np.asarray(predicted) == np.asarray(gold)
    mine = np.asarray([g in hand for g in gold])
    return {
        "all": float(right.mean()),
        "hand_intents": float(right[mine].mean()) if mine.any() else float("nan"),
        "other_intents": float(right[~mine].mean()) if (~mine).any() else float("nan"),
    }


def choose_template(
    texts: list[str], gold: list[str], auto: dict[str, str], encoder: str
) -> dict[str, float]:
    """Training-set accuracy of every template with the automatic descriptions (texts embedded once)."""
    from tunelab.embeddings import embed

    vectors = embed(texts, model=encoder)  # (N, H) unit length: what the backend computes from ids
    names = list(auto)
    scores = {}
    for template in TEMPLATES:
        label_vectors = embed([template.format(d) for d in auto.values()], model=encoder)  # (L, H)
        predicted = [names[i] for i in (vectors @ label_vectors.T).argmax(axis=1)]
        scores[template] = float(np.mean(np.asarray(predicted) == np.asarray(gold)))
    return scores


def evaluate(
    descriptions: dict[str, str], texts: list[str], gold: list[str], hand: set[str], **model: Any
) -> tuple[dict[str, float], float]:
    """The product's path: ``zero_shot_predictor`` on the texts; accuracies and seconds taken."""
    from tunelab.zeroshot import zero_shot_predictor

    start = time.perf_counter()
    predictor = zero_shot_predictor(descriptions, **model)
    names = predictor.labels.names
    predicted = [names[i] for i in predictor.logits(texts).argmax(axis=1)]
    return accuracies(predicted, gold, hand), time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="minilm-l6", help="sentence encoder (default: bundled MiniLM)")
    parser.add_argument("--nli", help="an NLI model folder: also score by entailment (slow: 77 pairs a text)")
    parser.add_argument("--limit", type=positive_int, help="rows per intent in train and test (quick checks)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    require_data(DATA / "categories.json", "BANKING77 (its categories.json)")

    intents = json.loads((DATA / "categories.json").read_text(encoding="utf-8"))
    sets, hand = label_sets(intents)
    train_texts, train_gold = read_split(DATA / "train.csv", args.limit)
    t0 = time.perf_counter()
    template_scores = choose_template(train_texts, train_gold, sets["auto"], args.encoder)
    template = max(TEMPLATES, key=lambda t: template_scores[t])  # ties: the earlier (simpler) one
    print(f"template chosen on the training set ({len(train_texts)} rows, {time.perf_counter() - t0:.0f} s):")
    for t in TEMPLATES:
        print(f"  {template_scores[t]:6.2%}  {t!r}{'  <- chosen' if t == template else ''}")

    results: dict[str, Any] = {"template": template, "template_train_accuracy": template_scores, "rows": {}}
    scorers = [("embedding", {"encoder": args.encoder, "template": template})]
    if args.nli:
        scorers.append(("nli", {"nli": args.nli}))
    splits = {"train": (train_texts, train_gold)}
    test_texts, test_gold = read_split(DATA / "test.csv", args.limit)  # read once, here, at the end
    splits["test"] = (test_texts, test_gold)
    for scorer, model in scorers:
        for split, (texts, gold) in splits.items():
            if scorer == "nli" and split == "train":
                continue  # 77 forward passes a text: the test set only
            for name, descriptions in sets.items():
                acc, seconds = evaluate(descriptions, texts, gold, hand, **model)
                results["rows"][f"{scorer}/{split}/{name}"] = {**acc, "seconds": round(seconds, 1)}
    hand_rows = sum(g in hand for g in test_gold)
    print(
        f"\nBANKING77, {len(test_texts)} test rows ({hand_rows} of the 10 hand-described intents: "
        f"{', '.join(sorted(hand))})"
    )
    print(f"{'scorer/split/labels':<28} {'all':>8} {'10 hand':>8} {'other 67':>9} {'seconds':>8}")
    for key, row in results["rows"].items():
        print(
            f"{key:<28} {row['all']:8.2%} {row['hand_intents']:8.2%} {row['other_intents']:9.2%} "
            f"{row['seconds']:8.1f}"
        )
    for scorer, _ in scorers:
        auto, manual = results["rows"][f"{scorer}/test/auto"], results["rows"][f"{scorer}/test/hand10"]
        gain = 100 * (manual["hand_intents"] - auto["hand_intents"])
        print(
            f"{scorer}: writing 10 descriptions: {gain:+.2f} points on those intents' test rows, "
            f"{100 * (manual['all'] - auto['all']):+.2f} overall"
        )
    if args.json:  # with the settings: a --limit quick check looked like the full run
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}
        atomic_write_json(args.json, {"settings": settings, **results})
    return results


if __name__ == "__main__":
    main()
