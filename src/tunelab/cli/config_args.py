"""The ``CONFIG [key=value ...]`` arguments shared by ``train`` and ``validate``."""

from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML run file (omit to use the built-in defaults)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=3 method=lora")


def config_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """Split the positional arguments; ``tunelab train data.train=x.csv`` has no YAML file at all."""
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config:
        return None, [config, *overrides]
    return config, overrides
