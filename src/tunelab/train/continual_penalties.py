"""Penalties that keep a continued run close to the previous model: distillation and EWC.

Both are ``loss_term(model) -> tensor`` callables, the hook the training loop already adds to the
task's loss (``LoopSetup.loss_term``), so the loop stays as it is. Distillation needs the batch
the loop just ran; a forward hook on the model keeps it (the loop calls the model, then the loss
term, for every batch), which spares the loop a second, batch-aware hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tunelab.data.encoding import Encoded, collate
from tunelab.errors import ConfigError
from tunelab.tasks import Task

LossTerm = Callable[[nn.Module], torch.Tensor]


class Distillation:
    """``weight * T^2 * loss(student's old-label logits / T, teacher's soft targets at T)``.

    For single-label tasks the task's loss on soft targets is the cross-entropy, which is the
    KL divergence of the teacher's distribution to the student's up to a constant (Hinton et al.,
    2015; Li and Hoiem's "learning without forgetting" applies it to the old labels' outputs).
    Every training row is distilled, new and rehearsal rows alike.
    """

    def __init__(
        self, teacher: nn.Module, task: Task, *, num_old: int, weight: float, temperature: float
    ) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.task, self.num_old = task, num_old
        self.weight, self.temperature = weight, temperature
        self._batch: tuple[dict[str, Any], torch.Tensor] | None = None
        self._cached: dict[tuple[int, ...], torch.Tensor] = {}

    def precompute(self, enc: Encoded, precision: str) -> None:
        """The teacher's logits for every training row, once, in the run's precision.

        The teacher is frozen and runs without dropout, so its logits for a row are the same in
        every epoch: computing them once saves a teacher forward per batch per epoch (in fp32,
        as the loss term ran outside the loop's bf16 autocast, that forward cost about as much as
        the student's forward and backward together: distillation took 51 s against 29 s without,
        BANKING77 ``benchmarks/continual.py``; now 62 s against 60 s on a slower CPU). Keyed by the
        row's token ids, which is all the loop's forward hook sees of a row.
        """
        from tunelab.inference.forward import batched_outputs
        from tunelab.train.precision import autocast

        def teacher_logits(**batch: torch.Tensor) -> torch.Tensor:
            with autocast(precision):
                return self.teacher(**batch).logits

        logits = torch.from_numpy(batched_outputs(teacher_logits, enc))
        for ids, row in zip(enc.input_ids, logits, strict=True):
            self._cached[tuple(ids)] = row

    def attach(self, model: nn.Module) -> None:
        model.register_forward_hook(self._keep, with_kwargs=True)

    def _keep(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        # Only training forwards (dev evaluation runs in eval mode without gradients).
        if module.training and torch.is_grad_enabled():
            self._batch = (kwargs, output.logits)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        assert self._batch is not None, "the loss term runs after the model's forward"
        inputs, logits = self._batch
        self._batch = None
        targets = self.task.soft_targets(self._teacher_logits(inputs) / self.temperature)
        t = self.temperature
        student = logits[..., : self.num_old] / t  # (B, num_old): the old labels' logits
        return self.weight * t * t * self.task.loss(student, targets, None)

    def _teacher_logits(self, inputs: dict[str, Any]) -> torch.Tensor:
        """The batch's teacher logits: from ``precompute`` when it saw every row, else computed now."""
        ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
        if self._cached and ids is not None and mask is not None:
            keys = [tuple(row[: int(n)].tolist()) for row, n in zip(ids, mask.sum(dim=1), strict=True)]
            if all(key in self._cached for key in keys):
                return torch.stack([self._cached[key] for key in keys])
        with torch.no_grad():
            return self.teacher(**inputs).logits.float()


class EWC:
    """Elastic weight consolidation: ``weight/2 * sum F_i (theta_i - theta_old_i)^2``.

    ``F`` is the diagonal empirical Fisher of the previous model on the rehearsal rows, from one
    gradient per batch (squared, weighted by the batch size: cheaper than per-row gradients, and
    the usual approximation), divided by its mean over all those parameters: a well-fitted model's
    raw Fisher is tiny (1e-12 on average on the tiny test model), so a raw weight would have to be
    chosen per model; normalised, ``weight`` is scale-free (1 is the squared distance, weighted by
    relative importance). A head grown with new labels is pulled on its old labels' rows only
    (the new rows have no previous weights); left out before, while an unchanged head was pulled,
    the old rows, where forgetting shows, were free exactly when labels were added.
    """

    def __init__(
        self, fisher: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor], weight: float
    ) -> None:
        self.fisher, self.anchor, self.weight = fisher, anchor, weight

    def __call__(self, model: nn.Module) -> torch.Tensor:
        total = torch.zeros(())
        for name, param in model.named_parameters():
            if name in self.fisher and param.requires_grad:
                anchor = self.anchor[name]
                current = param if param.shape == anchor.shape else param[: anchor.shape[0]]  # grown head
                total = total + (self.fisher[name] * (current - anchor) ** 2).sum()
        return 0.5 * self.weight * total


def ewc_without_weights() -> ConfigError:
    """The one-line refusal of ``continual.ewc`` on a run that trains only its grown head."""
    return ConfigError(
        "continual.ewc: this run trains none of the previous model's weights but its head (e.g. method "
        "setfit with method.end_to_end=false), so there is nothing for EWC to keep; set "
        "continual.ewc=0, or train the encoder too"
    )


def fisher_of(
    previous: nn.Module, model: nn.Module, enc: Encoded, task: Task, *, num_old: int, batch_size: int = 32
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The previous model's diagonal Fisher on ``enc`` and its weights, for ``model``'s trained parameters."""
    # Only what ``model`` trains: a frozen weight (``full``'s token embeddings, 30,522 x 384) never
    # moves, so its penalty is always zero, while its Fisher would hold memory and, through the
    # mean below, rescale every other weight's penalty.
    shapes = {n: p.shape for n, p in model.named_parameters() if p.requires_grad}
    params = {n: p for n, p in previous.named_parameters() if n in shapes and _fits(p.shape, shapes[n])}
    if not params:
        # Nothing of the previous model trains: the penalty would always be 0 while run.json said
        # ewc (check_run refuses a head-only method first: ``Method.head_only``).
        raise ewc_without_weights()
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    previous.eval()
    for p in params.values():
        p.requires_grad_(True)
    n = len(enc.lengths)
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        batch = collate(enc, idx, task=task, num_labels=num_old)
        labels = batch.pop("labels")
        previous.zero_grad(set_to_none=True)
        task.loss(previous(**batch).logits, labels, None).backward()
        for name, p in params.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach() ** 2 * len(idx) / n
    previous.zero_grad(set_to_none=True)
    mean = torch.cat([f.flatten() for f in fisher.values()]).mean() if fisher else torch.ones(())
    fisher = {name: f / mean.clamp_min(1e-30) for name, f in fisher.items()}
    anchor = {name: p.detach().clone() for name, p in params.items()}
    return fisher, anchor


def _fits(old: torch.Size, new: torch.Size) -> bool:
    """The same shape, or a head grown with new labels (more rows, as ``grow_into`` fills them)."""
    return old == new or (len(old) >= 1 and old[1:] == new[1:] and old[0] <= new[0])


def combined(*terms: LossTerm | None) -> LossTerm | None:
    """One loss term that adds the given ones (None when there are none)."""
    present = [t for t in terms if t is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return lambda model: sum((t(model) for t in present), torch.zeros(()))
