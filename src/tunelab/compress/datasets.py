"""Which labelled rows an export checks parity on, and which texts structured pruning learns from.

Parity uses the run's own held-out data, so the numbers line up with ``tunelab eval``: its test
file if it has one, else the test or dev split carved from its training file (``load_splits`` is
deterministic given ``split_seed``), or a file the user names. Structured pruning calibrates (and
recovery trains) on the rows the run trained on only (its training split, and for a continued run
the rehearsal rows it replayed), so the check is never run on the data that chose what to cut.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunelab.data import Dataset, Splits
from tunelab.data.encoding import Encoded, collate
from tunelab.data.file_options import options_for_file
from tunelab.errors import ConfigError, DataError, RunError, first_line

log = logging.getLogger(__name__)

CALIBRATION_ROWS = 2048  # texts; the refit's normal equations need only their Gram matrix


@dataclass
class ParityData:
    """The rows to compare on: ``split`` is the metrics.json key (``test``/``dev`` for the run's own
    held-out rows, ``parity`` for a file given with ``--data``: its score is not the run's test
    score), ``name`` for people."""

    dataset: Dataset
    split: str
    name: str


def parity_data(predictor: Any, data: str | None, options: dict[str, Any] | None = None) -> ParityData:
    """The explicit ``data`` file, else the run's test file, else its carved test or dev split.

    ``data`` is read with its own layout, detected or given in ``options`` (parsed ``data.*``
    overrides, as ``eval`` takes them), and the run's columns.
    """
    cfg, labels, task = predictor.config.data, predictor.labels, predictor.task
    if data is not None:  # a file of the user's: its own layout, the run's columns
        read = options_for_file(data, cfg, options or {})
        return ParityData(task.read_labelled(data, read, labels, field=None), "parity", str(data))
    try:
        if cfg.test:
            dataset = task.read_labelled(cfg.test, cfg, labels, field=None)
            return ParityData(dataset, "test", f"test file {cfg.test}")
        splits = task.load_splits(cfg)
    except DataError as exc:  # moved or changed since training: the user never typed that path
        raise DataError(
            f"the parity check reads the run's own held-out data, which cannot be read ({exc}); "
            "give --data FILE to check on another labelled file"
        ) from None
    for split in ("test", "dev"):
        ds = getattr(splits, split)
        if ds is not None and len(ds):
            # a dev file of its own (data.dev) was named "dev split of <train file>"
            given = cfg.dev if split == "dev" else None
            name = f"{split} file {given}" if given else f"{split} split of {cfg.train}"
            return ParityData(ds, split, name)
    raise DataError(
        f"{predictor.run.root}: the run has no test or dev data to check parity on; give --data FILE"
    )


def training_texts(predictor: Any) -> tuple[Encoded, int | None]:
    """The rows the run trained on, encoded (labels dropped): what calibration and recovery learn
    from; and how many of them a continued run replayed from its previous run (None for others)."""
    cfg = predictor.config
    try:
        splits = predictor.task.load_splits(cfg.data)
    except DataError as exc:
        raise DataError(
            f"structured pruning calibrates on the run's training data, which cannot be read: {exc}"
        ) from None
    replayed = None
    if cfg.continual.from_run is not None:
        splits, replayed = _with_rehearsal(predictor, splits)
    enc = predictor.task.encode(
        predictor.tokenizer,
        splits.train,
        max_length=cfg.model.max_length,
        stride=cfg.model.stride,
    )
    return dataclasses.replace(enc, labels=None), replayed


def _with_rehearsal(predictor: Any, splits: Splits) -> tuple[Splits, int]:
    """``splits`` with the rows a continued run replayed joined to train, as ``train --from`` joined
    them (``continual_setup.replayed``), and how many. Calibrated and recovered on the new rows
    alone, the pruned model was fitted to the new labels, and the parity check on the new test
    rows never saw the old labels' predictions change."""
    from tunelab.config import RunConfig
    from tunelab.data import LabelMap
    from tunelab.runs import RunFolder
    from tunelab.runs.json_files import read_run_object
    from tunelab.train.continual import Previous, read_rehearsal
    from tunelab.train.continual_setup import replayed

    cfg = predictor.config
    run = RunFolder(Path(cfg.continual.from_run))
    try:
        raw = read_run_object(run.config_json, lambda why: f"{run.config_json}: {why}")
        # only its reading of pairs, its rehearsal settings and its label count are used
        previous = Previous(run.root, RunConfig.from_dict(raw), LabelMap.load(run.labels_json), {})
        rehearsal = read_rehearsal(previous, predictor.labels, cfg.continual, seed=cfg.train.seed)
        splits, rows = replayed(cfg, splits, previous, rehearsal)
    except (ConfigError, DataError, RunError) as exc:
        # The previous run moved or deleted since: prune on the new rows, as before rehearsal rows
        # were read here, rather than refuse an export that worked then.
        log.warning(
            "structured pruning calibrates on the run's new rows only: the rehearsal rows it replayed "
            "from %s cannot be read (%s); restore that run to calibrate on them too",
            run.root,
            first_line(exc),
        )
        return splits, 0
    return splits, len(rows)


def calibration_batches(
    texts: Encoded, *, seed: int, rows: int = CALIBRATION_ROWS, batch_size: int = 64
) -> list[dict[str, torch.Tensor]]:
    """Up to ``rows`` training texts (a seeded sample), length-grouped into padded batches."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    chosen = sorted(order[:rows], key=lambda i: texts.lengths[i])
    return [collate(texts, chosen[i : i + batch_size]) for i in range(0, len(chosen), batch_size)]


def sample_batch(enc: Any) -> dict[str, torch.Tensor]:
    """A padded two-row batch (shortest and longest text) for tracing the ONNX graph."""
    order = sorted(range(len(enc)), key=lambda i: enc.lengths[i])
    rows = [order[0], order[-1]] if len(order) > 1 else [order[0], order[0]]
    return collate(enc, rows)
