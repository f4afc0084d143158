"""The ``CONFIG [key=value ...]`` and ``--from RUN [key=value ...]`` arguments of train and validate."""

from __future__ import annotations

import argparse
from pathlib import Path

from tunelab.errors import ConfigError


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML run file (omit to use the built-in defaults)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=3 method=lora")


def config_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """Split the positional arguments; ``tunelab train data.train=x.csv`` has no YAML file at all."""
    config, overrides = args.config, list(args.overrides)
    # A run file's name may hold '=' (`lr=1e-4.yaml` in a sweep): it was taken for an override. Only
    # an existing file, since an override's value may end in .yaml too (`data.train=rows.yml`).
    if config is not None and "=" in config and not Path(config).is_file():
        return None, [config, *overrides]
    return config, overrides


def add_from_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="from_run",
        nargs="+",  # RUN, then its overrides: argparse cannot take positionals on both sides of it
        metavar=("RUN", "key=value"),
        help="continue a finished run with new rows and new labels (continual learning): its settings, "
        "label ids and head are kept, plus data.train=... and other overrides",
    )


def from_run_and_overrides(args: argparse.Namespace, overrides: list[str]) -> tuple[str | None, list[str]]:
    """``--from RUN key=value ...``: the run, and every override (those after it come last)."""
    if not args.from_run:
        return None, overrides
    from_run, more = args.from_run[0], args.from_run[1:]
    bad = [item for item in more if "=" not in item]
    if bad:
        raise ConfigError(f"--from {from_run}: {bad[0]!r} is not a key=value override; give one run folder")
    return from_run, [*overrides, *more]


class FileWithOptions(argparse.Action):
    """``--data FILE [data.FIELD=VALUE ...]``: a file and its own reading options.

    ``nargs="+"`` swallows whatever follows, so ``tunelab eval --data f.csv runs/x`` would take the
    run folder for an option and then report the run as missing; this says what happened instead.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        items = list(values)  # type: ignore[call-overload]  # nargs="+" gives a list
        earlier = getattr(namespace, self.dest, None)
        if earlier:  # argparse's "last wins": the first file (and its options) went without a word
            raise argparse.ArgumentError(
                self,
                f"given twice ({earlier[0]!r}, then {items[0]!r}): one file a command; run it once per file",
            )
        for item in items[1:]:
            if not (item.startswith("data.") and "=" in item):
                raise argparse.ArgumentError(
                    self,
                    f"{item!r} is not a data.FIELD=VALUE option for {items[0]!r}; give the run folder "
                    f"before {option_string} (e.g. {parser.prog} RUN {option_string} FILE "
                    "[data.FIELD=VALUE ...])",
                )
        setattr(namespace, self.dest, items)


def add_file_with_options(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    """Declare ``FLAG FILE [data.FIELD=VALUE ...]`` the same way for eval, export and predict."""
    parser.add_argument(
        flag,
        nargs="+",
        action=FileWithOptions,
        metavar=("FILE", "data.FIELD=VALUE"),
        help=help,
    )


def file_and_options(value: list[str] | None) -> tuple[str | None, list[str]]:
    """Split a FileWithOptions value into the file and its data.* options (None, [] when not given)."""
    return (value[0], value[1:]) if value else (None, [])
