"""``tunelab tasks``: the registered tasks (``data.task`` values) with one line each."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tasks",
        help="list the tasks a run can train (data.task)",
        description="List the registered tasks, the values data.task takes, with their metrics.",
        epilog="examples:\n  tunelab tasks\n"
        "  tunelab validate configs/demo.yaml data.task=single_label name=demo-task  # a value listed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """List every task; one that cannot be listed (a plug-in's broken attribute) is a one-line note
    on stderr, and exit status 1, instead of a traceback that hid every task after it."""
    import sys

    from tunelab.tasks import available_tasks, get_task

    broken = 0
    for name in available_tasks():
        task = get_task(name)
        try:
            lines = _describe(name, task)
        except Exception as exc:  # a plug-in's attribute or property: its bug, named, not ours to crash on
            broken += 1
            where = f"{type(task).__module__}.{type(task).__qualname__}"
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            print(
                f"{name}: cannot be listed (task plug-in {where}: {reason}); fix the plug-in", file=sys.stderr
            )
            continue
        print("\n".join(lines))
    return 1 if broken else 0


def _describe(name: str, task: object) -> list[str]:
    description, metrics = task.description, task.metrics  # type: ignore[attr-defined]
    if not isinstance(metrics, tuple) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise ValueError(f"metrics is {metrics!r}, not a non-empty tuple of metric names")
    first, *rest = metrics
    return [f"{name}: {description}", f"  train.metric: {', '.join([f'{first} (auto, the default)', *rest])}"]
