"""Many adapters, one base: memory, throughput and attach time of adapters sharing a base in
``tunelab serve``, against serving each adapter as its own merged model (``tunelab merge``).

    python benchmarks/multi_adapter.py [--rows 1000] [--seconds 20] [--clients 16]

How the adapters are made (cheaply, said plainly): one short LoRA run (1 epoch) on a sample of
BANKING77's training set (``../shared/data/banking77``, ``--rows`` rows) with the bundled
``minilm-l6``; then 50 copies of it whose adapter weights and heads are perturbed with Gaussian
noise (5% of each tensor's standard deviation, a seed per copy), so every copy is a distinct
adapter of the same shape. Their accuracy is not the point; their cost is.

What is measured, all in this run:

* resident memory (VmRSS, after one prediction per model) of a process that loads 1, 10 and 50
  adapters the way ``tunelab serve`` does (``BasePool.load``: one base, adapters attached), and
  of one that loads 1 and 10 merged copies (each a whole model); 50 merged copies are
  extrapolated linearly from 1 and 10 (said in the output), not loaded.
* throughput over HTTP (requests/s, p50/p99 latency) of ``tunelab serve`` with 10 adapters on
  one base vs 10 merged models, ``--clients`` concurrent clients each sending 1-4 texts to a
  model chosen at random per request, at each ``--threads``. Also requests per CPU-second of
  the server process: on a machine shared with other work, the merged server's ten inference
  threads (one per model) win a larger share of the cores than the shared base's one batcher
  thread, so wall-clock requests/s there compares CPU shares as much as the two servers.
* attach time: ``POST /v1/models/{name}/versions`` of a new adapter name on the running
  shared-base server (wall time of the request), against the same route loading a merged copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ROOT, positive_int, require_data, serving, train_run, unfinished

DATA = ROOT.parent / "shared" / "data" / "banking77"
COPIES = 50

RSS_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from tunelab.serve.adapters import BasePool
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
before = rss()
pool = BasePool()
models = [pool.load(p) for p in sys.argv[1:]]
for m in models:
    m.predict('I still have not received my card')
print(json.dumps({'rss_mb': rss(), 'empty_mb': before, 'hosts': len(pool.hosts())}))
"""


