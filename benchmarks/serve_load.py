"""Load test of ``tunelab serve``: N concurrent clients on loopback for T seconds, per backend.

Starts one server per backend (PyTorch eager for the run; the export artifact if given), each with
a fresh SQLite store and one key, then N asyncio clients send predict requests of 1 to
``--max-texts`` BANKING77 test sentences back to back. Reports requests/s, texts/s, latency
percentiles, errors by status, the mean batch the server formed, and whether the usage rows in
the store are exactly the requests sent (matched by request id).

    .venv/bin/python benchmarks/serve_load.py runs/benchmarks/bench-banking77-full-1795350638
    .venv/bin/python benchmarks/serve_load.py RUN --export RUN-onnx-int8 --clients 64 --seconds 30

The load generator shares the machine with the server: on a 2-core box it takes a good part of a
core, so the figures are a floor for what the server alone could do.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from bench_common import positive_int  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77" / "test.csv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_key(data_dir: Path) -> str:
    from tunelab.serve.access import AccessControl
    from tunelab.serve.store import open_store

    with open_store(None, data_dir) as store:
        return AccessControl(store).create_key("bench", rate=None, quota=None)[1]


def usage_ids(data_dir: Path) -> list[str]:
    from tunelab.serve.store import open_store

    with open_store(None, data_dir) as store:
        return [row.request_id for row in store.usage(key_name="bench")]


def start(path: str, data_dir: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str, str]:
    """The server process, its API URL and its metrics URL (``--metrics-port``: no key needed)."""
    port, metrics_port = free_port(), free_port()
    cmd = [
        sys.executable, "-m", "tunelab.cli.main", "serve", f"bench={path}", "--port", str(port),
        "--metrics-port", str(metrics_port),  # /metrics without a key (the API port needs an admin key)
        "--data-dir", str(data_dir), "--threads", str(args.threads), "--max-batch", str(args.max_batch),
        "--max-wait-ms", str(args.max_wait_ms), "--log-level", "warning",
    ]  # fmt: skip
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited ({proc.returncode}):\n{(data_dir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url, f"http://127.0.0.1:{metrics_port}/metrics"
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit("server not ready after 300 s")


async def load(
    url: str, metrics_url: str, token: str, texts: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent_ids: list[str] = []
    sent_texts = 0
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        # Warm up: every code path once, outside the measurement (its rows are counted too).
        for _ in range(4):
            r = await client.post("/v1/models/bench/predict", json={"texts": texts[:4]})
            sent_ids.append(r.headers.get("x-request-id", ""))
        start = time.perf_counter()
        end = start + args.seconds

        async def one_client(i: int) -> None:
            nonlocal sent_texts
            rng = random.Random(i)
            while time.perf_counter() < end:
                batch = rng.sample(texts, rng.randint(1, args.max_texts))
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/models/bench/predict", json={"texts": batch})
                    statuses[str(r.status_code)] += 1
                    if r.headers.get("x-request-id"):
                        sent_ids.append(r.headers["x-request-id"])
                    if r.status_code == 200:
                        sent_texts += len(batch)
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(one_client(i) for i in range(args.clients)))
        wall = time.perf_counter() - start
        metrics = (await client.get(metrics_url)).text
    return {"latencies": latencies, "statuses": statuses, "ids": sent_ids, "texts": sent_texts,
            "wall": wall, "metrics": metrics}  # fmt: skip


def mean_batch(metrics: str) -> float | None:
    total = count = 0.0
    for line in metrics.splitlines():
        if line.startswith("tunelab_batch_size_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("tunelab_batch_size_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total / count if count else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def bench(label: str, path: str, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"serve-load-{label}-"))
    token = make_key(data_dir)
    proc, url, metrics_url = start(path, data_dir, args)
    try:
        out = asyncio.run(load(url, metrics_url, token, texts, args))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    ids = usage_ids(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)  # its key store and log were left in /tmp on each run
    n = sum(out["statuses"].values())
    ok = out["statuses"].get("200", 0)
    return {
        "backend": label,
        "path": path,
        "format": json.loads((Path(path) / "run.json").read_text()).get("format", "torch"),
        "clients": args.clients,
        "seconds": round(out["wall"], 1),
        "requests": n,
        "requests_per_s": round(n / out["wall"], 1),
        "texts_per_s": round(out["texts"] / out["wall"], 1),
        "p50_ms": round(1000 * percentile(out["latencies"], 0.50), 1),
        "p95_ms": round(1000 * percentile(out["latencies"], 0.95), 1),
        "p99_ms": round(1000 * percentile(out["latencies"], 0.99), 1),
        "errors": {k: v for k, v in out["statuses"].items() if k != "200"},
        "ok": ok,
        "mean_batch": round(mb, 1) if (mb := mean_batch(out["metrics"])) else None,
        "usage_rows": len(ids),
        "usage_rows_match": sorted(ids) == sorted(out["ids"]) and len(ids) == n + 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="a trained run folder (served with PyTorch eager)")
    parser.add_argument("--export", help="an export artifact of the run (e.g. RUN-onnx-int8)")
    parser.add_argument("--clients", type=positive_int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--seconds", type=float, default=30, help="traffic per backend (default 30)")
    parser.add_argument("--max-texts", type=int, default=4, help="texts per request: 1 to this (default 4)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="server torch/ORT threads (default 1)"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"BANKING77 not found at {DATA}: this benchmark reads ../shared/data/banking77")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with DATA.open(encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    backends = [("eager", args.run)] + ([("export", args.export)] if args.export else [])
    results = [bench(label, path, texts, args) for label, path in backends]
    print(f"\nserve_load: {args.clients} clients x {args.seconds:g} s, 1-{args.max_texts} texts per request, "
          f"max_batch {args.max_batch}, max_wait {args.max_wait_ms:g} ms, {args.threads} thread(s), "
          f"{os.cpu_count()} CPUs shared with the load generator")  # fmt: skip
    print(f"{'backend':<8} {'format':<10} {'req/s':>7} {'texts/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'batch':>6} {'requests':>8} {'errors':>7} {'usage == sent':>14}")  # fmt: skip
    for r in results:
        errors = sum(r["errors"].values())
        print(f"{r['backend']:<8} {r['format']:<10} {r['requests_per_s']:>7} {r['texts_per_s']:>8} "
              f"{r['p50_ms']:>7} {r['p95_ms']:>7} {r['p99_ms']:>7} {r['mean_batch'] or '-':>6} "
              f"{r['requests']:>8} {errors:>7} {r['usage_rows_match']!s:>14}")  # fmt: skip
        if r["errors"]:
            print(f"  errors by status: {r['errors']}")
    if len(results) == 2 and results[0]["texts_per_s"]:
        print(f"export / eager throughput: {results[1]['texts_per_s'] / results[0]['texts_per_s']:.2f}x")
    print(json.dumps(results, indent=2))
    if args.json:  # with the settings that produced them
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}
        atomic_write_json(args.json, {"settings": settings, "backends": results})


if __name__ == "__main__":
    main()
