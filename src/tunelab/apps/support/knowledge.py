"""The support bot's knowledge base: passages read from Markdown, CSV or JSONL, and their index.

A message the intent model is unsure about is looked up here: the best passages by cosine
similarity of unit-length sentence embeddings (``tunelab.embed``). The search is exact (one matrix
product): at a few thousand passages it takes about a millisecond, well below the encoder's own
cost for the query. An approximate index only pays off far beyond that and is not built yet.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tunelab.errors import DataError

#: A Markdown section longer than this many words is cut at paragraph breaks into several passages.
MAX_PASSAGE_WORDS = 200
FORMATS = (".md", ".markdown", ".csv", ".jsonl")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of the knowledge base.

    Attributes:
        text: what the bot replies with.
        title: the heading or question it sits under ("" when none).
        source: ``file:line`` it starts on, so a wrong answer can be traced and fixed.
    """

    text: str
    title: str
    source: str

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

    CSV: a ``text`` column (or ``answer``), with an optional ``title`` (or ``question``) column.
    JSONL: one ``{"text": ..., "title": ...}`` object per line.

    Raises:
        DataError: the file is missing, not UTF-8, of another format, malformed or empty; the
            message names the file and, where it helps, the line.
    """
    p = Path(path)
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
    return passages


def _from_markdown(text: str, path: Path) -> list[Passage]:
    passages: list[Passage] = []
    title, paragraphs, start = "", [], 1  # paragraphs: (first line, text)
    block: list[str] = []
    block_start = 1

    def end_block() -> None:
        if block:
            paragraphs.append((block_start, " ".join(s.strip() for s in block)))
            block.clear()

    def end_section() -> None:
        end_block()
        chunk: list[str] = []
        chunk_start = start
        for line_no, para in paragraphs:
            if chunk and len(" ".join([*chunk, para]).split()) > MAX_PASSAGE_WORDS:
                passages.append(Passage("\n\n".join(chunk), title, f"{path}:{chunk_start}"))
                chunk, chunk_start = [], line_no
            if not chunk:
                chunk_start = line_no
            chunk.append(para)
        if chunk:
            passages.append(Passage("\n\n".join(chunk), title, f"{path}:{chunk_start}"))
        paragraphs.clear()

    for line_no, line in enumerate(text.splitlines(), start=1):
        heading = _HEADING.match(line)
        if heading:
            end_section()
            title, start = heading.group(2), line_no
        elif line.strip():
            if not block:
                block_start = line_no
            block.append(line)
        else:
            end_block()
    end_section()
    return passages


def _from_csv(text: str, path: Path) -> list[Passage]:
    reader = csv.DictReader(io.StringIO(text))
    columns = reader.fieldnames or []
    text_col = next((c for c in ("text", "answer") if c in columns), None)
    if text_col is None:
        raise DataError(f"{path}: needs a text (or answer) column; it has {', '.join(columns) or 'none'}")
    title_col = next((c for c in ("title", "question") if c in columns), None)
    passages = []
    for row_no, row in enumerate(reader, start=2):
        body = (row.get(text_col) or "").strip()
        if body:
            title = (row.get(title_col) or "").strip() if title_col else ""
            passages.append(Passage(body, title, f"{path}:{row_no}"))
    return passages


def _from_jsonl(text: str, path: Path) -> list[Passage]:
    passages = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {line_no} is not JSON ({exc.msg})") from None
        body = record.get("text") if isinstance(record, dict) else None
        if not isinstance(body, str) or not body.strip():
            raise DataError(f'{path}: line {line_no} needs a non-empty "text" string')
        title = record.get("title") or ""
        passages.append(Passage(body.strip(), str(title).strip(), f"{path}:{line_no}"))
    return passages


class KnowledgeIndex:
    """Passages with their unit-length embeddings (N, H), searchable by a query."""

    PASSAGES = "passages.jsonl"
    VECTORS = "vectors.npy"
    META = "index.json"

    def __init__(self, passages: list[Passage], vectors: np.ndarray, *, model: str) -> None:
        if len(passages) != len(vectors):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        self.passages, self.vectors, self.model = passages, vectors, model

    @classmethod
    def build(cls, passages: list[Passage], *, model: str = "minilm-l6") -> KnowledgeIndex:
        """Embed every passage once (title and text together)."""
        from tunelab.embeddings import embed

        return cls(passages, embed([p.for_embedding() for p in passages], model=model), model=model)

    def search(self, query: str, *, k: int = 3) -> list[Hit]:
        """The ``k`` passages most similar to ``query``, best first."""
        from tunelab.embeddings import embed

        scores = self.vectors @ embed([query], model=self.model)[0]  # (N,)
        best = np.argsort(-scores)[:k]
        return [Hit(self.passages[i], float(scores[i])) for i in best]

    def save(self, folder: str | Path) -> Path:
        """Write the index into ``folder`` atomically: a reader sees the old index or the new one."""
        target = Path(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            with (tmp / self.PASSAGES).open("w", encoding="utf-8") as f:
                for p in self.passages:
                    f.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
            np.save(tmp / self.VECTORS, self.vectors)
            meta = {"model": self.model, "passages": len(self.passages), "dims": int(self.vectors.shape[1])}
            (tmp / self.META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, folder: str | Path) -> KnowledgeIndex:
        """Read an index written by ``save``.

        Raises:
            DataError: the folder is not such an index.
        """
        root = Path(folder)
        try:
            meta = json.loads((root / cls.META).read_text(encoding="utf-8"))
            lines = (root / cls.PASSAGES).read_text(encoding="utf-8").splitlines()
            passages = [Passage(**json.loads(line)) for line in lines if line.strip()]
            vectors = np.load(root / cls.VECTORS)
        except (OSError, ValueError, TypeError) as exc:
            raise DataError(f"{root}: not a knowledge index ({type(exc).__name__}); build it again") from None
        return cls(passages, vectors, model=meta["model"])