def make_adapters(work: Path, rows: int) -> tuple[Path, list[Path]]:
    """One short LoRA run on a BANKING77 sample, then ``COPIES`` copies with perturbed weights."""
    import pandas as pd
    import torch
    from safetensors.torch import load_file

    from tunelab.atomic import save_safetensors

    train = pd.read_csv(DATA / "train.csv").sample(n=rows, random_state=0)
    test = pd.read_csv(DATA / "test.csv").sample(n=200, random_state=0)
    train.to_csv(work / "train.csv", index=False)
    test.to_csv(work / "test.csv", index=False)
    config = work / "lora.yaml"
    config.write_text(
        f"name: b77-lora\ndata:\n  train: {work / 'train.csv'}\n  test: {work / 'test.csv'}\n"
        "  label_column: category\n  dev_size: 0\nmodel:\n  name: minilm-l6\n  max_length: 64\n"
        "method:\n  name: lora\ntrain:\n  epochs: 1\n  batch_size: 32\n  patience: null\n",
        encoding="utf-8",
    )
    runs = work / "runs"
    copies = [runs / f"adapter-{i:02d}" for i in range(COPIES)]
    # A copy is built as adapter-NN.tmp and renamed once whole: adapter-NN is always a complete one.
    if all(c.is_dir() for c in copies):  # --work of an earlier run: its adapters are reused
        print(f"reusing the adapters in {runs}", flush=True)
        return runs / "b77-lora", copies
    source = runs / "b77-lora"
    # A finished run: `tunelab train` renames it into place once done (and refuses the name again),
    # and the copies a killed benchmark finished were made from it.
    trained = not source.is_dir()
    if trained:
        train_run(config, [], runs, source.name, resume=unfinished_run(runs, source.name), echo=True)
    weights = load_file(str(source / "weights" / "adapter_model.safetensors"))
    for i, copy in enumerate(copies):
        if copy.is_dir() and not trained:  # made from this source by a killed run: whole
            continue
        tmp = copy.with_name(copy.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # one a kill left half-made
        shutil.copytree(source, tmp)
        gen = torch.Generator().manual_seed(i)
        noisy = {
            k: v + 0.05 * v.float().std().nan_to_num() * torch.randn(v.shape, generator=gen).to(v.dtype)
            for k, v in weights.items()
        }
        save_safetensors(noisy, tmp / "weights" / "adapter_model.safetensors")
        shutil.rmtree(copy, ignore_errors=True)  # one made from an earlier source (trained again)
        os.replace(tmp, copy)
    return source, copies


def unfinished_run(runs: Path, name: str) -> Path | None:
    """The ``<name>.partial`` a killed benchmark left training in ``runs``, to resume; else None.

    ``tunelab train name=<name>`` refuses while that folder exists, so a run with the same --work
    failed at once instead of going on. One killed before its config.json was written cannot be
    resumed: it is only this benchmark's scratch, so it is removed (said in one line) and the run
    trained afresh.
    """
    partial = unfinished(runs, name)
    if partial is not None and not (partial / "config.json").is_file():
        print(f"note: removing {partial}: a killed run left it before it began (no config.json)", flush=True)
        shutil.rmtree(partial)
        return None
    return partial


def merged_copies(copies: list[Path]) -> list[Path]:
    import tunelab

    out = []
    for copy in copies:
        done = copy.with_name(copy.name + "-merged")
        if done.is_dir():  # --work of an earlier run
            out.append(done)
            continue
        started = time.perf_counter()
        out.append(tunelab.merge(copy).path)
        print(f"merged {copy.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return out


def rss(paths: list[Path]) -> dict[str, Any]:
    """Resident memory of a fresh process that loads ``paths`` as ``tunelab serve`` does."""
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, *map(str, paths)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def traffic(url: str, token: str, names: list[str], texts: list[str], args: Any) -> dict[str, Any]:
    """``args.clients`` clients for ``args.seconds``: each request 1-4 texts to a random model."""
    import httpx

    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        for name in names:  # warm-up, not measured
            await client.post(f"/v1/models/{name}/predict", json={"texts": texts[:2]})
        end = time.perf_counter() + args.seconds

        async def one(i: int) -> None:
            nonlocal errors
            rng = random.Random(i)
            while time.perf_counter() < end:
                body = {"texts": rng.sample(texts, rng.randint(1, 4))}
                t0 = time.perf_counter()
                r = await client.post(f"/v1/models/{rng.choice(names)}/predict", json=body)
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.clients)))
        wall = time.perf_counter() - start
    return {
        "requests": len(latencies) + len(names),  # with the warm-up requests
        "requests_per_s": len(latencies) / wall,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "errors": errors,
    }


def admin_loads(url: str, admin: str, paths: list[Path], prefix: str) -> list[float]:
    """Wall seconds of ``POST /v1/models/{prefix}-i/versions`` for each path (new model names)."""
    import httpx

    times = []
    for i, path in enumerate(paths):
        t0 = time.perf_counter()
        r = httpx.post(
            f"{url}/v1/models/{prefix}-{i}/versions",
            json={"path": str(path)},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=300,
        )
        times.append(time.perf_counter() - t0)
        if r.status_code != 201:
            sys.exit(f"admin load of {path} failed: {r.status_code} {r.text}")
    return times


