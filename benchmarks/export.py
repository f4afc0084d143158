"""Export benchmark: each artifact format against PyTorch eager, in one process, on the same data.

For PyTorch eager (the run as trained) and each format, on the BANKING77 test file (3,080 texts):
throughput in texts/s at batch 1 (the first 300 texts, one at a time) and batch 32 (all texts,
length-grouped as predict and serve batch them), test accuracy, size on disk, and the speed-up
against eager measured in this same run. Tokenisation is excluded (it is the same for all). Every
backend gets the same thread count (torch and ONNX Runtime). Timings repeat ``--rounds`` times
with the formats interleaved; texts/s is the median over rounds, and a speed-up is the median of
the per-round ratios (each format against the eager pass just before it), so a burst of load on a
shared machine, which slows PyTorch's threads far more than ONNX Runtime's, does not pick the
winner. Both the median and the best-of-rounds speed-ups go to the JSON.

Make the run first (about 15 minutes on 2 cores), then benchmark it:

    .venv/bin/python benchmarks/banking77.py --methods full
    .venv/bin/python benchmarks/export.py --run runs/benchmarks/bench-banking77-full-<timestamp>
    .venv/bin/python benchmarks/export.py --run ... --heads 0.25   # also onnx-int8 with 25% heads pruned
    .venv/bin/python benchmarks/export.py --run ... --structured 0.6 --recover-epochs 4
        # also onnx-int8 with 60% of heads and FFN neurons pruned, refit and distilled (~12 min more);
        # on 2 AVX2 cores: 8.1x eager at batch 1, 3.8x at batch 32, -0.42 points (chosen on test);
        # on 2 cores with VNNI plain onnx-int8 reached 6.7x and 3.3x, +0.13 (chosen on dev, README)

To choose a pruning recipe without reading test, train with a dev split and no test file, score the
candidates on that split, then read test once with the one chosen:

    .venv/bin/tunelab train configs/banking77.yaml name=b77-devsplit data.dev_size=0.1 data.test=null
    .venv/bin/python benchmarks/export.py --run runs/b77-devsplit --data dev --structured 0.5 \\
        --recover-epochs 2
    .venv/bin/python benchmarks/export.py --run runs/b77-devsplit --structured ... --recover-epochs ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from bench_common import positive_int  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77" / "test.csv"
FORMATS = ["onnx", "onnx-int8", "torch-int8"]
TARGET = {"speedup": 3.0, "accuracy_points": 0.5}


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def throughput(backend, enc, batch_size: int) -> float:
    start = time.perf_counter()
    backend.logits(enc, batch_size=batch_size)
    return len(enc) / (time.perf_counter() - start)


def speedup(row: list[float], eager: list[float], pick) -> float:
    """``median``: of the per-round ratios; ``max``: best of rounds against eager's best."""
    if pick is max:
        return round(max(row) / max(eager), 2)
    return round(median([r / e for r, e in zip(row, eager, strict=True)]), 2)


