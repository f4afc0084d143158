"""The training loop's parts: batch order, optimizer groups, schedule, checkpoints, metrics log."""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab
from tunelab.config import TrainConfig
from tunelab.data.encoding import training_batches
from tunelab.errors import ConfigError, DivergedError, RunError
from tunelab.methods import get_method
from tunelab.models import build_classifier
from tunelab.tasks import get_task
from tunelab.train import loop as train_loop
from tunelab.train.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
    train_as_checkpointed,
    trainable_state,
)
from tunelab.train.metrics_log import MetricsLog
from tunelab.train.optim import build_optimizer, build_scheduler

LABELS = ["food", "sports", "weather"]
LENGTHS = [5, 9, 12, 7, 30, 8, 6, 14, 11, 10, 25, 4, 13, 9, 7, 16, 22, 5, 6, 18]


# -- batch order -----------------------------------------------------------------------------------


@pytest.mark.parametrize("group_by_length", [True, False])
def test_batches_are_a_pure_function_of_seed_and_epoch(group_by_length: bool) -> None:
    def batches(seed: int, epoch: int) -> list[list[int]]:
        return training_batches(LENGTHS, 4, seed=seed, epoch=epoch, group_by_length=group_by_length)

    first = batches(1, 0)
    assert sorted(i for b in first for i in b) == list(range(len(LENGTHS)))  # every row once
    assert all(len(b) <= 4 for b in first)
    assert batches(1, 0) == first
    assert batches(1, 1) != first, "each epoch has its own order"
    assert batches(2, 0) != first, "the seed changes the order"


def test_grouped_batches_waste_less_padding() -> None:
    lengths = [random.Random(i).randint(3, 60) for i in range(400)]

    def padding(group_by_length: bool) -> int:
        batches = training_batches(lengths, 8, seed=0, epoch=0, group_by_length=group_by_length)
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(True) < 0.5 * padding(False)


def _loop_run(tiny_bert: Path, train_csv: Path, out: Path, *extra: str) -> list[str]:
    """Overrides of a short tiny run without a dev split (the loop tests watch its steps)."""
    return [
        f"data.train={train_csv}",
        "data.dev_size=0",
        f"model.name={tiny_bert}",
        "model.max_length=32",
        "train.batch_size=8",
        f"output_dir={out}",
        *extra,
    ]


def test_the_loop_takes_a_new_batch_order_every_epoch(
    tiny_bert: Path, train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[int]] = []
    lengths: list[list[int]] = []
    original = train_loop.collate

    def recording_collate(enc, indices, **kwargs):
        seen.append(list(indices))
        lengths.append(enc.lengths)
        return original(enc, indices, **kwargs)

    monkeypatch.setattr(train_loop, "collate", recording_collate)
    tunelab.train(
        None,
        overrides=_loop_run(tiny_bert, train_csv, tmp_path, "train.epochs=3", "train.seed=5"),
        show_progress=False,
    )
    per_epoch = 8  # 60 rows / 8
    assert len(seen) == 3 * per_epoch
    epochs = [seen[i * per_epoch : (i + 1) * per_epoch] for i in range(3)]
    # Whatever the loop does, it must agree with the pure function a resumed run uses.
    expected = [training_batches(lengths[0], 8, seed=5, epoch=e, group_by_length=True) for e in range(3)]
    assert epochs[0] == expected[0]
    assert epochs[1:] == expected[1:]


# -- optimizer and schedule ------------------------------------------------------------------------


def groups_by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize(
    ("learning_rate", "head_lr", "expected_head"),
    [(1e-4, None, 2e-3), (5e-3, None, 5e-3), (1e-4, 1e-2, 1e-2)],
)
def test_optimizer_groups(
    tiny_bert: Path, learning_rate: float, head_lr: float | None, expected_head: float
) -> None:
    model = build_classifier(tiny_bert, LABELS, seed=0)
    cfg = TrainConfig(weight_decay=0.05, head_learning_rate=head_lr, head_init="random")
    groups = groups_by_name(model, build_optimizer(model, cfg, learning_rate))
    assert set(groups) == {n for n, _ in model.named_parameters()}
    assert groups["classifier.weight"]["lr"] == expected_head
    assert groups["classifier.bias"]["lr"] == expected_head
    body = [n for n in groups if not n.startswith("classifier.")]
    assert all(groups[n]["lr"] == learning_rate for n in body)
    # No weight decay on biases and LayerNorm gains.
    for name, group in groups.items():
        no_decay = name.endswith("bias") or "LayerNorm" in name
        assert group["weight_decay"] == (0.0 if no_decay else 0.05), name


