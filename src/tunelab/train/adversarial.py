"""Adversarial training on the input embeddings: FGM (Miyato et al., 2017) and PGD (Madry et al., 2018).

After the clean forward and backward pass of a batch, the word embeddings' output is pushed a
small step ``epsilon`` (L2 norm per example) in the direction that raises the loss most, and the
loss of that perturbed input is back-propagated too, so the gradient the optimizer applies is
clean + adversarial. PGD takes ``steps`` ascent steps of size ``alpha``, projected back into the
``epsilon`` ball, and keeps only the last step's adversarial gradient (the usual recipe).

Why a forward hook on ``model.get_input_embeddings()`` rather than the common recipe of moving the
embedding *weights* along their gradient: every method but ``full`` freezes the embeddings, so
their weights have no gradient to follow; the embedding output has one for every method and task
(prompt and prefix tokens come from their own modules and are left alone). The weights are never
written, so nothing needs restoring. torch has no such helper and transformers' Trainer none
either, hence this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

#: Added to gradient norms, so an all-zero gradient (e.g. a batch the model gets exactly right in
#: float precision) perturbs by zero instead of dividing by zero.
_TINY = 1e-12


def _unit(grad: torch.Tensor) -> torch.Tensor:
    """``grad`` scaled to unit L2 norm per example: (B, T, H) -> (B, T, H)."""
    norm = grad.flatten(1).norm(dim=1).clamp_min(_TINY)  # (B,)
    return grad / norm.view(-1, *([1] * (grad.dim() - 1)))


def _project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``delta`` shrunk, per example, into the L2 ball of radius ``epsilon``."""
    norm = delta.flatten(1).norm(dim=1)  # (B,)
    scale = torch.where(norm > epsilon, epsilon / norm.clamp_min(_TINY), torch.ones_like(norm))
    return delta * scale.view(-1, *([1] * (delta.dim() - 1)))


@dataclass
class Adversary:
    """Adds an adversarial backward pass to every training batch (``train.adversarial``).

    Use::

        with adversary.watch(model):
            loss = forward_loss()
            loss.backward()
        adversary.attack(model, forward_loss)   # more backward passes; the gradients add up

    Attributes:
        kind: ``fgm`` (one step of size ``epsilon``) or ``pgd``.
        epsilon: the perturbation's L2 norm per example (FGM), or the ball PGD stays in.
        steps: PGD's ascent steps (FGM: 1).
        alpha: PGD's step size.
    """

    kind: str
    epsilon: float = 1.0
    steps: int = 3
    alpha: float = 0.3
    _output: torch.Tensor | None = field(default=None, init=False, repr=False)
    _delta: torch.Tensor | None = field(default=None, init=False, repr=False)

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if self._delta is not None:  # the adversarial pass: the perturbed embeddings
            return output + self._delta
        if not output.requires_grad:  # frozen embeddings (adapters): still want d loss / d output
            output = output.detach().requires_grad_(True)
        output.retain_grad()
        self._output = output
        return output

    @contextlib.contextmanager
    def watch(self, model: nn.Module) -> Iterator[None]:
        """Record the word embeddings' output of the forward pass inside the block (the clean one)."""
        self._output, self._delta = None, None
        handle = model.get_input_embeddings().register_forward_hook(self._hook)
        try:
            yield
        finally:
            handle.remove()

    def attack(self, model: nn.Module, forward_loss: Callable[[], torch.Tensor]) -> None:
        """Back-propagate the loss of the perturbed batch on top of the clean gradients.

        Args:
            model: the model just run inside :meth:`watch`, its clean loss back-propagated.
            forward_loss: runs the same batch through ``model`` and returns the loss to
                back-propagate (already divided for gradient accumulation).
        """
        clean = self._output
        if clean is None or clean.grad is None:  # nothing reached the embeddings: nothing to attack
            return
        grad = clean.grad.detach()  # (B, T, H): d loss / d embeddings
        params = [p for p in model.parameters() if p.requires_grad]
        if self.kind == "fgm":
            self._backward_with(model, self.epsilon * _unit(grad), forward_loss)
            return
        # PGD: ascend on the loss inside the epsilon ball; the parameters' clean gradients are set
        # aside meanwhile and the last step's adversarial gradient is added to them.
        saved = [None if p.grad is None else p.grad.clone() for p in params]
        delta = torch.zeros_like(grad)
        for step in range(self.steps):
            delta = _project(delta + self.alpha * _unit(grad), self.epsilon)
            last = step == self.steps - 1
            if last:
                for p, g in zip(params, saved, strict=True):
                    p.grad = g
            else:
                for p in params:
                    p.grad = None
            grad = self._backward_with(model, delta, forward_loss)

    def _backward_with(
        self, model: nn.Module, delta: torch.Tensor, forward_loss: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """Forward and backward with ``delta`` added to the embeddings; returns d loss / d delta."""
        delta = delta.detach().requires_grad_(True)
        handle = model.get_input_embeddings().register_forward_hook(self._hook)
        self._delta = delta
        try:
            loss = forward_loss()
            loss.backward()
        finally:
            handle.remove()
            self._delta = None
        return delta.grad.detach() if delta.grad is not None else torch.zeros_like(delta)


def build_adversary(kind: str | None, *, epsilon: float, steps: int, alpha: float) -> Adversary | None:
    """The ``train.adversarial`` option as an ``Adversary``; None when it is off."""
    if kind is None:
        return None
    return Adversary(kind=kind, epsilon=epsilon, steps=steps if kind == "pgd" else 1, alpha=alpha)
