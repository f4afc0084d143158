"""Inference on finished runs: one text, a list, or a file."""

from tunelab.predict.files import predict_file
from tunelab.predict.predictor import Predictor, load

__all__ = ["Predictor", "load", "predict_file"]