def server_pid(url: str) -> int:
    """The pid of the ``tunelab serve`` listening at ``url`` (its ``--port`` is in its command line)."""
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and b"--port" in argv and argv[argv.index(b"--port") + 1] == port.encode():
            return int(proc.name)
    raise RuntimeError(f"no tunelab serve process for {url}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def admin_key(data_dir: Path) -> str:
    from tunelab.serve.access import AccessControl
    from tunelab.serve.store import open_store

    with open_store(None, data_dir) as store:
        return AccessControl(store).create_key("bench-admin", rate=None, quota=None, admin=True)[1]


def serve_and_measure(
    specs: list[str], names: list[str], texts: list[str], args: Any, extra: list[Path], threads: int
) -> Any:
    """Serve ``specs``, send the traffic, then load each of ``extra`` under a new name (admin)."""
    data_dir = Path(tempfile.mkdtemp(prefix="multi-adapter-"))
    admin = admin_key(data_dir)
    root = ["--model-root", str(extra[0].parent)] if extra else []
    with serving([*specs, *root, "--threads", str(threads)], data_dir) as (url, token):
        pid = server_pid(url)
        cpu = cpu_seconds(pid)
        load = asyncio.run(traffic(url, token, names, texts, args))
        load["cpu_s"] = cpu_seconds(pid) - cpu  # warm-up included, as it is in the request count
        attach = admin_loads(url, admin, extra, "late") if extra else []
    return load, attach


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=positive_int, default=1000, help="BANKING77 training rows (default 1000)"
    )
    parser.add_argument("--seconds", type=float, default=20, help="traffic per server (default 20)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, os.cpu_count() or 1],
        help="tunelab serve --threads for the throughput runs (default: 1, the server default, and "
        "the CPU count)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        help="work folder (default: a new temp folder; an earlier one's adapters are reused, and a LoRA "
        "run it left unfinished is resumed)",
    )
    args = parser.parse_args()
    require_data(DATA / "train.csv", "BANKING77")
    work = args.work or Path(tempfile.mkdtemp(prefix="multi-adapter-"))
    work.mkdir(parents=True, exist_ok=True)
    _, copies = make_adapters(work, args.rows)
    merged = merged_copies(copies[:10] + copies[10:15])  # 10 to serve, 5 more to load at run time

    print("\n== resident memory (RSS, MB; one process loading the models as tunelab serve does)")
    shared = {n: rss(copies[:n]) for n in (1, 10, 50)}
    whole = {n: rss(merged[:n]) for n in (1, 10)}
    per_merged = (whole[10]["rss_mb"] - whole[1]["rss_mb"]) / 9
    whole50 = whole[1]["rss_mb"] + 49 * per_merged
    print(f"empty process (imports only): {shared[1]['empty_mb']:.0f} MB")
    print(f"{'models':>6} {'shared base':>12} {'merged each':>12} {'merged/shared':>14}")
    for n in (1, 10, 50):
        m = whole[n]["rss_mb"] if n in whole else whole50
        note = "  (merged: extrapolated from 1 and 10)" if n not in whole else ""
        s = shared[n]["rss_mb"]
        print(f"{n:>6} {s:>10.0f} MB {m:>10.0f} MB {m / s:>13.2f}x{note}")
    per_adapter = (shared[50]["rss_mb"] - shared[1]["rss_mb"]) / 49
    print(f"each extra adapter: {per_adapter:.2f} MB shared-base vs {per_merged:.1f} MB as a merged model")
    assert all(v["hosts"] == 1 for v in shared.values()), shared

    import pandas as pd

    texts = [str(t) for t in pd.read_csv(work / "test.csv")["text"]]
    names = [f"m{i}" for i in range(10)]
    attach: list[float] = []
    full_load: list[float] = []
    for threads in dict.fromkeys(args.threads):
        print(
            f"\n== throughput: 10 models, {args.clients} clients, {args.seconds:.0f} s each, "
            f"1-4 texts per request, tunelab serve --threads {threads}"
        )
        shared_load, attached = serve_and_measure(
            [f"m{i}={copies[i]}" for i in range(10)], names, texts, args, copies[10:15], threads
        )
        merged_load, loaded = serve_and_measure(
            [f"m{i}={merged[i]}" for i in range(10)], names, texts, args, merged[10:15], threads
        )
        attach += attached
        full_load += loaded
        print(f"{'':>14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/CPU-s':>10} {'errors':>7}")
        for r in (shared_load, merged_load):
            r["per_cpu_s"] = r["requests"] / r["cpu_s"]
        for label, r in (("shared base", shared_load), ("merged each", merged_load)):
            rate, p50, p99 = r["requests_per_s"], r["p50_ms"], r["p99_ms"]
            print(
                f"{label:>14} {rate:>8.1f} {p50:>8.1f} {p99:>8.1f} {r['per_cpu_s']:>10.1f} {r['errors']:>7}"
            )
        keys = ("requests_per_s", "p50_ms", "p99_ms", "per_cpu_s")
        ratio = {k: shared_load[k] / merged_load[k] for k in keys}
        print(
            f"shared/merged: {ratio['requests_per_s']:.2f}x req/s, p50 {ratio['p50_ms']:.2f}x, "
            f"p99 {ratio['p99_ms']:.2f}x, {ratio['per_cpu_s']:.2f}x requests per CPU-second"
        )
    print("\n== loading a model on the running server (POST /v1/models/NAME/versions, new names)")
    print(
        f"adapter onto the shared base: median {statistics.median(attach) * 1000:.0f} ms, "
        f"max {max(attach) * 1000:.0f} ms ({len(attach)} loads)"
    )
    print(
        f"merged model (whole):         median {statistics.median(full_load) * 1000:.0f} ms, "
        f"max {max(full_load) * 1000:.0f} ms ({len(full_load)} loads); "
        f"{statistics.median(full_load) / statistics.median(attach):.1f}x the adapter's"
    )
    print(f"\nwork folder: {work}")


if __name__ == "__main__":
    main()
