"""Ensembles: several runs with one label set averaged into one run folder (``tunelab ensemble``).

Importing this package registers the ``ensemble`` artifact format with the predictor and its
export (each member exported, see ``tunelab.ensembling.export``), the way ``tunelab.compress``
registers its formats.
"""

from __future__ import annotations

from tunelab.compress.export import register_composite_export
from tunelab.ensembling.backend import FORMAT, EnsembleBackend, load_ensemble
from tunelab.ensembling.build import EnsembleResult, ensemble
from tunelab.ensembling.export import export_ensemble
from tunelab.inference.backends import register_format

register_format(FORMAT, load_ensemble)
register_composite_export(FORMAT, export_ensemble)

__all__ = ["EnsembleBackend", "EnsembleResult", "ensemble"]
