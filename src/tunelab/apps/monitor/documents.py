"""The monitor's input: timestamped documents, checked one by one with a one-line reason when bad.

A document is ``{"id", "time", "text"}`` with optional ``"source"`` and ``"topic"``. ``time`` is
ISO 8601 (``2026-03-02T09:30:00Z``, ``...+01:00``; without an offset it is taken as UTC, like
``tunelab usage --since``) or epoch seconds (a number or a string of digits). Times are kept as
aware UTC datetimes, so ordering and windows never depend on the machine's time zone.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tunelab.errors import DataError, shortened

# shared with the recommender, so that both apps refuse the same eight digits in the same words
from tunelab.serve.inputs import EPOCH_SECONDS_MAX
from tunelab.serve.inputs import refuse_compact_date as _refuse_compact_date

#: Default longest text accepted (characters); a monitor's ``max_text_chars`` overrides it.
MAX_TEXT_CHARS = 20_000
_FIELDS = ("id", "time", "text", "source", "topic")
# Epoch seconds given as a string. One way only to split a run of digits: "[0-9]+\.?[0-9]*" tried
# every split of "111...1x" before failing, quadratic in its length (40,000 digits: 10 s of CPU).
_EPOCH_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
#: Longest time string read (characters): the longest ISO 8601 form with an offset is 42. A longer
#: one is refused before any parsing, so a megabyte "time" costs nothing and is not echoed back.
MAX_TIME_CHARS = 64
#: Longest id, topic, source and company name (characters). They are database index keys, and
#: PostgreSQL refuses a btree entry over 2,704 bytes, only at the commit (a 503 that clients
#: retry), where SQLite stores it. 200 characters are at most 800 bytes of UTF-8, and as long as
#: the trend and alert routes' topic, company and key parameters, so whatever is stored can be asked for.
MAX_KEY_CHARS = 200
#: What an id, topic or source may not hold: the control characters (Unicode category Cc: line
#: feed, carriage return, escape ...) and the line and paragraph separators. They are logged (an
#: alert's key and documents), and a line feed in a topic wrote a forged line into the server's log.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: A date and time, then a space and an offset without its sign: how ``+01:00`` in a URL's query
#: arrives when its '+' was not written ``%2B`` (a '+' there means a space).
_SPACED_OFFSET = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)? [0-9]{2}(:?[0-9]{2})?"
)


class DocumentFieldError(ValueError):
    """A document refused for one of its fields: ``check_batch`` names it ``documents[3].id``.

    ``str()`` reads alone too (``id 'a\\nb' contains a control character ...``), for the warning
    about a followed file's line.
    """

    def __init__(self, field: str, problem: str, doc_id: str | None = None) -> None:
        self.field, self.problem, self.doc_id = field, problem, doc_id
        where = f"document {doc_id!r}: " if doc_id is not None else ""
        super().__init__(f"{where}{field} {problem}")

    def located(self, index: int) -> str:
        """The one-line message of a batch's document ``index``: ``documents[3].topic: ...``."""
        of = f" (document {self.doc_id!r})" if self.doc_id is not None else ""
        return f"documents[{index}].{self.field}: {self.problem}{of}"


def loggable(text: str) -> str:
    """``text`` for one log line: as it is, or written escaped (``ascii``) when it holds a control
    character, a line break or other unprintable character: a stored topic or id (stored before
    they were refused, or a company an NER run found) would otherwise start a forged line."""
    if text.isprintable():
        return text
    return ascii(text)


@dataclass(frozen=True)
class Document:
    """One checked document: ``time`` is aware and in UTC, ``text`` non-empty."""

    id: str
    time: datetime
    text: str
    source: str | None = None
    topic: str | None = None

    @property
    def epoch(self) -> int:
        """Whole seconds since 1970 (UTC): what the store's window queries do arithmetic on."""
        return math.floor(self.time.timestamp())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "text": self.text,
            "source": self.source,
            "topic": self.topic,
        }


