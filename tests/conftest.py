"""Shared fixtures: a tiny random BERT saved as a local model folder, and small labelled CSVs.

The tiny model (2 layers, hidden 32) has the bundled MiniLM tokenizer, so ``model.name=<folder>``
trains in seconds on a CPU; only the integration tests load the real bundled weights. Tests never
touch the network: ``HF_HUB_OFFLINE`` is set before anything imports ``huggingface_hub``.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # as tunelab sets it: no files in ~/.cache

import json
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Three classes, each with words no other class uses, so even a 2-layer random BERT learns them.
CLASS_WORDS = {
    "sports": ["football", "tennis", "goal", "match", "team", "score", "player", "league"],
    "food": ["pizza", "bread", "cheese", "soup", "salad", "dinner", "recipe", "kitchen"],
    "weather": ["rain", "snow", "sunny", "storm", "cloud", "wind", "forecast", "cold"],
}
FILLER = ["the", "a", "today", "really", "was", "about", "my", "very", "new", "and", "this", "of"]


def make_texts(label: str, n: int, seed: int) -> list[str]:
    """``n`` short sentences for ``label``: two or three class words among filler words."""
    rng = random.Random(f"{label}-{seed}")
    texts = []
    for _ in range(n):
        words = rng.sample(CLASS_WORDS[label], rng.randint(2, 3)) + rng.sample(FILLER, rng.randint(2, 4))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts


def write_labelled_csv(path: Path, per_class: int, seed: int) -> Path:
    import pandas as pd

    rows = [{"text": t, "label": label} for label in CLASS_WORDS for t in make_texts(label, per_class, seed)]
    pd.DataFrame(rows).sample(frac=1.0, random_state=seed).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """The tiny model gains nothing from threads, and on a busy 2-core machine two threads per
    process oversubscribe the cores and make each step ~30x slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _no_report_plots():
    """Run reports leave their PNGs out (``$TUNELAB_NO_PLOTS``) unless a test or module is marked
    ``plots``: drawing three figures took about a second per train or eval, 15% of the suite's CPU,
    in hundreds of tests that never look at them. Session-scoped fixtures never draw (they are set
    up before any module's choice); subprocesses inherit the setting."""
    from tunelab.evaluate.plots import NO_PLOTS_ENV

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(NO_PLOTS_ENV, "1")
        yield


@pytest.fixture(scope="module", autouse=True)
def _plots_for_marked_modules(request: pytest.FixtureRequest):
    """A module with ``pytestmark = pytest.mark.plots`` draws them, in its module fixtures too."""
    from tunelab.evaluate.plots import NO_PLOTS_ENV

    with pytest.MonkeyPatch.context() as mp:
        if request.node.get_closest_marker("plots") is not None:
            mp.delenv(NO_PLOTS_ENV, raising=False)
        yield


