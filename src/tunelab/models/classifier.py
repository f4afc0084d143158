"""Sequence classifiers as Hugging Face models: a pre-trained encoder, a pooling step, a linear head.

What ``build_classifier`` returns is a ``transformers`` ``PreTrainedModel`` that a user loads
without tunelab:

- [CLS] pooling on BERT: the stock ``BertForSequenceClassification`` (pooler -> dropout ->
  ``classifier``), exactly the architecture tunelab trained before.
- mean pooling (what sentence encoders such as all-MiniLM-L6-v2 were trained for; see
  ``tunelab.models.pooled_classifier`` for why it matters), and [CLS] on architectures whose stock
  classifier is something else: ``PooledClassifier``. Importing this module registers it with
  ``AutoConfig`` / ``AutoModelForSequenceClassification``, and ``save_pretrained`` copies its
  modeling file into the folder with an ``auto_map``, so
  ``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`` works
  where tunelab is not installed.

Either way the head is ``model.classifier`` (a ``nn.Linear``), the encoder is ``model.base_model``,
``model.pooling`` says how it is read, and ``config.id2label`` names the labels. Runs trained before
this layout (an encoder folder + ``head.safetensors`` + ``head.json``) are converted on load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel

from tunelab.atomic import open_permissions
from tunelab.errors import ModelNotFoundError, first_line
from tunelab.models.pooled_classifier import PooledClassifier, PooledClassifierConfig

#: transformers' problem_type of a single-label classifier (the other: "multi_label_classification").
SINGLE_LABEL = "single_label_classification"
POOLINGS = ("auto", "mean", "cls")
# The layout runs were saved in before they were Hugging Face classifiers (read, never written).
LEGACY_HEAD_WEIGHTS = "head.safetensors"
LEGACY_HEAD_CONFIG = "head.json"
# Encoders whose AutoModelForSequenceClassification is pooler -> dropout -> a Linear ``classifier``,
# i.e. what [CLS] pooling means here. Others (RoBERTa's two-layer head, DistilBERT's
# pre_classifier) get a PooledClassifier with pooling="cls", so every model has the same head.
STOCK_CLS_MODEL_TYPES = ("bert",)
_NOT_ENCODER_SETTINGS = (
    "id2label",
    "label2id",
    "problem_type",
    "architectures",
    "_name_or_path",
    "transformers_version",
)

AutoConfig.register(PooledClassifierConfig.model_type, PooledClassifierConfig, exist_ok=True)
AutoModelForSequenceClassification.register(PooledClassifierConfig, PooledClassifier, exist_ok=True)
PooledClassifierConfig.register_for_auto_class()
PooledClassifier.register_for_auto_class("AutoModelForSequenceClassification")


def load_failure(exc: BaseException) -> str:
    """Why ``from_pretrained`` refused a folder, in a few words for a one-line error.

    Every load passes ``trust_remote_code=False``: a folder whose config.json or
    tokenizer_config.json names Python code of its own (``auto_map``, a model type or tokenizer
    class transformers does not know) is refused without transformers' "run the custom code?"
    prompt, and its code is never imported.
    """
    text = first_line(exc)
    if "custom code" in text or "trust_remote_code" in text:
        return "it names Python code of its own (auto_map), which tunelab never runs"
    return text[:200]


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


# torch's CPU generator, numpy's and Python's global streams are one per process, not per thread.
# Two runs training at once in threads drew each other's dropout masks, and a load in another thread
# (which seeds and then puts back the stream) rewound a run's: the same config and seed trained
# another model each time. So the code that seeds or restores them (a run, a load, merge, ensemble)
# runs one at a time in a process; re-entrant, as a run loads its base and teachers inside its own
# hold. Predicting draws nothing and takes no lock.
_GLOBAL_RNG_LOCK = threading.RLock()
_log = logging.getLogger(__name__)


@contextlib.contextmanager
def holding_global_rng() -> Iterator[None]:
    """Hold the process's random streams: wait for another thread's run, load, merge or ensemble."""
    if not _GLOBAL_RNG_LOCK.acquire(blocking=False):
        _log.info(
            "waiting for a training or load in another thread to finish: torch's random stream is one "
            "per process (train in another process to go on meanwhile)"
        )
        _GLOBAL_RNG_LOCK.acquire()
    try:
        yield
    finally:
        _GLOBAL_RNG_LOCK.release()


@contextlib.contextmanager
def keeping_global_rng() -> Iterator[None]:
    """Run the body, then put the process's random streams back as they were: torch's CPU generator
    (each CUDA device's too, where CUDA is in use), numpy's global one and Python's ``random``.

    ``tunelab.train`` seeds the global torch stream (``build_classifier``: the run's head, dropout
    masks) and a resume restores all three from its checkpoint; ``merge`` and ``ensemble`` draw from
    it building their models. A notebook's ``torch.manual_seed(0)`` before them was silently replaced
    by the run's seed 42, or advanced. Inside, the streams start from the caller's state as before,
    so a run's own results (seeded inside) are unchanged. Usable as a decorator.

    CUDA's generators are kept only once CUDA is initialised: reading them would otherwise start a
    CUDA context on every device for a CPU run.
    """
    with holding_global_rng():
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=devices):
                yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _load_encoder(path: Path) -> nn.Module:
    from transformers import AutoModel

    from tunelab.quiet import no_progress_bars, quiet

    # Unused pooler or LM-head weights in the checkpoint are expected: not worth a warning, and a
    # progress bar for a one-second load is noise. Warnings are hidden for this thread only (not
    # with transformers' set_verbosity, which is process-wide: a server loading a version would
    # hide every other thread's warnings, and overlapping loads could leave it changed for good).
    # Weights the checkpoint lacks (many published encoders save no pooler) are drawn at random by
    # from_pretrained: under a fixed seed, aside from the global stream, so every load of a folder
    # is the same model. Unseeded, an adapter run with cls pooling and no trained pooler (its
    # weights not saved) predicted differently at each load, and two runs of one seed started apart.
    try:
        with quiet(), no_progress_bars(), holding_global_rng(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return AutoModel.from_pretrained(str(path), use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        # RuntimeError: weights whose shapes do not fit config.json; SafetensorError: a damaged file.
        raise ModelNotFoundError(
            f"model folder {path}: cannot load encoder weights ({load_failure(exc)}); "
            "give a Hugging Face folder with config.json and model.safetensors"
        ) from None


def _new_classifier(
    encoder_config: PretrainedConfig, labels: list[str], problem_type: str, pooling: str
) -> nn.Module:
    """A randomly initialised classifier for ``encoder_config`` (weights are copied in after)."""
    from tunelab.quiet import quiet

    label_args: dict[str, Any] = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
        "problem_type": problem_type,
    }
    if pooling == "cls" and encoder_config.model_type in STOCK_CLS_MODEL_TYPES:
        config = AutoConfig.for_model(**{**encoder_config.to_dict(), **label_args})
        with quiet():
            model = AutoModelForSequenceClassification.from_config(config)
        model.pooling = "cls"  # read by the LoRA method and exports; the stock model has no such field
        return model
    # The encoder's own label fields and provenance mean nothing inside a classifier: left out.
    settings = {k: v for k, v in encoder_config.to_dict().items() if k not in _NOT_ENCODER_SETTINGS}
    config = PooledClassifierConfig(encoder_config=settings, pooling=pooling, **label_args)
    return PooledClassifier(config)


def _with_encoder(model: nn.Module, encoder: nn.Module) -> nn.Module:
    """Copy the pre-trained encoder's weights into ``model``'s encoder (every key must fit)."""
    model.base_model.load_state_dict(encoder.state_dict(), strict=True)
    return model


def build_classifier(
    path: Path,
    labels: list[str],
    problem_type: str = SINGLE_LABEL,
    *,
    pooling: str = "auto",
    seed: int | None = None,
) -> PreTrainedModel:
    """A classifier with the pre-trained encoder at ``path`` and a fresh head for ``labels``.

    The head is initialised under ``seed`` so two runs with the same seed start identically.
    ``problem_type`` is transformers' (``single_label_classification`` or
    ``multi_label_classification``): it picks the loss ``from_pretrained`` users get; the
    architecture is the same for both.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if pooling == "auto":
        pooling = detect_pooling(path)
    encoder = _load_encoder(path)
    if seed is not None:
        # The global stream: the training loop's dropout masks go on from it. train() runs inside
        # keeping_global_rng, so the caller's own stream is put back after the run.
        torch.manual_seed(seed)
    model = _with_encoder(_new_classifier(encoder.config, labels, problem_type, pooling), encoder)
    model.config.name_or_path = str(path)  # which base an adapter refers to (peft records it)
    return model