def parse_time(value: Any) -> datetime:
    """An aware UTC datetime from ISO 8601 text or epoch seconds.

    Raises:
        ValueError: with the reason, for the caller to put after the document's place.
    """
    if isinstance(value, bool):  # bool is an int subclass: true/false is no time
        raise ValueError(f"time {shortened(value)} is neither ISO 8601 nor epoch seconds")
    given = value
    if isinstance(value, str) and len(text := value.strip()) > MAX_TIME_CHARS:
        raise ValueError(
            f"time {text[:20]!r}... is not epoch seconds nor ISO 8601: it has {len(text):,} characters, "
            f"over the limit of {MAX_TIME_CHARS}"
        )
    if isinstance(value, str) and _EPOCH_TEXT.fullmatch(value.strip()):  # ASCII digits only ("²" is not)
        value = float(value.strip())
    if isinstance(value, int | float) and 10_000_000 <= value < 100_000_000 and value == int(value):
        _refuse_compact_date(int(value))  # eight digits, as text, int or whole float (20260302.0)
    if isinstance(value, int | float):
        # The bound first: math.isfinite raises OverflowError on an int past a float's range
        # (10**400), which stopped a followed file for good and was a 500 over HTTP.
        if abs(value) >= EPOCH_SECONDS_MAX or not math.isfinite(value):
            raise ValueError(
                f"time {shortened(given)} is not epoch seconds (milliseconds? divide by 1000) nor ISO 8601"
            )
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, ValueError, OSError):  # before the year 1
            raise ValueError(
                f"time {shortened(value)} is out of the range of dates (years 1 to 9999)"
            ) from None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"time {shortened(value)}: give ISO 8601 (2026-03-02T09:30:00Z) or epoch seconds")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        if _SPACED_OFFSET.fullmatch(value.strip()):
            # 2026-03-02T09:30:00+01:00 typed into a URL: its '+' arrives as a space
            raise ValueError(
                f"time {shortened(value)} is not ISO 8601: a space where its offset's sign belongs; "
                "a '+' in a URL must be written %2B, or use Z (UTC)"
            ) from None
        raise ValueError(
            f"time {shortened(value)} is not ISO 8601 (e.g. 2026-03-02T09:30:00Z or 2026-03-02 09:30+01:00)"
        ) from None
    try:  # 0001-01-01T00:00+01:00 parses, but in UTC it is before the year 1: OverflowError
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(
            f"time {shortened(value)} is out of the range of dates once in UTC (years 1 to 9999)"
        ) from None


def _unstorable(value: str) -> str | None:
    """Why a string cannot be stored, or None: PostgreSQL text holds no NUL, and a lone UTF-16
    surrogate (valid as a JSON escape, ``"\\ud800"``) is not UTF-8 for either database."""
    if "\x00" in value:
        return "contains a NUL character (U+0000), which the database cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"is not valid Unicode (a lone surrogate {value[exc.start]!a} at character {exc.start})"
    return None


def _control_character(value: str) -> str | None:
    """Why ``value`` cannot be an id, topic or source, or None: it holds a control character."""
    found = _CONTROL.search(value)
    if found is None:
        return None
    return (
        f"{shortened(value)} contains a control character (U+{ord(found.group()):04X} at character "
        f"{found.start()}), which ids, topics and sources may not hold: they are one line of text"
    )


