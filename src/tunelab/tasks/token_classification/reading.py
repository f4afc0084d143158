"""Read labelled NER data: CoNLL column files, JSONL tokens + tags, JSONL text + character spans.

Every reader returns :class:`Sentence` objects whose tags are IOB2 (every entity starts with
``B-``), whatever the file used: BIO/IOB2 is kept as is and IOB1 (an entity may start with ``I-``)
is converted, so that later steps (label ids, seqeval's strict IOB2 metrics) see one scheme.
Everything a user can get wrong fails with a one-line :class:`~tunelab.errors.DataError` naming
the file, the line and the fix. Pure Python on purpose: reading data must not import torch.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.atomic import not_a_file
from tunelab.data.scripts import CJK, UNSPACED, join_lines
from tunelab.errors import JSON_ERRORS, DataError, json_problem

logger = logging.getLogger(__name__)

DOCSTART = "-DOCSTART-"

# A span label written as a tag ("B-PER"): the reader adds B-/I- itself, so it would train B-B-PER.
_TAG_PREFIX = re.compile(r"[BIESLU]-")

# O, or B-/I- followed by a type. Anything else (E-, S-, L-, U-, a bare "PER", "o") is outside the
# schemes we accept; naming it beats guessing what the annotator meant.
_TAG = re.compile(r"O|[BI]-\S+")

# Span texts are split into words, single punctuation marks and single CJK characters (Chinese and
# Japanese do not put spaces between words, so an entity may start at any character): ``CJK``. A
# halfwidth kana's voiced sound mark ("ｶﾞ": U+FF9E, U+FF9F, letters, not combining marks) stays on it,
# as the combining U+3099 of a decomposed "ガ" does.
_KANA = rf"[{CJK}][\uff9e\uff9f]*"
# Abbreviations written with dots ("U.S.", "e.g.") and numbers with inner separators ("1,000.50",
# "10:30") stay one word, as CoNLL-2003 and the Penn Treebank write them: a model trained on such
# files labels "U.S." as one word, and split into "U", ".", "S", "." it would tag only "U".
_ABBREVIATION = rf"(?:[^\W\d_{CJK}]\.){{2,}}"
# An initial ("M. Smith", "J. F. Kennedy"): one capital and its dot before a capitalised word, one
# word as CoNLL-2003 writes it (46 times in its training file); split, the model tagged "M" and
# "Smith" as two people.
_INITIAL = r"[A-Z]\.(?=\s+[A-Z])"
_NUMBER = r"\d+(?:[.,:]\d+)+"
# The split span files were checked against before whole words below were kept: a span may still
# end where this one splits (an ORG "Google" inside "Google-owned", "O" of "O'Brien", "US" of
# "US$"), see ``word_offsets``' ``cuts``.
_FINE_TOKEN = re.compile(rf"{_ABBREVIATION}|{_INITIAL}|{_NUMBER}|{_KANA}|[^\W{CJK}]+|\S")

# The rules below follow CoNLL-2003, which writes its text as the Penn Treebank does (the README
# promises raw text is split "the way CoNLL writes them"). Measured by splitting each of its training
# file's 14,041 sentences, joined with spaces, and comparing with its tokens: 3,297 sentences split
# otherwise before these rules, 200 of them inside an entity (a model trained there returned "O",
# "'", "Brien" for O'Brien and "S&" for S&P at predict time, while eval on CoNLL files, which keeps
# their tokens, looked fine); 151 after, 31 inside an entity (garbled tokens such as "S.AFRICAN",
# "U.S" without its dot, tennis scores "6-", the French elisions below). Numbers in brackets are
# tokens of that file split otherwise before.
#
# Clitics are words of their own, apostrophe included: "'s" (1,536; "'S" 30), "n't" (98: "does" +
# "n't", "ca" + "n't"), "'re" (36), "'m" (25), "'ve" (19), "'ll" (19), "'d" (3); any case, and a
# typographic apostrophe (U+2019) as the ASCII one.
_APOSTROPHES = "'\u2019"
_CLITIC = rf"[{_APOSTROPHES}](?i:s|re|ll|ve|m|d)(?![^\W{CJK}]|-[^\W_])"  # not Dutch "'s-Hertogenbosch"
_NOT = rf"(?i:n[{_APOSTROPHES}]t)(?![^\W{CJK}])"
# An apostrophe or "&" between two letters is inside a name ("O'Brien", "Shi'ite", "N'Djamena": 57,
# 46 of them in entities; "S&P", "AT&T", "T&N": 16, all in entities), unless a clitic or the "'t" of
# "n't" starts there ("O'Brien's" is "O'Brien" and "'s", "don't" is "do" and "n't"), or it ends a
# French or Italian elision ("l'Europe", "d'Italia", "qu'il", "dell'Italia": the name stays a word
# of its own, as before, so an entity "Europe" is not predicted as "l'Europe"; CoNLL keeps the few
# in its English text whole, "Giro d'Italia", "charge d'affaires"; a capital is a name's: "D'Amato").
_ELISION = r"(?<!(?<![\w'\u2019])[cdjlmnst])(?<!\bqu)(?<!\b[dns]ell)(?<!\b[ad]all)(?<!\bsull)"
_INNER = (
    rf"(?<=[^\W\d_]){_ELISION}(?![{_APOSTROPHES}](?i:s|re|ll|ve|m|d|t)(?![^\W{CJK}]))"
    rf"[{_APOSTROPHES}&](?=[^\W\d_{CJK}])"
)
_NAME_PART = rf"[^\W_{CJK}]+(?:{_INNER}[^\W_{CJK}]+)*"  # a hyphenated word's part, "_" not in it as before
_NAME = rf"[^\W{CJK}]+(?:{_INNER}[^\W{CJK}]+)*"
# Currency prefixes written before an amount, "US$ 995 million" (US$, C$, A$, HK$, NZ$, S$: 64, each
# tagged MISC; Z$, T$, NT$ and R$ as well); split, the entity was "US" or "C" without its "$".
_CURRENCY = r"\b(?:US|C|A|HK|NZ|S|NT|R|Z|T)\$"
# Runs of dashes and dots are one token: "--", "---" and longer rules (407), "...", ".." (60).
_RUN = r"-{2,}|\.{2,}"
# Numbers written whole besides ``_NUMBER``: fractions and dates with "/" ("1/2", "1996/97",
# "22/11/96", "5-1/2" as a hyphenated word: 230), a number with a suffix ("2,282nd", "1,250M", as
# "282nd" already was: 5), a decimal without its zero (".576": 277 batting averages), a number signed
# with "+" where no word or number is before the sign ("+44" phone codes, "+387-71-663-864", "+3":
# 171).
_WHOLE_NUMBER = rf"\d+(?:[.,:/]\d+)+[^\W_{CJK}]*"
_BARE_NUMBER = r"(?<![\w.])\.\d+|(?<![\w+])\+\d+(?:[-.,:/]\d+)*"
# A list item's number and its dot at the start of the text or of a line ("1. Pivotal",
# "10. Netherlands": 730, each the first token of its sentence), or a shared place ("10= Martina
# Ertl": 27 in dev and test). A number ending a sentence keeps its full stop apart: it is not at a
# line start, or has no space after the dot.
_LIST_NUMBER = r"(?m:^)\d{1,3}[.=](?=[ \t])"
# Words CoNLL-2003 (and the Penn Treebank) keep whole: hyphenated words ("Anglo-Dutch", "1-0",
# 1,528 tokens of its training file, 340 of them in entities; "U.S.-led", "al-Gama'a": 15) and
# abbreviations with their dot ("Inc.", "Corp.", "St.", "vs."); split, a model trained on CoNLL tagged
# "Anglo" and "Dutch" as two entities. Case-sensitive and listed, since "home." at a sentence end is a
# word and a full stop. Kept whole only where a word or number follows ("Jan. 5", "St. Louis"), or a
# comma, semicolon, colon or clitic does ("Corp.,", "Inc.'s": a full stop is never followed by one):
# several are also names ("Jan", "Penn", "Mass"), and one ending the text ("I met Jan.") kept the
# full stop, so its entity ended after the dot. "Jan. Then" stays one word: a capital after the dot
# cannot tell a sentence end from the name a title precedes ("Mr. Smith", "Gen. Motors"), and
# CoNLL-2003 writes these whole mid-text.
_KNOWN_ABBREVIATIONS = (
    "Inc|Corp|Co|Ltd|Plc|Bros|Cos|St|Mt|Ft|Ave|Mr|Mrs|Ms|Dr|Prof|Jr|Sr|Gen|Gov|Sen|Rep|Rev|Col|Lt|Capt|"
    "Sgt|vs|Jan|Feb|Apr|Aug|Sept|Sep|Oct|Nov|Dec|Calif|Fla|Ariz|Mass|Conn|Penn|Wash|Mich"
)
_WORD_FOLLOWS = rf"(?=\s+[^\W_]|\s*[,;:]|\s*{_CLITIC})"
# a number first: "2-2.5" is one word, not "2-2", ".", "5"; an abbreviation first: "U.S.-led"
_WORD_OR_NUMBER = rf"(?:{_ABBREVIATION}|{_WHOLE_NUMBER}|{_NAME_PART})"
_HYPHENATED = rf"{_WORD_OR_NUMBER}(?:-{_WORD_OR_NUMBER})+"
_TOKEN = re.compile(
    rf"{_LIST_NUMBER}|{_HYPHENATED}|{_ABBREVIATION}|{_INITIAL}|\b(?:{_KNOWN_ABBREVIATIONS})\.{_WORD_FOLLOWS}"
    rf"|{_CURRENCY}|{_WHOLE_NUMBER}|{_BARE_NUMBER}|{_RUN}|{_KANA}"
    rf"|[^\W{CJK}]+?(?={_NOT})|{_NOT}|{_CLITIC}|{_NAME}|\S"
)


def word_offsets(text: str, *, cuts: Iterable[int] = ()) -> list[tuple[int, int]]:
    """``(start, end)`` of each word of ``text`` as ``_TOKEN`` splits it, with combining marks kept
    in their word: ``\\w`` excludes marks (Unicode Mn/Mc/Me), so Hindi, Thai or a decomposed
    accent was cut at every vowel sign ("राजेश" into five "words"). Written here because ``re`` has
    no ``\\p{M}`` and the ``regex`` package is not a dependency.

    ``cuts``: character positions (a span file's entity starts and ends) where a word kept whole
    above is split into its pieces as the finer split (``_FINE_TOKEN``: at every hyphen, dot,
    apostrophe, "&", "$", "/" and "+") has them; so "Google" inside "Google-owned" (or "US" in "US$")
    stays an entity of its own, while a span cutting into a plain word ("Goo") still fails the
    boundary check."""
    found = _offsets(_TOKEN, text)
    wanted = set(cuts)
    if not wanted:
        return found
    split: list[tuple[int, int]] = []
    for start, end in found:
        if any(start < c < end for c in wanted):
            # the word's pieces as the finer split makes them of the word itself: filtered from the
            # whole text's split, a piece running past the word's end ("3.10" of "Python-3.10") was lost
            split.extend((start + s, start + e) for s, e in _offsets(_FINE_TOKEN, text[start:end]))
        else:
            split.append((start, end))
    return split


def join_words(words: list[str]) -> str:
    """The words as a reader would write them: a space between two words, none between two Chinese
    or Japanese characters (a Chinese sentence read as one word a character showed in reports as
    "我 住 在 北 京"). The rule is the one wrapped lines of a knowledge file are joined by."""
    return join_lines(words)


# Invisible characters written inside words: the soft hyphen (a hyphenation point, common in German
# web text), zero-width non-joiner and joiner (Persian, Hindi, Malayalam spelling) and the word
# joiner. ``\w`` excludes them (category Cf), so "Schiff\u00adfahrt" was split into three "words" at
# predict time; between two word characters they belong to the word.
_JOINERS = frozenset("\u00ad\u200c\u200d\u2060")


def _in_word(char: str) -> bool:
    """A character a word is made of (letters, digits, ``_``, combining marks), CJK excluded: each
    Chinese or Japanese character stays a word of its own."""
    if UNSPACED.match(char):
        return False
    return char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")


def _unspaced_base(text: str, start: int, end: int) -> bool:
    """Whether the base character the marks ending ``text[start:end]`` sit on is Chinese or
    Japanese: its marks end the word there, as that character is a word of its own. Walks back
    over the marks only, so a long word is not read again at each mark."""
    i = end - 1
    while i > start and unicodedata.category(text[i]).startswith("M"):
        i -= 1
    return bool(UNSPACED.match(text[i])) and not unicodedata.category(text[i]).startswith("M")


def _offsets(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for m in pattern.finditer(text):
        start, end = m.start(), m.end()
        if found and found[-1][1] == start:
            first, last = text[start], text[start - 1]
            mark_first = unicodedata.category(first).startswith("M")
            mark_last = unicodedata.category(last).startswith("M")
            # A mark stays with the base character before it; after it, the word goes on (Hindi's
            # vowel signs, a decomposed accent) unless the next character or that base is Chinese or
            # Japanese: decomposed (NFD) kana ("で" is "て" + U+3099) glued the next character on
            # ("でがく"), so a span on トヨタ after NFD "が" cut into a word.
            if mark_first or (
                mark_last and _in_word(first) and not _unspaced_base(text, found[-1][0], start)
            ):
                found[-1] = (found[-1][0], end)
                continue
            # a joiner between two word characters: the joiner, then the rest of the word, join it
            joiner_inside = first in _JOINERS and end < len(text) and _in_word(text[end])
            after_joiner = last in _JOINERS and found[-1][1] - found[-1][0] > 1 and _in_word(first)
            if (joiner_inside and _in_word(last)) or after_joiner:
                found[-1] = (found[-1][0], end)
                continue
        found.append((start, end))
    return found


@dataclass
class Sentence:
    """One labelled sentence.

    Attributes:
        tokens: the words, as in the file (or as split from ``text`` for span files).
        tags: one IOB2 tag per token (``O``, ``B-PER``, ``I-PER``, ...).
        lines: the 1-based line of the file each token came from, for error messages (JSONL
            sentences are one line, so every token has that line).
        source: the file the sentence was read from.
        text: the original string (span files only), so predictions can give character offsets.
        offsets: ``(start, end)`` character offsets of each token in ``text`` (span files only).
    """

    tokens: list[str]
    tags: list[str]
    lines: list[int]
    source: str
    text: str | None = None
    offsets: list[tuple[int, int]] | None = field(default=None)

    @property
    def line(self) -> int:
        """The line the sentence starts on."""
        return self.lines[0]


def read_conll(
    path: str | Path, *, tag_column: int = -1, token_column: int = 0, encoding: str = "utf-8"
) -> list[Sentence]:
    """Read a CoNLL/BIO column file: one token per line, columns separated by spaces or tabs.

    Lines end at ``\r\n``, ``\r`` or ``\n`` (a file saved with old Mac line ends was one token
    line), and columns are separated by spaces and tabs only: ``str.split`` also splits at U+0085,
    U+2028 and ``\x1c``-``\x1f``, which a token may hold. Blank lines (whitespace only) end a
    sentence; ``-DOCSTART-`` lines (document breaks in CoNLL-2003) are skipped, and so are comment
    lines before a sentence (GermEval-2014's ``#<TAB>http://... [date]``, CoNLL-U's
    ``# sent_id = 1``; see ``_is_comment``). A ``#`` token with its tag (``# O``, as tweets have)
    stays a token. Every token line must have as many columns as the first one, so that
    ``tag_column=-1`` can never silently read another column (a POS or chunk tag) on a shorter line.

    Args:
        path: the file.
        tag_column: index of the tag column (Python indexing: -1 is the last column).
        token_column: index of the token column (the first by default; -1 is the last).
        encoding: the file's text encoding.

    Raises:
        DataError: the file is missing or not in ``encoding``, a line is malformed, a column index
            is out of range or both name one column, a tag is outside the BIO scheme, the token
            column holds token numbers (GermEval, CoNLL-U: see ``_check_not_numbers``), or the
            file holds no sentence.
    """
    p = Path(path)
    text = _read_text(p, encoding)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    width: tuple[int, int] | None = None  # (column count, line it was first seen on)
    token_width = _token_line_width(text)

    def flush() -> None:
        nonlocal tokens, tags, lines
        if tokens:
            sentences.append(_sentence(tokens, tags, lines, p))
            tokens, tags, lines = [], [], []

    for lineno, line in _numbered_lines(text):
        cols = _columns(line)
        if not cols:
            flush()
            continue
        if cols[0] == DOCSTART:
            flush()
            continue
        if not tokens and _is_comment(cols, token_width, tag_column, token_column):
            continue  # a comment before a sentence (GermEval, CoNLL-U)
        if width is None:
            width = (len(cols), lineno)
            _check_columns(p, lineno, len(cols), tag_column, token_column)
        elif len(cols) != width[0]:
            raise DataError(
                f"{p} line {lineno}: {len(cols)} columns, but line {width[1]} has {width[0]}; every "
                "token line needs the same space- or tab-separated columns (tokens cannot contain spaces)"
            )
        tokens.append(cols[token_column])
        tags.append(_check_tag(cols[tag_column], p, lineno, f"column {tag_column}"))
        lines.append(lineno)
    flush()
    if not sentences:
        raise DataError(f"{p}: no sentences; expected one 'token ... tag' line per token")
    _check_not_numbers(sentences, token_column, p)
    return sentences


def _token_line_width(text: str) -> int | None:
    """The column count of the first line that is neither blank, ``-DOCSTART-`` nor led by ``#``:
    one thing that tells a comment line from a ``#`` token (None: every line is one of those)."""
    for _, line in _numbered_lines(text):
        cols = _columns(line)
        if cols and cols[0] != DOCSTART and not cols[0].startswith("#"):
            return len(cols)
    return None


def _is_comment(cols: list[str], token_width: int | None, tag_column: int, token_column: int) -> bool:
    """Whether a line at a sentence start is a comment rather than a token line.

    A line led by ``#`` is a comment unless it reads as a token line: the token lines' column
    count and a valid tag in the tag column (tweets tag a ``#`` token, ``# O``). The column count
    alone did not tell: CoNLL-U's ``# sent_id = 1`` has the 4 columns of a GermEval line
    (``1<TAB>Schartau<TAB>B-PER<TAB>O``) and was read as a token tagged ``=``. Where the words are
    not the first column (``token_column`` != 0, a numbered file), a token line never starts with
    ``#``, so every such line is a comment.
    """
    if not cols[0].startswith("#"):
        return False
    if token_column != 0 or (token_width is not None and len(cols) != token_width):
        return True
    if cols[0] != "#" and token_width is not None:
        # a hashtag token ("#Obama S-PER") in a line as wide as the token lines: a token line, its
        # tag checked like any token's (a bad one was a comment, the token dropped silently)
        return False
    try:
        tag = cols[tag_column]
    except IndexError:
        return True
    return not _TAG.fullmatch(tag)


def _check_not_numbers(sentences: list[Sentence], token_column: int, path: Path) -> None:
    """Refuse a token column that numbers the tokens (1, 2, 3, ... in every sentence).

    GermEval-2014 and files derived from CoNLL-U start each line with the token's number
    (``1<TAB>Schartau<TAB>B-PER<TAB>O``); read from column 0, the model trained on the numbers,
    with no error and an entity F1 near 0. Real text never numbers every sentence's words so, but a
    one-word sentence "1" could: at least one sentence must have two words.
    """
    if max(len(s.tokens) for s in sentences) < 2:
        return
    for base in (1, 0):
        if all(s.tokens == [str(i) for i in range(base, base + len(s.tokens))] for s in sentences):
            numbers = ", ".join(str(i) for i in range(base, base + 3))
            raise DataError(
                f"{path} line {sentences[0].line}: column {token_column} holds token numbers; set "
                f"data.token_column to the column of the words (every sentence there reads {numbers}, ...)"
            )


def read_jsonl_tokens(path: str | Path, *, encoding: str = "utf-8") -> list[Sentence]:
    """Read JSON lines such as ``{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}``.

    Raises:
        DataError: a line is not a JSON object, lacks ``tokens`` or ``tags``, they are not lists of
            strings of equal length, a string is not valid Unicode (a lone surrogate), or a tag is
            outside the BIO scheme.
    """
    p = Path(path)
    sentences = []
    for lineno, record in _json_objects(p, encoding, '{"tokens": [...], "tags": [...]}'):
        if "tokens" not in record and "text" not in record:
            # a DataFrame (tunelab.train(train=df)) arrives here as JSON lines, a row per line
            keys = ", ".join(map(repr, list(record)[:8])) or "none"
            raise DataError(
                f"{p} line {lineno}: keys {keys}; NER data needs tokens and tags "
                '({"tokens": [...], "tags": [...]}) or text and spans '
                '({"text": ..., "spans": [{"start", "end", "label"}]}); rename the columns or keys'
            )
        tokens = _string_list(record, "tokens", p, lineno)
        tags = _string_list(record, "tags", p, lineno)
        for key, values in (("tokens", tokens), ("tags", tags)):
            for i, value in enumerate(values):
                _check_unicode(value, f"{key}[{i}]", p, lineno)
        if len(tokens) != len(tags):
            raise DataError(
                f"{p} line {lineno}: {len(tokens)} tokens but {len(tags)} tags; give one tag per token"
            )
        if not tokens:
            raise DataError(f"{p} line {lineno}: no tokens; remove the line or add its tokens")
        if any(not t.strip() for t in tokens):
            raise DataError(f"{p} line {lineno}: an empty or blank token; every token needs text")
        checked = [_check_tag(tag, p, lineno, f"tags[{i}]") for i, tag in enumerate(tags)]
        sentences.append(_sentence(tokens, checked, [lineno] * len(tokens), p))
    return _non_empty(sentences, p)


#: Keys other tools keep entities under; a record with one and no "spans" is refused.
_OTHER_ENTITY_KEYS = ("label", "labels", "entities", "ner", "ner_tags", "annotations")


def read_jsonl_spans(path: str | Path, *, encoding: str = "utf-8", gold_cuts: bool = True) -> list[Sentence]:
    """Read JSON lines such as ``{"text": "EU rejects", "spans": [{"start": 0, "end": 2, "label": "ORG"}]}``.

    The text is split into words, punctuation marks and CJK characters (keeping each token's
    character offsets); the tokens a span covers get ``B-label``, ``I-label``, ..., the rest ``O``.
    ``end`` is exclusive, as in Python slicing. A sentence without entities may leave ``spans`` out
    or give null (a DataFrame's list column holds NaN in such rows, saved as null).

    ``gold_cuts``: split a word kept whole (``Google-owned``) where an entity starts or ends inside
    it (see ``word_offsets``), so that training learns the entity itself. For the training split
    only: predict and serve never know the entities, so they never cut there. A dev, test or eval
    file (``gold_cuts=False``) is split as they split it, so that its scores (and the checkpoint
    chosen on them) credit only entities predict can return; its words are tagged by
    ``_word_tags``. Spans are checked the same way either way.

    Raises:
        DataError: a line is not a JSON object with ``text`` (and a ``spans`` list, or none and no
            other tool's entity key such as doccano's ``label``), a string is not valid Unicode (a
            lone surrogate), a span is malformed, lies outside the text, overlaps another, or does
            not start and end on token boundaries.
    """
    p = Path(path)
    sentences = []
    example = '{"text": ..., "spans": [{"start": 0, "end": 2, "label": "ORG"}]}'
    for lineno, record in _json_objects(p, encoding, example):
        text = record.get("text")
        if not isinstance(text, str):
            raise DataError(f'{p} line {lineno}: needs a "text" string; expected {example}')
        _check_unicode(text, "text", p, lineno)
        if "spans" not in record:
            # entities kept under another name (doccano's "label", CLUENER's "label" dict, "entities")
            # were read as no entity at all: dev F1 0 without a word
            other = [k for k in _OTHER_ENTITY_KEYS if k in record]
            if other:
                raise DataError(
                    f'{p} line {lineno}: entities under "{other[0]}", but this reader takes "spans": '
                    f"{example}; rename the key and give each entity as start, end (exclusive) and label"
                )
        spans = record.get("spans")
        if spans is None:  # null: no entities, as a left-out key (a DataFrame row without any)
            spans = []
        if not isinstance(spans, list):
            raise DataError(f'{p} line {lineno}: "spans" must be a list of {{"start", "end", "label"}}')
        parsed = sorted(_spans(spans, text, p, lineno))
        found = word_offsets(text, cuts=[b for start, end, _ in parsed for b in (start, end)])
        if not found:
            raise DataError(f"{p} line {lineno}: the text is empty; remove the line or add its text")
        starts = {s: i for i, (s, _) in enumerate(found)}
        ends = {e: i for i, (_, e) in enumerate(found)}
        tags = ["O"] * len(found)
        previous: tuple[int, int, str] | None = None
        for start, end, label in parsed:
            where = f"{p} line {lineno}: span {start}-{end} {label!r} ({text[start:end]!r})"
            if previous is not None and start < previous[1]:
                raise DataError(
                    f"{where} overlaps span {previous[0]}-{previous[1]} {previous[2]!r}; "
                    "nested or overlapping entities are not supported, keep one of them"
                )
            if start not in starts or end not in ends:
                raise DataError(_boundary_problem(where, text, start, end, found))
            first, last = starts[start], ends[end]
            tags[first] = f"B-{label}"
            tags[first + 1 : last + 1] = [f"I-{label}"] * (last - first)
            previous = (start, end, label)
        if not gold_cuts:
            found = word_offsets(text)
            tags = _word_tags(found, parsed)
        sentences.append(
            Sentence(
                tokens=[text[s:e] for s, e in found],
                tags=tags,
                lines=[lineno] * len(found),
                source=str(p),
                text=text,
                offsets=found,
            )
        )
    return _non_empty(sentences, p)


def _word_tags(words: list[tuple[int, int]], spans: list[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags of whole words (``(start, end)``) for entities (``(start, end, label)``, sorted,
    not overlapping) that may start or end inside a word.

    The rule, as predict labels whole words: a word takes the entity its first character is in
    (``B-`` on the entity's first such word, ``I-`` after), else ``O``. So an entity ending inside
    a word (``Google`` of ``Google-owned``) covers that whole word, and one starting inside a word
    (``Dutch`` of ``Anglo-Dutch``) does not tag it: that entity is scored on its remaining words,
    or not at all. Where every entity starts and ends on word boundaries this is the plain tagging.
    """
    tags = ["O"] * len(words)
    tagged: set[int] = set()  # entities that already have their B- word
    j = 0
    for i, (start, _) in enumerate(words):
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        if j < len(spans) and spans[j][0] <= start:
            label = spans[j][2]
            tags[i] = f"I-{label}" if j in tagged else f"B-{label}"
            tagged.add(j)
    return tags


def _boundary_problem(where: str, text: str, start: int, end: int, words: list[tuple[int, int]]) -> str:
    """Why a span does not fit the words: whitespace selected with it (with the trimmed offsets to
    give instead), or the words it cuts into."""
    selected = text[start:end]
    inner = selected.strip()
    if not inner:
        return f"{where} is only whitespace; remove it"
    if inner != selected:  # "New York " selected with the space after it
        first = start + len(selected) - len(selected.lstrip())
        side = " and ".join(
            name for name, edge in (("leading", selected[0]), ("trailing", selected[-1])) if edge.isspace()
        )
        return (
            f"{where} has {side} whitespace; give start {first}, end {first + len(inner)} ({inner!r}) instead"
        )
    cut = [text[s:e] for s, e in words if s < end and e > start]
    return (
        f"{where} does not start and end on token boundaries (it cuts into "
        f"{' '.join(map(repr, cut))}); move start/end to whole words"
    )


def check_labels(train: Iterable[Sentence], other: Iterable[Sentence], split_name: str) -> None:
    """Fail when ``other`` (a validation or test split) has entity types training never saw.

    A model cannot predict a type it was not trained on, so such a split would only lower the
    scores silently; more often the type is a typo (``PERS`` for ``PER``).

    Raises:
        DataError: naming each unseen type, where it first occurs, and the training types.
    """
    check_types({t[2:] for s in train for t in s.tags if t != "O"}, other, split_name)


def check_types(
    known: set[str], other: Iterable[Sentence], split_name: str, *, known_from: str = "the training data"
) -> None:
    """Fail when ``other`` has entity types outside ``known`` (see :func:`check_labels`).

    Raises:
        DataError: naming each unknown type, the file and line it first occurs on, and ``known``.
    """
    first: dict[str, str] = {}
    for sentence in other:
        for tag, line in zip(sentence.tags, sentence.lines, strict=True):
            kind = tag[2:] if tag != "O" else None
            if kind is not None and kind not in known and kind not in first:
                first[kind] = f"{sentence.source} line {line}"
    if first:
        unseen = ", ".join(f"{k!r} ({where})" for k, where in sorted(first.items()))
        raise DataError(
            f"{split_name}: entity types not in {known_from}: {unseen}; {known_from} has "
            f"{', '.join(sorted(known)) or 'none'}; fix the tags or add training examples of them"
        )


# --- helpers -----------------------------------------------------------------------------------------


def _sentence(tokens: list[str], tags: list[str], lines: list[int], path: Path) -> Sentence:
    return Sentence(tokens=tokens, tags=to_iob2(tags), lines=lines, source=str(path))


def to_iob2(tags: list[str]) -> list[str]:
    """IOB1 to IOB2: an ``I-X`` that does not continue an ``X`` entity starts one, so becomes ``B-X``.

    IOB2 input comes back unchanged (there every ``I-X`` follows ``B-X`` or ``I-X``), and IOB1's
    ``B-X`` (two adjacent entities of one type) means the same in IOB2, so one rule serves both and
    a file mixing them. Written by hand because seqeval (1.2) has no converter: its ``Tokens(tags,
    IOB1)`` reader drops an entity that starts with ``B-`` after ``O`` (IOB2 input), and its lenient
    ``get_entities`` accepts any tag without complaint.
    """
    out = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def _check_tag(tag: str, path: Path, lineno: int, where: str) -> str:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise DataError(
            f"{path} line {lineno}: tag {tag!r} in {where} is not O, B-TYPE or I-TYPE; use BIO/IOB2 "
            "(or IOB1) tags, or point tag_column at the tag column"
        )
    return tag


def _check_columns(path: Path, lineno: int, width: int, tag_column: int, token_column: int) -> None:
    if width < 2:
        raise DataError(
            f"{path} line {lineno}: 1 column; expected a token and its tag separated by a space or a tab"
        )
    for name, index in (("tag_column", tag_column), ("token_column", token_column)):
        if not -width <= index < width:
            raise DataError(
                f"{path} line {lineno}: {name}={index} but the line has {width} columns; "
                f"use 0..{width - 1}, or -1 for the last (data.{name})"
            )
    if tag_column % width == token_column % width:
        raise DataError(
            f"{path} line {lineno}: tag_column={tag_column} and token_column={token_column} are the same "
            f"column (of {width}); point them at different columns (data.tag_column, data.token_column)"
        )


def resolve_encoding(path: Path, encoding: str) -> str:
    """``data.encoding`` for ``path``: ``auto`` detected as for tables (UTF-8, GB18030, Latin-1)."""
    if encoding.lower() != "auto":
        return encoding
    from tunelab.data.readers import detect_encoding

    found = detect_encoding(path)
    logger.info("%s: read as %s (data.encoding=auto)", path, found)
    return found


def _read_text(path: Path, encoding: str) -> str:
    if not path.is_file():
        what = (
            not_a_file(path, "NER data file")
            or "file not found (paths are relative to the current directory)"
        )
        raise DataError(f"{path}: {what}")
    encoding = resolve_encoding(path, encoding)
    data = path.read_bytes()
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    try:
        return data.decode("utf-8-sig" if utf8 else encoding)  # a leading BOM is not a token
    except LookupError:
        raise DataError(f"encoding {encoding!r} is not a known encoding (use e.g. utf-8, gb18030)") from None
    except UnicodeDecodeError as exc:
        line = len(_LINE_END_BYTES.findall(data[: exc.start])) + 1  # counted as _numbered_lines counts
        hint = "gb18030, latin-1 or auto" if utf8 else "utf-8 or auto"
        raise DataError(
            f"{path} line {line}: not valid {encoding} (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); give the file's encoding, e.g. {hint}"
        ) from None


# Line ends: Windows, old Mac and Unix. Not str.splitlines, which also splits at U+2028, U+0085 and
# friends: that would shift the line numbers an editor shows (and JSON allows them unescaped
# inside strings). A lone "\r" is a line end, else a file saved with CR line ends was one line.
# "\r\r\n" (a "\r\n" written again through a text-mode file) is one line end, not a blank line
_LINE_END = re.compile(r"\r*\n|\r")
_LINE_END_BYTES = re.compile(rb"\r*\n|\r")
# Column separators of a CoNLL line: spaces and tabs, what the format and its tools write.
_COLUMN_GAP = re.compile(r"[ \t]+")


def _numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    yield from enumerate(_LINE_END.split(text), start=1)


def _columns(line: str) -> list[str]:
    """A CoNLL line's columns; none for a blank line (whitespace of any kind only, a form feed
    page break included). Split at spaces and tabs only: ``str.split`` also split a token at
    U+0085, U+2028 or ``\x1c``-``\x1f``, which shifted the columns without a word."""
    if not line.strip():
        return []
    return _COLUMN_GAP.split(line.strip(" \t"))


def _json_objects(path: Path, encoding: str, example: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in _numbered_lines(_read_text(path, encoding)):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except JSON_ERRORS as exc:
            raise DataError(
                f"{path} line {lineno}: not valid JSON ({json_problem(exc)}); expected one object per line "
                f"such as {example}"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path} line {lineno}: expected a JSON object such as {example}, got {type(record).__name__}"
            )
        yield lineno, record


def _string_list(record: dict[str, Any], key: str, path: Path, lineno: int) -> list[str]:
    value = record.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        got = "nothing" if value is None else type(value).__name__
        if isinstance(value, list):  # "must be a list, got list": name the element that is not text
            i = next(i for i, v in enumerate(value) if not isinstance(v, str))
            got = f"{key}[{i}] = {json.dumps(value[i])}"
        raise DataError(
            f'{path} line {lineno}: "{key}" must be a list of strings, got {got}; expected '
            '{"tokens": [...], "tags": [...]}'
        )
    return value


def _spans(spans: list[Any], text: str, path: Path, lineno: int) -> Iterator[tuple[int, int, str]]:
    for i, span in enumerate(spans):
        where = f"{path} line {lineno}: spans[{i}]"
        if not isinstance(span, dict):
            raise DataError(f'{where} is not an object; expected {{"start": 0, "end": 2, "label": "ORG"}}')
        start, end, label = span.get("start"), span.get("end"), span.get("label")
        for key, value in (("start", start), ("end", end)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise DataError(f'{where}: "{key}" must be a character offset (an integer), got {value!r}')
        if not isinstance(label, str) or not label or any(c.isspace() for c in label) or label == "O":
            raise DataError(
                f'{where}: "label" must be an entity type such as "PER" (no spaces, not "O"), got {label!r}'
            )
        _check_unicode(label, f"spans[{i}].label", path, lineno)
        if _TAG_PREFIX.match(label):
            raise DataError(
                f'{where}: "label" {label!r} is a BIO tag; give the entity type ({label[2:]}), not a BIO tag'
            )
        assert isinstance(start, int) and isinstance(end, int)
        if not 0 <= start < end <= len(text):
            raise DataError(
                f"{where} {start}-{end} {label!r} is outside the text (0-{len(text)} characters) or "
                "empty; start must be below end, end at most the text length (end is exclusive)"
            )
        yield start, end, label


def _check_unicode(value: str, key: str, path: Path, lineno: int) -> None:
    """Refuse a string holding a lone surrogate: ``"\\ud800"`` is valid JSON but no Unicode text,
    and it passed the reader, then failed training's data fingerprint with a UnicodeEncodeError
    and ``eval`` with an unexpected TypeError. As the classification reader refuses it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(
            f"{path} line {lineno}: {key} is not valid Unicode (a lone surrogate "
            f"\\u{ord(value[exc.start]):04x} at position {exc.start}); fix or remove the line"
        ) from None


def _non_empty(sentences: list[Sentence], path: Path) -> list[Sentence]:
    if not sentences:
        raise DataError(f"{path}: the file is empty; add one JSON object per line")
    return sentences
