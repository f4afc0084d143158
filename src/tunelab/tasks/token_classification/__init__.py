"""Token classification (named-entity recognition): the ``token_classification`` task.

Modules: ``reading`` (CoNLL and JSONL readers), ``data`` (formats, label map, splits),
``encoding`` (sub-token alignment and windows), ``metrics`` (seqeval, error analysis),
``entities`` (predictions with character offsets), ``report``, and ``task`` (the hooks).
"""

from tunelab.tasks.registry import register_task
from tunelab.tasks.token_classification.task import TokenClassificationTask

register_task(TokenClassificationTask())
