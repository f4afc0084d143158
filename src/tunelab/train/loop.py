"""The one training loop: accumulation, schedule, periodic evaluation, early stopping, checkpoints.

Methods only decide which parameters are trainable; this loop is the same for all of them. Its
position (epoch, batch within the epoch, optimizer step) is saved in every checkpoint and the
batches of an epoch are a pure function of (seed, epoch), so a resumed run replays exactly the
batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from tunelab.config import TrainConfig
from tunelab.data.encoding import Encoded, collate, training_batches
from tunelab.errors import DivergedError, RunError
from tunelab.tasks.base import Task, metric_lower_is_better, task_plugin, wrong_return
from tunelab.train.adversarial import build_adversary
from tunelab.train.checkpoint import (
    checkpoint_to_resume,
    damaged_checkpoint,
    load_checkpoint,
    load_trainable_state,
    restore_best,
    save_checkpoint,
    save_weights,
    train_as_checkpointed,
    trainable_state,
)
from tunelab.train.fast_dropout import fast_dropout
from tunelab.train.metrics_log import MetricsLog
from tunelab.train.optim import build_optimizer, build_scheduler
from tunelab.train.precision import autocast

logger = logging.getLogger(__name__)
LOG_EVERY_STEPS = 10


@dataclass
class LoopState:
    """Where training stands; saved as JSON in every checkpoint."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    samples: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_loss: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    last_eval: dict[str, Any] | None = None
    # The running average of the training loss since the last log line; part of the state so the
    # first record after a resume averages the same samples an uninterrupted run would.
    window_loss: float = 0.0
    window_samples: int = 0


@dataclass
class LoopSetup:
    """Everything the loop needs besides the model; ``task`` makes the label batches and the loss."""

    train: Encoded
    cfg: TrainConfig
    task: Task
    num_labels: int
    learning_rate: float
    checkpoints: Path
    log: MetricsLog
    evaluate_dev: Callable[[nn.Module], dict[str, float]] | None = None
    class_weights: torch.Tensor | None = None
    show_progress: bool = True
    on_step: Callable[[nn.Module, int], None] | None = None  # the method's per-step hook (Method.on_step)
    on_train_begin: Callable[[nn.Module, int], None] | None = None  # Method.on_train_begin(model, steps)
    checkpoint_state: Callable[[nn.Module], dict[str, Any]] | None = None  # Method.checkpoint_state
    restore_state: Callable[[nn.Module, dict[str, Any]], None] | None = None  # Method.restore_state
    loss_term: Callable[[nn.Module], torch.Tensor] | None = None  # Method.loss_term, added to the task's loss
    # Called with each dev evaluation's record (step, epoch, metrics) after it is logged; it may
    # raise to stop the run (a search prunes a weak trial so: tunelab.search). The loop knows no more.
    on_evaluate: Callable[[dict[str, Any]], None] | None = None
    # "bf16": forward passes under CPU bf16 autocast, weights and optimizer fp32 (tunelab.train.precision).
    precision: str = "fp32"
    # The run's <name>.partial folder, named by the errors that end training: their "train again" was
    # refused while it exists (and --resume replays the failure), so they say to delete it.
    run_root: Path | None = None


def higher_is_better(metric: str, task: Task | None = None) -> bool:
    """Whether a larger ``metric`` is better (``tunelab.tasks.base.metric_lower_is_better``'s rule)."""
    return not metric_lower_is_better(metric, task)


