"""Mask personal data (e-mail addresses, phone numbers, card and account numbers) in log text.

Texts sent for classification are customer messages: support tickets quote card numbers and phone
numbers. ``mask_pii`` replaces them with placeholders before anything reaches a log, and
``MaskingFilter`` does it for every record a logging handler emits.

The patterns prefer precision on ordinary numbers ("order 12345", years, dates, amounts stay as
they are) and use checksums where the format has one: card numbers must pass the Luhn check and
IBANs the ISO 13616 mod-97 check, so a random 16-digit reference is not mistaken for a card.

    >>> mask_pii("Card 4111 1111 1111 1111, mail jo@example.com, call +44 20 7946 0958 re order 12345")
    'Card <card>, mail <email>, call <phone> re order 12345'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable

EMAIL = "<email>"
PHONE = "<phone>"
CARD = "<card>"
ACCOUNT = "<account>"

_EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*\.)+[A-Za-z]{2,}")
# Country code, 2 check digits, then 11-30 letters/digits in groups of four (spaces optional), in
# capitals; typed into a chat in lower case ("de89 3704 0044 ..."), only with its groups spaced: a
# request id (uuid4 hex) starting with two letters and two digits passed the mod-97 check one time
# in 370 and was logged as <account> (mod 97 decides the rest).
_IBAN_RE = re.compile(
    r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"
    r"|(?i:\b[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?\b)"
)
# 13-19 digits, single spaces or dashes allowed between them; or four groups of four digits joined
# by dots ("4111.1111.1111.1111", as cards are written in parts of Europe), not a longer dotted run.
# Not inside a word: the digits of a request id (uuid4 hex, "53033190766045b1...") that passed the
# Luhn check were logged as <card>.
_CARD_RE = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?!\w)|(?<![\w.])\d{4}(?:\.\d{4}){3}(?!\w|\.\d)")
# An account number named as such: "account no. 12345678", "acct #: 0012-3456-78", "a/c 87654321",
# and in the languages of European support desks: "Kontonummer", "Kontonr.", "compte n°", "cuenta:",
# "conto numero", "rekeningnummer". Compte, cuenta and conto are also the verb "counts" ("Paris
# compte 2 100 000 habitants"): those take a number word or a colon after them.
# Each run of spaces has one \s* that can take it: "\s*[:#]?\s*" had three in a row, which tried
# every split of "account" + 8,000 spaces before failing (quadratic: a second for one logged text).
_ACCOUNT_RE = re.compile(
    r"(?i)\b((?:(?:account|acct|a/c|konto)(?:\s*(?:no\.?|number|num|nr\.?|nummer|#))?(?:\s*[:#])?"
    r"|(?:compte|cuenta|conto|rekening)"
    r"(?:\s*(?:no\.?|num(?:éro|ero)?\.?|nr\.?|nummer|n[°º]\.?|#)(?:\s*[:#])?|\s*[:#]))\s*)"
    r"(\d[\d -]{4,24}\d)\b"
)
# "+" country code, then digits in groups separated by spaces, dots, dashes or parentheses.
_INTL_PHONE_RE = re.compile(r"(?<![\w+])\+\d[\d ().-]{6,22}\d(?!\d)")
# National numbers written in groups: "(555) 123-4567", "555-123-4567", "07911 123456".
_NATIONAL_PHONE_RE = re.compile(
    r"(?<![\w.+-])(?:\(\d{2,5}\) ?|\d{2,5}[ .-])\d{2,6}(?:[ .-]\d{2,5}){0,3}(?![\w-])"
)
_IPV4_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
# A date (year first or last) and the hour of a time after it: the national pattern reads
# "2026-03-02 08" (of "2026-03-02 08:53:00", a logged datetime) as ten grouped digits.
_DATE_HOUR_RE = re.compile(
    r"(?:(?P<y>\d{4})(?P<s>[.-])(?P<m>\d{2})(?P=s)(?P<d>\d{2})"
    r"|(?P<d2>\d{2})(?P<s2>[.-])(?P<m2>\d{2})(?P=s2)(?P<y2>\d{4})) (?P<h>\d{2})"
)


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters -> 10..35, the number mod 97 is 1."""
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _card(m: re.Match[str]) -> str:
    return CARD if luhn_ok(_digits(m.group(0))) else m.group(0)