@pytest.fixture(autouse=True)
def _plots_for_marked_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test marked ``@pytest.mark.plots`` draws them (its module's fixtures follow the module)."""
    from tunelab.evaluate.plots import NO_PLOTS_ENV

    if request.node.get_closest_marker("plots") is not None:
        monkeypatch.delenv(NO_PLOTS_ENV, raising=False)


@pytest.fixture(scope="session", autouse=True)
def _scratch_data_dir(tmp_path_factory: pytest.TempPathFactory):
    """Keys and usage go to a scratch folder, never the user's data folder or ``$TUNELAB_DB``.

    ``$TUNELAB_DATA_DIR`` covers every store opened with the defaults (subprocesses inherit it);
    ``$XDG_DATA_HOME`` also points into the scratch folder, so a test that unsets the variable to
    check the default location still writes nothing under the real home.
    """
    root = tmp_path_factory.mktemp("tunelab-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNELAB_DATA_DIR", str(root / "data"))
        mp.setenv("XDG_DATA_HOME", str(root / "xdg"))
        mp.delenv("TUNELAB_DB", raising=False)
        yield root


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a random 2-layer BERT (safetensors) and the bundled tokenizer.

    Saved as a bare ``BertModel``, like a pre-trained encoder: every classifier built from it gets
    a fresh head.
    """
    from tunelab.models.tiny import save_tiny_bert

    folder = save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    return folder


@pytest.fixture
def e5_stand_in(monkeypatch, tiny_bert):
    """The bundled e5 entry pointed at the tiny BERT: no 470 MB conversion for a resolution test."""
    import dataclasses

    from tunelab.models import resolve as resolving

    bundled = resolving.BUNDLED_MODELS["e5-small-multilingual"]
    monkeypatch.setitem(
        resolving.BUNDLED_MODELS,
        "e5-small-multilingual",
        dataclasses.replace(bundled, locate=lambda: tiny_bert),
    )
    return tiny_bert


@pytest.fixture(scope="session")
def labelled_csvs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(train.csv, test.csv)``: 3 classes (sports, food, weather), 20 and 8 rows per class."""
    folder = tmp_path_factory.mktemp("data")
    train = write_labelled_csv(folder / "train.csv", per_class=20, seed=1)
    test = write_labelled_csv(folder / "test.csv", per_class=8, seed=2)
    return train, test


def write_tagged_jsonl(path: Path, sentences: int, seed: int) -> Path:
    """``sentences`` CoNLL-like JSONL records (``tokens``, ``tags``): a person, a verb, a place."""
    import json

    rng = random.Random(seed)
    people, places = ["peter", "maria", "john", "anna"], ["paris", "london", "berlin", "rome"]
    lines = []
    for _ in range(sentences):
        tokens = [rng.choice(people), rng.choice(["visited", "left", "liked"]), rng.choice(places), "today"]
        lines.append(json.dumps({"tokens": tokens, "tags": ["B-PER", "O", "B-LOC", "O"]}) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tagged_jsonls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(train.jsonl, test.jsonl)`` for token classification: 40 and 8 tagged sentences (PER, LOC)."""
    folder = tmp_path_factory.mktemp("tagged")
    return write_tagged_jsonl(folder / "train.jsonl", 40, 1), write_tagged_jsonl(folder / "test.jsonl", 8, 2)


@pytest.fixture(scope="session")
def parity_csvs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(train.csv, test.csv)`` of the same topics with a 120-row test file (40 per class): the
    export parity tests' data, where one changed prediction moves accuracy by 0.83 points, so a
    bound of a few points is a bound of a few texts."""
    folder = tmp_path_factory.mktemp("parity-data")
    train = write_labelled_csv(folder / "train.csv", per_class=20, seed=1)
    test = write_labelled_csv(folder / "test.csv", per_class=40, seed=2)
    return train, test


def make_tiny_overrides(
    model: Path, train: Path | str | None, test: Path | None, out: Path | None, *extra: str, epochs: float = 6
) -> list[str]:
    """Overrides for a fast run of ``model`` (the tiny BERT): 32 tokens, batches of 8, a large
    learning rate (its random encoder needs one) and no early stopping; ``extra`` comes last and wins.
    ``train``, ``test`` or ``out`` None: that setting is left to the config (or the DataFrames)."""
    items = [f"data.train={train}"] if train is not None else []
    items += [f"output_dir={out}"] if out is not None else []
    items += [
        f"model.name={model}",
        "model.max_length=32",
        # Mean pooling: the random encoder's pooler (tanh of [CLS]) learns these classes less reliably.
        "model.pooling=mean",
        "train.batch_size=8",
        f"train.epochs={epochs}",
        "train.learning_rate=0.005",
        "train.patience=null",
        # Its token embeddings are random, not pre-trained: full fine-tuning trains them here
        # (a method=... in extra replaces the method and drops this option).
        "method.freeze_word_embeddings=false",
    ]
    if test is not None:
        items.append(f"data.test={test}")
    return [*items, *extra]


@pytest.fixture(scope="session")
def tiny_overrides():
    """``tiny_overrides(model, train, test, out, *extra, epochs=6)``: the overrides of a fast tiny run
    (a fixture, since the test folders are not packages and cannot import this file)."""
    return make_tiny_overrides


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in tunelab catches a BaseException."""


@pytest.fixture(scope="session")
def killed_at_first_checkpoint():
    """``kill(overrides)``: train, stop as a SIGKILL would right after the first checkpoint is
    written, and return the unfinished ``<name>.partial`` folder (overrides must set ``name``)."""

    def kill(overrides: list[str], from_run: Path | None = None) -> Path:
        import tunelab
        from tunelab.train import loop as train_loop

        original = train_loop.save_checkpoint

        def save_then_die(*args: object, **kwargs: object) -> None:
            original(*args, **kwargs)
            raise Killed

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(train_loop, "save_checkpoint", save_then_die)
            with pytest.raises(Killed):
                tunelab.train(None, overrides=overrides, from_run=from_run, show_progress=False)
        name = next(o.split("=", 1)[1] for o in overrides if o.startswith("name="))
        out = next(o.split("=", 1)[1] for o in overrides if o.startswith("output_dir="))
        return Path(out) / f"{name}.partial"

    return kill


@pytest.fixture
def train_csv(labelled_csvs: tuple[Path, Path]) -> Path:
    return labelled_csvs[0]


@pytest.fixture
def test_csv(labelled_csvs: tuple[Path, Path]) -> Path:
    return labelled_csvs[1]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data folder through $TUNELAB_DATA_DIR, as a deployment sets it (keys and usage CLI tests)."""
    folder = tmp_path / "data"
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(folder))
    monkeypatch.delenv("TUNELAB_DB", raising=False)
    return folder


@pytest.fixture(scope="session")
def text_maker():
    """``make_texts(label, n, seed)``: sentences of ``label``'s distinctive words (see CLASS_WORDS)."""
    return make_texts


@pytest.fixture
def class_names() -> list[str]:
    return sorted(CLASS_WORDS)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (public datasets, never copied into it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


class SelfSigterm:
    """Send this process SIGTERM from a thread once ``condition()`` holds, as an operator would stop a
    ``tunelab app monitor run``; see the ``sigterm_self`` fixture."""

    def __init__(self) -> None:
        self.finished = threading.Event()
        self.threads: list[threading.Thread] = []

    def when(self, condition: Callable[[], bool], timeout_s: float) -> None:
        """Signal once ``condition()`` is true or ``timeout_s`` has passed, unless the test has ended."""

        def wait_then_signal() -> None:
            deadline = time.monotonic() + timeout_s
            while not self.finished.is_set() and time.monotonic() < deadline:
                try:
                    if condition():
                        break
                except Exception:  # the store may be half-created while the run starts
                    pass
                time.sleep(0.05)
            if not self.finished.is_set():
                os.kill(os.getpid(), signal.SIGTERM)

        thread = threading.Thread(target=wait_then_signal, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


@pytest.fixture
def sigterm_self() -> Iterator[SelfSigterm]:
    """Stop a foreground run with a real SIGTERM without ever killing pytest.

    The process-wide SIGTERM handler is a harmless one for the length of the test (the code under
    test installs its own over it and must put it back), and a signal still pending when the test
    ends is never sent: a run that failed early used to leave its killer thread behind, which then
    terminated the whole test session seconds later (CI: ``make: *** Error 143``).
    """
    stray: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stray.append(signum))
    killer = SelfSigterm()
    try:
        yield killer
    finally:
        killer.finished.set()
        for thread in killer.threads:
            thread.join(timeout=5)
        signal.signal(signal.SIGTERM, previous)


def pytest_configure(config: pytest.Config) -> None:
    # transformers' own deprecation notice, raised inside peft/transformers on every LoRA forward.
    config.addinivalue_line("filterwarnings", "ignore:.*is_gradient_checkpointing.*:FutureWarning")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say the random-order seed first too: a session killed before its summary still names it."""
    config = session.config
    seed = getattr(config.option, "randomly_seed", None)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and config.pluginmanager.has_plugin("randomly") and isinstance(seed, int):
        reporter.write_line(f"test order seed: {seed}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Name a failing test the moment it fails (``-q`` prints only an ``F`` until the end), so the
    CI log says which test failed even when the session is killed before its summary."""
    if report.failed:
        print(f"\nFAILED {report.nodeid} ({report.when}): {str(report.longrepr)[-1500:]}", file=sys.stderr)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Tests run in a random order (pytest-randomly), whose seed is in the header that ``-q`` (as in
    ``make test`` and CI) hides: say it at the end, so an order-dependent failure can be repeated."""
    seed = getattr(config.option, "randomly_seed", None)
    if config.pluginmanager.has_plugin("randomly") and isinstance(seed, int):
        terminalreporter.write_line(f"test order: pytest -p randomly --randomly-seed={seed} repeats it")


# -- PostgreSQL ------------------------------------------------------------------------------------


def _postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (Debian's layout), else ``initdb`` on PATH."""
    import shutil

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in p.parent.name.split(".") if x.isdigit())

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: version(p.parent))
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url():
    """A ``postgresql://`` URL of a scratch database, for tests of the PostgreSQL store.

    ``$TUNELAB_TEST_POSTGRES_URL`` if set (the tests drop and recreate its ``tunelab_*`` tables:
    never point it at a database you need); else a throwaway server (``initdb`` in a temp folder,
    127.0.0.1 on a free port, ``fsync=off``) stopped at the end of the session. PostgreSQL refuses
    to run as root, so under root the server runs as the ``postgres`` system user. Where no server
    can be started, the tests that use this skip, and say why.
    """
    import shutil
    import subprocess
    import tempfile

    url = os.environ.get("TUNELAB_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL not available: no initdb in /usr/lib/postgresql/*/bin or on PATH "
            "(apt-get install postgresql, or set TUNELAB_TEST_POSTGRES_URL)"
        )
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="tunelab-pg-"))
    if os.name == "posix" and os.geteuid() == 0:
        import pwd

        runuser = shutil.which("runuser")
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pw = None
        if pw is None or runuser is None:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(
                "PostgreSQL not available: running as root, and "
                + ("there is no 'postgres' system user" if pw is None else "runuser is missing")
                + " to run the server as (PostgreSQL refuses to run as root)"
            )
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, log, port = root / "data", root / "server.log", _free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
    steps = [
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
    ]
    for cmd in steps:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            if log.exists():
                detail += log.read_text(errors="replace").strip().splitlines()
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"PostgreSQL not available: {Path(cmd[0]).name} failed: {' | '.join(detail[-3:])}")
    try:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE tunelab_test")
        yield f"postgresql://postgres@127.0.0.1:{port}/tunelab_test"
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run([*as_user, *stop], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


# -- adapter methods on the tiny classifier ---------------------------------------------------------


@pytest.fixture
def adapter_labels() -> list[str]:
    """The labels of the tiny classifier the adapter tests build."""
    return ["food", "sports", "weather"]


@pytest.fixture
def adapter_loader(tiny_bert: Path, adapter_labels: list[str]):
    """A ModelLoader whose ``base()`` is a fresh tiny classifier; adapter methods never load a whole one."""
    from torch import nn

    from tunelab.methods.registry import ModelLoader
    from tunelab.models import build_classifier

    def base() -> nn.Module:
        return build_classifier(
            tiny_bert, adapter_labels, "single_label_classification", pooling="cls", seed=0
        )

    def whole(folder: Path) -> nn.Module:
        raise AssertionError("adapter methods never load a whole model")

    return ModelLoader(base=base, whole=whole)


@pytest.fixture
def saved_adapter(adapter_loader) -> Callable[..., Path]:
    """``saved_adapter(method, folder, **options)``: ``method`` applied to the tiny classifier and
    saved to ``folder`` (what training writes); returns ``folder``."""
    from tunelab.methods import get_method

    def save(method: str, folder: Path, **options: object) -> Path:
        m = get_method(method)
        m.save(m.apply(adapter_loader.base(), m.parse_options(options)), folder)
        return folder

    return save


@pytest.fixture
def one_line() -> Callable[[pytest.ExceptionInfo[BaseException]], str]:
    """``one_line(exc)``: the raised exception's text, checked to be a single line."""

    def text_of(exc: pytest.ExceptionInfo[BaseException]) -> str:
        text = str(exc.value)
        assert "\n" not in text, text
        return text

    return text_of


# -- damaged JSON files -------------------------------------------------------------------------------


@pytest.fixture
def json_damage() -> dict[str, tuple[Callable[[Path], object], str]]:
    """Ways to damage a JSON file (keys: cut, list, not-utf8), each with what the error says of it."""
    return {
        "cut": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "not JSON: "),
        "list": (lambda p: p.write_text("[1, 2]", encoding="utf-8"), "a JSON array, not an object"),
        "not-utf8": (lambda p: p.write_bytes(b"\xff\xfe{}"), "not UTF-8 text"),
    }