def run_loop(model: nn.Module, setup: LoopSetup, *, resume: bool) -> LoopState:
    """Train ``model`` in place; afterwards its trainable weights are the best dev checkpoint's."""
    cfg = setup.cfg
    lengths = setup.train.lengths
    batches_per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum_steps)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    last_ckpt = setup.checkpoints / "last"
    best_path = setup.checkpoints / "best.safetensors"
    found = checkpoint_to_resume(last_ckpt) if resume else None
    if found is not None:
        changed = train_as_checkpointed(model, found)
        if changed:
            logger.info(
                "resuming: %d parameter tensors trained as the checkpoint did (e.g. %s), not as today's "
                "method defaults would",
                len(changed),
                changed[0],
            )
    optimizer = build_optimizer(model, cfg, setup.learning_rate)
    scheduler = build_scheduler(optimizer, cfg, total_steps)
    adversary = build_adversary(
        cfg.adversarial,
        epsilon=cfg.adversarial_epsilon,
        steps=cfg.adversarial_steps,
        alpha=cfg.adversarial_alpha,
    )

    state = LoopState()
    if found is not None:
        restored = load_checkpoint(
            found, model=model, optimizer=optimizer, scheduler=scheduler, restore_method=setup.restore_state
        )
        state = _loop_state(found, restored)
        restore_best(found, best_path, best_step=state.best_step)
        logger.info("resuming at epoch %d, step %d", state.epoch + 1, state.step)
    else:
        # Left by an attempt killed before its first checkpoint: this start must not inherit it.
        best_path.unlink(missing_ok=True)
    if setup.on_train_begin is not None:  # e.g. AdaLoRA's rank schedule follows the run's length
        setup.on_train_begin(model, total_steps)

    model.train()
    bar = tqdm(
        total=_planned_samples(
            len(lengths), cfg.batch_size * cfg.grad_accum_steps, steps_per_epoch, total_steps
        ),
        initial=state.samples,
        unit="samples",
        unit_scale=True,
        dynamic_ncols=True,
        disable=None if setup.show_progress else True,  # None: drawn on a terminal only
        desc="train",
    )
    # Closed however training ends: an error (a full disk, Ctrl-C) was printed on the bar's own line
    # ("train: 35%|...|error: ...") and tqdm redrew the bar below it when it was collected.
    try:
        with fast_dropout(model, cfg.fast_dropout):
            _train_epochs(model, setup, state, optimizer, scheduler, adversary, total_steps, bar)
        if not state.stopped_early and bar.total != bar.n:  # a normal finish ends at 100%, whatever the plan
            bar.total = bar.n
            bar.refresh()
    finally:
        bar.close()
    if best_path.is_file():
        load_trainable_state(model, load_file(str(best_path)))
    return state


def _start_afresh(setup: LoopSetup) -> str:
    """How to train the run again after an error that ends it: a fresh run of the name was refused
    while its ``.partial`` folder exists, and ``--resume`` (which takes no overrides) replays it."""
    if setup.run_root is None:  # not a run folder (an export's distillation): nothing left to name
        return "train again"
    return f"delete {setup.run_root} and train again, or choose another name="


# What each field of state.json may hold, as JSON reads it back (a float field may read as an int).
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "float | None": (int, float, type(None)),
    "int | None": (int, type(None)),
    "dict[str, Any] | None": (dict, type(None)),
}


def _loop_state(folder: Path, restored: dict[str, Any]) -> LoopState:
    """``state.json``'s loop position as a ``LoopState``, checked key by key.

    An unknown key or a value of another type was "unexpected TypeError" (or trained on from a
    string step) instead of the damaged-checkpoint line naming the folder. A key it lacks keeps its
    default: checkpoints written before that field existed still resume.

    Raises:
        RunError: the damaged-checkpoint line (``checkpoint.damaged_checkpoint``).
    """
    fields = {f.name: f for f in dataclasses.fields(LoopState)}
    unknown = sorted(set(restored) - fields.keys())
    if unknown:
        raise damaged_checkpoint(folder, f"state.json: unknown key {unknown[0]!r}")
    for key, value in restored.items():
        kind = str(fields[key].type)
        allowed = _STATE_TYPES[kind]
        wrong = not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
        if not wrong and kind.startswith("int") and value is not None and value < 0:
            wrong = True  # a count or position
        if wrong:
            raise damaged_checkpoint(folder, f"state.json: {key} is {value!r}, not {kind}")
    return LoopState(**restored)


def _planned_samples(rows: int, per_step: int, steps_per_epoch: int, total_steps: int) -> int:
    """The training samples ``total_steps`` optimizer steps read: the progress bar's 100%.

    ``steps * batch * accumulation`` counted every epoch's last, short batch as full, so a run
    that finished normally left the bar short of 100%. A fractional last epoch counts its steps'
    full batches, capped at the epoch's rows (``run_loop`` completes the bar at a normal finish).
    """
    full_epochs, rest = divmod(total_steps, steps_per_epoch)
    return full_epochs * rows + min(rest * per_step, rows)


