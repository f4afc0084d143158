"""NER splits: read each file by its format, build the tag map from train, check dev/test, carve splits.

The label map holds ``O`` and both ``B-`` and ``I-`` of every entity type seen in training (sorted),
whether or not training had both: a model may then predict ``I-X`` after ``B-X`` for any type, and
a dev or test file is checked by entity type, which is what a user can fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tunelab.config import DataConfig
from tunelab.data.labels import LabelMap
from tunelab.data.splits import Splits, nothing_to_find_note, untrained_note
from tunelab.errors import DataError
from tunelab.tasks.token_classification.reading import (
    Sentence,
    check_types,
    read_conll,
    read_jsonl_spans,
    read_jsonl_tokens,
    resolve_encoding,
)

TASK = "token_classification"
CONLL_SUFFIXES = (".conll", ".txt", ".iob", ".bio", ".tsv")
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass
class NerDataset:
    """Labelled sentences and their tag ids.

    Attributes:
        sentences: the sentences as read (words, IOB2 tags, file lines, original text for span files).
        labels: the tag id of each word of each sentence.
        source: where the sentences came from, e.g. ``"train.txt (dev split)"``.
    """

    sentences: list[Sentence]
    labels: list[list[int]]
    source: str

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def texts(self) -> list[str]:
        """Each sentence as text: the original string of span files, else the words joined by spaces."""
        return [s.text if s.text is not None else " ".join(s.tokens) for s in self.sentences]

    @property
    def text_pairs(self) -> None:
        """NER reads single sentences: no second text (``Predictor.check_pairs`` asks)."""
        return None

    def subset(self, positions: list[int], suffix: str = "") -> NerDataset:
        return NerDataset(
            sentences=[self.sentences[i] for i in positions],
            labels=[self.labels[i] for i in positions],
            source=self.source + suffix,
        )


def read_sentences(
    path: str | Path, data: DataConfig, *, field: str | None, gold_cuts: bool = False
) -> list[Sentence]:
    """Read one labelled NER file in the format ``data.format`` names or its extension implies.

    ``jsonl`` holds either ``{"tokens", "tags"}`` or ``{"text", "spans"}`` records (told apart by
    the first record); ``tsv`` and ``auto`` with a CoNLL extension are column files, read with
    ``data.token_column`` and ``data.tag_column``.

    ``gold_cuts`` (span files only): split words at the entities' edges, for the sentences a model
    trains on; scored sentences are split as predict splits (see ``read_jsonl_spans``).

    Raises:
        DataError: the format cannot be told, or the file is malformed (see the readers).
    """
    p = Path(path)
    where = f"{field}: " if field else ""
    if p.is_dir():  # before the format: "a file without extension" for a folder or a typo misled
        raise DataError(f"{where}{p}: a folder, not a file; give the NER data file")
    if not p.exists():
        raise DataError(f"{where}{p}: file not found")
    kind = _format_of(p, data.format, field)
    if kind == "conll":
        return read_conll(
            p, tag_column=data.tag_column, token_column=data.token_column, encoding=data.encoding
        )
    if _first_record_has_text(p, data.encoding):
        return read_jsonl_spans(p, encoding=data.encoding, gold_cuts=gold_cuts)
    return read_jsonl_tokens(p, encoding=data.encoding)


def label_map(train: list[Sentence], source: str) -> LabelMap:
    """``O`` plus ``B-``/``I-`` of every entity type in ``train``, sorted.

    Raises:
        DataError: training has no entity at all (nothing to learn).
    """
    types = sorted({t[2:] for s in train for t in s.tags if t != "O"})
    if not types:
        raise DataError(
            f"{source}: no entities, every tag is O; check the tags (or data.tag_column for column files)"
        )
    _refuse_case_twins(train, types, source)
    return LabelMap(names=sorted({"O", *(f"{p}-{t}" for t in types for p in ("B", "I"))}), task=TASK)


def _refuse_case_twins(train: list[Sentence], types: list[str], source: str) -> None:
    """Refuse entity types that differ only in case (``B-PER`` then ``I-per``): each became a type of
    its own in silence, an entity split in two and ``per`` learned from a handful of typos.

    Raises:
        DataError: naming the two spellings and where the rarer one first occurs.
    """
    by_fold: dict[str, list[str]] = {}
    for kind in types:
        by_fold.setdefault(kind.casefold(), []).append(kind)
    twins = next((kinds for kinds in by_fold.values() if len(kinds) > 1), None)
    if twins is None:
        return
    counts = {kind: 0 for kind in twins}
    first: dict[str, str] = {}
    for sentence in train:
        for tag, line in zip(sentence.tags, sentence.lines, strict=True):
            if tag != "O" and tag[2:] in counts:
                counts[tag[2:]] += 1
                first.setdefault(tag[2:], f"{sentence.source} line {line}")
    rare = min(twins, key=lambda kind: (counts[kind], kind))
    spelled = " and ".join(f"{kind!r} ({counts[kind]} tags)" for kind in twins)
    raise DataError(
        f"{source}: entity types {spelled} differ only in case, first {rare!r} at {first[rare]}; "
        "write each type one way (tags are case-sensitive)"
    )


def to_dataset(sentences: list[Sentence], labels: LabelMap, source: str) -> NerDataset:
    ids = [[labels.id_of(tag) for tag in s.tags] for s in sentences]
    return NerDataset(sentences=sentences, labels=ids, source=source)


def known_types(labels: LabelMap) -> set[str]:
    return {name[2:] for name in labels.names if name != "O"}


def load_splits(data: DataConfig) -> Splits:
    """Read train, dev and test; carve dev (and test) from train when no file is given.

    Carved splits are a seeded random sample of whole sentences (``data.split_seed``), test first,
    then dev from what is left, as for classification; NER sentences have no single label to
    stratify on. Only the training sentences of a span file are split at the entities' edges
    (``gold_cuts``); dev and test sentences, carved or from their own files, are split as predict
    splits them, so dev F1 credits only entities predict can return.

    Raises:
        DataError: a file is missing or malformed, a dev/test file has entity types training has
            not, or train is too small for the split asked for (a carved split that took every
            sentence of an entity type is a warning note).
    """
    if not data.train:
        raise DataError("data.train is not set; give the training file, e.g. data.train: data/train.txt")
    if data.shots is not None:  # check_run refuses it first (Task.samples_shots); this for direct callers
        raise DataError(
            f"data.shots={data.shots}: few-shot sampling draws N rows per label and applies to "
            "classification only; remove data.shots for token classification"
        )
    train = read_sentences(data.train, data, field="data.train", gold_cuts=True)
    labels = label_map(train, data.train)
    pool = to_dataset(train, labels, data.train)
    scored: NerDataset | None = None  # what carved dev/test sentences come from, made when needed
    notes: list[str] = []
    keep = list(range(len(pool)))
    held: dict[str, NerDataset | None] = {}
    carved: dict[str, list[int]] = {}
    for what, path, size in (("test", data.test, data.test_size), ("dev", data.dev, data.dev_size)):
        if path:
            sentences = read_sentences(path, data, field=f"data.{what}")
            check_types(known_types(labels), sentences, f"data.{what}")
            held[what] = to_dataset(sentences, labels, path)
        elif size > 0:
            keep, out = _carve(len(pool), keep, size, what=what, data=data, notes=notes)
            if scored is None:  # a span file: the same lines, uncut, as predict splits them
                spans = any(s.text is not None for s in train)
                uncut = read_sentences(data.train, data, field="data.train") if spans else None
                scored = pool if uncut is None else to_dataset(uncut, labels, data.train)
            held[what] = scored.subset(out, f" ({what} split)")
            carved[what] = out
        else:
            held[what] = None
    # An entity type whose sentences all went to dev/test has tags no training word teaches; a dev
    # file with such a type is refused (check_types); a carve only warns (see data.splits).
    types_of = [{tag[2:] for tag in s.tags if tag != "O"} for s in train]
    untrained = untrained_note(
        types_of,
        keep,
        carved,
        source=data.train,
        fix="change data.split_seed",
        kind="entity type",
        unit="sentence",
    )
    if untrained:
        notes.append(untrained)
    for what in ("dev", "test"):
        split = held[what]
        if split is not None and len(split) and all(t == "O" for s in split.sentences for t in s.tags):
            notes.append(
                nothing_to_find_note(
                    what, len(split), split.source, unit="sentences", thing="an entity", score="entity F1"
                )
            )
    train_set = pool.subset(keep)
    words = sum(len(s.tokens) for s in train_set.sentences)
    types = ", ".join(sorted(known_types(labels)))
    notes.insert(
        0, f"train: {len(train_set)} sentences ({words} words) from {data.train}, entity types {types}"
    )
    return Splits(train=train_set, dev=held["dev"], test=held["test"], labels=labels, notes=notes)  # type: ignore[arg-type]


def read_labelled(path: str | Path, data: DataConfig, labels: LabelMap, *, field: str | None) -> NerDataset:
    """One labelled file checked against a run's tag map (``tunelab eval --data``, export parity),
    split as predict splits (no ``gold_cuts``): it is scored, not trained on."""
    sentences = read_sentences(path, data, field=field)
    # A file given on the command line has no config field: its messages name the file alone.
    check_types(known_types(labels), sentences, field or str(path), known_from="the run's training data")
    return to_dataset(sentences, labels, str(path))


def _format_of(path: Path, fmt: str, field: str | None) -> str:
    suffix = path.suffix.lower()
    if fmt == "jsonl" or (fmt == "auto" and suffix in JSONL_SUFFIXES):
        return "jsonl"
    if fmt in ("conll", "tsv") or (fmt == "auto" and suffix in CONLL_SUFFIXES):
        return "conll"
    shown = " ".join(CONLL_SUFFIXES)
    what = f"format {fmt}" if fmt != "auto" else f"a {suffix} file" if suffix else "a file without extension"
    raise DataError(
        f"{field + ': ' if field else ''}{path}: cannot read NER data from {what}; "
        f"give a CoNLL column file ({shown}, or data.format=conll) or JSON lines (.jsonl, data.format=jsonl)"
    )


def _first_record_has_text(path: Path, encoding: str) -> bool:
    """Whether the first JSON line is a ``{"text", "spans"}`` record (else tokens + tags are expected).

    A line that is not a JSON object decides nothing: the tokens reader then reports it, naming
    the line.
    """
    try:
        encoding = resolve_encoding(path, encoding)
        with path.open(encoding=encoding, errors="replace") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line.lstrip("\ufeff"))
                    return isinstance(record, dict) and "text" in record and "tokens" not in record
    except (OSError, LookupError, json.JSONDecodeError):
        pass
    return False


def _carve(
    n: int, keep: list[int], size: float, *, what: str, data: DataConfig, notes: list[str]
) -> tuple[list[int], list[int]]:
    """Hold out ``size`` of all ``n`` training sentences from those in ``keep`` (seeded, random)."""
    from sklearn.model_selection import train_test_split  # lazy: sklearn is slow to import

    n_out = math.ceil(size * n)
    pct = f"{size * 100:g}%"
    if n_out >= len(keep):
        raise DataError(
            f"{data.train}: too few sentences ({len(keep)}) for a {pct} {what} split; give a {what} "
            f"file (data.{what}) or set data.{what}_size=0"
        )
    kept, out = train_test_split(keep, test_size=n_out, random_state=data.split_seed)
    notes.append(f"{what}: {pct} random split of {data.train} (seed {data.split_seed}): {len(out)} sentences")
    return sorted(kept), sorted(out)