# -- a faked Hugging Face hub -----------------------------------------------------------------------


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if online: the offline switches unset (the suite may set them)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[dict]]:
    """``fake_hub(info, calls=None, download=None, cached=...)`` replaces HfApi, hf_hub_download
    and snapshot_download: ``info`` is returned by model_info, or raised; ``download`` stands in for
    hf_hub_download, called once a file with keyword arguments (by default one that returns
    ``/nonexistent-snapshot/<filename>``); ``cached`` is what the cache-only snapshot_download
    returns (None: nothing cached, it raises). Each call is appended to ``calls``, which is returned."""
    import huggingface_hub

    def install(
        info: object,
        calls: list[dict] | None = None,
        download: Callable[..., str] | None = None,
        cached: str | None = "/nonexistent-snapshot",
    ) -> list[dict]:
        seen: list[dict] = [] if calls is None else calls

        class FakeApi:
            def model_info(self, repo_id: str, **kwargs: object) -> object:
                seen.append({"model_info": repo_id, **kwargs})
                if isinstance(info, BaseException):
                    raise info
                return info

        def fake_file_download(**kwargs: object) -> str:
            seen.append({"hf_hub_download": True, **kwargs})
            return download(**kwargs) if download else f"/nonexistent-snapshot/{kwargs['filename']}"

        def fake_snapshot_download(**kwargs: object) -> str:
            seen.append({"snapshot_download": True, **kwargs})
            if cached is None:
                raise FileNotFoundError("not in the local hub cache")  # LocalEntryNotFoundError's kind
            return cached

        monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_file_download)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
        return seen

    return install


