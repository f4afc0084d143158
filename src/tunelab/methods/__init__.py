"""Fine-tuning methods, one folder each, registered by name."""

from tunelab.methods.registry import Method, available_methods, get_method, register_method

# Importing a method folder registers it. A new method is one folder plus one line here.
from tunelab.methods import full as _full  # noqa: F401  isort: skip
from tunelab.methods import lora as _lora  # noqa: F401  isort: skip
from tunelab.methods import adalora as _adalora  # noqa: F401  isort: skip
from tunelab.methods import ia3 as _ia3  # noqa: F401  isort: skip
from tunelab.methods import loha as _loha  # noqa: F401  isort: skip
from tunelab.methods import lokr as _lokr  # noqa: F401  isort: skip
from tunelab.methods import prompt as _prompt  # noqa: F401  isort: skip
from tunelab.methods import prefix as _prefix  # noqa: F401  isort: skip
from tunelab.methods import adapter as _adapter  # noqa: F401  isort: skip
from tunelab.methods import setfit as _setfit  # noqa: F401  isort: skip

__all__ = ["Method", "available_methods", "get_method", "register_method"]
