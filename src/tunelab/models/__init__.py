"""Resolve a model name to local weights (bundled packages, local folders, the hub when online)
and build classifiers from them."""

from tunelab.models.classifier import build_classifier, load_classifier, load_tokenizer
from tunelab.models.resolve import BUNDLED_MODELS, ResolvedModel, resolve_model

__all__ = [
    "BUNDLED_MODELS",
    "ResolvedModel",
    "build_classifier",
    "load_classifier",
    "load_tokenizer",
    "resolve_model",
]
