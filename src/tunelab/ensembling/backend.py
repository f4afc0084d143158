"""The ``ensemble`` artifact format: a backend that averages its members' probabilities.

An ensemble folder has a run's layout; its ``run.json`` says ``format: ensemble`` and lists the
members (whole run or artifact folders under ``weights/``) with each one's temperature. The
predictor looks the format up like any other (``tunelab.inference.backends``), so eval, predict,
export and serve take an ensemble as they take a run, without knowing it is one.

The members share the ensemble's tokenizer and encoding settings (checked when it is built), so
one ``Encoded`` feeds them all. Each member's logits are divided by its temperature, turned into
probabilities by the task (``Task.soft_targets``), averaged, and handed on as logits of those
probabilities (``Task.logits_from_probabilities``): the task's decoding then shows exactly the
mean probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.data.encoding import Encoded
from tunelab.errors import RunError, TunelabError, first_line

FORMAT = "ensemble"


@dataclass
class Member:
    """One member: its backend, temperature, and where its label columns go in the ensemble's order."""

    backend: Any  # tunelab.inference.backends.Backend
    temperature: float
    order: list[int]  # ensemble label i is the member's column order[i]


class EnsembleBackend:
    """Mean of the members' (temperature-scaled) probabilities, as logits."""

    name = FORMAT

    def __init__(self, members: Sequence[Member], task: Any) -> None:
        self.members = list(members)
        self.task = task

    def probabilities(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        """The members' mean probabilities, (N, L) or (N, T, L), in the ensemble's label order."""
        import torch

        total: np.ndarray | None = None
        for member in self.members:
            logits = np.asarray(member.backend.logits(enc, batch_size=batch_size), dtype=np.float64)
            logits = logits[..., member.order] / member.temperature
            probs = self.task.soft_targets(torch.from_numpy(logits)).numpy()
            total = probs if total is None else total + probs
        assert total is not None
        return total / len(self.members)

    def logits(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        return self.task.logits_from_probabilities(self.probabilities(enc, batch_size=batch_size))


def member_folder(root: Path, entry: Any) -> Path:
    """The folder of a member ``run.json`` lists (``{"path": "weights/<name>", ...}``), under ``root``.

    ``build`` writes every member to ``weights/<name>``: a path that leaves ``weights/`` (``..``,
    an absolute path, a link out) would load any run on the disk, even one outside the model roots
    a server confines runs to, and ``.`` (the ensemble itself) recursed until RecursionError.

    Raises:
        RunError: the entry is not an object with a path, or its folder is not under ``weights/``.
    """
    where = root / "run.json"
    path = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(path, str):
        shown = repr(entry)[:80]
        raise RunError(f"{where}: member {shown} is not an object with a path; build the ensemble again")
    weights = (root / "weights").resolve()
    folder = (root / path).resolve()
    if folder == weights or not folder.is_relative_to(weights) or not folder.is_dir():
        raise RunError(f"{where}: member {path!r} is not a folder under weights/; build the ensemble again")
    return folder


def load_ensemble(ctx: Any) -> EnsembleBackend:
    """The format loader (``LoadContext`` -> backend): each member loaded by its own format."""
    from tunelab.data import LabelMap
    from tunelab.inference import load  # the one place the ensemble loads runs
    from tunelab.tasks import get_task

    members = []
    for entry in ctx.summary.get("members") or []:
        folder = member_folder(ctx.run.root, entry)
        try:
            predictor = load(folder)
            names = LabelMap.load(predictor.run.labels_json).names
            members.append(
                Member(
                    backend=predictor.backend,
                    temperature=float(entry.get("temperature") or 1.0),
                    order=[names.index(n) for n in ctx.labels.names],
                )
            )
        except (TunelabError, TypeError, ValueError) as exc:
            # The member's own advice ("train or export it again") does not fit a copy inside the
            # ensemble, and a label missing from a member or a temperature that is no number was
            # "unexpected ValueError": the ensemble is what to build again.
            raise RunError(
                f"{ctx.run.root}: member {folder.name} cannot be used ({first_line(exc)}); "
                "build the ensemble again from its runs (tunelab ensemble RUN RUN ... --out)"
            ) from None
    if not members:
        raise RunError(f"{ctx.run.root}: run.json lists no ensemble members; build the ensemble again")
    return EnsembleBackend(members, get_task(ctx.labels.task))
