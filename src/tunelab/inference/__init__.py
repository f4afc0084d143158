"""Inference on finished runs and exported artifacts: one text, a list, a DataFrame column, or a file.

Named ``inference`` (not ``predict``) so that ``tunelab.predict`` is the public function and never a
module that shadows it.
"""

from tunelab.inference.files import predict_file
from tunelab.inference.predictor import Predictor, load, predict

__all__ = ["Predictor", "load", "predict", "predict_file"]
