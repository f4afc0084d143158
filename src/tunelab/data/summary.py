"""What a user wants to see about the data before training: sizes, labels, duplicates, lengths.

``summarize(splits, task)`` asks the task what each example is (``Task.summary_view``: its text,
what makes two examples the same, its label names) and counts the rest here, the same for every
task: rows per split, examples per label with rare labels and labels that look like typos of
another, class imbalance, duplicate texts within train and texts shared between train and
dev/test (leakage), and inputs longer than ``model.max_length`` tokens. ``tunelab validate``
prints it and ``--json`` gives ``DataSummary.to_dict()``; the run report can show the same.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.data.held_out import normalised

if TYPE_CHECKING:
    from tunelab.data.splits import Splits
    from tunelab.tasks.base import Task

#: A label with fewer training examples than this is flagged: a 10% dev split holds 0 or 1 of
#: them, so its dev scores are noise and the model sees too few to learn it.
RARE_EXAMPLES = 5
#: Two label names at least this similar (difflib ratio, case ignored) where one has at most
#: ``TYPO_SHARE`` of the other's examples look like one label misspelt (``postive`` beside
#: ``positive``: 0.93). difflib is in the standard library and the labels are few (BANKING77: 77,
#: ~3,000 pairs), so no fuzzy-matching package is needed.
TYPO_SIMILARITY = 0.8
TYPO_SHARE = 0.2
#: How many of the most frequent labels a rare one is compared with: every BANKING77 (77) or
#: CLINC150 (150) label; on a catalogue of thousands, the ones a misspelling is likely to copy.
TYPO_CANDIDATES = 200
_DIGITS = re.compile(r"\d+")
_LABELS_SHOWN = 30
#: Warnings of one kind printed (rare labels, typos); ``--json`` lists them all.
_WARNINGS_SHOWN = 20
_SPLITS = ("train", "dev", "test")


@dataclass
class SummaryView:
    """What a task says about one dataset, for the summary (``Task.summary_view``).

    Attributes:
        keys: per example, what makes two examples the same (the text; the (text, pair) tuple).
        labels: per example, the label names it counts towards (one; any number; entity types).
        texts: per example, the text the tokenizer reads.
        pairs: per example, the second text, or None.
        facts: task-specific counts worth a line (words, entity mentions, rows without a label).
        words: per example, the words the encoder tokenizes one by one (NER), or None (``texts``
            whole). A SentencePiece tokenizer marks each word's start: e5's reads a 100-character
            Chinese sentence as 100 words in 192 tokens, and as one text in 59.
    """

    keys: list[str] | list[tuple[str, str]]
    labels: list[list[str]]
    texts: list[str]
    pairs: list[str] | None = None
    facts: dict[str, int] = field(default_factory=dict)
    words: list[list[str]] | None = None


@dataclass
class SummaryTerms:
    """How a task names what the summary counts (``Task.summary_terms``).

    Attributes:
        example: one example (``row``, ``sentence``).
        label_count: what a label's count counts (``rows``, ``entity mentions``).
        long: what happens to an input past ``max_length`` tokens (``truncated``,
            ``split into overlapping windows``).
    """

    example: str = "row"
    label_count: str = "rows"
    long: str = "truncated"


@dataclass
class DataSummary:
    """The data summary of a run's splits; ``to_dict()`` for JSON and reports."""

    task: str
    num_labels: int
    terms: SummaryTerms
    rows: dict[str, int]
    sources: dict[str, str]
    label_counts: dict[str, dict[str, int]]
    rare: dict[str, int]
    typos: list[dict[str, Any]]
    imbalance: float | None
    duplicates: dict[str, int]
    shared: dict[str, int]
    facts: dict[str, dict[str, int]]
    max_length: int | None = None
    long: dict[str, int] = field(default_factory=dict)
    longest: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The summary as text lines, worst news flagged with ``!``."""
        t = self.terms
        out = ["rows: " + ", ".join(f"{s} {n} ({self.sources[s]})" for s, n in self.rows.items())]
        for split, facts in self.facts.items():
            if facts:
                out.append(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
        train = self.label_counts.get("train", {})
        present = [s for s in self.rows if self.label_counts.get(s)]
        # Every label any split counts, not train's only: one with no training row (a data.dev file's
        # label that data.labels named) shows as 0 / N instead of missing from the table.
        names = {n for s in present for n in self.label_counts[s]}
        out.append(f"{t.label_count} per label ({len(names)} labels; " + " / ".join(present) + "):")
        ordered = sorted(names, key=lambda n: (-train.get(n, 0), n))
        shown = ordered if len(ordered) <= _LABELS_SHOWN else ordered[:10] + ordered[-10:]
        for i, name in enumerate(shown):
            if len(shown) < len(ordered) and i == 10:
                out.append(f"  ... {len(ordered) - 20} more (--json lists all)")
            counts = " / ".join(str(self.label_counts[s].get(name, 0)) for s in present)
            out.append(f"  {name}: {counts}")
        if self.imbalance is not None:
            out.append(f"imbalance: largest/smallest label {self.imbalance:.1f}x")
        # At most _WARNINGS_SHOWN of each: 2,000 numbered categories printed 3,800 warning lines.
        rare = [
            f"! label {name!r} has only {n} training {t.label_count} (fewer than {RARE_EXAMPLES})"
            for name, n in self.rare.items()
        ]
        out += _at_most(rare, "labels with too few examples")
        typos = [
            f"! label {typo['label']!r} ({typo['count']} {t.label_count}) looks like a typo of "
            f"{typo['like']!r} ({typo['like_count']}): {typo['why']}"
            for typo in self.typos
        ]
        out += _at_most(typos, "labels that look like typos")
        dup, conflicting = self.duplicates.get("train", 0), self.duplicates.get("train_conflicting", 0)
        mark = "! " if dup else ""
        what = f", {conflicting} of them with another label" if conflicting else ""
        verb = "repeats" if dup == 1 else "repeat"
        out.append(f"{mark}duplicates in train: {_n(dup, t.example)} {verb} an earlier one{what}")
        for pair, n in self.shared.items():
            a, b = pair.split("-")
            out.append(f"{'! ' if n else ''}{t.example}s of {b} also in {a} (leakage): {n}")
        if self.max_length is not None:
            for split, n in self.long.items():
                mark = "! " if n else ""
                out.append(
                    f"{mark}{split}: {_n(n, t.example)} longer than max_length {self.max_length} tokens "
                    f"would be {t.long} (longest {self.longest[split]})"
                )
        return out


def summarize(
    splits: Splits, task: Task, *, tokenizer: Any = None, max_length: int | None = None
) -> DataSummary:
    """Count what a user should know about ``splits`` before training.

    Args:
        splits: the run's data, as ``Task.load_splits`` read it.
        task: the run's task: it says what an example and its labels are.
        tokenizer: the run's tokenizer, to count inputs longer than ``max_length``; None skips it.
        max_length: ``model.max_length``.
    """
    views = {
        name: task.summary_view(ds, splits.labels)
        for name, ds in zip(_SPLITS, (splits.train, splits.dev, splits.test), strict=True)
        if ds is not None
    }
    counts = {name: dict(Counter(n for row in v.labels for n in row)) for name, v in views.items()}
    train_counts = counts["train"]
    keys = {name: [_normal(k) for k in v.keys] for name, v in views.items()}
    summary = DataSummary(
        task=task.name,
        num_labels=len(splits.labels.names),
        terms=task.summary_terms(),
        rows={name: len(v.keys) for name, v in views.items()},
        sources={
            name: ds.source
            for name, ds in zip(_SPLITS, (splits.train, splits.dev, splits.test), strict=True)
            if ds
        },
        label_counts=counts,
        rare={n: c for n, c in sorted(train_counts.items(), key=lambda kv: kv[1]) if c < RARE_EXAMPLES},
        typos=look_like_typos(train_counts),
        imbalance=(
            max(train_counts.values()) / min(train_counts.values()) if len(train_counts) >= 2 else None
        ),
        duplicates=_duplicates(keys["train"], views["train"].labels),
        # Rows of dev/test whose text is also a training text (each repeat counts: it is scored).
        shared={
            f"train-{other}": _rows_in(keys[other], keys["train"])
            for other in ("dev", "test")
            if other in keys
        },
        facts={name: v.facts for name, v in views.items()},
    )
    if "dev" in keys and "test" in keys:
        summary.shared["dev-test"] = _rows_in(keys["test"], keys["dev"])
    if tokenizer is not None and max_length is not None:
        summary.max_length = max_length
        for name, v in views.items():
            texts = v.words if v.words is not None else v.texts
            lengths = _token_lengths(tokenizer, texts, v.pairs, max_length)
            summary.long[name] = sum(n > max_length for n in lengths)
            summary.longest[name] = max(lengths, default=0)
    return summary


def look_like_typos(counts: dict[str, int]) -> list[dict[str, Any]]:
    """Rare labels whose name is close to a far more frequent one's, and every variant of another
    label's name (case or spaces, or the same number: ``_same_class``), with the reason.

    ``counts`` maps each label to its number of training examples. Names that differ only in
    their numbers (``category-00017`` and ``category-00071``, ``v2`` and ``v3``) are not typos of
    each other: with numbered categories every pair looked alike, 2,000 labels flagged 1,996 and
    took 5.8 s. Each rare label is compared only with the ``TYPO_CANDIDATES`` most frequent labels
    (a misspelling is rare beside a label used often), so the work grows with the number of labels,
    not with its square; one ``SequenceMatcher`` per candidate keeps what it caches of that name.
    """
    normal = {name: name.casefold().strip() for name in counts}
    numberless = {name: _DIGITS.sub("0", text) for name, text in normal.items()}
    order = {name: i for i, name in enumerate(counts)}  # ties go to the label met first, as before
    by_count = sorted(counts, key=lambda name: (-counts[name], order[name]))
    frequent = by_count[:TYPO_CANDIDATES]
    # Variants of one name are flagged first, whatever their counts; similarity then skips them.
    found = _same_class(counts, by_count)
    best: dict[str, tuple[float, int, str]] = {}  # label: (ratio, -order of the like, the like)
    flagged = {typo["label"] for typo in found}
    rare = sorted((name for name in counts if name not in flagged), key=lambda name: counts[name])
    for other in frequent:
        b, m = normal[other], counts[other]
        matcher = difflib.SequenceMatcher(None, "", b)
        for name in rare:
            n = counts[name]
            if n > TYPO_SHARE * m:
                break  # ``rare`` is sorted by count: the rest are as frequent or more
            a = normal[name]
            if name == other or (a != b and numberless[name] == numberless[other]):
                continue
            matcher.set_seq1(a)
            if matcher.real_quick_ratio() < TYPO_SIMILARITY or matcher.quick_ratio() < TYPO_SIMILARITY:
                continue
            ratio = matcher.ratio()
            if ratio >= TYPO_SIMILARITY and (ratio, -order[other]) > best.get(name, (0.0, 0, ""))[:2]:
                best[name] = (ratio, -order[other], other)
    for name, (ratio, _, other) in best.items():
        why = f"{ratio:.0%} similar, and {counts[name]} against {counts[other]} examples"
        found.append(
            {"label": name, "count": counts[name], "like": other, "like_count": counts[other], "why": why}
        )
    return sorted(found, key=lambda typo: (typo["count"], typo["label"]))


_WHOLE_NUMBER = re.compile(r"([+-]?\d+)(?:\.0+)?")


def _same_class(counts: dict[str, int], by_count: list[str]) -> list[dict[str, Any]]:
    """Labels that are another's name but for case and spaces (``Positive``, ``neg `` beside ``neg``)
    or the same number (``01``, ``1.0`` beside ``1``), whatever their counts: the similarity check
    wants a far rarer name, so two halves of one class of similar size went unflagged, and numbers
    were never compared. Each is flagged beside its group's most frequent name (``by_count`` order).
    """
    text = {name: " ".join(name.casefold().split()) for name in counts}
    groups: dict[Any, list[str]] = {}
    for name in by_count:
        key: Any = text[name]
        # Whole numbers only, written with leading zeros or a ".0" (01, 1.0, 1): codes such as 1.1
        # and 1.10 are equal as numbers but name two sections. int(), not float(): long numeric
        # codes that differ in the last digit are one float.
        if whole := _WHOLE_NUMBER.fullmatch(name.strip()):
            key = ("number", int(whole.group(1)))
        groups.setdefault(key, []).append(name)
    found = []
    for like, *others in groups.values():
        for name in others:
            why = "the same name but for case or spaces" if text[name] == text[like] else "the same number"
            found.append(
                {"label": name, "count": counts[name], "like": like, "like_count": counts[like], "why": why}
            )
    return found


def _at_most(lines: list[str], what: str) -> list[str]:
    """The first ``_WARNINGS_SHOWN`` lines, and how many more there are."""
    if len(lines) <= _WARNINGS_SHOWN:
        return lines
    more = len(lines) - _WARNINGS_SHOWN
    return [*lines[:_WARNINGS_SHOWN], f"! ... and {more} more {what} (--json lists all)"]


def _n(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _normal(key: str | tuple[str, str]) -> tuple[str, str | None]:
    """Case, runs of whitespace and Unicode normalisation (NFC or NFD "café") do not make two texts
    different; a pair's two texts are compared one by one. held_out's comparison, so that the
    leakage this summary counts and the rows training keeps out of its training data are the same."""
    return normalised(*key) if isinstance(key, tuple) else normalised(key, None)


def _duplicates(keys: list[Any], labels: list[list[str]]) -> dict[str, int]:
    """Examples repeating an earlier one, and how many of those carry other labels than it."""
    first: dict[str, list[str]] = {}
    repeats = conflicting = 0
    for key, names in zip(keys, labels, strict=True):
        if key in first:
            repeats += 1
            conflicting += sorted(first[key]) != sorted(names)
        else:
            first[key] = names
    return {"train": repeats, "train_conflicting": conflicting}


def longer_than(
    tokenizer: Any, texts: list[str] | list[list[str]], pairs: list[str] | None, max_length: int
) -> int:
    """How many inputs are longer than ``max_length`` tokens (special tokens included): what a task
    that does not read long texts in windows cuts (eval and predict --input say how many)."""
    return sum(n > max_length for n in _token_lengths(tokenizer, texts, pairs, max_length))


def truncation_note(where: str, cut: int, total: int, max_length: int) -> str:
    """The line saying ``cut`` of ``total`` inputs were truncated (``where``: the file's name)."""
    return (
        f"{where}: {cut} of {total} texts are longer than max_length {max_length} tokens and were "
        "truncated to it, as in training: what lay past it was not read"
    )


def _token_lengths(
    tokenizer: Any, texts: list[str] | list[list[str]], pairs: list[str] | None, max_length: int
) -> list[int]:
    """Tokens per input with special tokens, in batches (one call per 1,000 texts); lists of words
    are tokenized word by word, as the NER encoder does. Untruncated, but a text is cut first to
    ``encoding.CHARS_PER_TOKEN`` characters a token of ``max_length`` (``clipped``): what is longer
    is longer either way, and a 40 MB cell made 8 million tokens and aborted the process."""
    from tunelab.data.encoding import clipped

    texts = clipped(texts, max_length)  # type: ignore[arg-type]
    pairs = clipped(pairs, max_length)
    out: list[int] = []
    split = bool(texts) and isinstance(texts[0], list)
    for start in range(0, len(texts), 1000):
        chunk = texts[start : start + 1000]
        second = pairs[start : start + 1000] if pairs is not None else None
        enc = tokenizer(
            chunk, second, truncation=False, add_special_tokens=True, verbose=False, is_split_into_words=split
        )
        out.extend(len(ids) for ids in enc["input_ids"])
    return out


def _rows_in(rows: list[Any], other: list[Any]) -> int:
    """How many of ``rows`` have a key that ``other`` has (rows, not distinct texts)."""
    seen = set(other)
    return sum(key in seen for key in rows)
