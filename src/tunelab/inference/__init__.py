"""Inference on finished runs: one text, a list, or a file."""

from tunelab.inference.files import predict_file
from tunelab.inference.predictor import Predictor, load

__all__ = ["Predictor", "load", "predict_file"]