@pytest.fixture
def hub_answer() -> Callable[..., object]:
    """``hub_answer(sha, *files)``: what model_info answers, the commit and the repository's files
    (RepoSibling-like; by default a config, weights in two formats and a vocabulary)."""
    from types import SimpleNamespace

    def answer(sha: str, *files: str) -> object:
        names = files or ("config.json", "model.safetensors", "vocab.txt", "pytorch_model.bin")
        return SimpleNamespace(sha=sha, siblings=[SimpleNamespace(rfilename=name) for name in names])

    return answer


# -- the monitor's store on each database -------------------------------------------------------------

MONITOR_TABLES = "tunelab_monitors, tunelab_monitor_documents, tunelab_monitor_companies, " + (
    "tunelab_monitor_positions, tunelab_monitor_files, tunelab_monitor_alerts"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def monitor_store(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A fresh monitor store holding the monitor ``markets``, on SQLite and on PostgreSQL."""
    from tunelab.apps.monitor.store import open_monitor_store

    if request.param == "sqlite":
        store = open_monitor_store(str(tmp_path / "monitor.db"))
    else:
        import psycopg

        url = request.getfixturevalue("postgres_url")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {MONITOR_TABLES}")
        store = open_monitor_store(url)
    store.register_monitor("markets")
    yield store
    store.close()


@pytest.fixture
def minimal_run(tmp_path: Path) -> Path:
    """Enough of a finished run for ``export`` to reach its stages (no model: for tests that
    replace the stages, e.g. ``build.build_artifact``)."""
    root = tmp_path / "runs" / "tiny"
    (root / "weights").mkdir(parents=True)
    (root / "labels.json").write_text(
        json.dumps({"task": "single_label", "labels": ["a", "b"]}), encoding="utf-8"
    )
    (root / "config.json").write_text("{}", encoding="utf-8")
    (root / "run.json").write_text(json.dumps({"name": "tiny", "status": "finished"}), encoding="utf-8")
    return root
