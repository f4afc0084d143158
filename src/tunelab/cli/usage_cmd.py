"""``tunelab usage``: what each key used, per model, or every request as CSV for billing."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterable
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tunelab.cli.store_args import add_store_arguments, open_store_from_args, parse_when
from tunelab.errors import TunelabError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tunelab.serve.store import Store, UsageGroup, UsageRecord

HELP = """examples:
  tunelab usage                                   # every key and model, all time
  tunelab usage --since 2026-11-01 --until 2026-12-01 --key acme
  tunelab usage --since 7d
  tunelab usage --since 2026-11-01 --csv november.csv   # one row per request, for billing
  tunelab usage --csv | head                      # CSV to stdout

An existing --csv FILE is left alone unless --overwrite.

--since is inclusive, --until exclusive; times are UTC unless they carry an offset.
Texts and tokens count successful (2xx) requests: what the quota counts and what is billed.
A support bot's messages show as model support/<bot> (one text each).
"""

CSV_COLUMNS = (
    "time",
    "key",
    "key_id",
    "model",
    "version",
    "texts",
    "tokens",
    "status",
    "latency_ms",
    "request_id",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "usage",
        help="usage per key and model, or per request as CSV",
        description="Summarise recorded API usage per key and model, or export every request as CSV.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--since", help="from this date/time (inclusive), e.g. 2026-11-01 or 7d")
    p.add_argument("--until", help="up to this date/time (exclusive), e.g. 2026-12-01")
    p.add_argument("--key", help="only this key (name or id); a name covers every key that had it")
    p.add_argument(
        "--csv",
        nargs="?",
        const="-",
        metavar="FILE",
        help="one CSV row per request, to FILE or (no FILE) to stdout",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv FILE")
    add_store_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    since, until = parse_when(args.since, "--since"), parse_when(args.until, "--until")
    if since and until and since >= until:
        raise TunelabError(f"--since {args.since} is not before --until {args.until}")
    if args.csv and args.csv != "-":
        from tunelab.runs.folder import check_parents_are_folders

        if Path(args.csv).is_dir():  # was "unexpected IsADirectoryError" at the rename
            raise TunelabError(
                f"--csv {args.csv}: a folder; give a file, e.g. {Path(args.csv) / 'usage.csv'}"
            )
        check_parents_are_folders(Path(args.csv), "--csv")
        # it replaced the file without a word (the database itself, pointed at, lost every key)
        if Path(args.csv).exists() and not args.overwrite:
            raise TunelabError(f"--csv {args.csv} exists; give --overwrite to replace it, or another file")
        from tunelab.preflight import check_writable

        check_writable(Path(args.csv), "--csv", error=TunelabError)
    with open_store_from_args(args, create=False) as store:
        filters = {"since": since, "until": until, **_key_filter(store, args.key)}
        if args.csv:
            # The rows as they are read, a block at a time: all of them in memory first took
            # 500 MB and printed nothing for seconds on a large table. ``closing``: an early stop
            # (`| head`, a full disk) ends the read transaction before the store closes.
            with closing(_usage_rows(store, filters)) as records:
                return _write_csv(records, args.csv)
        groups = store.usage_groups(**filters)
    _print_summary(groups)
    return 0


def _key_filter(store: Store, key: str | None) -> dict[str, str]:
    """``--key``: an id names one key; a name every key that had it (a revoked one, its successor)."""
    if key is None:
        return {}
    if store.get_key(key) is not None:
        return {"key_id": key}
    if any(k.name == key for k in store.list_keys()):
        return {"key_name": key}
    raise TunelabError(f"--key {key!r}: no key has this name or id (`tunelab keys list` shows them)")


def _usage_rows(store: Store, filters: dict[str, Any]) -> Iterator[UsageRecord]:
    """The store's streaming reader where it has one (both SQL stores), else its list."""
    stream = getattr(store, "iter_usage", None)
    return stream(**filters) if stream is not None else iter(store.usage(**filters))


def _write_csv(records: Iterable[UsageRecord], target: str) -> int:
    """Each row written as it comes: to stdout at once, or to a temp file beside ``target``
    renamed over it at the end (a reader or a crash never sees half a file)."""
    if target == "-":
        with _named_on_error("<stdout>"):
            _write_rows(records, sys.stdout)
            sys.stdout.flush()
        return 0
    from tunelab.atomic import _create_temp

    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with _named_on_error(target), os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            count = _write_rows(records, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"wrote {count} requests to {target}", file=sys.stderr)
    return 0


@contextmanager
def _named_on_error(where: str) -> Iterator[None]:
    """An ``OSError`` of a write to an open file named by ``where`` (the ``--csv`` file, "<stdout>").

    A file object's error names no file: a full disk or ``ulimit -f`` said "error: file too large:
    raise ... and run again", no path. A closed pipe (`| head`) is left as it is: the CLI ends
    quietly on it.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or isinstance(exc, BrokenPipeError):
            raise
        raise type(exc)(exc.errno, exc.strerror, where) from exc


def _write_rows(records: Iterable[UsageRecord], out: IO[str]) -> int:
    """The header and one row per request; returns how many requests."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for r in records:
        writer.writerow(
            [
                r.at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                r.key_name or "",
                r.key_id or "",
                r.product or "",  # an app's request: app/bot, e.g. support/bank
                r.version or "",
                r.texts if 200 <= r.status < 300 else 0,  # billed texts, as the summary counts them
                r.tokens,
                r.status,
                f"{r.latency_ms:.3f}",
                r.request_id,
            ]
        )
        count += 1
    return count


def _print_summary(groups: list[UsageGroup]) -> None:
    from tunelab.cli.output import table
    from tunelab.serve.store import billed

    if not groups:
        print("no usage recorded for this selection")
        return
    rows: dict[tuple[str, str, str], list[float]] = {}
    for g in groups:
        # requests, ok, errors, texts, tokens, latency sum
        row = rows.setdefault((g.key_name or "-", g.key_id or "-", g.product or "-"), [0, 0, 0, 0, 0, 0.0])
        row[0] += g.requests
        row[1 if billed(g.status) else 2] += g.requests
        if billed(g.status):
            row[3] += g.texts
            row[4] += g.tokens
        row[5] += g.latency_ms_sum
    totals = [sum(r[i] for r in rows.values()) for i in range(6)]
    lines = [[*key, *_cells(r)] for key, r in sorted(rows.items())]
    lines.append(["total", "", "", *_cells(totals)])
    headers = ["key", "key id", "model", "requests", "ok", "errors", "texts", "tokens", "mean ms"]
    print(table(headers, lines))


def _cells(r: list[float]) -> list[str]:
    return [*(str(int(v)) for v in r[:5]), f"{r[5] / r[0]:.1f}" if r[0] else "-"]
