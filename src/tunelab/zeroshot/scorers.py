"""The two ways a zero-shot classifier scores a text against each label's description.

- ``embedding``: the cosine similarity of the text's and the description's sentence embeddings
  (sentence-transformers, the encoder's own pooling), times ``scale``, so that the softmax over
  labels is a usable score (the argmax does not depend on it);
- ``nli``: an NLI cross-encoder reads (text, "This example is {description}.") for every label;
  the entailment logits over labels are the logits, as transformers' zero-shot-classification
  pipeline scores a single-label choice.

Both take token ids (``Encoded``), not texts: the predictor encodes first (the server counts the
tokens it meters from that), and the run's tokenizer is the scorer's model's own. The NLI scorer
reads each text once per label, so it sets ``Encoded.text_tokens`` to the tokens of the pairs it
read: what the server meters is what the model read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tunelab.data.encoding import Encoded
from tunelab.errors import ConfigError, ModelNotFoundError
from tunelab.inference.forward import batched_outputs

EMBEDDING_TEMPLATE = "{}"
NLI_TEMPLATE = "This example is {}."  # the zero-shot-classification pipeline's default
# Cosines of one encoder sit in a narrow band (MiniLM: about 0.1 to 0.7); times 20 the softmax
# over labels spreads them into scores between near-ties and clear wins. Fixed, not fitted:
# zero-shot has no labelled data to fit it on.
DEFAULT_SCALE = 20.0


class EmbeddingScorer:
    """Cosine similarity between sentence embeddings of texts and of label descriptions."""

    kind = "embedding"

    def __init__(self, model: str | Path, descriptions: list[str], *, template: str, scale: float) -> None:
        import torch

        from tunelab.embeddings import load_encoder

        self.encoder = load_encoder(str(model)).eval()
        self.tokenizer = self.encoder.tokenizer
        self.scale = scale
        prompts = [template.format(d) for d in descriptions]
        vectors = self.encoder.encode(prompts, normalize_embeddings=True, show_progress_bar=False)
        self.label_vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))  # (L, H), unit length

    def max_positions(self) -> int | None:
        """Tokens the encoder reads at most (its position embeddings; RoBERTa-style keep two)."""
        config = getattr(getattr(self.encoder[0], "auto_model", None), "config", None)
        positions = getattr(config, "max_position_embeddings", None)
        if not isinstance(positions, int):
            return None
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta"):
            positions -= 2
        # Models that number positions from a padding offset (MPNet, CamemBERT) say their usable
        # length in the tokenizer's model_max_length (514 positions, 512 tokens).
        usable = getattr(self.tokenizer, "model_max_length", None)
        return min(positions, usable) if isinstance(usable, int) and 0 < usable < 100_000 else positions

    def logits(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        """(N, L): ``scale`` x cosine(text, description)."""
        import torch

        def forward(**batch: Any) -> torch.Tensor:
            # A fresh dict: sentence-transformers adds its outputs to the one it is given.
            features = self.encoder(dict(batch))
            vectors = torch.nn.functional.normalize(features["sentence_embedding"], dim=-1)  # (B, H)
            return self.scale * vectors @ self.label_vectors.T  # (B, L)

        return batched_outputs(forward, enc, batch_size=batch_size)


class NliScorer:
    """Entailment logits of (text, hypothesis) for every label, from an NLI sequence classifier."""

    kind = "nli"

    def __init__(self, model: str | Path, descriptions: list[str], *, template: str) -> None:
        from safetensors import SafetensorError
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from tunelab.models import resolve_model
        from tunelab.models.classifier import load_failure
        from tunelab.quiet import quiet

        try:
            path = resolve_model(str(model)).path
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(
                f"NLI model {model!r} not found ({str(exc).split(';')[0].split(': ', 1)[-1]}); give a folder "
                "with a sequence classifier trained on NLI (save_pretrained output, an 'entailment' "
                "label), or leave out --nli to classify by embedding similarity"
            ) from None
        root = _run_root(path)
        if root is not None:
            self.model, self.tokenizer, id2label = _run_model(root, str(model))
        else:
            with quiet():
                try:
                    # trust_remote_code=False: a folder naming code of its own (auto_map) is refused
                    # without a prompt; use_safetensors: weights never come from a pickle
                    # (pytorch_model.bin), which could run code when loaded
                    self.tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
                    self.model = AutoModelForSequenceClassification.from_pretrained(
                        str(path), use_safetensors=True, trust_remote_code=False
                    ).eval()
                except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
                    raise ModelNotFoundError(
                        f"{model}: no NLI model there ({load_failure(exc)}); give a folder saved with "
                        "save_pretrained (config.json and model.safetensors) of a sequence classifier "
                        "trained on NLI (labels entailment, ...)"
                    ) from None
            id2label = self.model.config.id2label
        self.entailment = entailment_id(id2label, str(model))
        limit = min(self.tokenizer.model_max_length, _positions(self.model.config) or 1 << 30)
        self.hypotheses = [self._pair_layout(template.format(d)) for d in descriptions]
        self.max_tokens = int(limit)
        for description, (ids, _, _, width, _) in zip(descriptions, self.hypotheses, strict=True):
            # the text is cut to make room, the hypothesis never: one longer than the model's
            # positions built fine and failed at predict time ("size of tensor a (89) must match")
            if len(ids) - width + 1 > self.max_tokens:
                short = description if len(description) <= 60 else description[:57] + "..."
                raise ConfigError(
                    f"the description {short!r} makes a hypothesis of {len(ids) - width} tokens with the "
                    f"template, and {model} reads at most {self.max_tokens}; shorten it"
                )
        self.single_text_frame = self._single_text_frame()  # once, not on every logits call

    def _pair_layout(self, hypothesis: str) -> tuple[list[int], list[int], int, int, int]:
        """Where a premise goes in this tokenizer's pair encoding of ``hypothesis``.

        Encoded by hand because the backend gets the premise as token ids (transformers 5 has no
        ``prepare_for_model`` to pair ids): the pair is tokenised once with a placeholder premise,
        whose tokens are then replaced by each text's. Returns the pair's ids and token types, the
        placeholder's start and length, and the premise's token type.
        """
        placeholder = "placeholder"
        out = self.tokenizer(placeholder, hypothesis, truncation=False)
        ids = list(out["input_ids"])
        types = list(out.get("token_type_ids") or [0] * len(ids))
        start, width = self._placeholder_at(ids, placeholder)
        return ids, types, start, width, types[start]

    def _placeholder_at(self, ids: list[int], placeholder: str) -> tuple[int, int]:
        """Where ``placeholder``'s own tokens start in ``ids``, and how many there are."""
        marker = self.tokenizer(placeholder, add_special_tokens=False)["input_ids"]
        return next(i for i in range(len(ids)) if ids[i : i + len(marker)] == marker), len(marker)

    def _premises(self, enc: Encoded) -> list[list[int]]:
        """Each text's ids without the special tokens its single-text encoding added.

        Cut by position (the tokens this tokenizer puts before and after one text), not by
        ``get_special_tokens_mask``: that marks every special id, ``[UNK]`` included, so an emoji or
        a rare script's word vanished from the premise the NLI model read.
        """
        before, after = self.single_text_frame
        return [list(ids[before : len(ids) - after]) for ids in enc.input_ids]

    def _single_text_frame(self) -> tuple[int, int]:
        """How many tokens the tokenizer adds before and after a single text ([CLS] / [SEP])."""
        ids = list(self.tokenizer("placeholder")["input_ids"])
        start, width = self._placeholder_at(ids, "placeholder")
        return start, len(ids) - start - width

    def logits(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        """(N, L): the entailment logit of (text i, hypothesis of label j); N x L forward passes."""
        pair_ids: list[list[int]] = []
        pair_types: list[list[int]] = []
        for body in self._premises(enc):
            for ids, types, start, width, premise_type in self.hypotheses:
                room = self.max_tokens - (len(ids) - width)  # truncate the text, never the hypothesis
                text = body[: max(room, 1)]
                pair_ids.append(ids[:start] + text + ids[start + width :])
                pair_types.append(types[:start] + [premise_type] * len(text) + types[start + width :])
        has_types = "token_type_ids" in self.tokenizer.model_input_names
        pairs = Encoded(
            input_ids=pair_ids,
            token_type_ids=pair_types if has_types else None,
            labels=None,
            pad_id=self.tokenizer.pad_token_id or 0,
        )
        scores = batched_outputs(
            lambda **batch: self.model(**batch).logits[:, self.entailment], pairs, batch_size=batch_size
        )
        # Metering reads text_lengths after this (serve's batcher): the tokens of every pair a text
        # made, not its single-text encoding, which billed a twentieth of what 10 labels read.
        n = len(self.hypotheses)
        enc.text_tokens = [sum(map(len, pair_ids[i * n : (i + 1) * n])) for i in range(len(enc))]
        return scores.reshape(len(enc), n)


def _run_root(path: Path) -> Path | None:
    """The tunelab run folder ``path`` is, or whose ``weights/`` it is, else None.

    A run keeps its tokenizer in ``tokenizer/`` beside ``weights/`` and its config.json is no model
    config: loaded as a plain model folder, the run failed ("Couldn't instantiate the backend
    tokenizer") and its weights/ got a tokenizer of 5 tokens, every word [UNK], without a word.
    """
    for root in (path, path.parent) if path.name == "weights" else (path,):
        if (root / "run.json").is_file():
            return root
    return None


def _run_model(root: Path, model: str) -> tuple[Any, Any, dict[int, str]]:
    """A trained run (e.g. on premise/hypothesis pairs) as the NLI model: loaded as ``predict`` loads
    it (adapters merged, tunelab's own pooling head), with its own tokenizer and label names."""
    from tunelab.inference import load

    predictor = load(root)
    if predictor.format != "torch":
        raise ModelNotFoundError(
            f"{model}: a {predictor.format} run has no trained NLI model; give a run trained on text "
            "pairs with an entailment label, or an NLI model folder"
        )
    if predictor.text_pair_column is None:  # it never saw a (premise, hypothesis) pair
        raise ModelNotFoundError(
            f"{model}: a run trained on single texts, not on (premise, hypothesis) pairs; give a run "
            "trained with data.text_pair_column and an entailment label, or an NLI model folder"
        )
    # The run's own max_length bounds what it was trained on (the positions allow up to 512).
    predictor.tokenizer.model_max_length = min(
        predictor.tokenizer.model_max_length, predictor.config.model.max_length
    )
    return predictor.model.eval(), predictor.tokenizer, dict(enumerate(predictor.labels.names))


def _positions(config: Any) -> int | None:
    """The model's position embeddings; tunelab's pooled classifier keeps them in its encoder's config."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        positions = (getattr(config, "encoder_config", None) or {}).get("max_position_embeddings")
    return positions if isinstance(positions, int) else None


def entailment_id(id2label: dict[Any, str], model: str) -> int:
    """The output of an NLI model that means entailment (by its label name).

    Raises:
        ModelNotFoundError: no output is named entailment: the model is no NLI classifier.
    """
    for i, name in id2label.items():
        if str(name).lower().startswith("entail"):
            return int(i)
    names = ", ".join(str(n) for n in id2label.values())
    raise ModelNotFoundError(
        f"{model}: not an NLI model (its outputs are {names}; zero-shot by NLI needs one named "
        "entailment); leave out --nli to classify by embedding similarity"
    )
