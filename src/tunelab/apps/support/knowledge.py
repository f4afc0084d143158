"""The support bot's knowledge base: passages read from Markdown, CSV or JSONL, and their index.

A message the intent model is unsure about is looked up here: the best passages by cosine
similarity of unit-length sentence embeddings (``tunelab.embed``). Up to ``ANN_MIN_PASSAGES``
passages the search is exact (one matrix product): at a few thousand passages it takes about a
millisecond, well below the encoder's own cost for the query. Above that an approximate
nearest-neighbour index (faiss HNSW, inner product on the unit vectors) is built once and saved
beside the vectors, so a search stays sub-linear as the knowledge base grows.

Why faiss (``faiss-cpu``): it ships wheels for every platform we support (hnswlib, the other
well-kept HNSW library, publishes only a source archive and so needs a C++ compiler at install
time), its HNSW index does inner-product search directly, and it reads and writes its index files
itself.
"""

from __future__ import annotations

import csv
import glob
import io
import itertools
import json
import logging
import numbers
import operator
import os
import re
import secrets
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.atomic import STALE_FOLDER_S, exchange, remove_stale_folders, sibling_stem
from tunelab.data.scripts import count_words, has_visible_text, join_lines, word_starts
from tunelab.data.tables import JsonArrayError, JsonItem, first_line_is_json, json_array_items
from tunelab.errors import JSON_ERRORS, ConfigError, DataError, json_problem

log = logging.getLogger(__name__)

#: A Markdown section longer than this many words is cut at paragraph breaks into several passages,
#: and a paragraph (or a CSV or JSONL row) longer than it at sentence ends (a sentence longer than it,
#: at words); a Chinese or Japanese character counts as a word (``count_words``), so such text is cut
#: too. The bundled encoder reads 256 tokens: what lay past them was never searched.
MAX_PASSAGE_WORDS = 200
# Where a sentence may end: after . ! ? and whitespace, after a Chinese or Japanese full stop, ! or ?,
# and at a line break (an item of a list)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*|\n\s*")
_LIST_NUMBER = re.compile(r"\d+[.)]")  # "13." opening a line of a numbered list: no sentence's end


def cut_long(text: str, limit: int = MAX_PASSAGE_WORDS) -> list[str]:
    """``text`` in pieces of at most ``limit`` words, cut at sentence ends (a longer sentence at words),
    each piece the text as written between its cuts (line breaks and list numbers kept).

    A paragraph or row longer than the encoder reads was one passage whose end no query could find:
    the embedding is of its first 256 tokens (a question about the last sentence of a 346-word
    paragraph found another section). Whole sentences are kept together where they fit; a number
    ending in a full stop (a numbered list's ``13.``) is no sentence's end.
    """
    if count_words(text) <= limit:
        return [text]
    cuts = [0]
    for end in _SENTENCE_END.finditer(text):
        before = text[text.rfind("\n", 0, end.start()) + 1 : end.start()].strip()  # its line, so far
        if 0 < end.end() < len(text) and not _LIST_NUMBER.fullmatch(before):
            cuts.append(end.end())
    cuts.append(len(text))
    sentences = [text[a:b] for a, b in itertools.pairwise(cuts) if text[a:b].strip()]
    pieces: list[str] = []
    current, words = "", 0
    for sentence in sentences:
        parts = [sentence]
        if count_words(sentence) > limit:  # no sentence end within reach: cut at every limit-th word
            starts = [*word_starts(sentence)[limit::limit], len(sentence)]
            parts = [sentence[a:b] for a, b in itertools.pairwise([0, *starts])]
        for part in parts:
            n = count_words(part)
            if current and words + n > limit:
                pieces.append(current.strip())
                current, words = "", 0
            current += part
            words += n
    if current.strip():
        pieces.append(current.strip())
    return pieces


