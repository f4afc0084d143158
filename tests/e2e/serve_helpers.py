"""Helpers for the end-to-end tests: start ``tunelab serve`` in a subprocess, make keys, read metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path
    db: str | None
    tokens: dict[str, str] = field(default_factory=dict)
    metrics_url: str = ""  # the --metrics-port listener (no key needed there)

    def metrics(self) -> dict[str, float]:
        return parse_metrics(httpx.get(self.metrics_url, timeout=10).text)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[key]}"}

    def store(self) -> Any:
        from tunelab.serve.store import open_store

        return open_store(self.db, self.data_dir)

    def usage_rows(self, key_name: str | None = None) -> list[Any]:
        with self.store() as store:
            return store.usage(key_name=key_name)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunelab.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def make_keys(db: str | None, data_dir: Path, specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``{name: {"rate": "1/min", "quota": "3/day", "admin": True}}`` -> ``{name: token}`` via the store."""
    from tunelab.serve.access import AccessControl
    from tunelab.serve.limits import Quota, Rate
    from tunelab.serve.store import open_store

    tokens = {}
    with open_store(db, data_dir) as store:
        access = AccessControl(store)
        for name, spec in specs.items():
            rate = Rate.parse(spec["rate"]) if spec.get("rate") else None
            quota = Quota.parse(spec["quota"]) if spec.get("quota") else None
            _, tokens[name] = access.create_key(name, rate=rate, quota=quota, admin=spec.get("admin", False))
    return tokens


def start_server(
    models: list[str],
    *,
    data_dir: Path,
    db: str | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 180,
) -> ServerProcess:
    """Start ``tunelab serve`` on a free port and wait until ``/readyz`` says ready."""
    port, metrics_port = free_port(), free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    cmd = [sys.executable, "-m", "tunelab.cli.main", "serve", *models, "--port", str(port)]
    cmd += ["--metrics-port", str(metrics_port)]
    cmd += ["--data-dir", str(data_dir), *(["--db", db] if db else []), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, log_path, data_dir, db)
    server.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tunelab serve exited with {proc.returncode}:\n{server.log()[-3000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.stop()
    pytest.fail(f"tunelab serve not ready after {timeout:.0f} s:\n{server.log()[-3000:]}")


def parse_metrics(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` from Prometheus text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


TEXTS = ["football match with my team", "pizza and cheese for dinner", "snow and cold wind", "a tennis goal"]


def predict_many(
    server: ServerProcess,
    *,
    key: str,
    model: str,
    clients: int,
    requests_each: int | None = None,
    until: threading.Event | None = None,
) -> list[tuple[int, str, str | None]]:
    """``clients`` threads, each with its own connection, sending predict requests (a fixed number
    each, or until ``until`` is set); returns ``(status, request id, version)`` per request."""
    results: list[tuple[int, str, str | None]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        mine = []
        with httpx.Client(base_url=server.url, headers=server.headers(key), timeout=60) as http:
            start.wait()
            n = 0
            while (requests_each is not None and n < requests_each) or (
                until is not None and not until.is_set()
            ):
                texts = [TEXTS[(i + n) % len(TEXTS)], TEXTS[n % len(TEXTS)]][: 1 + n % 2]
                r = http.post(f"/v1/models/{model}/predict", json={"texts": texts})
                version = r.json().get("version") if r.status_code == 200 else None
                mine.append((r.status_code, r.headers.get("x-request-id", ""), version))
                n += 1
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
