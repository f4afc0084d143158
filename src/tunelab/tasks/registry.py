"""The registry of tasks, by the ``data.task`` name that selects each one.

Built-in tasks register themselves when their folder is imported; ``get_task`` imports them on
first use, so importing the registry stays cheap and free of import cycles. A task registered from
outside tunelab (a plug-in) loads the built-ins first, so that a plug-in reusing a built-in name is
refused when it registers instead of silently replacing the built-in (every later lookup then
failed inside tunelab's own import with "already registered").
"""

from __future__ import annotations

import importlib

from tunelab.errors import ConfigError
from tunelab.tasks.base import Task

_REGISTRY: dict[str, Task] = {}
_BUILT_IN = ("tunelab.tasks.classification", "tunelab.tasks.token_classification")
# ``Task.output``'s values: code built on runs (the apps, ``predict``) branches on exactly these.
OUTPUTS = ("label", "labels", "entities")


def register_task(task: Task) -> Task:
    """Add a task under its name, after checking the class attributes tunelab reads.

    Raises:
        ConfigError: an attribute of the wrong kind (``metrics = ("acc")`` is a str, not a tuple), or
            a name already registered, naming the plug-in's ``module.Class`` (and the other's).
    """
    outside = not _is_built_in(task)
    if outside:
        _load_built_in()
    _check_task(task, outside=outside)
    old = _REGISTRY.get(task.name)
    if old is not None:
        raise ConfigError(
            f"task plug-in {_where(task)}: the name {task.name!r} is already registered by {_where(old)}; "
            "give the plug-in's class another name"
        )
    _REGISTRY[task.name] = task
    return task


def _where(task: Task) -> str:
    return f"{type(task).__module__}.{type(task).__qualname__}"


def _is_built_in(task: Task) -> bool:
    module = type(task).__module__
    return any(module == m or module.startswith(m + ".") for m in _BUILT_IN)


def _is_names(value: object) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, str) and v for v in value)


def _check_task(task: Task, *, outside: bool) -> None:
    """The attributes tunelab reads without calling the task: a wrong kind failed far from the
    plug-in (``metrics = ("acc")`` made ``train.metric: auto`` the metric 'a' and ``tunelab tasks``
    print letters; ``metrics = ()`` an IndexError), so each is checked here, all in one message."""
    problems = []
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not name.strip():
        problems.append(f"name must be a non-empty str (the data.task value), not {name!r}")
    metrics = getattr(task, "metrics", None)
    if not _is_names(metrics) or not metrics:
        problems.append(
            f"metrics must be a non-empty tuple of metric names, the default first, not {metrics!r} "
            "(one name needs a trailing comma: ('acc',))"
        )
    headline = getattr(task, "headline_keys", None)
    if not _is_names(headline):
        problems.append(f"headline_keys must be a tuple of metric names, not {headline!r}")
    output = getattr(task, "output", None)
    if output not in OUTPUTS:
        problems.append(f"output must be one of {', '.join(map(repr, OUTPUTS))}, not {output!r}")
    if outside:
        # The built-ins' schemas live in the server's module, which registering them must not
        # import; they are tested against the API response instead.
        problems.extend(_schema_problem(task))
    if problems:
        raise ConfigError(f"task plug-in {_where(task)}: " + "; ".join(problems))


def _schema_problem(task: Task) -> list[str]:
    from pydantic import BaseModel

    try:
        schema = task.result_schema
    except Exception as exc:  # a plug-in's property: whatever it raises is its own bug, named here
        return [f"result_schema raised {type(exc).__name__}: {' '.join(str(exc).split())}"]
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return [f"result_schema must be a pydantic BaseModel subclass (one text's result), not {schema!r}"]
    return []


def _load_built_in() -> None:
    for module in _BUILT_IN:
        importlib.import_module(module)


def get_task(name: str) -> Task:
    """Look a task up by name; an unknown name fails listing the known ones."""
    if name not in _REGISTRY:
        _load_built_in()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_tasks())
        raise ConfigError(f"task {name!r} is not known; available tasks: {known}") from None


def loaded_task(name: str) -> Task | None:
    """The task registered under ``name`` in this process so far, without loading the built-ins
    (they import pandas and torch): for callers that only need a plug-in's own answers, such as
    the headline scores ``tunelab eval RUN`` prints from metrics.json in a fraction of a second."""
    return _REGISTRY.get(name)


def available_tasks() -> list[str]:
    """Every registered task name, built-in ones included."""
    _load_built_in()
    return sorted(_REGISTRY)
