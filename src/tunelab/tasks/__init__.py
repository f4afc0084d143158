"""Tasks: what differs between, say, sentence classification and named-entity recognition.

Each task lives in a folder of its own here and is registered by name as a plug-in (how its
labelled data is read and validated, its labels encoded, its head, loss, metrics and predictions),
so that the training loop, ``compress``, ``serve`` and the CLI never branch on task names: they
call ``get_task(name)``'s hooks (``tunelab.tasks.base.Task``).
"""

from tunelab.tasks.base import Task
from tunelab.tasks.registry import available_tasks, get_task, register_task

__all__ = ["Task", "available_tasks", "get_task", "register_task"]
