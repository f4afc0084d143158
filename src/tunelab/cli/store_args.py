"""``--db`` and ``--data-dir``: where the commands that manage keys and usage find the database."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tunelab.errors import ConfigError

if TYPE_CHECKING:
    from tunelab.serve.store import Store

_RELATIVE = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        help="postgresql://user@host:5432/dbname or a SQLite file (default: $TUNELAB_DB, "
        "else DATA_DIR/tunelab.db)",
    )
    p.add_argument("--data-dir", help="data folder (default: $TUNELAB_DATA_DIR, else ./.tunelab)")


def open_store_from_args(args: argparse.Namespace) -> Store:
    """Defaults are read at run time, so ``TUNELAB_DB`` / ``TUNELAB_DATA_DIR`` set later still count."""
    from tunelab.serve.store import default_data_dir, default_db, open_store

    return open_store(args.db or default_db(), args.data_dir or default_data_dir())


def parse_when(text: str | None, option: str) -> datetime | None:
    """``2026-11-01``, ``2026-11-01T12:00``, ``...+02:00`` (naive = UTC), or ``7d``/``24h``/``30m`` ago."""
    if text is None:
        return None
    value = text.strip()
    if value[:-1].isdigit() and value[-1:].lower() in _RELATIVE:
        return datetime.now(UTC) - timedelta(**{_RELATIVE[value[-1].lower()]: int(value[:-1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: use a date (2026-11-01), a time (2026-11-01T12:00, UTC unless it has "
            "an offset) or an age (30m, 24h, 7d, 4w)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
