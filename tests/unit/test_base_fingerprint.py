"""An adapter run records its base weights' fingerprint; loading it onto other weights fails with
one line naming both, instead of merging the adapter into the wrong base and predicting garbage."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import tunelab
from tunelab.errors import RunError
from tunelab.models.fingerprint import weights_fingerprint
from tunelab.train import loop as train_loop


def replace_weights(folder: Path, seed: int) -> None:
    """Save a fresh random encoder of the same architecture into ``folder`` (same name, other weights)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    BertModel(BertConfig.from_pretrained(str(folder))).save_pretrained(str(folder), safe_serialization=True)


def resave(folder: Path, *, shard: str | None = None) -> None:
    """The same tensors saved again (optionally sharded): new files, same weights, no pooler added."""
    from transformers import BertModel

    model = BertModel.from_pretrained(str(folder), add_pooling_layer=False)
    for old in folder.glob("model*.safetensors*"):
        old.unlink()
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(str(folder), safe_serialization=True, **kwargs)


@contextmanager
def base_restored(base: Path) -> Iterator[Path]:
    """Keep a copy of ``base`` (yielded) and put it back afterwards: the module's tests share one
    adapter run, so a test that changes its base must leave the base as it found it."""
    saved = base.parent / "original-base"
    shutil.copytree(base, saved)
    try:
        yield saved
    finally:
        shutil.rmtree(base)
        shutil.copytree(saved, base)
        shutil.rmtree(saved)


def train_lora(base: Path, train_csv: Path, out: Path, *extra: str) -> Path:
    overrides = [
        f"data.train={train_csv}",
        f"model.name={base}",
        "model.max_length=32",
        "model.pooling=mean",
        "method=lora",
        "train.batch_size=16",
        "train.epochs=1",
        "train.patience=null",
        "train.head_init=random",
        f"output_dir={out}",
        "name=adapter",
        *extra,
    ]
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


