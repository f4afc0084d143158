"""The in-memory dataset every stage consumes: texts, optional text pairs, encoded labels."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Dataset:
    """Rows ready for tokenisation, with labels already turned into ids.

    Attributes:
        texts: the text of each row, whitespace-stripped and never empty.
        text_pairs: the second text of each row for sentence-pair tasks, else None.
        labels: single-label: the label id of each row; multi-label: the sorted label ids of each
            row (possibly empty); None for unlabelled data.
        source: where the rows came from, for messages, e.g. ``"train.csv (dev split)"``.
    """

    texts: list[str]
    text_pairs: list[str] | None
    labels: list[int] | list[list[int]] | None
    source: str

    def __post_init__(self) -> None:
        # A length mismatch is a bug in the caller, not a user mistake: fail loudly and early.
        for name, values in (("text_pairs", self.text_pairs), ("labels", self.labels)):
            if values is not None and len(values) != len(self.texts):
                raise ValueError(f"Dataset {self.source}: {len(values)} {name} for {len(self.texts)} texts")

    def __len__(self) -> int:
        return len(self.texts)

    def extended(self, more: Dataset) -> Dataset:
        """These rows, then ``more``'s (rows added to a training split: augmented, pseudo-labelled)."""
        return Dataset(
            texts=[*self.texts, *more.texts],
            text_pairs=[*self.text_pairs, *(more.text_pairs or [])] if self.text_pairs is not None else None,
            labels=[*(self.labels or []), *(more.labels or [])],  # type: ignore[list-item]
            source=self.source,
        )

    def take(self, positions: list[int]) -> Dataset:
        """The rows at ``positions``, in that order (texts, pairs and labels alike)."""
        return Dataset(
            texts=[self.texts[i] for i in positions],
            text_pairs=[self.text_pairs[i] for i in positions] if self.text_pairs is not None else None,
            labels=[self.labels[i] for i in positions] if self.labels is not None else None,  # type: ignore[misc]
            source=self.source,
        )
