"""The customer-service bot (issue 10): answer what it knows, look up what it half-knows, hand off
the rest to a person.

Modules: ``answers`` (the answers file), ``knowledge`` (passages and their index), ``bot`` (``Bot``,
``Reply``, the decision per message), ``build`` (``build_bot``: the bot folder), ``tune``
(``tune_bot``: thresholds from dev data), ``evaluate`` (``evaluate_bot``,
``evaluate_conversations``), ``config`` (bot.yaml). Names are imported on first use (PEP 562), so
importing the package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Bot": "tunelab.apps.support.bot",
    "Reply": "tunelab.apps.support.bot",
    "build_bot": "tunelab.apps.support.build",
    "BuildResult": "tunelab.apps.support.build",
    "tune_bot": "tunelab.apps.support.tune",
    "TuneResult": "tunelab.apps.support.tune",
    "evaluate_bot": "tunelab.apps.support.evaluate",
    "evaluate_conversations": "tunelab.apps.support.evaluate",
    "read_answers": "tunelab.apps.support.answers",
    "KnowledgeIndex": "tunelab.apps.support.knowledge",
    "read_passages": "tunelab.apps.support.knowledge",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
