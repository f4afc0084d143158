"""Checks shared by the methods' option dataclasses: every problem found, reported in one line.

A method's ``__post_init__`` makes a ``Problems("lora")``, checks each field, then calls
``raise_if_any()``: ``method lora: r=0 (use a positive integer such as 8); dropout=1.0 (use [0, 1))``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tunelab.errors import ConfigError

ALL_LINEAR = "all-linear"  # peft's word for every linear layer but the head


def names_as_list(value: Any) -> Any:
    """One module name as typed on the command line (``target_modules=query``) -> ``["query"]``.

    peft reads a string as a regex over whole module paths (``all-linear`` apart), so a bare name
    matched no layer: "No modules were targeted" for target modules, and IA3's feed-forward layers
    silently rescaled at the output. A list matches by name suffix, as the user meant. Anything
    else (a list, a regex such as ``.*query``, ``all-linear``) is returned as it is.
    """
    if isinstance(value, str) and value != ALL_LINEAR and re.fullmatch(r"[\w.]+", value):
        return [value]
    return value


class Problems:
    """What is wrong with one method's options, each naming the field, its value and a fix."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.found: list[str] = []

    def add(self, text: str) -> None:
        self.found.append(text)

    def positive_int(self, name: str, value: Any, example: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.add(f"{name}={value!r} (use a positive integer such as {example})")

    def positive(self, name: str, value: Any, example: float) -> None:
        # finite too: nan, inf and 10**400 passed `validate` and failed mid-run (learning rate, epochs)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e300:
            self.add(f"{name}={value!r} (use a positive number such as {example:g})")

    def probability(self, name: str, value: Any) -> None:
        """A dropout-like rate: in [0, 1)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            self.add(f"{name}={value!r} (use [0, 1))")

    def fraction(self, name: str, value: Any, example: float) -> None:
        """A share of the training steps: in [0, 1)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            self.add(f"{name}={value!r} (use a fraction of the training steps in [0, 1), e.g. {example:g})")

    def choice(self, name: str, value: Any, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        if value not in allowed:
            self.add(f"{name}={value!r} (use one of {', '.join(allowed)})")

    def modules(self, name: str, value: Any, example: str) -> Any:
        """peft's ``target_modules``: a non-empty list of module names, or a regex or ``all-linear``.

        Returns the value to keep: one module name becomes a list of it (``names_as_list``).
        """
        if not value:
            self.add(f"{name} is empty (e.g. {example})")
        elif not isinstance(value, str | list) or (
            isinstance(value, list) and not all(isinstance(v, str) and v for v in value)
        ):
            self.add(f"{name}={value!r} (use a list of module names such as {example}, or one regex)")
        else:
            self.regex(name, value, example)
        return names_as_list(value)

    def regex(self, name: str, value: Any, example: str) -> None:
        """A string other than ``all-linear`` is peft's regex: one that does not compile failed in
        train as "unexpected error"."""
        if isinstance(value, str) and value != ALL_LINEAR:
            try:
                re.compile(value)
            except re.error as exc:
                self.add(
                    f"{name}={value!r} is not a valid regex ({exc}); give module names such as {example}"
                )

    def raise_if_any(self) -> None:
        if self.found:
            raise ConfigError(f"method {self.method}: " + "; ".join(self.found))
