"""What ``train`` does differently for a continued run (``train --from``), in one object.

``train`` builds the model and reads the data as for any run, then hands both to
``Continuation.open``, which checks the previous run, grows the head, adds the rehearsal rows and
later supplies the penalties; the loop itself does not know it is continuing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tunelab.config import RunConfig
from tunelab.data import Splits
from tunelab.data.dataset import Dataset
from tunelab.data.encoding import Encoded
from tunelab.errors import ConfigError
from tunelab.tasks import Task
from tunelab.train.continual import (
    Previous,
    grow_into,
    open_previous,
    read_rehearsal,
    refuse_unprobed_old_labels,
    short_sample_note,
    with_rehearsal,
    without_held_out,
    without_relabelled,
)
from tunelab.train.continual_penalties import EWC, Distillation, combined, fisher_of


@dataclass
class Continuation:
    """The previous run, its model (the distillation teacher), and the splits with rehearsal rows."""

    previous: Previous
    teacher: nn.Module
    splits: Splits
    rehearsal: Dataset
    cfg: RunConfig
    task: Task

    @classmethod
    def open(
        cls,
        cfg: RunConfig,
        task: Task,
        splits: Splits,
        model: nn.Module,
        *,
        stores_base: bool,
        previous: Previous | None = None,
        rehearsal: Dataset | None = None,
    ) -> Continuation:
        """Check the previous run, put its weights into ``model`` (head grown), add rehearsal rows.

        ``previous``, ``rehearsal``: the run and its stored sample as ``preflight.check_run`` already
        opened, read and checked them (not read again).

        Raises:
            RunError, ConfigError: the previous run cannot be continued so (one line each).
        """
        if previous is None:
            previous = open_previous(cfg, splits, stores_base=stores_base)
        if rehearsal is None:  # else as check_run read it
            rehearsal = read_rehearsal(previous, splits.labels, cfg.continual, seed=cfg.train.seed)
        splits, rehearsal = replayed(cfg, splits, previous, rehearsal)
        if cfg.continual.ewc > 0 and not len(rehearsal):
            raise ConfigError(
                f"continual.ewc={cfg.continual.ewc} needs rehearsal rows, and {previous.root} has none to "
                "replay (its stored sample is empty, or every row is a dev or test row of the new data or "
                "relabelled by a new row); set continual.ewc=0"
            )
        teacher = previous.model()
        grow_into(model, teacher)
        return cls(previous, teacher, splits, rehearsal, cfg, task)

    @property
    def num_old(self) -> int:
        return len(self.previous.labels)

    def probe_head(self, model: nn.Module, enc_train: Encoded) -> tuple[str, float | None]:
        """``continual.head: probe``: refit the whole grown head on the training rows' frozen features.

        Returns (run.json's ``head_init``, the probe's training accuracy or None when it was skipped).

        Raises:
            ConfigError: single-label, an old label has no training row (none among the new rows
                and the replayed sample): the probe would make it unlikely.
        """
        labels, cc = self.splits.labels, self.cfg.continual
        refuse_unprobed_old_labels(enc_train.labels or [], labels, cc, self.num_old)
        accuracy = self.task.probe_head(model, enc_train, num_labels=len(labels), seed=self.cfg.train.seed)
        if math.isnan(accuracy):  # the task has no probe or could not fit it: the copied head stays
            return "continued", None
        return "continued-probe", accuracy

    def loss_term(
        self,
        model: nn.Module,
        method_term: Callable[[nn.Module], torch.Tensor] | None,
        tokenizer: Any,
        enc_train: Encoded,
        precision: str,
    ) -> Callable[[nn.Module], torch.Tensor] | None:
        """The method's loss term plus the penalties ``continual.distill`` and ``continual.ewc`` ask for."""
        cc = self.cfg.continual
        terms = [method_term]
        if cc.distill > 0:
            distill = Distillation(
                self.teacher,
                self.task,
                num_old=self.num_old,
                weight=cc.distill,
                temperature=cc.distill_temperature,
            )
            distill.precompute(enc_train, precision)
            distill.attach(model)
            terms.append(distill)
        if cc.ewc > 0 and len(self.rehearsal):
            sizes = {"max_length": self.cfg.model.max_length, "stride": self.cfg.model.stride}
            enc = self.task.encode(tokenizer, self.rehearsal, **sizes)
            fisher, anchor = fisher_of(self.teacher, model, enc, self.task, num_old=self.num_old)
            terms.append(EWC(fisher, anchor, cc.ewc))
        return combined(*terms)

    def summary(self) -> dict[str, Any]:
        """What run.json records of the continuation."""
        cc = self.cfg.continual
        return {
            "from_run": str(self.previous.root),
            "labels_before": self.num_old,
            "labels_added": self.splits.labels.names[self.num_old :],
            "rehearsal_rows": len(self.rehearsal),
            "distill": cc.distill,
            "ewc": cc.ewc,
        }


def replayed(
    cfg: RunConfig, splits: Splits, previous: Previous, rehearsal: Dataset
) -> tuple[Splits, Dataset]:
    """``splits`` as a continued run trains on them: the rehearsal rows it replays joined to train,
    and the notes saying what was left out; and those rehearsal rows.

    ``train`` trains on these and ``validate --from`` summarises them: it counted the new rows only
    (a label with 3 new and 8 replayed rows was "only 3 training rows").

    Raises:
        ConfigError: the sample holds text pairs and the new data single texts, or the reverse.
    """
    short = short_sample_note(rehearsal, cfg.continual, previous.config.continual, previous.summary)
    if short is not None:
        splits = dataclasses.replace(splits, notes=[*splits.notes, short])
    unscored = dev_without_old_labels_note(splits, len(previous.labels))
    if unscored is not None:
        splits = dataclasses.replace(splits, notes=[*splits.notes, unscored])
    rehearsal, dropped = without_held_out(rehearsal, splits)
    # a text the new rows relabel trains with its new label only
    rehearsal, relabelled = without_relabelled(rehearsal, splits.train)
    return with_rehearsal(splits, rehearsal, dropped=dropped, relabelled=relabelled), rehearsal


def dev_without_old_labels_note(splits: Splits, num_old: int) -> str | None:
    """A note when the dev split has no row of any of the previous run's labels.

    Carved from the new rows only (no ``data.dev``), it picks the checkpoint, stops training and,
    for multi-label, tunes the one threshold for every label without a row of the labels the run
    should not forget; the run said nothing of it.
    """
    dev = splits.dev
    if dev is None or not isinstance(dev, Dataset) or dev.labels is None or num_old == 0:
        return None
    seen: set[int] = set()
    for value in dev.labels:
        seen.update(value if isinstance(value, list) else [value])
    if any(i < num_old for i in seen):
        return None
    return (
        "the dev split has no row of the previous run's labels, so checkpoint choice, early stopping "
        "and a multi-label threshold are set without them; give data.dev with rows of old and new "
        "labels to have forgetting count there"
    )