def load_classifier(folder: Path, *, problem_type: str = SINGLE_LABEL) -> PreTrainedModel:
    """A whole fine-tuned classifier from ``folder``: a ``save_pretrained`` folder, or the old
    layout (encoder folder + ``head.safetensors`` + ``head.json``), converted on load."""
    folder = Path(folder)
    if (folder / LEGACY_HEAD_CONFIG).is_file():
        return _load_legacy(folder, problem_type)
    from tunelab.quiet import no_progress_bars, quiet

    try:
        with quiet(), no_progress_bars():
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), use_safetensors=True, trust_remote_code=False
            )
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelNotFoundError(
            f"model folder {folder}: cannot load the classifier ({load_failure(exc)}); "
            "give a folder written by save_pretrained (config.json and model.safetensors)"
        ) from None
    if not isinstance(model, PooledClassifier):
        model.pooling = "cls"
    return model


def is_classifier_config(config: PretrainedConfig) -> bool:
    """True for a classifier's config; False for a bare encoder's (what the old layout saved)."""
    architectures = getattr(config, "architectures", None) or []
    return isinstance(config, PooledClassifierConfig) or any(
        a.endswith("ForSequenceClassification") for a in architectures
    )


def classifier_from_config(
    config: PretrainedConfig, *, pooling: str, num_labels: int, problem_type: str = SINGLE_LABEL
) -> PreTrainedModel:
    """A randomly initialised classifier of the architecture ``config`` describes (weights follow).

    A bare encoder's config (the old layout) gets the head ``pooling`` and ``num_labels`` describe;
    its state-dict keys are then renamed with ``legacy_key``.
    """
    from tunelab.quiet import quiet

    if not is_classifier_config(config):
        return _new_classifier(config, [f"LABEL_{i}" for i in range(num_labels)], problem_type, pooling)
    with quiet():
        model = AutoModelForSequenceClassification.from_config(config)
    if not isinstance(model, PooledClassifier):
        model.pooling = "cls"
    return model


