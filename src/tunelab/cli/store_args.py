"""``--db`` and ``--data-dir``: where the commands that manage keys and usage find the database."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import ConfigError

if TYPE_CHECKING:
    from tunelab.serve.store import Store

_RELATIVE = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        help="postgresql://user@host:5432/dbname or a SQLite file (default: DATA_DIR/tunelab.db when "
        "--data-dir is given, else $TUNELAB_DB, else DATA_DIR/tunelab.db)",
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)


DATA_DIR_HELP = (
    "folder of the SQLite database (default: $TUNELAB_DATA_DIR, else the user data folder, "
    "~/.local/share/tunelab on Linux; never the current directory)"
)


def store_lines(
    db: str | None, data_dir: str | Path, *, chosen: bool, new: bool = False, writes: bool = False
) -> list[str]:
    """What a command says on stderr: the database it used, and an old ``./.tunelab`` it ignores.

    Args:
        chosen: the data folder came from ``--data-dir`` or ``$TUNELAB_DATA_DIR`` (no legacy note).
        new: the SQLite file did not exist before this command (it had no keys or usage).
        writes: the command wrote to it (``keys create``): a new database is then only "new", since
            "no keys or usage yet" printed right after the key it created was wrong.
    """
    from tunelab.serve.store import DB_FILE, LEGACY_DATA_DIR, describe_store

    note = (" (new)" if writes else " (new: no keys or usage yet)") if new else ""
    lines = [f"database: {describe_store(db, data_dir)}{note}"]
    legacy, used = Path(LEGACY_DATA_DIR) / DB_FILE, Path(data_dir) / DB_FILE
    if not db and not chosen and legacy.is_file() and legacy.resolve() != used.resolve():
        lines.append(
            f"note: {legacy} (the old default, per directory) is not used; "
            f"give --data-dir {LEGACY_DATA_DIR} to use it, or move it into {data_dir}"
        )
    return lines


def open_store_noting(
    db: str | None,
    data_dir: str | Path,
    *,
    chosen: bool,
    opener: Callable[..., Store] | None = None,
    writes: bool = False,
) -> tuple[Store, list[str]]:
    """Open the store and return it with the lines that say which database it is (``store_lines``).

    ``opener(db, data_dir)`` opens it (default ``open_store``; ``tunelab serve --monitor`` gives
    ``open_monitor_store``, the same database with the monitor's tables too). ``writes``: the
    command writes to it (see ``store_lines``).
    """
    from tunelab.serve.store import open_store, sqlite_file

    file = sqlite_file(db, data_dir)
    new = file is not None and not file.exists()
    store = (opener or open_store)(db, data_dir)
    return store, store_lines(db, data_dir, chosen=chosen, new=new, writes=writes)


def data_dir_chosen(args: argparse.Namespace) -> bool:
    """The data folder was given (``--data-dir`` or ``$TUNELAB_DATA_DIR``), not the default."""
    return bool(getattr(args, "data_dir", None) or os.environ.get("TUNELAB_DATA_DIR"))


@contextmanager
def open_store_from_args(
    args: argparse.Namespace, *, writes: bool = False, create: bool = True
) -> Iterator[Store]:
    """Open the store named by ``--db``/``--data-dir`` (else the environment, else the user data
    folder) and, once the command has succeeded, say on stderr which database it used (``writes``:
    the command writes to it, so a new one is not said to have no keys).

    Defaults are read at run time, so ``TUNELAB_DB`` / ``TUNELAB_DATA_DIR`` set later still count.
    On failure the error stays the command's one line. ``create=False`` (commands that only read or
    change what is there): a SQLite file named by ``--db`` that does not exist is refused, not made
    with its folders (a mistyped path answered "no keys yet" and left an empty database behind).
    """
    from tunelab.serve.store import chosen_db, default_data_dir, open_store

    db, data_dir = chosen_db(args.db, args.data_dir), args.data_dir or default_data_dir()

    # where the database's name came from, for the refusal: a misspelt $TUNELAB_DB made an empty
    # database for `keys list` while the same name given as --db was refused
    named = "--db" if args.db else "$TUNELAB_DB"

    def opener(db: str | None, data_dir: str | Path) -> Store:
        # only a file named by --db or $TUNELAB_DB: the default one in the data folder is made
        # ("no keys yet")
        return open_store(
            db,
            data_dir,
            create=create or not db,
            missing=lambda file: (
                f"{named} {db}: no such database ({file}); check the path "
                f"(`tunelab keys create --name NAME --db {db}` makes one)"
            ),
        )

    from tunelab.serve.store import KeyNotFoundError

    store, lines = open_store_noting(db, data_dir, chosen=data_dir_chosen(args), opener=opener, writes=writes)
    with store:
        try:
            yield store
        except KeyNotFoundError as exc:
            # "no key named ..." from a database the user did not mean: say which one was read
            raise KeyNotFoundError(f"{exc} (in {lines[0].removeprefix('database: ')})") from None
    for line in lines:
        print(line, file=sys.stderr)


def parse_when(text: str | None, option: str) -> datetime | None:
    """``2026-11-01``, ``2026-11-01T12:00``, ``...+02:00`` (naive = UTC), or ``7d``/``24h``/``30m`` ago."""
    if text is None:
        return None
    value = text.strip()
    problem = ConfigError(
        f"{option} {text!r}: use a date (2026-11-01), a time (2026-11-01T12:00, UTC unless it has "
        "an offset) or an age (30m, 24h, 7d, 4w) within the calendar"
    )
    try:
        if value[:-1].isdigit() and value[-1:].lower() in _RELATIVE:
            return datetime.now(UTC) - timedelta(**{_RELATIVE[value[-1].lower()]: int(value[:-1])})
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or past year 1 or 9999 (in UTC)
        raise problem from None