def _train_epochs(
    model: nn.Module,
    setup: LoopSetup,
    state: LoopState,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    adversary: Any,
    total_steps: int,
    bar: tqdm,
) -> None:
    """The epochs and steps from ``state`` on, until the last step or early stopping."""
    cfg = setup.cfg
    lengths = setup.train.lengths
    last_ckpt = setup.checkpoints / "last"
    best_path = setup.checkpoints / "best.safetensors"
    window_start, timed_samples = time.perf_counter(), 0
    n_epochs = math.ceil(cfg.epochs)
    done = state.step >= total_steps or state.stopped_early
    while not done and state.epoch < n_epochs:
        batches = training_batches(
            lengths, cfg.batch_size, seed=cfg.seed, epoch=state.epoch, group_by_length=cfg.group_by_length
        )
        if state.batch_in_epoch >= len(batches):
            # A checkpoint from a longer epoch (the resumed run's training rows shrank): the inner
            # loop never ran and this one spun forever at full CPU.
            raise RunError(
                f"the checkpoint is at batch {state.batch_in_epoch} of epoch {state.epoch + 1}, which now "
                f"has {len(batches)} batches: the training rows changed since it was written; "
                f"{_start_afresh(setup)}"
            )
        while state.batch_in_epoch < len(batches):
            t0 = time.perf_counter()
            idx = batches[state.batch_in_epoch]
            batch = collate(setup.train, idx, task=setup.task, num_labels=setup.num_labels)
            labels = batch.pop("labels")

            def forward_loss(batch: dict = batch, labels: torch.Tensor = labels) -> torch.Tensor:
                with autocast(setup.precision):
                    logits = model(**batch).logits
                # The loss in fp32 whatever the forward ran in: bf16 logits lose the small differences
                # between near-equal classes that the cross-entropy's gradient is made of.
                loss = setup.task.loss(
                    logits.float(), labels, setup.class_weights, smoothing=cfg.label_smoothing
                )
                if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                    # a plug-in's float was "'float' object has no attribute 'item'", naming no hook
                    raise wrong_return(task_plugin(setup.task), "loss", loss, "a 0-dim torch tensor")
                return loss

            # The batches of this optimizer step: the epoch's last group may be short, and divided
            # by grad_accum_steps its step was k/N of a full one (Trainer fixed the same in 4.46).
            group_start = state.batch_in_epoch - state.batch_in_epoch % cfg.grad_accum_steps
            group = min(cfg.grad_accum_steps, len(batches) - group_start)
            with adversary.watch(model) if adversary is not None else contextlib.nullcontext():
                loss = forward_loss()
                objective = loss if setup.loss_term is None else loss + setup.loss_term(model)
                loss_value = loss.item()
                value = loss_value if setup.loss_term is None else objective.item()
                if not math.isfinite(value):
                    # NaN weights from here on, and a NaN dev score still became "best": the run
                    # "finished" predicting NaN.
                    raise DivergedError(
                        f"the training loss is {value} at step {state.step + 1} (epoch {state.epoch + 1}); "
                        "lower train.learning_rate or check the train.* settings, then "
                        f"{_start_afresh(setup)}"
                    )
                (objective / group).backward()
            if adversary is not None:  # train.adversarial: add the perturbed batch's gradient
                adversary.attack(model, lambda group=group: forward_loss() / group)
            state.batch_in_epoch += 1
            state.samples += len(idx)
            state.window_loss += loss_value * len(idx)
            state.window_samples += len(idx)
            timed_samples += len(idx)
            boundary = state.batch_in_epoch % cfg.grad_accum_steps == 0 or state.batch_in_epoch == len(
                batches
            )
            if boundary:
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm
                )
                if not math.isfinite(float(grad_norm)):
                    # The loss above was finite, but a gradient (the adversarial pass's loss, an
                    # overflow in backward) was not: the step would make every weight NaN, and on a
                    # run's last step nothing read a loss again, so it "finished" predicting NaN.
                    raise DivergedError(
                        f"the training gradient is {float(grad_norm)} at step {state.step + 1} "
                        f"(epoch {state.epoch + 1}); lower train.learning_rate or check the train.* "
                        "settings (train.adversarial_epsilon, train.weight_decay), then "
                        f"{_start_afresh(setup)}"
                    )
                optimizer.step()
                scheduler.step()
                if setup.on_step is not None:  # before zero_grad: AdaLoRA reads the gradients
                    setup.on_step(model, state.step)
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
            state.train_seconds += time.perf_counter() - t0
            bar.update(len(idx))
            if not boundary:
                continue
            if state.step % LOG_EVERY_STEPS == 0 or state.step == total_steps:
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                record = {
                    "event": "train",
                    "step": state.step,
                    "epoch": round(state.epoch + state.batch_in_epoch / len(batches), 4),
                    "loss": state.window_loss / max(state.window_samples, 1),
                    "lr": scheduler.get_last_lr()[0],
                    "samples_per_s": timed_samples / elapsed,
                }
                setup.log.log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", epoch=f"{record['epoch']:.2f}")
                state.window_loss, state.window_samples = 0.0, 0
                window_start, timed_samples = time.perf_counter(), 0
            end_of_epoch = state.batch_in_epoch == len(batches)
            eval_now = (cfg.eval_steps is not None and state.step % cfg.eval_steps == 0) or (
                cfg.eval_steps is None and end_of_epoch
            )
            finished = state.step >= total_steps
            if setup.evaluate_dev is not None and (eval_now or finished):
                _evaluate(
                    model,
                    setup,
                    state,
                    best_path,
                    epoch_pos=state.epoch + state.batch_in_epoch / len(batches),
                )
                window_start, timed_samples = time.perf_counter(), 0
                if cfg.patience is not None and state.bad_evals >= cfg.patience and not finished:
                    state.stopped_early = True  # not when every step ran: the report said "stopped early"
            if end_of_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
            if finished or state.stopped_early:
                done = True
            if done or state.step % cfg.checkpoint_steps == 0:
                save_checkpoint(
                    last_ckpt,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    state=dataclasses.asdict(state),
                    finished=done,
                    method_state=None if setup.checkpoint_state is None else setup.checkpoint_state(model),
                    best=best_path,
                )
            if done or end_of_epoch:
                break  # the next epoch draws its own batch order


