"""What the training benchmarks share: one ``tunelab train`` subprocess and the costs read from its run.json.

Training runs in a subprocess so that the peak memory (max RSS) a run records is its own, not
the benchmark script's.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def require_data(path: Path, what: str) -> None:
    """Exit with one line naming ``path`` when the dataset is not there (a traceback from pandas or
    open() was what a user without ../shared/data got from some scripts)."""
    if not path.exists():
        sys.exit(f"{what} not found at {path}: this benchmark reads ../shared/data (see its SOURCE.md)")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``--samples 0`` timed one batch and printed a
    ratio; ``--limit 0`` meant "no limit" and started the full run; others failed with a traceback)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be 1 or more")
    return value


def train_run(
    config: Path | None,
    overrides: list[str],
    out: Path,
    name: str,
    *,
    resume: Path | None = None,
    quiet: bool = True,
    echo: bool = False,
) -> tuple[Path, dict[str, Any], float]:
    """Train ``config`` with ``overrides`` as run ``out/name`` (or finish the killed run ``resume``).

    Returns the run folder, its run.json and the wall time of the whole command in seconds.
    A failed ``tunelab train`` (a bad ``--set`` field, a taken name) exits with one line, not a
    CalledProcessError traceback: the child has printed its own error line above it.
    ``quiet`` drops the progress bar (for log files); ``echo`` prints the command first.
    """
    if resume is not None:
        name, out = resume.name.removesuffix(".partial"), resume.parent
        cmd = [sys.executable, "-m", "tunelab.cli.main", "train", "--resume", str(resume)]
    else:
        cmd = [
            sys.executable, "-m", "tunelab.cli.main", "train", str(config),
            f"name={name}", f"output_dir={out}", *overrides,
        ]  # fmt: skip
    cmd += ["--quiet"] if quiet else []
    if echo:
        print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    try:
        subprocess.run(cmd, check=True)
    except subprocess.CalledProcessError as exc:  # its own one-line error is printed above
        sys.exit(f"tunelab train {name}: failed (exit {exc.returncode}); see the error above")
    wall = time.perf_counter() - start
    run = out / name
    return run, json.loads((run / "run.json").read_text(encoding="utf-8")), wall


def unfinished(out: Path, name: str) -> Path | None:
    """``out/<name>.partial`` when it exists: the folder a killed ``tunelab train name=<name>`` left.

    ``tunelab train name=<name>`` refuses while it exists (an unfinished run of that name), so a
    benchmark that goes on where it stopped finishes it: ``train_run(..., resume=<it>)``.
    """
    partial = out / f"{name}.partial"
    return partial if partial.is_dir() else None


def read_json(path: Path, *, remedy: str) -> Any:
    """``path``'s JSON; a file that is not JSON (cut short, edited) stops the script with one line
    naming it and saying ``remedy`` (what to do), not a traceback."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError and UnicodeDecodeError
        reason = " ".join(str(exc).split())
        sys.exit(f"{path}: not readable JSON ({reason}); {remedy}")


