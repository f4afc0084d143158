"""A tiny random BERT (2 layers, hidden 32) with the bundled tokenizer: for tests and ``--quick`` benchmarks.

It trains in seconds on a CPU, so code paths that need a real model folder (train, export, serve)
can run end to end without the bundled weights. Its predictions mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.atomic import open_permissions


def save_tiny_bert(folder: str | Path, *, labels: list[str] | None = None) -> Path:
    """Write a random 2-layer BERT (safetensors, seed 0) and the bundled tokenizer to ``folder``.

    Without ``labels`` it is a bare encoder (``BertModel``), like a pre-trained one: every classifier
    built from it gets a fresh head. With ``labels`` it is a sequence classifier whose config names
    them (``id2label``), standing in for a downloaded fine-tuned model such as an NLI one.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from tunelab.models import resolve_model

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("minilm-l6").path), trust_remote_code=False)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    if labels is None:
        model = BertModel(config)
    else:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
        model = BertForSequenceClassification(config)
    model.save_pretrained(str(folder), safe_serialization=True)
    open_permissions(folder)  # safetensors writes 0600
    tokenizer.save_pretrained(str(folder))
    return folder