def dev_split(source):
    """The run's carved dev split, refused when the run has a test file or no dev split: then the
    export's parity check (and so the accuracy printed) would not be on these rows."""
    cfg = source.config.data
    if cfg.test:
        sys.exit(f"{source.run.root}: --data dev needs a run trained with data.test=null (it has {cfg.test})")
    dev = source.task.load_splits(cfg).dev
    if dev is None or not len(dev):
        sys.exit(f"{source.run.root}: the run has no dev split; train it with data.dev_size=0.1")
    return dev


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--run", required=True, help="a trained BANKING77 run folder")
    parser.add_argument(
        "--data",
        default=str(DATA),
        help="labelled file to score on (default BANKING77 test.csv), or 'dev': the run's own dev split "
        "(a run trained with data.dev_size), to choose a recipe without reading test",
    )
    parser.add_argument("--formats", nargs="+", default=FORMATS, choices=FORMATS)
    parser.add_argument("--heads", type=float, help="also onnx-int8 with this fraction of heads pruned")
    parser.add_argument(
        "--structured", type=float, help="also onnx-int8 with this fraction of heads and FFN neurons pruned"
    )
    parser.add_argument("--recover-epochs", type=float, default=0.0, help="recovery for --structured")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch/ORT threads (default 2)")
    parser.add_argument(
        "--rounds", type=positive_int, default=3, help="timing rounds, medians reported (default 3)"
    )
    parser.add_argument(
        "--batch1-texts", type=positive_int, default=300, help="texts timed one at a time (default 300)"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    for flag, value in (("--heads", args.heads), ("--structured", args.structured)):
        if value is not None and not 0 < value < 1:  # refused only after the first export had run
            parser.error(f"{flag} {value:g}: give a fraction between 0 and 1, e.g. 0.3")
    if args.data != "dev" and not Path(args.data).is_file():
        sys.exit(f"{args.data}: not found (this benchmark reads ../shared/data/banking77/test.csv)")

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)  # ONNX Runtime sessions take torch's thread count
    import tunelab
    from tunelab.data import load_labelled

    variants = [(f, None, "magnitude", 0.0) for f in args.formats]
    if args.heads:
        variants.append(("onnx-int8", args.heads, "heads", 0.0))
    if args.structured:
        variants.append(("onnx-int8", args.structured, "structured", args.recover_epochs))
    from tunelab.errors import TunelabError

    try:  # a missing or unfinished --run, a failed export: tunelab's one line, not a traceback
        source = tunelab.load(args.run)
        if args.data == "dev":
            dataset = dev_split(source)
            parity_file = None  # tunelab.export's own default: the run's dev split when it has no test
        else:
            dataset = load_labelled(args.data, source.config.data, source.labels)
            parity_file = args.data
        enc = source.encode(dataset.texts, dataset.text_pairs)
        first = source.encode(dataset.texts[: args.batch1_texts])
        y = np.asarray(dataset.labels)
        rows = {
            "pytorch eager": {"backend": source.backend, "size_mb": folder_mb(Path(args.run) / "weights")}
        }
        with tempfile.TemporaryDirectory(prefix="tunelab-export-bench-") as tmp:
            for fmt, fraction, method, recover in variants:
                name = fmt if fraction is None else f"{fmt} {method}-{round(100 * fraction)}%"
                name += f" +{recover:g}ep" if recover else ""
                print(f"exporting {name} ...", flush=True)
                start = time.perf_counter()
                result = tunelab.export(
                    args.run,
                    format=fmt,
                    prune=fraction,
                    prune_method=method,
                    recover_epochs=recover,
                    output=Path(tmp) / name.replace(" ", "-").replace("%", "").replace("+", ""),
                    data=parity_file,
                    max_drop=100.0,  # report the accuracy here; the 1-point gate is tested elsewhere
                    show_progress=False,
                )
                artifact = tunelab.load(result.path)
                rows[name] = {
                    "backend": artifact.backend,
                    "size_mb": folder_mb(result.path / "weights"),
                    "export_s": round(time.perf_counter() - start, 1),
                }
            for _ in range(args.rounds):
                for row in rows.values():
                    row.setdefault("b1", []).append(throughput(row["backend"], first, 1))
                    row.setdefault("b32", []).append(throughput(row["backend"], enc, 32))
            for row in rows.values():
                row["accuracy"] = 100 * float(
                    (row["backend"].logits(enc, batch_size=32).argmax(1) == y).mean()
                )
    except TunelabError as exc:
        sys.exit(f"error: {exc}")
    report(rows, args)


def report(rows: dict, args: argparse.Namespace) -> None:
    eager = rows["pytorch eager"]
    rounds = f"median of {args.rounds} rounds"
    print(f"\nexport benchmark: {args.run} on {args.data} ({args.threads} threads, {rounds})")
    print(f"{'format':<32} {'b1 texts/s':>10} {'x eager':>7} {'b32 texts/s':>11} {'x eager':>7} "
          f"{'accuracy':>8} {'delta':>6} {'size MB':>7}")  # fmt: skip
    results = []
    for name, r in rows.items():
        entry = {
            "format": name,
            "batch1_texts_per_s": round(median(r["b1"]), 1),
            "batch1_speedup": speedup(r["b1"], eager["b1"], median),
            "batch32_texts_per_s": round(median(r["b32"]), 1),
            "batch32_speedup": speedup(r["b32"], eager["b32"], median),
            "batch1_speedup_best": speedup(r["b1"], eager["b1"], max),
            "batch32_speedup_best": speedup(r["b32"], eager["b32"], max),
            "accuracy": round(r["accuracy"], 2),
            "accuracy_delta": round(r["accuracy"] - eager["accuracy"], 2),
            "size_mb": round(r["size_mb"], 1),
            "export_s": r.get("export_s"),
        }
        results.append(entry)
        line = (
            "{format:<32} {batch1_texts_per_s:>10.1f} {batch1_speedup:>7.2f} {batch32_texts_per_s:>11.1f} "
            "{batch32_speedup:>7.2f} {accuracy:>8.2f} {accuracy_delta:>+6.2f} {size_mb:>7.1f}"
        )
        print(line.format(**entry))
    ok = [
        e
        for e in results[1:]
        if min(e["batch1_speedup"], e["batch32_speedup"]) >= TARGET["speedup"]
        and -e["accuracy_delta"] <= TARGET["accuracy_points"]
    ]
    best = max(results[1:], key=lambda e: e["batch32_speedup"]) if len(results) > 1 else None
    verdict = f"met by {', '.join(e['format'] for e in ok)}" if ok else "not met"
    print(f"target (>= {TARGET['speedup']}x eager at batch 1 and 32, accuracy within 0.5 points): {verdict}")
    summary = {"run": args.run, "data": args.data, "threads": args.threads, "rounds": args.rounds}
    payload = {
        **summary,
        "results": results,
        "best": best and best["format"],
        "target_met_by": [e["format"] for e in ok],
    }
    print(json.dumps(payload, indent=2))
    if args.json:
        atomic_write_json(args.json, payload)


if __name__ == "__main__":
    main()