@pytest.fixture(scope="module")
def adapter_run(tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """``(run, base)``: a LoRA run trained on a private copy of the tiny BERT (tests change the copy).

    The copy's checkpoint has no pooler, like many published encoders: the pooler is initialised at
    random on every load, and that must not count as another base."""
    root = tmp_path_factory.mktemp("fingerprint")
    base = root / "base"
    shutil.copytree(tiny_bert, base)
    resave(base)
    return train_lora(base, labelled_csvs[0], root / "runs"), base


def set_fingerprint(run: Path, value: str | None) -> None:
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    if value is None:
        summary.pop("base_fingerprint", None)
    else:
        summary["base_fingerprint"] = value
    (run / "run.json").write_text(json.dumps(summary), encoding="utf-8")


def test_the_fingerprint_is_of_the_tensors_not_the_files(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    torch.manual_seed(0)
    model = BertModel(config)
    model.save_pretrained(str(tmp_path / "a"), safe_serialization=True)
    model.save_pretrained(str(tmp_path / "sharded"), safe_serialization=True, max_shard_size="2KB")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    first = weights_fingerprint(tmp_path / "a")
    assert first is not None and first.startswith("sha256:") and len(first) == 7 + 64
    assert weights_fingerprint(tmp_path / "sharded") == first
    with torch.no_grad():
        model.encoder.layer[0].output.dense.weight[0, 0] += 1e-3
    model.save_pretrained(str(tmp_path / "changed"), safe_serialization=True)
    assert weights_fingerprint(tmp_path / "changed") != first
    assert weights_fingerprint(tmp_path / "empty") is None


def test_an_adapter_run_records_its_base_and_loads_onto_it(adapter_run: tuple[Path, Path]) -> None:
    run, base = adapter_run
    summary = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert summary["base_fingerprint"] == weights_fingerprint(base)
    # Loads every time, though the base's missing pooler is initialised anew at each load.
    for _ in range(2):
        result = tunelab.load(run).predict("football match with my team")
        assert result["label"] in {"food", "sports", "weather"}


def test_loading_onto_other_base_weights_fails_naming_both(adapter_run: tuple[Path, Path]) -> None:
    run, base = adapter_run
    expected = json.loads((run / "run.json").read_text(encoding="utf-8"))["base_fingerprint"]
    with base_restored(base) as saved:
        replace_weights(base, seed=1)
        found = weights_fingerprint(base)
        with pytest.raises(RunError) as err:
            tunelab.load(run)
        message = str(err.value)
        assert "\n" not in message and str(run) in message and "trained on base" in message
        assert expected[:19] in message and found[:19] in message and str(base) in message
        # The same weights saved again (other files: sharded) are the same base.
        shutil.rmtree(base)
        shutil.copytree(saved, base)
        resave(base, shard="1MB")
        assert len(list(base.glob("*.safetensors"))) > 1
        assert tunelab.load(run).task_name == "single_label"


def test_validate_from_an_adapter_run_on_changed_base_weights_says_so(
    adapter_run: tuple[Path, Path], labelled_csvs: tuple[Path, Path]
) -> None:
    """validate --from said "config ok"; train --from then failed loading the model."""
    from tunelab.preflight import validate_run

    run, base = adapter_run
    with base_restored(base):
        replace_weights(base, seed=3)
        result = validate_run(None, overrides=[f"data.train={labelled_csvs[0]}", "method=full"], from_run=run)
        assert any("trained on base" in p for p in result.problems), result.problems


def test_a_run_from_before_fingerprints_still_loads(adapter_run: tuple[Path, Path]) -> None:
    run, base = adapter_run
    expected = json.loads((run / "run.json").read_text(encoding="utf-8"))["base_fingerprint"]
    with base_restored(base):
        try:
            set_fingerprint(run, None)
            replace_weights(base, seed=2)
            assert tunelab.load(run).task_name == "single_label"  # unchecked: nothing to compare with
        finally:
            set_fingerprint(run, expected)


def test_a_full_run_stores_its_weights_and_records_no_fingerprint(
    tiny_bert: Path, train_csv: Path, tmp_path: Path
) -> None:
    overrides = [
        f"data.train={train_csv}",
        f"model.name={tiny_bert}",
        "model.max_length=16",
        "train.epochs=1",
        "train.patience=null",
        "train.head_init=random",
        f"output_dir={tmp_path}",
        "name=full",
    ]
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["base_fingerprint"] is None


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in tunelab catches a BaseException."""


def test_a_resume_onto_other_base_weights_fails_naming_both(
    tiny_bert: Path, train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_bert, base)
    resave(base)
    began_on = weights_fingerprint(base)
    saved = tmp_path / "original-base"
    shutil.copytree(base, saved)

    def save_then_die(*args: object, _original=train_loop.save_checkpoint, **kwargs: object) -> None:
        _original(*args, **kwargs)
        raise Killed

    with monkeypatch.context() as mp:
        mp.setattr(train_loop, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            train_lora(base, train_csv, tmp_path / "runs", "train.checkpoint_steps=2")
    partial = tmp_path / "runs" / "adapter.partial"
    assert (partial / "checkpoints" / "last").is_dir()
    # Recorded when training starts, not only when it finishes.
    assert json.loads((partial / "run.json").read_text(encoding="utf-8"))["base_fingerprint"] == began_on

    replace_weights(base, seed=3)
    found = weights_fingerprint(base)
    assert found != began_on
    with pytest.raises(RunError) as err:
        tunelab.train(resume=partial, show_progress=False)
    message = str(err.value)
    assert "\n" not in message and str(partial) in message and "resuming" in message
    assert began_on[:19] in message and found[:19] in message
    assert json.loads((partial / "run.json").read_text(encoding="utf-8"))["base_fingerprint"] == began_on

    # The same weights back: the resume goes on and finishes on them.
    shutil.rmtree(base)
    shutil.copytree(saved, base)
    result = tunelab.train(resume=partial, show_progress=False)
    assert result.summary["base_fingerprint"] == began_on
    assert tunelab.load(result.run_dir).task_name == "single_label"


def test_a_base_without_a_pooler_loads_the_same_pooler_every_time(tiny_bert: Path, tmp_path: Path) -> None:
    """from_pretrained drew the missing pooler from the global random stream: an adapter run with cls
    pooling and an untrained pooler predicted differently at each load."""
    from tunelab.models import build_classifier

    base = tmp_path / "nopooler"
    shutil.copytree(tiny_bert, base)
    resave(base)
    first, second = (build_classifier(base, ["a", "b"], pooling="cls") for _ in range(2))
    pairs = [
        (name, a, b)
        for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters(), strict=True)
        if "pooler" in name
    ]
    assert pairs  # else the loop below compares nothing
    for name, a, b in pairs:
        assert torch.equal(a, b), name