def parse_document(
    obj: Any, *, max_text_chars: int = MAX_TEXT_CHARS, latest: datetime | None = None
) -> Document:
    """Check one decoded document.

    Args:
        latest: the newest time accepted (the clock plus the monitor's ``max_future``): one
            document dated in 2062 for 2026 would move the windows decades on (see ``Monitor``).

    Raises:
        ValueError: why the document is refused (no id, no or bad time, a time after ``latest``,
            empty or too long text, a field of the wrong type); the caller adds where it came from.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"a document is a JSON object with id, time and text, not {type(obj).__name__}")
    doc_id = obj.get("id")
    if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
        raise ValueError("no id: every document needs a unique id (re-sending an id never counts twice)")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise ValueError(f"id {doc_id!r} must be a string or an integer")
    if len(str(doc_id)) > MAX_KEY_CHARS:
        raise ValueError(
            f"id {str(doc_id)[:30]!a}... has {len(str(doc_id)):,} characters, over the limit of "
            f"{MAX_KEY_CHARS}; use a shorter id (a hash of a long one)"
        )
    if isinstance(doc_id, str) and (problem := _unstorable(doc_id)):
        raise ValueError(f"id {doc_id!a} {problem}")
    if isinstance(doc_id, str) and (problem := _control_character(doc_id)):
        raise DocumentFieldError("id", problem)
    if obj.get("time") is None:
        raise ValueError(f"document {doc_id!r}: no time (ISO 8601 or epoch seconds)")
    try:
        moment = parse_time(obj["time"])
    except ValueError as exc:
        raise ValueError(f"document {doc_id!r}: {exc}") from None
    if latest is not None and moment > latest:
        raise ValueError(
            f"document {doc_id!r}: time {moment.isoformat()} is after "
            f"{latest.isoformat(timespec='seconds')}, further ahead of the clock than max_future "
            "allows; check its date (a typo in the year? a local time without an offset? times "
            "without one are read as UTC)"
        )
    text = obj.get("text")
    # Imported here: tunelab.data imports pandas, which this module (read by the service) does not need.
    from tunelab.data.scripts import has_visible_text

    # not strip(): a text of zero-width spaces (U+200B) was classified as the empty text it tokenises to
    if not isinstance(text, str) or not has_visible_text(text):
        raise ValueError(f"document {doc_id!r}: text is missing, empty or not a string")
    if problem := _unstorable(text):
        raise ValueError(f"document {doc_id!r}: text {problem}")
    if len(text) > max_text_chars:
        raise ValueError(
            f"document {doc_id!r}: text has {len(text):,} characters, over the limit of "
            f"{max_text_chars:,} (max_text_chars); split it or raise the limit"
        )
    optional = {}
    for name in ("source", "topic"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"document {doc_id!r}: {name} must be a string, not {type(value).__name__}")
        if isinstance(value, str) and (problem := _unstorable(value)):
            raise ValueError(f"document {doc_id!r}: {name} {problem}")
        # The value as stored: stripped. A CRLF file's "earnings\r" or a padded " earnings\t" was
        # stored as "earnings" before control characters were refused, and still is; only what
        # stays inside the name (a line break that could forge a log line) is refused.
        if isinstance(value, str) and (problem := _control_character(value.strip())):
            raise DocumentFieldError(name, problem, str(doc_id))
        if isinstance(value, str) and len(value.strip()) > MAX_KEY_CHARS:
            raise ValueError(
                f"document {doc_id!r}: {name} has {len(value.strip()):,} characters, over the limit "
                f"of {MAX_KEY_CHARS}; shorten it"
            )
        optional[name] = (value.strip() or None) if isinstance(value, str) else None
    return Document(id=str(doc_id), time=moment, text=text, **optional)


def parse_line(
    raw: bytes, *, max_text_chars: int = MAX_TEXT_CHARS, latest: datetime | None = None
) -> Document:
    """One JSONL line (bytes, without its newline) to a document.

    Raises:
        ValueError: the line is not UTF-8, not JSON, or not a valid document.
    """
    try:
        # A file saved "UTF-8 with BOM" (Windows tools) starts its first line with U+FEFF, which
        # json refuses: that line's document would be skipped.
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:  # "[[[[..." thousands deep: json's decoder recurses
        raise ValueError("not JSON this reader takes (nested too deeply)") from None
    return parse_document(obj, max_text_chars=max_text_chars, latest=latest)


def check_batch(
    docs: Any, *, max_text_chars: int = MAX_TEXT_CHARS, latest: datetime | None = None
) -> list[Document]:
    """Every document of a batch, or the first problem with its index (``documents[3]: no id``).

    Raises:
        DataError: the batch is not a list, or one of its documents is refused.
    """
    if not isinstance(docs, list):
        raise DataError(f"documents: give a list of objects with {', '.join(_FIELDS[:3])}")
    out = []
    for i, obj in enumerate(docs):
        try:
            out.append(parse_document(obj, max_text_chars=max_text_chars, latest=latest))
        except DocumentFieldError as exc:
            raise DataError(exc.located(i)) from None
        except ValueError as exc:
            raise DataError(f"documents[{i}]: {exc}") from None
    return out
