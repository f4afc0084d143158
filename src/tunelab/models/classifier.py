"""A sequence classifier: a pre-trained encoder, a pooling step, dropout and a linear head.

Why not ``AutoModelForSequenceClassification``: it always classifies from the [CLS] token (through
BERT's pooler), while sentence encoders such as all-MiniLM-L6-v2 were trained to be read by
averaging all token states. Mean pooling starts fine-tuning from an embedding that is already
linearly separable (a logistic regression on it reaches 93% on BANKING77), and on a 20-intent
BANKING77 subset it reached 92% test accuracy where [CLS] pooling reached 90.5% after the same
5 epochs. ``pooling: auto`` picks mean for folders that declare it (sentence-transformers'
``1_Pooling/config.json``) and [CLS] otherwise.

The encoder is saved with ``save_pretrained`` (a normal Hugging Face folder) and the head beside
it as ``head.safetensors`` + ``head.json``, so every weight is in safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tunelab.errors import ModelNotFoundError

POOLINGS = ("auto", "mean", "cls")
HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"


def detect_pooling(path: Path) -> str:
    """``mean`` when the folder is a sentence-transformers model trained with mean pooling."""
    pooling_cfg = Path(path) / "1_Pooling" / "config.json"
    if pooling_cfg.is_file():
        try:
            if json.loads(pooling_cfg.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens"):
                return "mean"
        except (OSError, json.JSONDecodeError):
            pass
    return "cls"


class SequenceClassifier(nn.Module):
    """Encoder -> pooled vector (B, H) -> dropout -> linear (B, num_labels).

    ``forward`` takes the tokenizer's tensors and returns a ``SequenceClassifierOutput`` whose
    ``logits`` are (B, num_labels), like a ``transformers`` classifier, so peft and the training
    loop treat it the same way.
    """

    def __init__(
        self, encoder: nn.Module, num_labels: int, *, pooling: str, dropout: float | None = None
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.encoder = encoder
        self.config = encoder.config  # peft reads model.config
        self.pooling = pooling
        hidden = encoder.config.hidden_size
        p = dropout if dropout is not None else getattr(encoder.config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(hidden, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    @property
    def num_labels(self) -> int:
        return self.classifier.out_features

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_: Any,
    ) -> SequenceClassifierOutput:
        pooled = self.pool(input_ids, attention_mask, token_type_ids)
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))

    def pool(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The pooled sentence vector (B, H) the head reads."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.encoder(**kwargs)
        states = out.last_hidden_state  # (B, T, H)
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
            return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        pooler = getattr(out, "pooler_output", None)
        return pooler if pooler is not None else states[:, 0]

    def save_full(self, folder: Path) -> None:
        """Encoder as a Hugging Face folder, head beside it; safetensors only."""
        from tunelab.quiet import no_progress_bars

        folder.mkdir(parents=True, exist_ok=True)
        with no_progress_bars():
            self.encoder.save_pretrained(str(folder))
        head = {k: v.detach().contiguous() for k, v in self.classifier.state_dict().items()}
        save_file(head, str(folder / HEAD_WEIGHTS))
        (folder / HEAD_CONFIG).write_text(
            json.dumps({"pooling": self.pooling, "num_labels": self.num_labels}, indent=2), encoding="utf-8"
        )

    @classmethod
    def load_full(cls, folder: Path) -> SequenceClassifier:
        """Rebuild a model written by ``save_full``."""
        head_cfg = json.loads((folder / HEAD_CONFIG).read_text(encoding="utf-8"))
        model = cls(_load_encoder(folder), head_cfg["num_labels"], pooling=head_cfg["pooling"])
        model.classifier.load_state_dict(load_file(str(folder / HEAD_WEIGHTS)))
        return model


def _load_encoder(path: Path) -> nn.Module:
    from transformers import AutoModel

    from tunelab.quiet import no_progress_bars, quiet

    # Unused pooler or LM-head weights in the checkpoint are expected: not worth a warning, and a
    # progress bar for a one-second load is noise. Warnings are hidden for this thread only (not
    # with transformers' set_verbosity, which is process-wide: a server loading a version would
    # hide every other thread's warnings, and overlapping loads could leave it changed for good).
    try:
        with quiet(), no_progress_bars():
            return AutoModel.from_pretrained(str(path), use_safetensors=True)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(
            f"model folder {path}: cannot load encoder weights ({reason}); "
            "give a Hugging Face folder with config.json and model.safetensors"
        ) from None


def build_classifier(
    path: Path, labels: list[str], task: str, *, pooling: str = "auto", seed: int | None = None
) -> SequenceClassifier:
    """A classifier with the pre-trained encoder at ``path`` and a fresh head for ``labels``.

    The head is initialised under ``seed`` so two runs with the same seed start identically.
    ``task`` does not change the architecture (the loss does); it is accepted so callers state it.
    """
    if seed is not None:
        torch.manual_seed(seed)
    encoder = _load_encoder(path)
    if pooling == "auto":
        pooling = detect_pooling(path)
    if seed is not None:
        torch.manual_seed(seed)
    return SequenceClassifier(encoder, len(labels), pooling=pooling)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), use_fast=True)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"model folder {path}: no usable tokenizer ({type(exc).__name__}); "
            "save the tokenizer into the folder with tokenizer.save_pretrained()"
        ) from None
