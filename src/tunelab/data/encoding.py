"""Tokenise datasets once, then cut them into dynamically padded batches.

Padding each batch only to its longest member (instead of a fixed 128) is most of the training
speed-up on short texts such as support tickets; grouping similar lengths into the same batch
(``transformers``' ``get_length_grouped_indices``) removes most of the remaining padding.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tunelab.tasks.base import Task


@dataclass
class Encoded:
    """Token ids per example, unpadded, plus encoded labels when the data is labelled."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[Any] | torch.Tensor | None  # a float tensor (N, num_labels): soft targets
    pad_id: int
    # Per-example data a task needs to decode its outputs (NER: the sentence each window came
    # from, word ids, character offsets); the task that encoded the examples defines the keys.
    extra: dict[str, list[Any]] | None = None
    # Tokens per input text, each counted once, where examples are not one per text (NER splits a
    # long text into overlapping windows); None: one example per text, ``lengths`` say it.
    text_tokens: list[int] | None = None

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    @property
    def text_lengths(self) -> list[int]:
        """Tokens the model read per input text, overlaps counted once: what metering bills."""
        return self.lengths if self.text_tokens is None else self.text_tokens

    def __len__(self) -> int:
        return len(self.input_ids)


#: A text is cut to this many characters per token of ``max_length`` before it is tokenised: far
#: more than any token spans (a word piece is at most ~100 characters), so the first ``max_length``
#: tokens are the same, but a 40 MB cell is not turned into 8 million tokens first (the fast
#: tokenizer's native code ran out of memory and aborted the process, with no message).
CHARS_PER_TOKEN = 200


# A character a tokenizer may make a token of: not whitespace, and not one of the invisible format
# characters (zero-width spaces and joiners, the byte-order mark) that it drops
_INKED = re.compile(r"[^\s\u200b-\u200f\u2060-\u2064\ufeff]")


def clipped(texts: list[str] | None, max_length: int) -> list[str] | None:
    """``texts`` each cut after ``CHARS_PER_TOKEN * max_length`` characters that are not whitespace
    or invisible (the same list when none is that long); lists of words (NER) are left as they are.

    Counted so, not by length: a text padded with thousands of spaces or zero-width spaces before its
    words (scraped HTML) was cut to its padding and read as empty."""
    if texts is None:
        return None
    limit = CHARS_PER_TOKEN * max_length
    if not any(isinstance(t, str) and len(t) > limit for t in texts):
        return texts
    return [_clip(t, limit) if isinstance(t, str) and len(t) > limit else t for t in texts]


def _clip(text: str, limit: int) -> str:
    last = next(itertools.islice(_INKED.finditer(text), limit - 1, None), None)
    return text if last is None else text[: last.end()]


def encode_texts(
    tokenizer: Any,
    texts: list[str],
    text_pairs: list[str] | None = None,
    *,
    max_length: int,
    labels: list[Any] | None = None,
) -> Encoded:
    """Tokenise with truncation and no padding (padding happens per batch)."""
    out = tokenizer(
        clipped(texts, max_length),
        clipped(text_pairs, max_length),
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
    )
    return Encoded(
        input_ids=out["input_ids"],
        token_type_ids=out.get("token_type_ids"),
        labels=labels,
        pad_id=tokenizer.pad_token_id or 0,
    )


def collate(
    enc: Encoded,
    indices: list[int],
    *,
    task: Task | None = None,
    num_labels: int = 0,
    pad_to: int | None = None,
) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to the batch's longest (or ``pad_to``) and stack them.

    Returns ``input_ids``, ``attention_mask`` (B, T), ``token_type_ids`` when the tokenizer has
    them, and ``labels``: what ``task.batch_labels`` makes of ``enc.labels`` (padded to T where
    labels are per token), or without a task the rows of ``enc.labels`` when it is a float tensor
    of soft targets (distillation).
    """
    import torch  # lazy: reading and validating data must not pay for importing torch

    width = pad_to or max(len(enc.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), enc.pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    types = torch.zeros((len(indices), width), dtype=torch.long) if enc.token_type_ids is not None else None
    for row, i in enumerate(indices):
        seq = enc.input_ids[i][:width]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        if types is not None:
            types[row, : len(seq)] = torch.tensor(enc.token_type_ids[i][:width])
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    if enc.labels is not None and task is not None:
        batch["labels"] = task.batch_labels(enc, indices, width=width, num_labels=num_labels)
    elif isinstance(enc.labels, torch.Tensor):  # soft targets (N, ...), e.g. a teacher's
        batch["labels"] = enc.labels[torch.as_tensor(indices)]
    return batch


def training_batches(
    lengths: list[int], batch_size: int, *, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch): resuming replays them exactly."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if group_by_length:
        order = get_length_grouped_indices(lengths, batch_size, generator=generator)
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        # Shuffle the batch order too, so an epoch does not walk from long to short texts.
        perm = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[p] for p in perm]
    order = torch.randperm(len(lengths), generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def inference_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches of similar lengths for inference; callers put results back in input order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
