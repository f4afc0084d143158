"""Character classes of the scripts written without spaces between words (Chinese, Japanese), what
counts as visible text, and what a terminal or a one-line document would act on.

Shared by what splits text into words: the NER readers (a span may start at any such character) and
text augmentation (each such character is a word of its own); and by everything that refuses an
empty text (the data readers, ``Predictor``, the HTTP API, the apps). Pure ``re`` and
``unicodedata``: importing it imports nothing else.
"""

from __future__ import annotations

import re
import unicodedata

#: CJK ideographs and kana, as ranges for a regex character class (``[{CJK}]``).
CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\uff65-\uff9f"  # halfwidth katakana: "ﾄﾖﾀ" was one word where "トヨタ" is three
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # compatibility ideographs
    "\U00020000-\U0002ffff"  # extensions B-F
)

#: One character written without spaces around it: the ideographs and kana above, CJK punctuation
#: ("。", "，") and full-width forms.
UNSPACED = re.compile(rf"[{CJK}\u3000-\u303f\uff00-\uffef]")


# One word: a character of the scripts above, or a run of other characters that are not spaces.
_WORD = re.compile(rf"{UNSPACED.pattern}|(?:(?!{UNSPACED.pattern})\S)+")


def count_words(text: str) -> int:
    """How many words ``text`` has: ``len(text.split())``, with each Chinese or Japanese character
    (and CJK punctuation) a word of its own; a Chinese sentence, written without spaces, counted as
    one word ("我们的营业时间是" is 8, "iPhone, 很好" 4). What a length limit in words measures."""
    return len(_WORD.findall(text))


def word_starts(text: str) -> list[int]:
    """Where each word ``count_words`` counts begins in ``text`` (each Chinese or Japanese character
    a word of its own): the places a text may be cut between words."""
    return [m.start() for m in _WORD.finditer(text)]


def join_lines(lines: list[str]) -> str:
    """Wrapped lines of one paragraph as one text: a space between two lines, none where a line
    ending in a Chinese or Japanese character meets one beginning with one ("营业时间是" +
    "周一至周五。" is one sentence, not "营业时间是 周一至周五。")."""
    out: list[str] = []
    for line in lines:
        if out and not (UNSPACED.match(out[-1][-1:]) and UNSPACED.match(line[:1])):
            out.append(" ")
        out.append(line)
    return "".join(out)


# Letters that draw nothing (Unicode's default-ignorable Hangul fillers, and the blank braille
# pattern): a name or text of them is a common way to look empty, and the tokenizer reads [UNK].
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# Spaces, control and format characters (zero-width space U+200B, word joiner U+2060, BOM U+FEFF),
# and combining marks (Mn, Me: variation selectors such as U+FE0F, a lone accent U+0301), which show
# only on a base character.
_INVISIBLE_CATEGORIES = frozenset(("Cc", "Cf", "Mn", "Me"))


def has_visible_text(text: str) -> bool:
    """Whether ``text`` has a character that shows on its own: one that is not a space, a control or
    format character, a combining mark or a blank letter (see above). What "empty" means for a text
    everywhere: ``text.strip()`` keeps the invisible ones, and a text of only those was classified as
    the empty text it tokenises to (with a confident label). A combining mark on a letter (``é``
    written as e + U+0301, Thai or Devanagari vowel signs) is part of a visible text."""
    return any(
        not c.isspace() and c not in _BLANK_LETTERS and unicodedata.category(c) not in _INVISIBLE_CATEGORIES
        for c in text
    )


#: What a terminal or a line-based file acts on: control characters (C0, DEL, C1: ESC starts colour,
#: cursor and window-title sequences), the Unicode line and paragraph separators, and the bidi
#: embeddings, overrides and isolates that reorder what is shown (U+202A-202E, U+2066-2069).
_ACTS_ON_DISPLAY = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` with each character a terminal would act on written as its escape (``\\n``,
    ``\\x1b``, ``\\u202e``), everything else as it is: spaces of every kind, zero-width joiners
    (Persian, emoji sequences) and characters newer than this Python's Unicode tables are text.
    ``str.isprintable`` is false for all of those, so escaping by it wrote ``\\u3000`` into Japanese
    and ``\\u200d`` into emoji."""
    return _ACTS_ON_DISPLAY.sub(lambda m: ascii(m.group())[1:-1], text)
