"""``tunelab app support export-feedback``: the agents' resolutions of hand-offs as a training file.

Each resolved ticket left a labelled example in the service's database: the handed-off message and
the intent the agent chose. This writes them as ``text,label`` (CSV, or JSONL for a ``.jsonl``
path), atomically, ready to be added to the next training run's data. A resolution that gave only
an answer (no intent fits the message) is labelled ``--oos-label``: the bot was right to hand it
off, and the model learns to keep doing so (a bot built on it hands off whatever the model labels
so: ``app support build --oos-label``, the same default); ``--skip-answers`` leaves those out. A message
resolved more than once keeps its latest label.

A message handed off in a conversation is written joined to the previous user message ("I ordered
a card last week and how long does that take?"): the bot read it that way too before handing it
off (``Bot.reply_many``), and a follow-up's label holds only with what it follows; written alone,
it would teach the next model to answer the ambiguous follow-up on its own. The previous message is
taken from what the bot was given (the ticket's ``history``: the server's ``history_turns``), not
from the agent's copy of the conversation (``ticket_turns``): with no history the bot read the
message alone, and so it is written. The model reads only its first ``max_length`` tokens, so after
a long previous message the bot kept only that message's end (``join_previous``); with ``--run`` (the
bot folder or its intent run) the row is cut the same way. Joined whole, such a row was the previous
message alone once truncated, and the agent's label trained onto it.

The ``app support`` group (``tunelab.cli.app_cmd``) adds this command with ``add_parser``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.apps.out_path import check_out_parents
from tunelab.cli.store_args import DATA_DIR_HELP, parse_when
from tunelab.csv_lines import line_end
from tunelab.errors import ConfigError, DataError, TunelabError

if TYPE_CHECKING:
    from tunelab.serve.store.support import Feedback

HELP = """examples:
  tunelab app support export-feedback --out feedback.csv                     # the default database
  tunelab app support export-feedback --store postgresql://tunelab@db:5432/tunelab --bot bank \\
      --since 2026-11-01 --out feedback.jsonl
  cat data/train.csv <(tail -n +2 feedback.csv) > train-next.csv             # then train again