def test_optimizer_skips_frozen_parameters(tiny_bert: Path) -> None:
    lora = get_method("lora")
    model = lora.apply(build_classifier(tiny_bert, LABELS, seed=0), lora.parse_options({}))
    groups = groups_by_name(model, build_optimizer(model, TrainConfig(head_init="random"), 1e-3))
    assert set(groups) == {n for n, p in model.named_parameters() if p.requires_grad}
    head = [n for n in groups if ".classifier." in n]
    assert head and all(groups[n]["lr"] == 2e-3 for n in head)


def test_optimizer_uses_the_fused_kernel_and_steps_like_the_default(tiny_bert: Path) -> None:
    model = build_classifier(tiny_bert, LABELS, seed=0)
    reference = build_classifier(tiny_bert, LABELS, seed=0)
    optimizer = build_optimizer(model, TrainConfig(), 1e-3)
    assert optimizer.defaults["fused"] is True
    params = dict(reference.named_parameters())
    groups = [
        {"params": [params[n] for n in _names(model, g)], "lr": g["lr"], "weight_decay": g["weight_decay"]}
        for g in optimizer.param_groups
    ]
    default = torch.optim.AdamW(groups, lr=1e-3, foreach=True)
    model.eval()  # no dropout: both see the same forward passes
    reference.eval()
    batch = {
        "input_ids": torch.tensor([[101, 2000, 2001, 102]]),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
    }
    for net, opt in ((model, optimizer), (reference, default)):
        for _ in range(3):
            net(**batch).logits.sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name


def _names(model: torch.nn.Module, group: dict) -> list[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for p in group["params"]]


def test_schedule_warms_up_then_decays_to_zero(tiny_bert: Path) -> None:
    model = build_classifier(tiny_bert, LABELS, seed=0)
    optimizer = build_optimizer(model, TrainConfig(warmup_ratio=0.2), 1e-3)
    scheduler = build_scheduler(optimizer, TrainConfig(warmup_ratio=0.2), total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    lrs.append(scheduler.get_last_lr()[0])
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(1e-3)  # 2 warmup steps
    assert lrs[1] == pytest.approx(5e-4)
    assert all(a > b for a, b in itertools.pairwise(lrs[2:]))
    assert lrs[-1] == pytest.approx(0.0)


# -- losses ----------------------------------------------------------------------------------------


def test_class_weights_scale_the_single_label_loss() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    plain = get_task("single_label").loss(logits, labels, None)
    assert plain == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())
    weights = torch.tensor([1.0, 3.0])
    weighted = get_task("single_label").loss(logits, labels, weights)
    per_row = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert weighted == pytest.approx(((per_row * weights[labels]).sum() / weights[labels].sum()).item())


