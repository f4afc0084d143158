"""Build a sequence classifier and its tokenizer from a resolved model folder."""

from __future__ import annotations

from pathlib import Path

from torch import nn

_PROBLEM_TYPES = {"single_label": "single_label_classification", "multi_label": "multi_label_classification"}


def build_classifier(path: Path, labels: list[str], task: str, *, seed: int | None = None) -> nn.Module:
    """A ``AutoModelForSequenceClassification`` with a fresh head sized for ``labels``.

    The head is initialised under ``seed`` so two runs with the same seed start identically.
    """
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    if seed is not None:
        torch.manual_seed(seed)
    # "Some weights were newly initialized" is expected for a new head: not worth a warning.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path),
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            problem_type=_PROBLEM_TYPES[task],
            use_safetensors=True,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    return model


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), use_fast=True)