Rows are text,label: the handed-off message (after the previous user message of its conversation,
if the bot was given one, as the bot read it) and the agent's intent. Resolutions with only an
answer get --oos-label (default oos), or are left out with --skip-answers. Give --run (the bot
folder) to keep, as the bot did, only the end of a previous message too long for the model's
max_length together with the message; without it the previous message is joined whole.
"""

SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: rows, and how the resolutions it read became them."""

    path: Path
    rows: int
    intents: int  # rows labelled with an agent's intent
    answers: int  # rows labelled --oos-label (an answer, no intent)
    skipped_answers: int  # answer-only resolutions left out (--skip-answers)
    duplicates: int  # earlier resolutions of a message resolved again later
    labels: int  # distinct labels written
    with_context: int = 0  # rows written joined to the previous user message


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``export-feedback`` to the ``app support`` subcommands."""
    p = sub.add_parser(
        "export-feedback",
        help="write the agents' resolutions of hand-offs as a training file (text,label)",
        description="Write the hand-off tickets' resolutions as a training file (text,label).",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write: .csv or .jsonl")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out when it exists (else refused: it may be the training file itself)",
    )
    p.add_argument(
        "--store",
        "--db",
        dest="db",
        metavar="URL|PATH",
        help="the service's database: postgresql://user@host:5432/dbname or a SQLite file "
        "(default: DATA_DIR/tunelab.db when --data-dir is given, else $TUNELAB_DB, else DATA_DIR/tunelab.db)",
    )
    p.add_argument("--data-dir", help=DATA_DIR_HELP)
    p.add_argument("--bot", help="only this bot's resolutions")
    p.add_argument("--since", help="only resolutions from this date/time on, e.g. 2026-11-01 or 30d")
    p.add_argument("--oos-label", default="oos", help="label of answer-only resolutions (default oos)")
    p.add_argument("--skip-answers", action="store_true", help="leave answer-only resolutions out")
    p.add_argument(
        "--run",
        metavar="BOT|RUN",
        help="the bot folder (or its intent run): a message is joined to as much of the end of its "
        "previous one as the model read with it (its tokenizer and max_length); default: joined whole",
    )
    p.set_defaults(handler=run, stdout_summary=True)
    return p


def training_rows(
    records: list[Feedback],
    *,
    oos_label: str = "oos",
    skip_answers: bool = False,
    tokenizer: Any = None,
    max_length: int | None = None,
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """``[{"text", "label"}]`` from resolutions (oldest first), one per message, the latest winning.

    ``tokenizer``, ``max_length``: the bot's model's, to cut a follow-up's previous message as the
    bot did (``as_read``).

    Returns:
        The rows in the order their messages were last resolved, and counts for the summary.
    """
    latest: dict[str, tuple[str, bool]] = {}  # text -> (label, the label is an agent's intent)
    counts = {"intents": 0, "answers": 0, "skipped_answers": 0, "duplicates": 0}
    joined: set[str] = set()  # texts written with their previous message
    for record in records:
        if not record.intent and skip_answers:
            counts["skipped_answers"] += 1
            continue
        text = as_read(record.text, record.context, tokenizer, max_length)
        if text != record.text:
            joined.add(text)
        if text in latest:
            counts["duplicates"] += 1
            del latest[text]  # re-inserted below: the order of the latest resolutions
        latest[text] = (record.intent, True) if record.intent else (oos_label, False)
    rows = [{"text": text, "label": label} for text, (label, _) in latest.items()]
    counts["intents"] = sum(1 for _, from_intent in latest.values() if from_intent)
    counts["answers"] = len(rows) - counts["intents"]
    counts["with_context"] = sum(1 for text in latest if text in joined)
    return rows, counts


def as_read(text: str, context: list[str], tokenizer: Any = None, max_length: int | None = None) -> str:
    """The message as the bot read it in its conversation: joined to the previous user message
    (the last non-blank one of ``context``) by the bot's own ``join_previous``, which keeps only the
    end of a previous message too long for ``max_length`` with the message (given the tokenizer;
    without it the two are joined whole)."""
    from tunelab.apps.support.bot import join_previous, last_message

    return join_previous(last_message(context), text, tokenizer, max_length)


def render(rows: list[dict[str, str]], suffix: str) -> str:
    """The file's text: CSV with a ``text,label`` header, or one JSON object per line."""
    if suffix == ".jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    buffer = io.StringIO()
    # "\r\n" where a text holds a "\r": with "\n" it was written bare and split its row (csv_lines)
    newline = line_end(cell for row in rows for cell in row.values())
    writer = csv.DictWriter(buffer, fieldnames=["text", "label"], lineterminator=newline)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def export_feedback(
    store: Any,
    out: str | Path,
    *,
    bot: str | None = None,
    since: datetime | None = None,
    oos_label: str = "oos",
    skip_answers: bool = False,
    where: str = "the database",
    tokenizer: Any = None,
    max_length: int | None = None,
    overwrite: bool = False,
) -> ExportSummary:
    """Write ``store``'s resolutions to ``out`` (atomically: the old file or the whole new one).

    An existing ``out`` is refused unless ``overwrite``: pointed at the training file it is meant to
    be added to, it replaced that file's rows with the resolutions alone.

    ``tokenizer``, ``max_length``: the bot's intent model's (``model_reader``), so a follow-up is
    written as the bot read it even after a long previous message; None: joined whole.

    Raises:
        ConfigError: ``out`` is neither ``.csv`` nor ``.jsonl``, exists (without ``overwrite``), or
            ``oos_label`` is blank.
        DataError: there is nothing to write (no file is written).
    """
    from tunelab.atomic import atomic_write_text

    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"--out {out}: write a .csv or .jsonl file (text,label rows)")
    if not oos_label.strip():
        raise ConfigError("--oos-label: give a label name, e.g. oos")
    # Checked before the store is read: writing into a folder or under a file failed only at the
    # end, as "unexpected IsADirectoryError / FileExistsError".
    if path.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a .csv or .jsonl file path")
    if path.exists() and not overwrite:
        raise ConfigError(
            f"--out {out} exists; give another file (then add its rows to your training data) or "
            "--overwrite to replace it"
        )
    check_out_parents(path)
    records = store.feedback(bot=bot, since=since)
    rows, counts = training_rows(
        records, oos_label=oos_label, skip_answers=skip_answers, tokenizer=tokenizer, max_length=max_length
    )
    if not rows:
        which = f" of bot {bot!r}" if bot else ""
        when = f" since {since:%Y-%m-%d %H:%M} UTC" if since else ""
        skipped = f" ({counts['skipped_answers']} answer-only left out by --skip-answers)" if records else ""
        raise DataError(
            f"no resolved hand-offs{which}{when} in {where}{skipped}: nothing written to {out} "
            "(agents resolve tickets with POST /v1/apps/support/tickets/{id}/resolve)"
        )
    atomic_write_text(path, render(rows, suffix))
    return ExportSummary(
        path=path,
        rows=len(rows),
        intents=counts["intents"],
        answers=counts["answers"],
        skipped_answers=counts["skipped_answers"],
        duplicates=counts["duplicates"],
        labels=len({r["label"] for r in rows}),
        with_context=counts["with_context"],
    )