def _evaluate(
    model: nn.Module, setup: LoopSetup, state: LoopState, best_path: Path, *, epoch_pos: float
) -> None:
    """Evaluate on dev, log it, and keep the trainable weights if the chosen metric improved."""
    assert setup.evaluate_dev is not None
    metrics = setup.evaluate_dev(model)
    dev_loss = metrics.get("loss")
    if isinstance(dev_loss, (int, float)) and not math.isfinite(dev_loss):
        # Weights gone NaN or overflowing in the last steps (the dev loss has a floor, so only
        # outputs that are not finite make it so): the first dev score always became "best", and a
        # NaN model was saved as the run's result.
        raise DivergedError(
            f"the dev loss is {dev_loss} at step {state.step} (the model's outputs are not finite); "
            f"lower train.learning_rate or check the train.* settings, then {_start_afresh(setup)}"
        )
    model.train()
    record = {"event": "eval", "split": "dev", "step": state.step, "epoch": round(epoch_pos, 4), **metrics}
    setup.log.log(record)
    state.last_eval = record
    metric = setup.cfg.metric
    value = metrics[metric]
    loss = metrics.get("loss")
    if state.best_metric is None:
        improved = better = True
    else:
        improved = (
            value > state.best_metric if higher_is_better(metric, setup.task) else value < state.best_metric
        )
        # A tie on the metric (common on a small dev set) keeps the model with the lower dev loss,
        # but only a real improvement resets the patience of early stopping.
        tie_won = (
            value == state.best_metric and None not in (loss, state.best_loss) and loss < state.best_loss
        )
        better = improved or tie_won
    state.bad_evals = 0 if improved else state.bad_evals + 1
    if better:
        state.best_metric, state.best_loss, state.best_step = value, loss, state.step
        save_weights(best_path, trainable_state(model))
    if setup.show_progress:
        # stderr, with the bar (train's docstring): tqdm.write's default, stdout, mixed these lines
        # into a caller's own output (a script's results piped to a file).
        tqdm.write(
            f"dev step {state.step}: {metric} {value:.4f} "
            f"(best {state.best_metric:.4f} at step {state.best_step})",
            file=sys.stderr,
        )
    if setup.on_evaluate is not None:
        setup.on_evaluate(dict(record))
