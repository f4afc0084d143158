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
    from tunelab.tasks import available_tasks, get_task

    for name in available_tasks():
        task = get_task(name)
        print(f"{name}: {task.description}")
        first, *rest = task.metrics
        print(f"  train.metric: {', '.join([f'{first} (auto, the default)', *rest])}")
    return 0