def legacy_key(model: nn.Module, key: str) -> str:
    """A state-dict key (or module name) of the old classifier (``encoder.*``, ``classifier.*``)
    as ``model`` names it (``bert.*`` for BERT's stock classifier)."""
    first, _, rest = key.partition(".")
    return f"{model.base_model_prefix}.{rest}" if first == "encoder" and rest else key


def _load_legacy(folder: Path, problem_type: str) -> PreTrainedModel:
    from safetensors.torch import load_file

    try:
        head_cfg = json.loads((folder / LEGACY_HEAD_CONFIG).read_text(encoding="utf-8"))
        pooling, num_labels = head_cfg["pooling"], int(head_cfg["num_labels"])
        head = load_file(str(folder / LEGACY_HEAD_WEIGHTS))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelNotFoundError(
            f"model folder {folder}: unreadable {LEGACY_HEAD_CONFIG} or {LEGACY_HEAD_WEIGHTS} "
            f"({first_line(exc)[:200]}); train the run again"
        ) from None
    encoder = _load_encoder(folder)
    # The old layout stored no label names; the run's labels.json has them (the caller knows them).
    model = _with_encoder(
        classifier_from_config(
            encoder.config, pooling=pooling, num_labels=num_labels, problem_type=problem_type
        ),
        encoder,
    )
    model.classifier.load_state_dict(head, strict=True)
    return model


def save_classifier(model: nn.Module, folder: Path) -> None:
    """``save_pretrained`` (safetensors), quietly; a PooledClassifier brings its modeling file."""
    from tunelab.quiet import no_progress_bars

    folder.mkdir(parents=True, exist_ok=True)
    with no_progress_bars():
        model.save_pretrained(str(folder))
    open_permissions(folder)  # safetensors writes 0600


