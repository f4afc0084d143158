"""Which labelled rows an export checks parity on, and which it ranks attention heads with.

Parity uses the run's own held-out data, so the numbers line up with ``tunelab eval``: its test
file if it has one, else the test or dev split carved from its training file (``load_splits`` is
deterministic given ``split_seed``), or a file the user names. Head importance uses other rows
(dev when parity is on test, else a sample of train), so the check is never run on the data that
chose what to cut.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import torch

from tunelab.data import Dataset, load_labelled
from tunelab.data.encoding import collate, encode_texts
from tunelab.errors import DataError

log = logging.getLogger(__name__)
IMPORTANCE_ROWS = 512


@dataclass
class ParityData:
    """The rows to compare on: ``split`` is ``test``/``dev`` (the metrics.json key), ``name`` for people."""

    dataset: Dataset
    split: str
    name: str


def parity_data(predictor: Any, data: str | None) -> ParityData:
    """The explicit ``data`` file, else the run's test file, else its carved test or dev split."""
    cfg, labels = predictor.config.data, predictor.labels
    if data is not None:
        return ParityData(load_labelled(data, cfg, labels), "test", str(data))
    if cfg.test:
        return ParityData(load_labelled(cfg.test, cfg, labels), "test", f"test file {cfg.test}")
    splits = _splits(cfg)
    for split in ("test", "dev"):
        ds = getattr(splits, split)
        if ds is not None and len(ds):
            return ParityData(ds, split, f"{split} split of {cfg.train}")
    raise DataError(
        f"{predictor.run.root}: the run has no test or dev data to check parity on; give --data FILE"
    )


def importance_batches(predictor: Any, parity: ParityData, *, batch_size: int = 32) -> list[dict] | None:
    """Labelled batches for head importance (dev, or up to 512 training rows); None if unreadable."""
    cfg = predictor.config.data
    try:
        splits = _splits(cfg)
    except DataError as exc:
        log.warning("head importance falls back to weight norms: %s", exc)
        return None
    ds = splits.dev if splits.dev is not None and parity.split != "dev" and len(splits.dev) else splits.train
    rows = list(range(len(ds)))
    random.Random(cfg.split_seed).shuffle(rows)
    rows = sorted(rows[:IMPORTANCE_ROWS])
    enc = encode_texts(
        predictor.tokenizer,
        [ds.texts[i] for i in rows],
        [ds.text_pairs[i] for i in rows] if ds.text_pairs is not None else None,
        max_length=predictor.config.model.max_length,
        labels=[ds.labels[i] for i in rows],
    )
    order = sorted(range(len(enc)), key=lambda i: enc.lengths[i])
    return [
        collate(enc, order[i : i + batch_size], task=predictor.task, num_labels=len(predictor.labels))
        for i in range(0, len(order), batch_size)
    ]


def sample_batch(enc: Any) -> dict[str, torch.Tensor]:
    """A padded two-row batch (shortest and longest text) for tracing the ONNX graph."""
    order = sorted(range(len(enc)), key=lambda i: enc.lengths[i])
    rows = [order[0], order[-1]] if len(order) > 1 else [order[0], order[0]]
    return collate(enc, rows)


def _splits(cfg: Any) -> Any:
    from tunelab.data import load_splits

    return load_splits(cfg)