def _iban(m: re.Match[str]) -> str:
    return ACCOUNT if iban_ok(m.group(0)) else m.group(0)


def _intl_phone(m: re.Match[str]) -> str:
    return PHONE if 8 <= len(_digits(m.group(0))) <= 15 else m.group(0)


def _national_phone(m: re.Match[str]) -> str:
    text = m.group(0)
    # Dates (8 digits) and amounts with fewer digits fall below 9; IPv4 addresses look like groups too.
    if not 9 <= len(_digits(text)) <= 12 or _IPV4_RE.match(text) or _date_and_hour(m):
        return text
    return PHONE


def _date_and_hour(m: re.Match[str]) -> bool:
    """The match is a date and an hour (``2026-03-02 08``, the start of ``2026-03-02 08:53:00``)."""
    date = _DATE_HOUR_RE.fullmatch(m.group(0))
    if date is None:
        return False
    month, day = (date["m"], date["d"]) if date["y"] else (date["m2"], date["d2"])
    return 1 <= int(month) <= 12 and 1 <= int(day) <= 31 and int(date["h"]) <= 23


_STEPS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (_EMAIL_RE, EMAIL),
    (_IBAN_RE, _iban),
    (_CARD_RE, _card),
    (_ACCOUNT_RE, lambda m: m.group(1) + ACCOUNT),
    (_INTL_PHONE_RE, _intl_phone),
    (_NATIONAL_PHONE_RE, _national_phone),
)


def mask_pii(text: str) -> str:
    """``text`` with e-mails, phone numbers, card and account numbers replaced by placeholders.

    Order matters: e-mails first (their local part may hold digits), then IBANs and cards (long
    digit runs a phone pattern would otherwise swallow), then phones.
    """
    if not text:
        return text
    for pattern, replacement in _STEPS:
        text = pattern.sub(replacement, text)
    return text


# Attributes every LogRecord has; anything else came in through ``extra=`` and may hold user text.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class Unmasked(str):
    """A log argument ``MaskingFilter`` leaves as it is: a value the operator chose, not client text.

    A key's name (``ops@acme.io``, ``4420-7946-0958``) is one: masked, the access line and the
    billing warnings named ``key=<email>`` while ``/metrics`` showed the real name. Only the marked
    argument is spared; the rest of the message is masked as before.
    """

    __slots__ = ()


class _Slot:
    """Stands in for the ``i``-th ``Unmasked`` argument while the message is formatted and masked:
    NUL-delimited, so no pattern matches it or runs into its neighbours."""

    def __init__(self, i: int) -> None:
        self.i = i

    def __str__(self) -> str:
        return f"\x00s{self.i}\x00"

    def __repr__(self) -> str:
        return f"\x00r{self.i}\x00"


class MaskingFilter(logging.Filter):
    """A logging filter that masks personal data in a record's message, arguments and extras.

    Install it on *handlers* (a filter on a logger does not see records propagated from child
    loggers): ``install_masking()`` does that for the root logger's handlers. The message is
    formatted once here (``msg % args``) and the arguments dropped, so no formatter can put the
    unmasked values back. ``Unmasked`` arguments are put in after the masking.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        kept: dict[int, str] = {}
        if isinstance(record.args, tuple) and any(isinstance(a, Unmasked) for a in record.args):
            kept = {i: a for i, a in enumerate(record.args) if isinstance(a, Unmasked)}
            record.args = tuple(_Slot(i) if i in kept else a for i, a in enumerate(record.args))
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: mask what we have rather than lose the record
            message = f"{record.msg} {record.args}"
        message = mask_pii(message)
        for i, value in kept.items():
            message = message.replace(str(_Slot(i)), str(value)).replace(repr(_Slot(i)), repr(value))
        record.msg = message
        record.args = None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str) and not isinstance(value, Unmasked):
                setattr(record, name, mask_pii(value))
        if record.exc_info and not record.exc_text:
            # Formatters reuse a cached exc_text, so caching the masked traceback keeps it masked.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_pii(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_pii(record.stack_info)
        return True


def install_masking(handlers: Iterable[logging.Handler] | None = None) -> MaskingFilter:
    """Add one ``MaskingFilter`` to ``handlers`` (default: the root logger's handlers) and return it."""
    masking = MaskingFilter()
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(masking)
    return masking