def read_jsonl(path: Path, *, note: bool = True) -> list[dict[str, Any]]:
    """The rows of a results file (one JSON object a line) a benchmark appends to as it goes.

    A last line that is not JSON is a row cut short by a kill while it was written: it is skipped
    (with a printed note, unless ``note`` is false) and dropped by the next ``append_jsonl``. Any
    other line that is not JSON stops the script with one line naming the file and the line.
    """
    return [row for _, row in _jsonl_lines(path, note=note)]


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Add ``row`` to ``path``: the whole file is written again (the rows it holds, without a torn
    last line, then ``row``) to a temporary file renamed into place, so a kill leaves the old file
    or the new one, never a half-written row for the next run to read or glue its row onto."""
    from tunelab.atomic import atomic_write_text

    kept = [line for line, _ in _jsonl_lines(path, note=False)] if path.is_file() else []
    atomic_write_text(path, "".join(f"{line}\n" for line in [*kept, json.dumps(row)]))


def _jsonl_lines(path: Path, *, note: bool) -> list[tuple[str, Any]]:
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # rows are ASCII (json.dumps): only damage gives other bytes
        sys.exit(f"{path}: not UTF-8 text ({exc}); fix or remove the damaged line")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    out = []
    for i, (n, line) in enumerate(lines):
        try:
            out.append((line, json.loads(line)))
        except ValueError as exc:
            if i < len(lines) - 1:
                sys.exit(f"{path} line {n}: not JSON ({exc}); fix or remove that line")
            if note:
                print(f"note: {path} line {n} is a row cut short (a killed run?): skipped", flush=True)
    return out


def check_settings(folder: Path, overrides: list[str], how: str) -> None:
    """Exit with one line when the run in ``folder`` was ``how`` ("trained", "begun") with other
    settings than ``overrides``: run names say only the recipe and seed, so after an edit of a
    benchmark's recipe an old run of the same name was reused as the new recipe's figure."""
    config = folder / "config.json"
    if config.is_file():
        differ = settings_differ(json.loads(config.read_text(encoding="utf-8")), overrides)
        if differ is not None:
            sys.exit(f"{folder}: {how} with {differ}; give a fresh --out")


def settings_differ(saved: dict[str, Any], overrides: list[str]) -> str | None:
    """``key=have, not value`` for the first ``section.field=value`` (or ``method=NAME``) of
    ``overrides`` that the run's config.json (``saved``) holds otherwise; None when every one it
    holds is the same.

    Values are read as YAML, as ``tunelab train`` reads them; numbers compare as numbers.
    """
    wanted = dict(arg.split("=", 1) for arg in overrides if "=" in arg)  # the last of a key wins
    for key, text in wanted.items():
        found = saved_setting(saved, key, text)
        if found is None:
            continue
        have, value = found
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (have, value))
        if not (float(have) == float(value) if numbers else have == value):
            return f"{key}={have}, not {text}"
    return None


def saved_setting(saved: dict[str, Any], key: str, text: str) -> tuple[Any, Any] | None:
    """``(have, want)`` for the override ``key=text``: what the run's config.json (``saved``) holds
    and what the override asks for (read as YAML, as ``tunelab train`` reads it); None when the
    config holds no such field.

    config.json keeps a method as ``{"name": ..., "options": {...}}``, so ``method=NAME`` compares
    with the name and ``method.X`` (``method.options.X``) with option X, both sides resolved by the
    run's method: a run lists the options it used (defaults included), one from before that only
    those typed, so an option missing there is its default, and a value typed in another form
    (``target_modules=query`` for ``[query]``) is the same. An option the run's method does not
    take (dropped by a ``method=`` override, as tunelab drops it) is None. Both were skipped: a
    recipe whose method options were edited reused the old recipe's runs.
    """
    import yaml

    value = yaml.safe_load(text)
    section, _, field = key.partition(".")
    if section != "method":
        if not isinstance(saved.get(section), dict) or field not in saved[section]:
            return None
        return saved[section][field], value
    method = saved.get("method")
    method = {"name": method} if isinstance(method, str) else method
    if not isinstance(method, dict):
        return None
    name, options = method.get("name", "full"), method.get("options") or {}
    option = field.removeprefix("options.")
    if option in ("", "name"):
        return name, value
    if not isinstance(options, dict):
        return None
    have = _resolved_options(name, options)
    if have is None:  # a method not registered here (a plug-in's), or options it now refuses: as saved
        return (options[option], value) if option in options else None
    if option not in have:
        return None
    want = _resolved_options(name, {**options, option: value})
    return have[option], value if want is None else want[option]


def _resolved_options(method: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """Every option of ``method`` as a run with ``options`` trains it (defaults filled in, values
    as the method reads them); None when the method is unknown here or refuses them."""
    import dataclasses

    from tunelab.errors import ConfigError
    from tunelab.methods import get_method

    try:
        return dataclasses.asdict(get_method(method).parse_options(options))
    except ConfigError:
        return None


def measured_with(row: dict[str, Any], overrides: list[str], where: Path, what: str) -> bool:
    """Whether results row ``row`` (of ``what``, e.g. "dev p4n4 8 shots seed 0") was measured with
    ``overrides``, so its figure stands for this invocation's.

    Rows are keyed by names (a recipe, a variant) and a seed, and a name can come to mean other
    settings (an edited recipe): exits with one line when ``row`` was measured with other overrides.
    A row from before they were kept is measured again (False).
    """
    if "overrides" not in row:
        return False
    if row["overrides"] != overrides:
        other = sorted(set(row["overrides"]) ^ set(overrides)) or ["the same overrides in another order"]
        sys.exit(f"{where}: {what} was measured with other settings ({', '.join(other)}); give a fresh --out")
    return True


def run_costs(summary: dict[str, Any], wall: float) -> dict[str, Any]:
    """The cost columns every training benchmark prints: epochs, time, throughput, memory, size."""
    return {
        "epochs_run": summary["epochs_run"],
        "train_seconds": summary["train_seconds"],
        "samples_per_s": summary["train_samples_per_s"],
        "wall_seconds": round(wall, 1),
        "peak_memory_mb": summary["peak_memory_mb"],
        "trainable_parameters": summary["trainable_parameters"],
        "total_parameters": summary["total_parameters"],
    }


@contextmanager
def serving(serve_args: list[str], data_dir: Path, *, key: str = "bench") -> Iterator[tuple[str, str]]:
    """``tunelab serve SERVE_ARGS`` on a free port with its store in ``data_dir``: yields (url, key token).

    A key named ``key`` (no rate limit, no quota) is created first; the server is ready when
    ``/readyz`` answers 200 (it exits the script, with the server log's tail, if the server dies or
    is not ready within 300 s) and is stopped with SIGTERM on leaving.
    """
    import httpx

    from tunelab.serve.access import AccessControl
    from tunelab.serve.store import open_store

    with open_store(None, data_dir) as store:
        token = AccessControl(store).create_key(key, rate=None, quota=None)[1]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [sys.executable, "-m", "tunelab.cli.main", "serve", *serve_args,
           "--port", str(port), "--data-dir", str(data_dir), "--log-level", "warning"]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    log = (data_dir / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                tail = (data_dir / "server.log").read_text(encoding="utf-8", errors="replace")[-2000:]
                sys.exit(f"server exited ({proc.returncode}):\n{tail}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit("server not ready after 300 s")
            time.sleep(0.3)
        yield url, token
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