#: From this many passages on, search goes through an approximate (HNSW) index instead of exact.
ANN_MIN_PASSAGES = 5000
# HNSW settings: 32 links per node and a search beam of 128 keep recall@10 near 0.99 on sentence
# embeddings at a few hundred thousand passages (faiss's own benchmarks); building cost is one-off.
# Shared with apps/recommend/index.py through build_hnsw and read_hnsw.
_HNSW_LINKS, _HNSW_EF_BUILD, _HNSW_EF_SEARCH = 32, 200, 128
FORMATS = (".md", ".markdown", ".csv", ".jsonl")
# An ATX heading; as CommonMark has it, a closing run of # counts only after a space (or alone), so
# "# Title ##" is "Title" but "# C#" and "# F# " keep their "#". Group 2 is stripped by the reader.
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def _heading_title(body: str) -> str:
    """A heading's text without its closing run of ``#`` (one after a space, or alone) and spaces.

    Done here, not in ``_HEADING``: a lazy ``(.*?)`` before ``#+`` and ``\\s*$`` rescanned the line
    from every position, so one 80,000-character heading line took 36 s to read.
    """
    text = body.rstrip()
    bare = text.rstrip("#")
    if bare != text and (not bare or bare[-1].isspace()):
        text = bare.rstrip()
    return text.strip()


