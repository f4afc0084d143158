"""Sentiment, topic and companies for a batch of documents, through tunelab's public API only.

- sentiment: a single-label run (``tunelab.load``: a run folder or an exported ONNX artifact);
- topic: a topic run when given; else the document's own ``topic``; else zero-shot: the topic
  whose name and description are closest (cosine of ``tunelab.embed`` vectors) when that is at
  least ``min_similarity``, otherwise ``other``; no topic at all when the monitor names none;
- companies: the organisations an NER run finds, normalised (``normalise_company``) so that
  "Acme Corp.", "ACME Corporation" and "Acme's" are followed as one company.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunelab.apps.monitor.documents import MAX_KEY_CHARS, Document
from tunelab.errors import ConfigError

OTHER_TOPIC = "other"

# Legal forms dropped from the end of a name (one or more: "Acme Holdings Inc."); the base name is
# what a reader means by the company. Lower case, without dots.
# fmt: off
LEGAL_SUFFIXES = frozenset((
    "inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "plc", "llc", "lp",
    "llp", "ag", "se", "sa", "nv", "bv", "gmbh", "kgaa", "spa", "srl", "ab", "asa", "oyj",
    "holdings", "holding", "group",
    # international news: Australia, India, Germany/Austria, Denmark/Norway (A/S), Japan (K.K.),
    # France, Finland, Malaysia, Indonesia; each left its own key beside the bare name before
    "pty", "pvt", "kg", "as", "kk", "sas", "oy", "bhd", "berhad", "tbk",
))
# fmt: on
#: Dropped only right before a legal form already dropped ("Infosys Private Limited"): a name may
#: end in the word itself ("... Private" as a bank's division).
_BEFORE_A_FORM = frozenset(("private", "and"))  # "and": "GmbH & Co. KG" ("&" is read as "and")
#: Apostrophes other than ' and ’ that possessives are written with (the acute accent, the opening
#: quote, the modifier letter): NFKC turns "´" into a space and a combining accent ("acme s").
_APOSTROPHES = str.maketrans({"´": "'", "‘": "'", "ʼ": "'", "`": "'"})
_POSSESSIVE = re.compile(r"(?:'s|’s|')$", re.IGNORECASE)
#: Longest entity normalised (characters): longer is a runaway NER span, never a company key
#: (MAX_KEY_CHARS), and normalising is quadratic in the length (one legal form a round).
_MAX_ENTITY_CHARS = 4 * MAX_KEY_CHARS


def _strip_edge_punct(word: str) -> str:
    """``word`` without the punctuation, symbols and underscores (``[\\W_]``: not ``isalnum``) at
    its ends. A loop: the regex ``[\\W_]+$`` retried from every character of ``a----...-a``."""
    start, end = 0, len(word)
    while start < end and not word[start].isalnum():
        start += 1
    while end > start and not word[end - 1].isalnum():
        end -= 1
    return word[start:end]


def _bare(word: str) -> str:
    """A legal form as listed: without its dots and slashes ("K.K." -> "kk", "A/S" -> "as")."""
    return word.replace(".", "").replace("/", "")


def normalise_company(name: str, aliases: dict[str, str] | None = None) -> str | None:
    """The key a company is followed under: lower case, no legal form, possessive or punctuation.

    ``aliases`` maps a normalised name to another (``{"alphabet": "google"}``).

    Example:
        >>> normalise_company("Acme Corp.'s")
        'acme'
        >>> normalise_company("  Deutsche   Bank AG ")
        'deutsche bank'
    """
    key = unicodedata.normalize("NFKC", name.translate(_APOSTROPHES)).strip()
    # To a fixed point: removing a legal form can bare a possessive ("McDonald's Corp" ->
    # "mcdonald's"), and a stored key read back (the report, the trend query) must normalise to itself.
    # Ends: after the first round (case folding) a round only removes characters. Four rounds at
    # most left "Acme Inc's Corp's Ltd's Group's AG's" at "acme inc's", which reads back as "acme".
    while True:
        text = _POSSESSIVE.sub("", key)
        # commas split words ("Co.,Ltd." is "Co., Ltd."); "&" alone is "and" ("Procter & Gamble"
        # and "Procter and Gamble" one key: stripped as punctuation it gave "procter gamble")
        split = text.casefold().replace(",", " ").split()
        words = ["and" if w == "&" else _strip_edge_punct(w) for w in split]
        words = [w for w in words if w]
        dropped = False
        while len(words) > 1 and (
            _bare(words[-1]) in LEGAL_SUFFIXES or (dropped and words[-1] in _BEFORE_A_FORM)
        ):
            words.pop()
            dropped = True
        if len(words) > 1 and words[0] == "the":  # "The Acme Group" is "Acme Group"
            words.pop(0)
        done, key = key, " ".join(words)
        if key == done:
            break
    if not key:
        return None
    return (aliases or {}).get(key, key)


@dataclass(frozen=True)
class Topic:
    """A topic the monitor follows: its name and a description used for zero-shot assignment."""

    name: str
    description: str = ""

    def prompt(self) -> str:
        return f"{self.name}: {self.description}" if self.description else self.name


@dataclass(frozen=True)
class Classified:
    """What the classifier says of one document."""

    label: str
    score: float
    negative: bool
    topic: str | None
    companies: tuple[str, ...]


class Classifier:
    """Batched classification of documents with the monitor's runs.

    Args:
        sentiment: a ``tunelab.Predictor`` of a single-label run (or exported artifact).
        negative_label: the sentiment label that counts as negative.
        topic: a predictor of a topic run, or None.
        ner: a predictor of an NER run, or None.
        topics: the topics for zero-shot assignment (used when there is no topic run).
        embed: ``tunelab.embed``-like function (texts -> unit vectors (N, H)).
        min_similarity: below this cosine a document's topic is ``other``.
        org_labels: the NER entity labels that are organisations.
        aliases: normalised company name -> the name to follow it under.
        batch_size: texts per forward pass.
    """

    def __init__(
        self,
        sentiment: Any,
        *,
        negative_label: str = "negative",
        topic: Any | None = None,
        ner: Any | None = None,
        topics: Sequence[Topic] = (),
        embed: Callable[[list[str]], np.ndarray] | None = None,
        min_similarity: float = 0.3,
        org_labels: Sequence[str] = ("ORG",),
        aliases: dict[str, str] | None = None,
        batch_size: int = 64,
    ) -> None:
        labels = list(getattr(getattr(sentiment, "labels", None), "names", []) or [])
        if labels and negative_label not in labels:
            raise ConfigError(
                f"negative_label: {negative_label!r} is not a label of the sentiment run "
                f"(its labels: {', '.join(labels)}); set negative_label to one of them"
            )
        self.sentiment = sentiment
        self.negative_label = negative_label
        self.topic_model = topic
        self.ner = ner
        self.topics = list(topics)
        self.embed = embed
        self.min_similarity = min_similarity
        self.org_labels = frozenset(org_labels)
        self.aliases = aliases or {}
        self.batch_size = batch_size
        self._topic_vectors: np.ndarray | None = None

    def classify(self, docs: Sequence[Document]) -> list[Classified]:
        """One result per document, in order."""
        if not docs:
            return []
        texts = [d.text for d in docs]
        sentiments = self.sentiment.predict(texts, batch_size=self.batch_size)
        topics = self._topics(docs, texts)
        companies = self._companies(texts) if self.ner is not None else [()] * len(docs)
        return [
            Classified(
                label=str(s["label"]),
                score=float(s["score"]),
                negative=s["label"] == self.negative_label,
                topic=t,
                companies=c,
            )
            for s, t, c in zip(sentiments, topics, companies, strict=True)
        ]

    def _topics(self, docs: Sequence[Document], texts: list[str]) -> list[str | None]:
        if self.topic_model is not None:
            return [str(r["label"]) for r in self.topic_model.predict(texts, batch_size=self.batch_size)]
        out: list[str | None] = [d.topic for d in docs]
        missing = [i for i, t in enumerate(out) if t is None]
        if missing and self.topics:
            for i, topic in zip(missing, self.zero_shot([texts[i] for i in missing]), strict=True):
                out[i] = topic
        return out

    def zero_shot(self, texts: list[str]) -> list[str]:
        """The nearest topic of each text by cosine similarity, or ``other`` under ``min_similarity``."""
        if self.embed is None:
            import tunelab

            self.embed = tunelab.embed
        if self._topic_vectors is None:
            self._topic_vectors = self.embed([t.prompt() for t in self.topics])  # (T, H), unit length
        vectors = self.embed(texts)  # (N, H), unit length
        similarity = vectors @ self._topic_vectors.T  # (N, T) cosines
        best = similarity.argmax(axis=1)
        return [
            self.topics[j].name if similarity[i, j] >= self.min_similarity else OTHER_TOPIC
            for i, j in enumerate(best)
        ]

    def _companies(self, texts: list[str]) -> list[tuple[str, ...]]:
        out = []
        for result in self.ner.predict(texts, batch_size=self.batch_size):
            names = (
                normalise_company(e["text"], self.aliases)
                for e in result.get("entities", [])
                if e.get("label") in self.org_labels and len(e["text"]) <= _MAX_ENTITY_CHARS
            )
            # Each company once, in order; a "name" over MAX_KEY_CHARS is a runaway entity span,
            # not a company, and would not fit the database's index (see MAX_KEY_CHARS).
            out.append(tuple(dict.fromkeys(n for n in names if n and len(n) <= MAX_KEY_CHARS)))
        return out
