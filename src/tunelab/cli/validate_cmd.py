"""``tunelab validate``: check a run file, its overrides, the method options and the data."""

from __future__ import annotations

import argparse

from tunelab.cli.config_args import add_config_arguments, config_and_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a config and its data without training",
        description="Check a run config (every problem at once), its method options, model and data files.",
        epilog="example:\n  tunelab validate configs/banking77.yaml method=lora",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tunelab.config import RunConfig
    from tunelab.methods import get_method
    from tunelab.models import resolve_model
    from tunelab.tasks import get_task

    config, overrides = config_and_overrides(args)
    cfg = RunConfig.from_yaml(config, overrides)
    get_method(cfg.method.name).parse_options(cfg.method.options)
    model = resolve_model(cfg.model.name)
    print(f"config ok: model {cfg.model.name} ({model.source}: {model.path}), method {cfg.method.name}")
    if cfg.data.train:
        splits = get_task(cfg.data.task).load_splits(cfg.data)
        sizes = ", ".join(
            f"{name} {len(ds)}"
            for name, ds in (("train", splits.train), ("dev", splits.dev), ("test", splits.test))
            if ds
        )
        print(f"data ok: {len(splits.labels.names)} labels ({splits.labels.task}); rows: {sizes}")
        for note in splits.notes:
            print(f"  note: {note}")
    return 0
