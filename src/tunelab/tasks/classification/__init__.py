"""Sequence classification: one label per text (``single_label``) or a set of them (``multi_label``).

One class, :class:`ClassificationTask`, registered twice: the two differ only in how a label cell
is read, the loss (softmax cross-entropy or per-label sigmoid), the tuned decision threshold and
how logits become predictions.
"""

from tunelab.tasks.classification.task import ClassificationTask
from tunelab.tasks.registry import register_task

SINGLE_LABEL = register_task(ClassificationTask(multi=False))
MULTI_LABEL = register_task(ClassificationTask(multi=True))

__all__ = ["MULTI_LABEL", "SINGLE_LABEL", "ClassificationTask"]