def test_multi_label_loss_is_binary_cross_entropy() -> None:
    logits = torch.tensor([[3.0, -3.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert get_task("multi_label").loss(logits, labels, None) == pytest.approx(expected.item())
    pos = torch.tensor([1.0, 1.0, 4.0])
    weighted = get_task("multi_label").loss(logits, labels, pos)
    assert weighted > get_task("multi_label").loss(logits, labels, None)


def test_label_smoothing_targets_one_minus_e_on_the_label_and_e_spread_evenly() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    labels = torch.tensor([0, 1])
    e = 0.1
    targets = torch.full((2, 3), e / 3)
    targets[0, 0] += 1 - e
    targets[1, 1] += 1 - e
    expected = -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    task = get_task("single_label")
    assert task.loss(logits, labels, None, smoothing=e).item() == pytest.approx(expected.item(), rel=1e-6)
    assert task.loss(logits, labels, None, smoothing=e) != pytest.approx(
        task.loss(logits, labels, None).item()
    )


def test_multi_label_smoothing_moves_each_target_towards_one_half() -> None:
    logits = torch.tensor([[3.0, -3.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[0.9, 0.1, 0.9]]))
    got = get_task("multi_label").loss(logits, labels, None, smoothing=0.2)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_label_smoothing_outside_0_1_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"label_smoothing=1\.0"):
        TrainConfig(label_smoothing=1.0)
    with pytest.raises(ConfigError, match=r"label_smoothing=-0\.1"):
        TrainConfig(label_smoothing=-0.1)


# -- checkpoints -----------------------------------------------------------------------------------


def _stepped(tiny_bert: Path, method: str = "full"):
    m = get_method(method)
    # full with every weight trainable, like the plain classifiers the round trips load into
    options = {"freeze_word_embeddings": False} if method == "full" else {}
    model = m.apply(build_classifier(tiny_bert, LABELS, seed=0), m.parse_options(options))
    optimizer = build_optimizer(model, TrainConfig(), 1e-2)
    scheduler = build_scheduler(optimizer, TrainConfig(), total_steps=10)
    ids = torch.tensor([[101, 2000, 2001, 102]])
    loss = model(input_ids=ids).logits.sum()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_checkpoint_round_trip_restores_weights_optimizer_schedule_and_rng(
    tiny_bert: Path, tmp_path: Path
) -> None:
    model, optimizer, scheduler = _stepped(tiny_bert)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    folder = tmp_path / "last"
    save_checkpoint(folder, model=model, optimizer=optimizer, scheduler=scheduler, state={"step": 1})
    expected_draws = (torch.rand(3), np.random.rand(), random.random())

    fresh = build_classifier(tiny_bert, LABELS, seed=9)
    fresh_opt = build_optimizer(fresh, TrainConfig(), 1e-2)
    fresh_sched = build_scheduler(fresh_opt, TrainConfig(), total_steps=10)
    state = load_checkpoint(folder, model=fresh, optimizer=fresh_opt, scheduler=fresh_sched)
    assert state == {"step": 1}
    for (name, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert fresh_sched.last_epoch == scheduler.last_epoch == 1
    saved_state = optimizer.state_dict()["state"]
    loaded_state = fresh_opt.state_dict()["state"]
    assert saved_state.keys() == loaded_state.keys()
    for key in saved_state:
        assert torch.equal(saved_state[key]["exp_avg"], loaded_state[key]["exp_avg"])
    # The random streams continue exactly where they were at save time.
    draws = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(draws[0], expected_draws[0]) and draws[1:] == expected_draws[1:]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.old"))


def test_a_finished_loops_checkpoint_leaves_out_the_optimizer_and_still_restores(
    tiny_bert: Path, tmp_path: Path
) -> None:
    """Nothing steps the optimizer after the last step, so its state (for full fine-tuning twice
    the weights' bytes) is not written; loading such a checkpoint restores weights and RNG."""
    model, optimizer, scheduler = _stepped(tiny_bert)
    torch.manual_seed(7)
    folder = tmp_path / "last"
    save_checkpoint(
        folder, model=model, optimizer=optimizer, scheduler=scheduler, state={"step": 1}, finished=True
    )
    assert set(torch.load(folder / "optimizer.pt", weights_only=True)) == {
        "torch_rng",
        "numpy_rng",
        "python_rng",
    }
    expected_draw = torch.rand(3)
    fresh = build_classifier(tiny_bert, LABELS, seed=9)
    fresh_opt = build_optimizer(fresh, TrainConfig(), 1e-2)
    fresh_sched = build_scheduler(fresh_opt, TrainConfig(), total_steps=10)
    assert load_checkpoint(folder, model=fresh, optimizer=fresh_opt, scheduler=fresh_sched) == {"step": 1}
    for (name, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(torch.rand(3), expected_draw)


def _saved_and_fresh(tiny_bert: Path, folder: Path):
    """A checkpoint in ``folder``, and a model, optimizer and schedule to load it into."""
    model, optimizer, scheduler = _stepped(tiny_bert)
    save_checkpoint(folder, model=model, optimizer=optimizer, scheduler=scheduler, state={"step": 1})
    fresh = build_classifier(tiny_bert, LABELS, seed=9)
    fresh_opt = build_optimizer(fresh, TrainConfig(), 1e-2)
    scheduler = build_scheduler(fresh_opt, TrainConfig(), total_steps=10)
    return {"model": fresh, "optimizer": fresh_opt, "scheduler": scheduler}


def test_a_checkpoint_holds_nothing_the_weights_only_unpickler_refuses(
    tiny_bert: Path, tmp_path: Path
) -> None:
    """numpy's RNG key was pickled as an ndarray, which torch's weights_only loader refuses, so
    resume unpickled optimizer.pt with weights_only=False. The key is a tensor now."""
    _saved_and_fresh(tiny_bert, tmp_path / "last")
    extra = torch.load(tmp_path / "last" / "optimizer.pt", weights_only=True)
    assert isinstance(extra["numpy_rng"][1], torch.Tensor)


def test_an_older_checkpoints_numpy_rng_state_still_restores(tiny_bert: Path, tmp_path: Path) -> None:
    """A checkpoint written before holds numpy's state as an ndarray: it loads through an allow-list
    of numpy's array globals, for that load only."""
    folder = tmp_path / "last"
    fresh = _saved_and_fresh(tiny_bert, folder)
    extra = torch.load(folder / "optimizer.pt", weights_only=True)
    np.random.seed(5)
    np.random.randn()  # leaves a cached gaussian in the state
    extra["numpy_rng"] = np.random.get_state()  # as earlier versions saved it
    torch.save(extra, folder / "optimizer.pt")
    expected = (np.random.rand(), np.random.randn())
    np.random.seed(0)
    before = torch.serialization.get_safe_globals()
    assert load_checkpoint(folder, **fresh) == {"step": 1}
    assert (np.random.rand(), np.random.randn()) == expected
    # Nothing of numpy's stays allowed beyond that load. (torch registers safe globals of its own
    # lazily, e.g. torch.distributed's when a load first imports it: compared whole, the list
    # differed in a full test run while this test passed alone.)
    added = [g for g in torch.serialization.get_safe_globals() if g not in before]
    assert not [g for g in added if "numpy" in repr(g)], added


class _RunsCode:
    """Unpickled, it calls ``os.mkdir(marker)``: what a crafted checkpoint's ``os.system`` would be."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.marker),))


def test_a_crafted_optimizer_pt_is_refused_without_running_it(tiny_bert: Path, tmp_path: Path) -> None:
    """A run folder received from elsewhere is resumable: ``train --resume`` unpickled its
    optimizer.pt with weights_only=False, so a crafted one ran its code."""
    folder = tmp_path / "last"
    fresh = _saved_and_fresh(tiny_bert, folder)
    marker = tmp_path / "ran"
    torch.save({"torch_rng": torch.get_rng_state(), "python_rng": _RunsCode(marker)}, folder / "optimizer.pt")
    with pytest.raises(RunError, match=r"optimizer\.pt: refused to load it") as caught:
        try:
            load_checkpoint(folder, **fresh)
        finally:
            assert not marker.exists(), "the checkpoint's code ran"
    assert "\n" not in str(caught.value) and "mkdir" in str(caught.value)


def test_a_checkpoint_file_that_is_no_pickle_is_a_damaged_checkpoint(tiny_bert: Path, tmp_path: Path) -> None:
    """Junk is not code the unpickler refused: the error says the checkpoint is damaged, not that it
    could run code."""
    folder = tmp_path / "last"
    fresh = _saved_and_fresh(tiny_bert, folder)
    (folder / "optimizer.pt").write_bytes(b"left over")
    with pytest.raises(
        RunError, match=rf"^{re.escape(str(folder))}: a damaged checkpoint \(optimizer\.pt: "
    ) as caught:
        load_checkpoint(folder, **fresh)
    assert "\n" not in str(caught.value) and "run code" not in str(caught.value)


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _resaved_optimizer(change) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        extra = torch.load(path, weights_only=True)
        torch.save(change(extra), path)

    return damage


def _wrong_shape_weights(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    name = next(n for n in state if n.startswith("classifier.") and n.endswith("weight"))
    save_file({**state, name: torch.zeros(7, 7)}, str(path))


@pytest.mark.parametrize(
    ("file", "damage", "says"),
    [
        ("optimizer.pt", _cut_in_half, "RuntimeError"),  # was "unexpected RuntimeError: PytorchStreamReader"
        ("optimizer.pt", lambda p: p.write_bytes(b""), "EOFError"),
        ("trainable.safetensors", lambda p: p.write_bytes(b"junk" * 10), "SafetensorError"),
        ("trainable.safetensors", _cut_in_half, "SafetensorError"),
        ("trainable.safetensors", _wrong_shape_weights, "RuntimeError"),
        (
            "optimizer.pt",
            _resaved_optimizer(lambda e: {k: v for k, v in e.items() if k != "torch_rng"}),
            "KeyError",
        ),
        ("optimizer.pt", _resaved_optimizer(lambda e: {**e, "numpy_rng": 5}), "TypeError"),
        ("optimizer.pt", _resaved_optimizer(lambda e: {**e, "optimizer": {"state": {}}}), "KeyError"),
        ("state.json", lambda p: p.write_text("{", encoding="utf-8"), "JSONDecodeError"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_saying_what_to_delete(
    tiny_bert: Path, tmp_path: Path, file: str, damage: Callable[[Path], None], says: str
) -> None:
    """``train --resume`` of a checkpoint cut short (a full disk, a copy interrupted) or of another
    layout ended in "unexpected RuntimeError: PytorchStreamReader failed", "unexpected
    SafetensorError", a bare EOFError or KeyError."""
    folder = tmp_path / "last"
    fresh = _saved_and_fresh(tiny_bert, folder)
    damage(folder / file)
    with pytest.raises(RunError) as caught:
        load_checkpoint(folder, **fresh)
    message = str(caught.value)
    assert message.startswith(f"{folder}: a damaged checkpoint ({file}: {says}"), message
    assert message.endswith(
        f"delete {folder} and run `tunelab train --resume <run>` again to start the run over, "
        "or delete <run> and train again"
    )
    assert "\n" not in message and "without --resume" not in message


# -- a damaged checkpoint on the real `train --resume` path ----------------------------------------


@pytest.fixture(scope="module")
def killed_run(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    killed_at_first_checkpoint: Callable[[list[str]], Path],
) -> Path:
    """A run killed right after its first checkpoint (step 2 of 8); each test damages a copy."""
    out = tmp_path_factory.mktemp("killed")
    overrides = _loop_run(
        tiny_bert, labelled_csvs[0], out, "name=k", "train.epochs=1", "train.checkpoint_steps=2"
    )
    return killed_at_first_checkpoint(overrides)


def _start_over(last: Path, partial: Path) -> str:
    """The advice every refused checkpoint ends with (``checkpoint._start_over``)."""
    return (
        f"delete {last} and run `tunelab train --resume {partial}` again to start the run over, "
        f"or delete {partial} and train again"
    )


def _damaged_copy(killed_run: Path, tmp_path: Path, file: str, damage: Callable[[Path], None]) -> Path:
    partial = tmp_path / killed_run.name
    shutil.copytree(killed_run, partial)
    damage(partial / "checkpoints" / "last" / file)
    return partial


@pytest.mark.parametrize(
    ("file", "damage", "says"),
    [
        # was "unexpected JSONDecodeError" (trainer._checkpoint_step read the step unguarded)
        ("state.json", lambda p: p.write_text('{"epoch": 0, "st', encoding="utf-8"), "JSONDecodeError"),
        ("state.json", lambda p: p.write_text("{}", encoding="utf-8"), "KeyError"),
        # was "unexpected SafetensorError" (train_as_checkpointed opened it before load_checkpoint)
        ("trainable.safetensors", lambda p: p.write_bytes(b""), "SafetensorError"),
        ("trainable.safetensors", lambda p: p.write_bytes(b"junk" * 10), "SafetensorError"),
        ("optimizer.pt", _cut_in_half, "RuntimeError"),
    ],
    ids=["state-cut", "state-no-step", "weights-empty", "weights-junk", "optimizer-cut"],
)
def test_train_resume_of_a_damaged_checkpoint_is_one_line_saying_what_works(
    killed_run: Path,
    tmp_path: Path,
    file: str,
    damage: Callable[[Path], None],
    says: str,
) -> None:
    """Through ``tunelab.train(resume=...)``, as ``tunelab train --resume`` runs it; the advice to
    train again without --resume was refused while the .partial folder exists."""
    partial = _damaged_copy(killed_run, tmp_path, file, damage)
    last = partial / "checkpoints" / "last"
    with pytest.raises(RunError) as caught:
        tunelab.train(resume=partial, show_progress=False)
    message = str(caught.value)
    assert message.startswith(f"{last}: a damaged checkpoint ({file}: {says}"), message
    assert message.endswith(_start_over(last, partial))
    assert "\n" not in message and "without --resume" not in message


def test_what_the_damaged_checkpoint_message_says_works(
    killed_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "Train again without --resume" was refused ("an unfinished run of that name exists"): the
    message now says to delete the checkpoint and resume, which trains the run from its first step."""
    from tunelab.cli.main import main
    from tunelab.runs import RunFolder

    partial = _damaged_copy(killed_run, tmp_path, "optimizer.pt", _cut_in_half)
    last = partial / "checkpoints" / "last"
    with pytest.raises(RunError, match=rf"delete {re.escape(str(last))} and run `tunelab train --resume"):
        tunelab.train(resume=partial, show_progress=False)
    with pytest.raises(RunError, match="an unfinished run of that name exists"):  # what a fresh train says
        RunFolder.check_name(tmp_path, "k")
    shutil.rmtree(last)
    saved_at: list[int] = []
    original = train_loop.save_checkpoint

    def recording(folder, **kwargs):
        saved_at.append(kwargs["state"]["step"])
        return original(folder, **kwargs)

    monkeypatch.setattr(train_loop, "save_checkpoint", recording)
    monkeypatch.setattr(train_loop, "load_checkpoint", lambda *a, **k: pytest.fail("nothing to restore"))
    assert main(["train", "--resume", str(partial), "-q"]) == 0
    assert saved_at[0] == 2  # from the first step again, as the killed run began (checkpoint_steps=2)
    assert (tmp_path / "k" / "weights").is_dir() and not partial.exists()


def test_train_resume_refusing_a_crafted_optimizer_pt_names_the_folder_to_delete(
    killed_run: Path, tmp_path: Path
) -> None:
    partial = _damaged_copy(killed_run, tmp_path, "optimizer.pt", lambda p: None)
    last = partial / "checkpoints" / "last"
    marker = tmp_path / "ran"
    extra = torch.load(last / "optimizer.pt", weights_only=True)
    torch.save({**extra, "python_rng": _RunsCode(marker)}, last / "optimizer.pt")
    with pytest.raises(RunError) as caught:
        tunelab.train(resume=partial, show_progress=False)
    message = str(caught.value)
    assert not marker.exists(), "the checkpoint's code ran"
    assert message.startswith(f"{last / 'optimizer.pt'}: refused to load it"), message
    assert message.endswith(f"resume only checkpoints tunelab wrote: {_start_over(last, partial)}")
    assert "without --resume" not in message and "\n" not in message


def test_the_loop_writes_its_last_checkpoint_without_optimizer_state(
    tiny_bert: Path, train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[bool] = []
    original = train_loop.save_checkpoint

    def recording_save(folder, **kwargs):
        saved.append(kwargs.get("finished", False))
        return original(folder, **kwargs)

    monkeypatch.setattr(train_loop, "save_checkpoint", recording_save)
    tunelab.train(
        None,
        overrides=_loop_run(tiny_bert, train_csv, tmp_path, "train.epochs=2", "train.checkpoint_steps=5"),
        show_progress=False,
    )
    assert saved == [False, False, False, True]  # steps 5, 10 and 15 keep it to resume; 16, the last


def test_a_resume_trains_what_the_checkpoint_trained_when_a_method_default_changed(
    tiny_bert: Path, tmp_path: Path
) -> None:
    """A run checkpointed while full fine-tuning trained every weight, resumed after
    ``freeze_word_embeddings`` became the default: its saved config (options: {}) now builds a model
    with the embeddings frozen, so the optimizer's groups no longer match the checkpoint's (torch's
    ValueError) unless the checkpoint decides what trains."""
    full = get_method("full")
    old = full.apply(
        build_classifier(tiny_bert, LABELS, seed=0), full.parse_options({"freeze_word_embeddings": False})
    )
    optimizer = build_optimizer(old, TrainConfig(), 1e-2)
    scheduler = build_scheduler(optimizer, TrainConfig(), total_steps=10)
    old(input_ids=torch.tensor([[101, 2000, 2001, 102]])).logits.sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "last", model=old, optimizer=optimizer, scheduler=scheduler, state={"step": 1})

    fresh = full.apply(build_classifier(tiny_bert, LABELS, seed=9), full.parse_options({}))
    words = fresh.get_input_embeddings().weight
    assert not words.requires_grad
    changed = train_as_checkpointed(fresh, tmp_path / "last")
    assert changed == [n for n, p in fresh.named_parameters() if p is words]
    fresh_opt = build_optimizer(fresh, TrainConfig(), 1e-2)
    fresh_sched = build_scheduler(fresh_opt, TrainConfig(), total_steps=10)
    load_checkpoint(tmp_path / "last", model=fresh, optimizer=fresh_opt, scheduler=fresh_sched)
    assert torch.equal(words, old.get_input_embeddings().weight)
    # And the other way: a checkpoint that kept them frozen freezes them again.
    assert train_as_checkpointed(old, tmp_path / "last") == []
    frozen_run = full.apply(build_classifier(tiny_bert, LABELS, seed=0), full.parse_options({}))
    save_checkpoint(tmp_path / "frozen", model=frozen_run, optimizer=optimizer, scheduler=scheduler, state={})
    assert (
        train_as_checkpointed(old, tmp_path / "frozen")
        and not old.get_input_embeddings().weight.requires_grad
    )


def test_lora_checkpoint_holds_only_trainable_weights(tiny_bert: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    model, optimizer, scheduler = _stepped(tiny_bert, "lora")
    save_checkpoint(tmp_path / "last", model=model, optimizer=optimizer, scheduler=scheduler, state={})
    saved = load_file(str(tmp_path / "last" / "trainable.safetensors"))
    assert saved.keys() == trainable_state(model).keys()
    assert sum(t.numel() for t in saved.values()) < 0.05 * sum(p.numel() for p in model.parameters())


def test_find_checkpoint_survives_a_kill_between_the_renames(tiny_bert: Path, tmp_path: Path) -> None:
    model, optimizer, scheduler = _stepped(tiny_bert)
    last = tmp_path / "last"
    assert find_checkpoint(last) is None
    save_checkpoint(last, model=model, optimizer=optimizer, scheduler=scheduler, state={"step": 2})
    assert find_checkpoint(last) == last
    # A kill after `last` was renamed to `last.old` and before `last.tmp` became `last`.
    last.rename(tmp_path / "last.old")
    (tmp_path / "last.tmp").mkdir()  # incomplete: no state.json
    found = find_checkpoint(last)
    assert found == tmp_path / "last.old"
    assert json.loads((found / "state.json").read_text(encoding="utf-8")) == {"step": 2}
    # The next save replaces the leftovers.
    save_checkpoint(last, model=model, optimizer=optimizer, scheduler=scheduler, state={"step": 4})
    assert find_checkpoint(last) == last
    assert not (tmp_path / "last.tmp").exists()


def test_save_checkpoint_survives_a_kill_during_the_clean_up(tiny_bert: Path, tmp_path: Path) -> None:
    model, optimizer, scheduler = _stepped(tiny_bert)
    last = tmp_path / "last"
    save_checkpoint(last, model=model, optimizer=optimizer, scheduler=scheduler, state={"step": 2})
    # A kill while the previous `last.old` was being removed: part of it is still there.
    (tmp_path / "last.old").mkdir()
    (tmp_path / "last.old" / "optimizer.pt").write_bytes(b"left over")
    save_checkpoint(last, model=model, optimizer=optimizer, scheduler=scheduler, state={"step": 4})
    assert json.loads((last / "state.json").read_text(encoding="utf-8")) == {"step": 4}
    assert not (tmp_path / "last.old").exists()


# -- metrics log -----------------------------------------------------------------------------------


def test_metrics_log_writes_jsonl_and_tensorboard(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl", tmp_path / "tb")
    log.log({"event": "train", "step": 10, "epoch": 0.5, "loss": 1.5, "lr": 1e-3})
    log.log({"event": "eval", "split": "dev", "step": 20, "epoch": 1.0, "loss": 1.2, "accuracy": 0.5})
    log.close()
    lines = (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["step"] for line in lines] == [10, 20]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_metrics_log_on_resume_drops_records_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"event": "train", "step": s, "loss": 1.0 / s} for s in (10, 20, 30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"event": "train", "st', encoding="utf-8")
    log = MetricsLog(path, tmp_path / "tb", resume_step=20)
    assert [r["step"] for r in log.records] == [10, 20]
    log.log({"event": "train", "step": 30, "loss": 0.5})
    log.close()
    steps = [json.loads(line)["step"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert steps == [10, 20, 30]


def test_metrics_log_without_resume_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"event": "train", "step": 10}) + "\n", encoding="utf-8")
    log = MetricsLog(path, tmp_path / "tb")
    log.close()
    assert log.records == [] and path.read_text(encoding="utf-8") == ""


# -- review fixes: what the loop must not do silently ------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        "train.max_grad_norm=0",
        "train.max_grad_norm=-1",
        "train.max_grad_norm=.nan",
        "train.weight_decay=.inf",
    ],
)
def test_gradient_norms_and_weight_decay_that_break_training_are_refused(item: str) -> None:
    """max_grad_norm 0 zeroed every gradient (the model stayed at chance), -1 flipped them, NaN and
    an infinite weight decay made NaN weights; the config took them all."""
    with pytest.raises(ConfigError, match=item.split("=")[0].split(".")[1]):
        tunelab.RunConfig.from_yaml(None, [item])


def test_a_loss_that_is_not_finite_stops_training_naming_the_step(
    tiny_bert: Path, train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NaN loss wrote NaN into every weight, a NaN dev score became "best", and the run
    "finished" predicting NaN."""
    from tunelab.tasks.classification.task import ClassificationTask

    original, calls = ClassificationTask.loss, []

    def nan_from_the_third(self, logits, labels, weights, **kwargs):
        calls.append(1)
        value = original(self, logits, labels, weights, **kwargs)
        return value * float("nan") if len(calls) >= 3 else value

    monkeypatch.setattr(ClassificationTask, "loss", nan_from_the_third)
    with pytest.raises(DivergedError, match=r"the training loss is nan at step 3 \(epoch 1\)"):
        tunelab.train(
            None, overrides=_loop_run(tiny_bert, train_csv, tmp_path, "train.epochs=1"), show_progress=False
        )


def test_a_run_that_trained_every_step_did_not_stop_early(
    tiny_bert: Path, train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patience used up at the final evaluation set stopped_early, and the report said "(stopped early)"."""
    original, calls = train_loop._evaluate, []

    def worse_at_the_end(model, setup, state, best_path, *, epoch_pos):
        original(model, setup, state, best_path, epoch_pos=epoch_pos)
        calls.append(1)
        if len(calls) == 2:  # the last epoch's evaluation: patience spent there
            state.bad_evals = 99

    monkeypatch.setattr(train_loop, "_evaluate", worse_at_the_end)
    overrides = _loop_run(
        tiny_bert, train_csv, tmp_path, "train.epochs=2", "train.patience=1", "data.dev_size=0.2"
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    assert result.summary["epochs_run"] == 2 and result.summary["stopped_early"] is False


def test_the_last_short_accumulation_group_of_an_epoch_is_a_full_step(
    tiny_bert: Path, train_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch's loss was divided by grad_accum_steps: an epoch's last group of k < N batches
    stepped with k/N of a full gradient. Each batch's loss here is 1 (its gradient on the head's
    first bias is 1 per batch), so every step's gradient there must be 1 whatever its group size."""
    from tunelab.tasks.classification.task import ClassificationTask

    def unit_loss(self, logits, labels, weights, **kwargs):
        return logits[:, 0].mean()

    seen: list[float] = []
    original_clip = torch.nn.utils.clip_grad_norm_

    def record(params, max_norm, *args, **kwargs):
        params = list(params)
        seen.append(float(params[-1].grad[0]))  # the head's bias, the last trainable parameter
        return original_clip(params, 1e9)

    monkeypatch.setattr(ClassificationTask, "loss", unit_loss)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", record)
    overrides = _loop_run(tiny_bert, train_csv, tmp_path, "train.epochs=1", "train.grad_accum_steps=3")
    tunelab.train(None, overrides=overrides, show_progress=False)
    assert len(seen) == 3  # 8 batches: groups of 3, 3 and 2
    assert seen == pytest.approx([1.0, 1.0, 1.0], rel=1e-2)  # bf16 forward: 1.002


def test_tensorboard_keeps_the_checkpoint_steps_events_on_resume(tmp_path: Path) -> None:
    """purge_step hid events at the checkpoint's own step, which the resumed run does not log again."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = MetricsLog(tmp_path / "m.jsonl", tmp_path / "tb")
    for step in (10, 20, 30):
        first.log({"event": "train", "step": step, "loss": 1.0})
    first.close()
    resumed = MetricsLog(tmp_path / "m.jsonl", tmp_path / "tb", resume_step=20)
    resumed.log({"event": "train", "step": 30, "loss": 0.5})
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [10, 20, 30]


def test_a_checkpoint_of_another_model_says_what_to_delete(killed_run: Path, tmp_path: Path) -> None:
    """Its advice was "start the run again without --resume", which the name check refuses while
    the .partial folder exists."""
    from safetensors.torch import save_file

    def foreign(path: Path) -> None:
        save_file({"nothing.like.this": torch.zeros(1)}, str(path))

    partial = _damaged_copy(killed_run, tmp_path, "trainable.safetensors", foreign)
    last = partial / "checkpoints" / "last"
    with pytest.raises(RunError) as caught:
        tunelab.train(resume=partial, show_progress=False)
    assert str(caught.value) == (
        f"{last}: checkpoint weight 'nothing.like.this' does not fit this model; {_start_over(last, partial)}"
    )