def model_reader(path: str | Path) -> tuple[Any, int]:
    """``(tokenizer, max_length)`` of a bot folder's intent run, or of a run given directly.

    Raises:
        ConfigError: neither a bot folder nor a loadable run; one line naming it.
    """
    import tunelab
    from tunelab.apps.support.config import BOT_YAML, BotConfig

    folder = Path(path)
    run_path = BotConfig.load(folder).run if (folder / BOT_YAML).is_file() else folder
    try:
        predictor = tunelab.load(run_path)
    except TunelabError as exc:
        raise ConfigError(f"--run {path}: {exc}") from None
    return predictor.tokenizer, int(predictor.config.model.max_length)


def run(args: argparse.Namespace) -> int:
    from tunelab.serve.store import chosen_db, default_data_dir, describe_store, open_store, sqlite_file

    since = parse_when(args.since, "--since")
    db, data_dir = chosen_db(args.db, args.data_dir), args.data_dir or default_data_dir()
    file = sqlite_file(db, data_dir)
    if file is not None and not file.is_file():  # opening would create an empty database
        raise DataError(
            f"no database at {file}: give the server's with --store (a SQLite file or postgresql:// URL) "
            "or --data-dir"
        )
    tokenizer, max_length = model_reader(args.run) if args.run else (None, None)
    where = describe_store(db, data_dir)
    with open_store(db, data_dir) as store:
        summary = export_feedback(
            store,
            args.out,
            bot=args.bot,
            since=since,
            oos_label=args.oos_label,
            skip_answers=args.skip_answers,
            where=where,
            tokenizer=tokenizer,
            max_length=max_length,
            overwrite=args.overwrite,
        )
    notes = [
        f"{summary.intents} with the agent's intent",
        f"{summary.answers} answer-only as {args.oos_label!r}",
    ]
    if summary.with_context:
        notes.append(f"{summary.with_context} joined to the previous message, as the bot read them")
    if summary.skipped_answers:
        notes.append(f"{summary.skipped_answers} answer-only left out")
    if summary.duplicates:
        notes.append(f"{summary.duplicates} earlier resolutions of the same message replaced")
    print(f"wrote {summary.rows} examples ({summary.labels} labels) to {summary.path}: {'; '.join(notes)}")
    print(f"database: {where}", file=sys.stderr)
    if summary.with_context and not args.run:
        print(
            f"note: {summary.with_context} rows joined to their previous message whole; a previous "
            "message too long for the model's max_length with the message hides it once truncated: "
            "give --run BOT to cut it as the bot did",
            file=sys.stderr,
        )
    return 0


__all__ = [
    "ExportSummary",
    "add_parser",
    "as_read",
    "export_feedback",
    "model_reader",
    "render",
    "run",
    "training_rows",
]