def pooled_features(model: nn.Module, **batch: torch.Tensor) -> torch.Tensor:
    """What the head reads for ``batch``: the pooled vector (B, H), dropout applied as the mode says.

    Taken from the head's input with a hook, so it is right for every architecture built here
    (mean pooling, BERT's pooler) without repeating their pooling code.
    """
    seen: list[torch.Tensor] = []
    handle = model.classifier.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        model(**batch)
    finally:
        handle.remove()
    return seen[0]  # (B, H)


#: Files a tokenizer is built from: without one, transformers builds a 5-token BERT tokenizer
#: that reads every word as [UNK] instead of failing (a folder written by model.save_pretrained alone).
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")


def has_tokenizer_files(folder: Path) -> bool:
    """Whether ``folder`` holds a tokenizer's files (``*.model``: other sentencepiece names such as
    sentencepiece.bpe.model); without them transformers builds a 5-token tokenizer without a word."""
    return any((folder / f).is_file() for f in TOKENIZER_FILES) or any(folder.glob("*.model"))


def load_tokenizer(path: Path):
    """The folder's fast tokenizer; a missing or broken one is one ``ModelNotFoundError`` line naming it."""
    from transformers import AutoTokenizer

    folder = Path(path)
    if folder.is_dir() and not has_tokenizer_files(folder):
        raise ModelNotFoundError(
            f"model folder {path}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
            "save the tokenizer into the folder with tokenizer.save_pretrained()"
        )
    if folder.is_dir():
        _require_config_object(folder)
    try:
        return AutoTokenizer.from_pretrained(str(path), use_fast=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        why = load_failure(exc) if "custom code" in str(exc) else type(exc).__name__
        raise ModelNotFoundError(
            f"model folder {path}: no usable tokenizer ({why}); "
            "save the tokenizer into the folder with tokenizer.save_pretrained()"
        ) from None
    except Exception as exc:  # tokenizers raises a bare Exception for an unparsable tokenizer.json
        what = "tokenizer.json" if (folder / "tokenizer.json").is_file() else "its tokenizer files"
        raise ModelNotFoundError(
            f"model folder {path}: {what} unreadable ({first_line(exc)[:200]}); "
            "save the tokenizer into the folder with tokenizer.save_pretrained()"
        ) from None


def _require_config_object(folder: Path) -> None:
    """The folder's ``config.json``, if it has one, is a JSON object.

    ``AutoTokenizer`` reads it first: one cut short was reported as "no usable tokenizer
    (OSError)", and ``[]`` as "tokenizer.json unreadable (... must be a mapping, not list)",
    sending the user to a tokenizer that was fine.
    """
    config = folder / "config.json"
    if not config.is_file():
        return
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        why: str = first_line(exc)[:200]
    else:
        if isinstance(data, dict):
            return
        kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
        why = f"a JSON {kinds.get(type(data), 'null')}"
    raise ModelNotFoundError(
        f"model folder {folder}: config.json is not a JSON object ({why}); "
        "save the model again with save_pretrained()"
    )


def require_matching_vocab(tokenizer: Any, vocab_size: Any, folder: Path | str) -> None:
    """The tokenizer's ids all fit the model's embedding table.

    A folder holding another model's tokenizer (ids up to 30521 beside a 1000-token vocabulary)
    passed ``validate`` and failed in ``train``'s first forward pass with an IndexError naming
    nothing; an unknown size (``vocab_size`` not a number) is not checked.
    """
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size <= 0:
        return
    try:
        largest = max(tokenizer.get_vocab().values(), default=-1)
    except (AttributeError, NotImplementedError, TypeError, ValueError):  # a tokenizer without a vocabulary
        return
    if largest >= vocab_size:
        raise ModelNotFoundError(
            f"model folder {folder}: its tokenizer has {largest + 1} tokens but the model's vocabulary has "
            f"{vocab_size} (a tokenizer from another model?); save the model's own tokenizer into the "
            "folder with tokenizer.save_pretrained()"
        )
