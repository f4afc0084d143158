"""Domain errors.

Every error a user can cause is a ``TunelabError`` whose message is one line naming the place
(file, row, field) and the fix. The CLI prints ``error: <message>`` and exits 2 instead of
showing a traceback; library callers catch the specific subclass.
"""

from __future__ import annotations


class TunelabError(Exception):
    """Base class for errors caused by user input; the message is shown as is."""


class ConfigError(TunelabError):
    """A run config field is missing or has a bad value."""


class DataError(TunelabError):
    """A data file is missing, unreadable or does not fit the config."""


class ModelNotFoundError(TunelabError):
    """A model name resolves to no local weights and cannot be downloaded."""


class RunError(TunelabError):
    """A run folder is missing, incomplete or damaged."""


class DivergedError(RunError):
    """Training diverged: its loss, a gradient or the dev loss is NaN or infinite (the loop stops
    before the weights become NaN). Its settings alone explain it, so ``tunelab search`` records the
    trial as failed and goes on."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (its type's name when it has none): for one-line errors
    that quote what a library said."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def shortened(value: object) -> str:
    """``repr(value)`` as a message quotes it: at most 40 characters, else its start and its length (a
    400-digit time, or a 5,000-digit quota, made error lines of that length)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


#: What ``json.loads`` raises on a text it does not take: JSONDecodeError (a ValueError), a plain
#: ValueError (an integer of over 4,300 digits), RecursionError (arrays or objects nested thousands
#: deep: its decoder recurses). Readers caught the first only: the others were "unexpected" errors
#: naming no file or line.
JSON_ERRORS = (ValueError, RecursionError)


def json_problem(exc: BaseException) -> str:
    """Why ``json.loads`` refused a text, in a few words (one of ``JSON_ERRORS``)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    msg = getattr(exc, "msg", None)  # JSONDecodeError's, without the position it appends
    return str(msg) if msg else first_line(exc)


def several(errors: list[TunelabError]) -> TunelabError:
    """One error for problems found together (``tunelab validate``'s checks, every file of a run).

    A single problem comes back as it is. Several make one error of the first one's kind whose
    one-line message numbers them all, with the list in ``problems`` for callers that show one
    per line.
    """
    if len(errors) == 1:
        return errors[0]
    messages = [str(e) for e in errors]
    combined = type(errors[0])(
        f"{len(errors)} problems: " + " ".join(f"({i}) {m}" for i, m in enumerate(messages, 1))
    )
    combined.problems = messages  # type: ignore[attr-defined]
    return combined


def problems_of(error: TunelabError) -> list[str]:
    """Each problem an error stands for: those ``several`` combined, or its one message."""
    return list(getattr(error, "problems", None) or [str(error)])