# A Markdown section's intent tag: a line ``intent: <name>`` right under its heading. The name is the
# rest of the line: intent labels may hold spaces ("lost card"), and ``\S+`` let such a tag line fall
# through into the passage's text, shown to customers, with the passage left untagged.
_INTENT_LINE = re.compile(r"^\s*intent:\s*(\S.*?)\s*$", re.IGNORECASE)
# The same line with no name: it became the start of the passage's text ("intent: Call us."), untagged.
_NAMELESS_INTENT_LINE = re.compile(r"^\s*intent:\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of the knowledge base.

    Attributes:
        text: what the bot replies with.
        title: the heading or question it sits under ("" when none).
        source: ``file:line`` it starts on, so a wrong answer can be traced and fixed.
        intent: the intent this passage answers, when the file tags it (CSV/JSONL column
            ``intent``, Markdown ``intent: <name>`` under the heading); used only to tune and
            evaluate the knowledge path, never to search.
    """

    text: str
    title: str
    source: str
    intent: str | None = None

    def for_embedding(self) -> str:
        """The title carries the question a user asks: it is embedded with the text."""
        return f"{self.title}\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Hit:
    """A passage found for a query, with its cosine similarity (-1..1)."""

    passage: Passage
    score: float


def read_passages(path: str | Path) -> list[Passage]:
    """Read a knowledge file: Markdown (sections under headings), CSV or JSONL.

    CSV: a ``text`` column (or ``answer``), with optional ``title`` (or ``question``) and
    ``intent`` columns, their names in any case, spaces around them ignored; a text that holds a
    comma is quoted. JSONL: one ``{"text": ..., "title": ..., "intent": ...}`` object per line, or
    one JSON array of such objects, the same names as its keys, in any case, spaces around them
    ignored; other keys are not read (one warning names them).
    Markdown: a section per heading; a line ``intent: <name>`` right under a heading tags it (such a
    line without a name is refused).

    Raises:
        DataError: the file is missing, not UTF-8, of another format, malformed or empty; the
            message names the file and, where it helps, the line.
    """
    p = Path(path)
    if p.is_dir():
        raise DataError(
            f"{p}: a folder, not a file; give the knowledge file inside it ({', '.join(FORMATS)})"
        )
    if not p.is_file():
        raise DataError(f"{p}: knowledge file not found")
    suffix = p.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{p}: knowledge files are {', '.join(FORMATS)}; convert it to one of them")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{p}: line {line} is not UTF-8; save the knowledge file as UTF-8") from None
    if suffix == ".csv":
        passages = _from_csv(text, p)
    elif suffix == ".jsonl":
        passages = _from_jsonl(text, p)
    else:
        passages = _from_markdown(text, p)
    if not passages:
        raise DataError(f"{p}: no passages (the knowledge file is empty); add at least one")
    if suffix in (".csv", ".jsonl"):  # entries written one by one (Markdown's are cut from sections)
        _no_repeats(passages)
    return passages


def _no_repeats(passages: list[Passage]) -> None:
    """A passage given twice would be listed twice in a reply's passages."""
    first: dict[str, str] = {}
    for passage in passages:
        same = " ".join(passage.text.lower().split())
        if same in first and first[same] != passage.source:  # not two pieces of one long text
            raise DataError(f"{passage.source}: the same text as {first[same]}; keep one of them")
        first[same] = passage.source


def _from_markdown(text: str, path: Path) -> list[Passage]:
    passages: list[Passage] = []
    title, paragraphs, start = "", [], 1  # paragraphs: (first line, text)
    intent: str | None = None
    under_heading = False  # no text yet since the heading: an intent line may come
    block: list[str] = []
    block_start = 1

    def end_block() -> None:
        if block:
            # a wrapped line joins the next without a space between two Chinese or Japanese
            # characters ("营业时间是\n周一" is one sentence, not "营业时间是 周一")
            paragraphs.append((block_start, join_lines([s.strip() for s in block])))
            block.clear()

    def end_section() -> None:
        end_block()
        chunk: list[str] = []
        chunk_start, words = start, 0  # words: in chunk
        for line_no, para in ((n, piece) for n, whole in paragraphs for piece in cut_long(whole)):
            # each Chinese or Japanese character a word: a Chinese paragraph, written without spaces,
            # was one "word", so a long section was never cut and the encoder read only its start
            para_words = count_words(para)
            if chunk and words + para_words > MAX_PASSAGE_WORDS:
                passages.append(Passage("\n\n".join(chunk), title, f"{path}:{chunk_start}", intent))
                chunk, chunk_start, words = [], line_no, 0
            if not chunk:
                chunk_start = line_no
            chunk.append(para)
            words += para_words
        if chunk:
            passages.append(Passage("\n\n".join(chunk), title, f"{path}:{chunk_start}", intent))
        paragraphs.clear()

    for line_no, line in enumerate(text.splitlines(), start=1):
        heading = _HEADING.match(line)
        tag = _INTENT_LINE.match(line) if under_heading else None
        if under_heading and (
            _NAMELESS_INTENT_LINE.match(line) or (tag and not has_visible_text(tag.group(1)))
        ):
            raise DataError(
                f"{path}: line {line_no}: an intent: line with no intent name; write the name after "
                "intent: or remove the line"
            )
        if heading:
            end_section()
            title, start, intent, under_heading = _heading_title(heading.group(2)), line_no, None, True
        elif tag:
            intent, under_heading = tag.group(1), False
        elif has_visible_text(line):  # a line of zero-width spaces is a blank line, as in the readers
            under_heading = False
            if not block:
                block_start = line_no
            block.append(line)
        else:
            end_block()
    end_section()
    return passages


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each CSV row with the file line it ends on (a quoted field may span several), blank ones too.

    Strict: csv's default reads an unclosed quote to the end of the file as one field, so the rest
    of the file (its passages and their intent tags) became one passage without a word; strict, that
    is a DataError naming the line the bad row starts on. Strict mode also refuses a closing quote
    followed by more text of its field (``B,"Premium" accounts include travel insurance,y``), which
    the default reads as ``Premium accounts include travel insurance``, as it did before: such a row
    alone (its own lines) is read again that way, so a quote that never closes is still refused.
    """
    lines: list[str] = []  # the lines of the row being read, as the reader took them

    def feed() -> Iterator[str]:
        # newline="": a line ends at \r\n, \n or a lone \r (Excel for Mac), as the training reader
        # reads it; split at "\n" only, a CR-only file was refused with csv's own "new-line character
        # seen in unquoted field"
        for line in io.StringIO(text, newline=""):
            lines.append(line)
            yield line

    reader = csv.reader(feed(), strict=True)
    first = 1  # the line the next row starts on
    while True:
        lines.clear()
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            row = _text_after_quote(lines) if "expected after" in str(exc) else None
            if row is None:  # an unclosed quote (end of data), an oversized field
                if first == 1:
                    raise DataError(
                        f"{path}: line 1 (the header): not readable CSV ({exc}); check its quotes"
                    ) from None
                raise DataError(
                    f"{path}: line {first}: not readable CSV ({exc}); check the quotes of the row starting "
                    "there"
                ) from None
        yield reader.line_num, row
        first = reader.line_num + 1


def _text_after_quote(lines: list[str]) -> list[str] | None:
    """The row on ``lines`` read as csv's default reads a field that goes on after its closing quote
    (the quotes dropped, the pieces joined); None when it opens a quote that does not close on them
    (its last field then ends in the line break it swallowed)."""
    rows = list(csv.reader(lines))
    if len(rows) != 1 or (rows[0] and rows[0][-1].endswith(("\n", "\r"))):
        return None
    return rows[0]


def _from_csv(text: str, path: Path) -> list[Passage]:
    rows = _csv_rows(text, path)
    header_line, header = next(rows, (1, []))  # as csv.DictReader: the first row, blank or not
    columns = _column_names(header, path)
    text_col = next((c for c in ("text", "answer") if c in columns), None)
    if text_col is None:
        raise DataError(f"{path}: needs a text (or answer) column; it has {', '.join(header) or 'none'}")
    title_col = next((c for c in ("title", "question") if c in columns), None)
    passages = []
    for row_no, fields in rows:  # row_no: the file's line the row ends on
        if not fields:  # a blank line, skipped as csv.DictReader skips it
            continue
        _no_extra_fields(fields, len(columns), path, row_no, header_line)
        row = dict(zip(columns, fields, strict=False))
        body = (row.get(text_col) or "").strip()
        if not has_visible_text(body):  # only zero-width spaces: embed refused it naming no file
            raise DataError(f"{path}: line {row_no}: the {text_col} is empty; fill it or remove the row")
        title = (row.get(title_col) or "").strip() if title_col else ""
        intent = (row.get("intent") or "").strip() or None
        passages += [Passage(piece, title, f"{path}:{row_no}", intent) for piece in cut_long(body)]
    return passages


def _column_names(header: list[str], path: Path) -> list[str]:
    """The header's names as the columns are looked up: spaces around them dropped, case folded.

    Taken as written, ``Title``, ``Intent`` or ``intent `` (a spreadsheet's trailing space) matched
    no column, and every passage lost its title or intent tag without a word. A name given twice is
    refused, as the training reader refuses it: only one of the two columns would have been read.
    """
    columns = [name.strip().casefold() for name in header]
    repeated = sorted(name for name, n in Counter(columns).items() if name and n > 1)  # "": unused columns
    if repeated:
        raise DataError(
            f"{path}: column name(s) {', '.join(map(repr, repeated))} appear more than once (case and spaces "
            "around names are ignored); rename the columns so each name is used once"
        )
    return columns


def _no_extra_fields(fields: list[str], width: int, path: Path, row_no: int, header_line: int) -> None:
    """Refuse a row with more filled fields than the header has names.

    An unquoted comma in a text (``Call us on 0800 123, or freeze it``) split it into two fields: the
    first was the passage, the rest was dropped in silence. Empty fields past the header's (a
    spreadsheet's trailing commas) hold nothing and are let through, as before.
    """
    if len(fields) > width and any(field.strip() for field in fields[width:]):
        raise DataError(
            f"{path}: line {row_no} has {len(fields)} fields where the header (line {header_line}) has "
            f'{width}; put a text that holds a comma in double quotes ("...")'
        )


#: The keys a JSONL knowledge record may have, as ``_record_keys`` reads them (the CSV's columns).
_JSONL_KEYS = ("text", "answer", "title", "question", "intent")


def _from_jsonl(text: str, path: Path) -> list[Passage]:
    passages = []
    ignored: dict[str, int] = {}  # a key not read (an export's "id" or "url", or a typo) -> its first line
    for line_no, raw in _json_records(text, path):
        if not isinstance(raw, dict):
            raise DataError(f'{path}: line {line_no} needs a JSON object with a "text" (or "answer") string')
        record = _record_keys(raw, path, line_no)
        for key in raw:
            if key.strip().casefold() not in _JSONL_KEYS:
                ignored.setdefault(key, line_no)
        text_key = next((k for k in ("text", "answer") if k in record), "text")  # as the CSV columns
        body = record.get(text_key)
        if not isinstance(body, str) or not has_visible_text(body):
            raise DataError(f'{path}: line {line_no} needs a non-empty "{text_key}" string')
        title_key = next((k for k in ("title", "question") if k in record), "title")
        title = record.get(title_key) or ""
        if not isinstance(title, str):
            raise DataError(f'{path}: line {line_no}: "{title_key}" must be a string or absent')
        intent = record.get("intent")
        if intent is not None and not isinstance(intent, str):
            raise DataError(f'{path}: line {line_no}: "intent" must be a string (the intent name) or absent')
        intent = intent.strip() if intent else None
        passages += [
            Passage(piece, str(title).strip(), f"{path}:{line_no}", intent or None)
            for piece in cut_long(body.strip())
        ]
    if ignored:  # not refused: exports carry ids and urls; a typo ("intnet") must not pass unseen
        named = ", ".join(f"{key!r} (line {line})" for key, line in ignored.items())
        log.warning(
            "%s: key(s) %s not read (known: text/answer, title/question, intent, in any case)", path, named
        )
    return passages


def _record_keys(record: dict[str, Any], path: Path, line_no: int) -> dict[str, Any]:
    """``record`` with its keys as the CSV reader takes its column names: spaces around them dropped,
    case folded.

    Taken as written, ``"Title"``, ``"Intent"`` or a typo (``"intnet"``) was dropped without a word, and
    the passage lost its title or intent tag; a key the normalising makes one with another (``"Text"``
    beside ``"text"``) would lose one of the two, and is refused as the CSV refuses such columns.
    Other keys are left out (the caller names them in one warning).
    """
    out: dict[str, Any] = {}
    written: dict[str, str] = {}  # normalised -> as written
    for key, value in record.items():
        name = key.strip().casefold()
        if name in written:
            raise DataError(
                f"{path}: line {line_no}: keys {written[name]!r} and {key!r} are the same key (case and "
                "spaces around keys are ignored); keep one of them"
            )
        if name in _JSONL_KEYS:
            written[name], out[name] = key, value
    return out


def _json_records(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    """Each record of a JSON lines file, or each item of a file holding one JSON array (as the
    training reader reads ``.jsonl``), with the line it starts on.

    An array was read a line at a time and its first line, ``[{...}, ...]``, refused as needing "a
    JSON object": the wrong problem named.
    """
    items = _json_array(text, path)
    if items is not None:
        for item in items:
            yield item.line, item.value
        return
    # "\n" only: str.splitlines also splits at U+2028, U+2029 and U+0085, which JSON holds unescaped
    # inside strings (text copied from web pages): such a line was refused as "not JSON"
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except JSON_ERRORS as exc:
            raise DataError(f"{path}: line {line_no} is not JSON ({json_problem(exc)})") from None


def _json_array(text: str, path: Path) -> list[JsonItem] | None:
    """The items of ``text`` when it is one JSON array, each with the line it starts on; None when it
    does not start with ``[`` or is JSON lines that are arrays (each line one whole JSON value).

    Raises:
        DataError: an array that is not JSON, naming the line where it breaks.
    """
    try:
        return json_array_items(text)
    except JsonArrayError as exc:
        if first_line_is_json(text):
            return None  # JSON lines whose lines are arrays: the line reader names the line
        # not even its first line is JSON: one array, broken
        where = f"line {exc.line}" if exc.line is not None else "the array"
        raise DataError(
            f"{path}: {where}: not valid JSON in the array ({exc.problem}); fix it there, or write "
            "one JSON object per line"
        ) from None


class KnowledgeIndex:
    """Passages with their unit-length embeddings (N, H), searchable by a query.

    Attributes:
        passages: the passages, in file order.
        vectors: (N, H) float32 unit-length embeddings of ``Passage.for_embedding``.
        model: the encoder name the vectors (and so every query) are embedded with.
        ann: a faiss HNSW index over ``vectors`` when there are ``ANN_MIN_PASSAGES`` or more
            passages, else None (exact search).
    """

    PASSAGES = "passages.jsonl"
    VECTORS = "vectors.npy"
    META = "index.json"
    ANN = "ann.faiss"

    def __init__(self, passages: list[Passage], vectors: np.ndarray, *, model: str, ann: Any = None) -> None:
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        self.passages, self.vectors, self.model, self.ann = passages, vectors, model, ann

    def __repr__(self) -> str:
        return (
            f"KnowledgeIndex(passages={len(self.passages)}, model={self.model!r}, "
            f"search={self.search_kind!r})"
        )

    @property
    def search_kind(self) -> str:
        """``exact`` or ``hnsw`` (faiss), for reports."""
        return "exact" if self.ann is None else "hnsw"

    @property
    def tagged(self) -> bool:
        """Whether any passage names the intent it answers (tuning and evaluation use the tags)."""
        return any(p.intent for p in self.passages)

    @classmethod
    def build(
        cls, passages: list[Passage], *, model: str = "minilm-l6", ann_min_passages: int = ANN_MIN_PASSAGES
    ) -> KnowledgeIndex:
        """Embed every passage once (title and text together); add an HNSW index from
        ``ann_min_passages`` passages on."""
        from tunelab.embeddings import embed

        vectors = embed([p.for_embedding() for p in passages], model=model)  # (N, H)
        ann = build_hnsw(vectors) if len(passages) >= ann_min_passages else None
        return cls(passages, vectors, model=model, ann=ann)

    def search(self, query: str, *, k: int = 3) -> list[Hit]:
        """The ``k`` passages most similar to ``query``, best first (all of them when there are
        fewer).

        Raises:
            ConfigError: ``k`` is not a whole number of 1 or more.
        """
        return self.search_many([query], k=k)[0]

    def search_many(self, queries: list[str], *, k: int = 3) -> list[list[Hit]]:
        """``search`` for several queries, embedded in one batch."""
        from tunelab.embeddings import embed

        # k=-1 slipped through min() into a slice, [:, :-1]: every passage but the last, in silence
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ConfigError(f"k={k!r}: use a whole number, 1 or more")
        if not queries:
            return []
        k = min(operator.index(k), len(self.passages))
        q = embed(list(queries), model=self.model)  # (Q, H)
        if self.ann is not None:
            scores, found = self.ann.search(np.ascontiguousarray(q, dtype=np.float32), k)  # (Q, k) each
        else:
            every = q @ self.vectors.T  # (Q, N)
            found = np.argsort(-every, axis=1, kind="stable")[:, :k]  # (Q, k)
            scores = np.take_along_axis(every, found, axis=1)
        return [
            [Hit(self.passages[int(i)], float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(found, scores, strict=True)
        ]

    def save(self, folder: str | Path) -> Path:
        """Write the index into ``folder`` atomically: a reader sees the old index or the new one.

        The new folder is swapped with an existing one in one step (``exchange``), so a kill at any
        moment leaves a whole index at ``folder``; where the OS cannot swap, two renames (old aside
        into a hidden ``.NAME.<hex>.old`` sibling, new in), and an index a kill left aside between
        them is put back first by the next save (``restore_interrupted``); temporary folders killed
        saves left are removed once an hour old (``remove_stale_tmp``).
        """
        target = Path(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        restore_interrupted(target)
        self._restore_unnamed_leftover(target)
        remove_stale_tmp(target)
        tmp = sibling_dir(target, "tmp")
        try:
            with (tmp / self.PASSAGES).open("w", encoding="utf-8") as f:
                for p in self.passages:
                    f.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
            np.save(tmp / self.VECTORS, self.vectors)
            if self.ann is not None:
                import faiss

                faiss.write_index(self.ann, str(tmp / self.ANN))
            meta = {
                "model": self.model,
                "passages": len(self.passages),
                "dims": int(self.vectors.shape[1]),
                "search": self.search_kind,
            }
            (tmp / self.META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            swap_in(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def _restore_unnamed_leftover(cls, target: Path) -> None:
        """Deal with the ``.NAME.old`` sibling that ``save`` set aside before it used hidden hex names.

        A kill between its two renames left the index there and none at ``target``: put back (an
        index, by its ``index.json``). Beside a present ``target`` it is a stale copy, removed as
        that ``save`` removed it.
        """
        legacy = target.with_name(f".{target.name}.old")
        if target.exists() or target.is_symlink():
            if legacy.is_dir() and not legacy.is_symlink():
                shutil.rmtree(legacy, ignore_errors=True)
        elif (legacy / cls.META).is_file() and not legacy.is_symlink():
            os.replace(legacy, target)
            log.warning("%s: put back from %s, where an interrupted save had left it", target, legacy)

    @classmethod
    def load(cls, folder: str | Path) -> KnowledgeIndex:
        """Read an index written by ``save``.

        Raises:
            DataError: the folder is not such an index.
        """
        root = Path(folder)
        try:
            meta = json.loads((root / cls.META).read_text(encoding="utf-8"))
            # "\n" only (see _from_jsonl): save writes U+2028 in a passage as it is, and a bot whose
            # knowledge held one could never load ("not a knowledge index")
            lines = (root / cls.PASSAGES).read_text(encoding="utf-8").split("\n")
            passages = [Passage(**json.loads(line)) for line in lines if line.strip()]
            vectors = np.load(root / cls.VECTORS)
            ann = None
            if meta.get("search") == "hnsw":
                ann = read_hnsw(root / cls.ANN, vectors, cls.VECTORS)
            if len(vectors) != len(passages):
                raise ValueError("vectors and passages differ in number")
            return cls(passages, vectors, model=meta["model"], ann=ann)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise DataError(f"{root}: not a knowledge index ({type(exc).__name__}); build it again") from None


def sibling_dir(target: Path, suffix: str) -> Path:
    """A new empty folder next to ``target`` (same file system, so it can be renamed onto it).

    Not ``tempfile.mkdtemp``: that makes the folder private (0700), and renamed into place it would
    keep those permissions; ``os.mkdir`` applies the umask as a plain ``mkdir`` would. A long
    ``target`` name is cut to fit (``sibling_stem``).
    """
    stem = sibling_stem(target, suffix)
    for _ in range(100):
        candidate = target.parent / f".{stem}.{secrets.token_hex(6)}.{suffix}"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: no free temporary folder name for {target.name}")


OLD_ENTRY = "bot"  # the old folder's name inside its hidden ``.old`` sibling (the same for every caller)
# A temporary folder (``.NAME.<hex>.tmp``) untouched this long is a killed writer's, not a live one's.
STALE_TMP_S = STALE_FOLDER_S


def remove_stale_tmp(target: Path) -> None:
    """Remove the temporary folders (``.NAME.<12 hex>.tmp``) that killed writes left beside ``target``.

    ``restore_interrupted`` looks at ``.old`` siblings only; the rule for what is stale is
    ``atomic.remove_stale_folders``'s (an hour since the newest entry was touched).
    """
    stem = sibling_stem(target, "tmp")  # as ``sibling_dir`` named them: a long name cut to fit
    pattern = re.compile(rf"\.{re.escape(stem)}\.[0-9a-f]{{12}}\.tmp")
    try:
        found = target.parent.glob(f".{glob.escape(stem)}.*.tmp")
        candidates = [folder for folder in found if pattern.fullmatch(folder.name)]
    except OSError:  # a folder the OS cannot list: the write itself says why, in one line
        return
    for folder in remove_stale_folders(candidates, STALE_TMP_S):
        log.warning("removed %s, left behind by an interrupted write of %s", folder, target)


def restore_interrupted(target: Path) -> Path | None:
    """Put back the folder a replace interrupted between its two renames; the sibling it came from.

    Only when ``target`` is missing: a leftover beside a present ``target`` is the remains of a
    replace that finished or failed cleanly, and is left alone. Of several leftovers the newest is
    the last folder that was at ``target``. A build (``build_bot``, the recommender's ``build``)
    calls this before checking ``target``, so without ``--overwrite`` the restored folder is kept
    and the build refused, as if it had never gone; ``KnowledgeIndex.save`` before it writes.
    Here, not in build.py (which re-exports it), because build.py imports this module.
    """
    stem = sibling_stem(target, "old")  # as ``sibling_dir`` named them: a long name cut to fit
    pattern = re.compile(rf"\.{re.escape(stem)}\.[0-9a-f]{{12}}\.old")
    try:
        if target.exists() or target.is_symlink():
            return None
        leftovers = [
            (p.stat().st_mtime, p)
            for p in target.parent.glob(f".{glob.escape(stem)}.*.old")
            if pattern.fullmatch(p.name) and (p / OLD_ENTRY).exists()
        ]
    except OSError:  # a path the OS cannot look at or list: the caller's own checks say why, in one line
        return None
    if not leftovers:
        return None
    newest = max(leftovers)[1]
    os.replace(newest / OLD_ENTRY, target)
    shutil.rmtree(newest, ignore_errors=True)
    log.warning("%s: put back from %s, where an interrupted replace had left it", target, newest)
    return newest


def swap_in(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` at ``target``, replacing what is there (``tmp`` is gone after).

    An existing ``target`` is swapped with ``tmp`` in one step (``exchange``), so a kill at any
    moment leaves a whole folder there, the old one or the new one; the old one is then removed.
    Where the OS cannot swap, two renames: the old folder aside into a hidden ``.NAME.<hex>.old``
    sibling, the new one in; a kill between them leaves ``target`` missing and the old folder
    where ``restore_interrupted`` finds it. Shared by ``KnowledgeIndex.save`` and ``write_folder``.
    """
    if target.exists() and exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # the old folder, swapped out
    elif target.exists():
        old = sibling_dir(target, "old")
        os.replace(target, old / OLD_ENTRY)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old / OLD_ENTRY, target)  # put the old one back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def build_hnsw(vectors: np.ndarray) -> Any:
    """A faiss HNSW index for inner-product search over unit vectors (N, H)."""
    import faiss  # lazy: only indexes past their ANN threshold need it

    index = faiss.IndexHNSWFlat(int(vectors.shape[1]), _HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = _HNSW_EF_BUILD
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    index.hnsw.efSearch = _HNSW_EF_SEARCH
    return index


def read_hnsw(path: Path, vectors: np.ndarray, vectors_name: str) -> Any:
    """The faiss HNSW index saved at ``path`` over ``vectors`` (read from ``vectors_name``), set to search.

    Raises:
        ValueError: the file holds another index type (no .hnsw: an uncaught AttributeError), or
            one over other vectors.
    """
    import faiss

    ann = faiss.read_index(str(path))
    if not isinstance(ann, faiss.IndexHNSW):
        raise ValueError(f"{path.name} holds a {type(ann).__name__}, not an HNSW index")
    if vectors.ndim != 2 or ann.ntotal != len(vectors) or ann.d != vectors.shape[1]:
        raise ValueError(f"{path.name} does not index {vectors_name}")
    ann.hnsw.efSearch = _HNSW_EF_SEARCH
    return ann
