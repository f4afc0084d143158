"""Fixes from a review of tunelab's Python API used from threads (a notebook's pool, a web app's
workers): torch's random stream is one per process, so runs, loads, merges and ensembles that seed
or restore it take turns (``models.classifier.holding_global_rng``)."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

import tunelab


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "weights" / "model.safetensors"))


def _train(overrides: list[str]) -> Path:
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_trained_while_another_thread_loads_is_the_run_trained_alone(
    tiny_bert: Path, tiny_overrides, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    """A load in another thread put back the stream it found, rewinding the run's dropout masks:
    the same config and seed trained another model (test loss 0.34 alone, 0.11 beside loads)."""
    train, test = labelled_csvs
    alone = _train(tiny_overrides(tiny_bert, train, test, tmp_path / "a", "name=r", epochs=2))
    done, loads = threading.Event(), []

    def keep_loading() -> None:
        while not done.is_set():
            tunelab.load(alone)
            loads.append(1)

    loader = threading.Thread(target=keep_loading)
    loader.start()
    try:
        beside = _train(tiny_overrides(tiny_bert, train, test, tmp_path / "b", "name=r", epochs=2))
    finally:
        done.set()
        loader.join(timeout=120)
    assert loads  # the other thread did load (before, between or after the run's turn)
    assert _same(_weights(alone), _weights(beside))


def test_runs_trained_in_threads_at_once_keep_their_own_log_and_weights(
    tiny_bert: Path, tiny_overrides, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two runs at once drew each other's random numbers, and each train.log took the other's lines
    (a full run's log said it trained with method lora)."""
    train, test = labelled_csvs
    full = tiny_overrides(tiny_bert, train, test, tmp_path / "seq", "name=full", epochs=1)
    lora = tiny_overrides(tiny_bert, train, test, tmp_path / "seq", "name=lora", "method=lora", epochs=1)
    alone = [_train(full), _train(lora)]
    runs: dict[str, Path] = {}
    threads = [
        threading.Thread(target=lambda name=name, o=o: runs.update({name: _train(o)}))
        for name, o in (
            ("full", [*full, f"output_dir={tmp_path / 'thr'}"]),
            ("lora", [*lora, f"output_dir={tmp_path / 'thr'}"]),
        )
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(runs) == ["full", "lora"]
    assert _same(_weights(alone[0]), _weights(runs["full"]))
    for name, other in (("full", "lora"), ("lora", "full")):
        log = (runs[name] / "logs" / "train.log").read_text(encoding="utf-8")
        assert str(runs[name]) in log and str(runs[other]) not in log, log
    assert "method lora" not in (runs["full"] / "logs" / "train.log").read_text(encoding="utf-8")


def test_overlapping_runs_leave_the_callers_random_streams_as_they_were(
    tiny_bert: Path, tiny_overrides, labelled_csvs: tuple[Path, Path], tmp_path: Path, monkeypatch
) -> None:
    """The README's promise, for runs that overlap: the later run saved the earlier one's seeded
    state and, ending last, put that back over the caller's."""
    import tunelab.models as models

    train, test = labelled_csvs
    seeded = threading.Event()  # the first run has seeded the stream: the second starts then
    build = models.build_classifier

    def build_and_say(*args: object, **kwargs: object) -> object:
        model = build(*args, **kwargs)
        seeded.set()
        return model

    monkeypatch.setattr(models, "build_classifier", build_and_say)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    state = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.set_rng_state(state[0])
    np.random.set_state(state[1])
    random.setstate(state[2])

    def second() -> None:
        seeded.wait(timeout=120)
        _train(tiny_overrides(tiny_bert, train, test, tmp_path, "name=long", epochs=3))

    threads = [
        threading.Thread(
            target=_train, args=(tiny_overrides(tiny_bert, train, test, tmp_path, "name=s", epochs=1),)
        ),
        threading.Thread(target=second),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert seeded.is_set()
    after = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(after[0], expected[0])
    assert np.array_equal(after[1], expected[1]) and after[2] == expected[2]
