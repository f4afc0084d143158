"""``rec.yaml``: what a recommender reads (items, interactions), what counts as positive, how it learns.

    name: movielens
    items:
      path: ../shared/data/movielens_small/ml-latest-small/movies.csv
      id_column: movieId
      text_fields: [title, genres]          # the first is written bare, the others as "name: a, b"
      list_separators: {genres: "|"}        # fields holding several values in one cell
      extra_text:                           # more text per item from another file (one row per value)
        - {name: tags, path: .../tags.csv, id_column: movieId, field: tag, max_values: 20,
           user_column: userId, time_column: timestamp}   # optional: who wrote a value, and when
    interactions:
      path: ../shared/data/movielens_small/ml-latest-small/ratings.csv
      user_column: userId
      item_column: movieId
      time_column: timestamp                # epoch seconds or ISO 8601
      rating_column: rating                 # optional
      event_column: null                    # optional: click, buy, ...
      positive: "rating >= 4"               # or "event in [buy, click]", or "all"
    model: {base: minilm-l6, history: 5, max_length: 128, max_pairs: 20000, epochs: 1}
    cf: {algorithm: als, factors: 64, iterations: 15, second: {algorithm: ease, lam: 500}}
    ranker: {kind: logistic, negatives: 20, hard_negatives: 10}
    index: {ann_min_items: 5000, full_rank_max_items: 5000}
    split: {val_frac: 0.1, min_positives: 5}

Relative paths are relative to the current directory, as in run configs (run from the repository
root). Pydantic checks the fields (it reports every problem at once); ``load_config`` turns that
into one ``ConfigError`` line naming the file and the fields. The positive rule is parsed by a
small grammar (``column op value`` or ``column in [a, b]``), never evaluated as Python.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tunelab.apps.recommend.cells import is_blank
from tunelab.apps.yaml_config import read_yaml_config
from tunelab.errors import ConfigError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_COMPARE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")
_MEMBER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s+in\s+\[(.*)\]\s*$")
#: A seed as numpy, scikit-learn and implicit take it (``random_state`` is below 2**32): -1 or 2**64
#: passed validation and stopped the build ~12 s in with "expected non-negative integer", no field named.
SEED = Field(default=0, ge=0, lt=2**32)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _format_of(path: str, given: str) -> str:
    if given != "auto":
        return given
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {path} from its suffix; use .csv, .jsonl or .parquet, or set format"
        )
    return fmt


def _column_named(value: str | None) -> str | None:
    """A column field's name: an empty one was looked for in the file ("has no column  (it has ...)")."""
    if value is not None and not value.strip():
        raise ValueError(f"{value!r}: give the column's name")
    return value


class ExtraText(_Section):
    """More text per item from a file of (item id, value) rows, e.g. MovieLens' users' tags.

    Values are counted per item and the ``max_values`` most frequent kept (ties: first seen), so an
    item tagged "pixar" by twenty users reads "pixar" before a tag given once.

    ``user_column`` and ``time_column`` (both or neither) say who wrote a value and when: a tag is
    an interaction, so ``build`` fits the text model and the ranker without the values written at
    or after their author's first held-out positive (``data.texts_before``), and serves every
    value once fitted (with ``absorb_val``, as ``tunelab app recommend build`` does).
    """

    name: str = Field(min_length=1)
    path: str
    id_column: str
    field: str
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    max_values: int = Field(default=20, ge=1)
    lowercase: bool = True
    user_column: str | None = None
    time_column: str | None = None

    @field_validator("id_column", "field", "user_column", "time_column")
    @classmethod
    def _named(cls, value: str | None) -> str | None:
        return _column_named(value)

    @model_validator(mode="after")
    def _known_format(self) -> ExtraText:
        object.__setattr__(self, "format", _format_of(self.path, self.format))
        if (self.user_column is None) != (self.time_column is None):
            raise ValueError(
                "give user_column and time_column together (who wrote a value, and when), or neither"
            )
        return self


class ItemsConfig(_Section):
    path: str
    id_column: str = "item_id"
    text_fields: list[str] = Field(min_length=1)
    list_separators: dict[str, str] = Field(default_factory=dict)
    extra_text: list[ExtraText] = Field(default_factory=list)
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"

    @field_validator("id_column")
    @classmethod
    def _named(cls, value: str) -> str:
        return _column_named(value)

    @field_validator("text_fields")
    @classmethod
    def _fields_once(cls, value: list[str]) -> list[str]:
        for i, name in enumerate(value):
            _column_named(name)
            # Each field is written into every item's text once: a repeat wrote it twice, silently.
            if name in value[:i]:
                raise ValueError(f"{name!r} is listed twice; give each field once")
        return value

    @field_validator("list_separators")
    @classmethod
    def _separators(cls, value: dict[str, str]) -> dict[str, str]:
        for name, separator in value.items():
            if not separator:  # was ignored: the cell was read as one value
                raise ValueError(
                    f"{name}: the separator is empty; give the text between its values (e.g. '|'), "
                    "or remove the field from list_separators"
                )
        return value

    @model_validator(mode="after")
    def _check(self) -> ItemsConfig:
        object.__setattr__(self, "format", _format_of(self.path, self.format))
        unknown = sorted(set(self.list_separators) - set(self.text_fields))
        if unknown:
            raise ValueError(f"list_separators names {', '.join(unknown)}, which are not text_fields")
        seen: set[str] = set()
        for i, extra in enumerate(self.extra_text):
            # The values go into a column of that name beside the text fields: a clash would replace
            # a text field's values (or the ids) silently.
            if extra.name in self.text_fields or extra.name == "item_id" or extra.name in seen:
                what = (
                    "a text field's"
                    if extra.name in self.text_fields
                    else "the ids'"
                    if extra.name == "item_id"
                    else "an earlier extra_text's"
                )
                raise ValueError(
                    f"extra_text.{i}.name {extra.name!r} is {what} name; give each source a name of its own"
                )
            seen.add(extra.name)
        return self


@dataclass(frozen=True)
class PositiveRule:
    """What counts as a positive interaction: ``rating >= 4``, ``event in [buy, click]``, or ``all``.

    Attributes:
        column: the interactions column the rule reads (None for ``all``).
        op: ``>=``, ``>``, ``<=``, ``<``, ``==``, ``!=`` or ``in``.
        values: the right-hand side: one number or string, or the list for ``in``.
        text: the rule as written.
    """

    column: str | None
    op: str
    values: tuple[Any, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> PositiveRule:
        """Parse the rule; ``ValueError`` explains the accepted forms."""
        raw = str(text).strip()
        if raw.lower() in ("all", "any", "*", ""):
            return cls(None, "all", (), "all")
        member = _MEMBER.match(raw)
        if member:
            items = tuple(_literal(v) for v in member[2].split(",") if v.strip())
            if not items:
                raise ValueError(f"positive {raw!r}: the list is empty")
            return cls(member[1], "in", items, raw)
        compare = _COMPARE.match(raw)
        if compare and compare[3].strip():
            value = _literal(compare[3])
            if compare[2] not in ("==", "!=") and not isinstance(value, float):
                raise ValueError(f"positive {raw!r}: {compare[2]} needs a number on the right")
            return cls(compare[1], compare[2], (value,), raw)
        raise ValueError(
            f"positive {raw!r} is not a rule; write e.g. 'rating >= 4', 'event in [buy, click]' or 'all'"
        )

    def apply(self, values: Any) -> Any:
        """A boolean mask (numpy/pandas) over ``values`` (the rule's column)."""
        import numpy as np
        import pandas as pd

        if self.op == "all":
            return np.ones(len(values), dtype=bool)
        series = pd.Series(values)
        # No value (a blank cell, a JSON null) is never a positive, whatever the operator: `!=`
        # would otherwise take it as different from anything (live events read it so too).
        given = ~series.map(is_blank).to_numpy(dtype=bool)
        if self.op == "in":
            texts = series.astype(str).str.strip()
            match = texts.isin([v for v in self.values if isinstance(v, str)])
            numbers = [v for v in self.values if isinstance(v, float)]
            if numbers:  # `event in [1, 2]` on codes read as 1 or "1.0": compare numbers as numbers
                match |= pd.to_numeric(texts, errors="coerce").isin(numbers)
            return match.to_numpy(dtype=bool) & given
        value = self.values[0]
        if isinstance(value, float):
            series = pd.to_numeric(series, errors="coerce")
        else:
            series = series.astype(str).str.strip()
        ops = {
            ">=": series.__ge__,
            ">": series.__gt__,
            "<=": series.__le__,
            "<": series.__lt__,
            "==": series.__eq__,
            "!=": series.__ne__,
        }
        return ops[self.op](value).fillna(False).to_numpy(dtype=bool) & given


def _literal(text: str) -> float | str:
    """A number when it reads as one, else the string without quotes."""
    stripped = text.strip().strip("'\"")
    try:
        return float(stripped)
    except ValueError:
        return stripped


class InteractionsConfig(_Section):
    path: str
    user_column: str = "user_id"
    item_column: str = "item_id"
    time_column: str = "time"
    rating_column: str | None = None
    event_column: str | None = None
    positive: str = "all"
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"

    @field_validator("user_column", "item_column", "time_column")
    @classmethod
    def _named(cls, value: str) -> str:
        return _column_named(value)

    @model_validator(mode="after")
    def _check(self) -> InteractionsConfig:
        object.__setattr__(self, "format", _format_of(self.path, self.format))
        # One column read as two (users as items): the error came later, about split.min_positives.
        roles = [("user_column", self.user_column), ("item_column", self.item_column)]
        roles.append(("time_column", self.time_column))
        for (first, column), (second, other) in itertools.combinations(roles, 2):
            if column == other:
                raise ValueError(f"{first} and {second} both name {column!r}; give each its own column")
        rule = PositiveRule.parse(self.positive)
        if rule.column is not None and self.rule_source() is None:
            named = [c for c in (self.rating_column, self.event_column) if c]
            raise ValueError(
                f"positive {self.positive!r} reads {rule.column!r}, which is not rating_column or "
                f"event_column ({', '.join(named) or 'neither is set'}); set the one it reads"
            )
        return self

    @property
    def rule(self) -> PositiveRule:
        return PositiveRule.parse(self.positive)

    def rule_source(self) -> str | None:
        """``rating`` or ``event``: which of the two columns the rule reads (None: ``all``, or neither)."""
        column = self.rule.column
        if column is not None and self.rating_column and column in ("rating", self.rating_column):
            return "rating"
        if column is not None and self.event_column and column in ("event", self.event_column):
            return "event"
        return None


class ModelSection(_Section):
    """The bi-encoder and its contrastive fine-tuning (see ``textmodel``)."""

    base: str = "minilm-l6"
    history: int = Field(default=5, ge=1, le=50)
    max_length: int = Field(default=128, ge=16, le=512)
    max_pairs: int = Field(default=20000, ge=0)
    epochs: int = Field(default=1, ge=1, le=20)
    batch_size: int = Field(default=32, ge=2)
    hard_negatives: int = Field(default=1, ge=0, le=8)
    learning_rate: float = Field(default=3e-5, gt=0)
    scale: float = Field(default=20.0, gt=0)
    seed: int = SEED
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:[0-9]{1,2})?|mps)$")  # auto: cuda if seen
    # Re-score each ranking's best candidates with a cross-encoder (see crossencoder): one
    # transformer pass per re-scored item, so it costs latency; trained on the same triples.
    cross_encoder: bool = False
    cross_encoder_top: int = Field(default=30, ge=1, le=500)
    cross_encoder_learning_rate: float = Field(default=5e-5, gt=0)


class CFSection(_Section):
    """Collaborative filtering on the train positives: ``implicit``'s ALS or BPR, or EASE (cf.py)."""

    algorithm: Literal["als", "bpr", "ease"] = "als"
    factors: int = Field(default=64, ge=2, le=1024)  # EASE: the rank its item-item matrix is kept at
    iterations: int = Field(default=15, ge=1, le=1000)
    regularization: float = Field(default=0.05, ge=0)
    alpha: float = Field(default=2.0, gt=0)
    learning_rate: float = Field(default=0.05, gt=0)  # BPR only
    lam: float = Field(default=150.0, gt=0)  # EASE only: its L2 weight (lambda)
    seed: int = SEED
    # A second collaborative model (e.g. EASE beside ALS), fitted on the same positives: its score
    # is two more ranker features (cf2, cf2_z), so the ranker learns how much each is worth. The
    # two make different errors (ALS: low-rank user taste; EASE: item-to-item co-occurrence).
    second: CFSection | None = None

    @model_validator(mode="after")
    def _one_level(self) -> CFSection:
        if self.second is not None and self.second.second is not None:
            raise ValueError("second.second: the second model cannot have a second of its own; remove it")
        return self


class RankerSection(_Section):
    """The learned blend: fitted on the validation split, never hand-set weights."""

    kind: Literal["logistic", "pairwise", "hgb"] = "logistic"
    negatives: int = Field(default=20, ge=1, le=500)  # per validation positive, at random
    hard_negatives: int = Field(default=10, ge=0, le=500)  # per positive, from the generators' top
    hard_pool: int = Field(default=200, ge=1, le=5000)
    # sampled: the rows above (every validation positive against random and hard negatives).
    # pool: also a pool model, fitted on each validation user's candidate pool (every generator's
    # top hard_pool, unseen, with CF) labelled by their positives, rows like those at the top of a
    # ranking; it reorders the blended model's top hard_pool of each ranking (see ranker).
    rows: Literal["sampled", "pool"] = "sampled"
    # A share of the blended model's training rows with the collaborative features masked. Items
    # without CF are always ranked by the separate text-only model (see ranker): this only
    # changes the blended model, so the warm ranking.
    cold_share: float = Field(default=0.0, ge=0, lt=1)
    seed: int = SEED


class IndexSection(_Section):
    ann_min_items: int = Field(default=5000, ge=1)
    # Up to this many items rank() scores them all; past it, ~1,000 candidates (see recommender).
    full_rank_max_items: int = Field(default=5000, ge=1)


class SplitSection(_Section):
    """The split ``tunelab app recommend build`` makes itself (no test split: everything but the
    validation positives trains the model)."""

    test_frac: float = Field(default=0.0, ge=0, lt=1)
    val_frac: float = Field(default=0.1, gt=0, lt=1)
    min_positives: int = Field(default=5, ge=2)

    @model_validator(mode="after")
    def _shares(self) -> SplitSection:
        if self.test_frac + self.val_frac >= 1:
            raise ValueError(
                f"test_frac {self.test_frac:g} + val_frac {self.val_frac:g} must be under 1 (the rest trains)"
            )
        return self


class RecommendConfig(_Section):
    """A validated ``rec.yaml`` (see the module docstring)."""

    name: str = "recommender"
    items: ItemsConfig
    interactions: InteractionsConfig
    model: ModelSection = Field(default_factory=ModelSection)
    cf: CFSection = Field(default_factory=CFSection)
    ranker: RankerSection = Field(default_factory=RankerSection)
    index: IndexSection = Field(default_factory=IndexSection)
    split: SplitSection = Field(default_factory=SplitSection)

    @field_validator("name", mode="before")
    @classmethod
    def _digits(cls, value: Any) -> Any:
        """``name: 2024`` is the recommender "2024", as a monitor's ``name: 2024`` and a run file's
        ``name=2024`` are (it was refused as "Input should be a valid string")."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            # Not in URLs (a built folder is served under its folder's name or NAME=): it names the
            # recommender in meta.json and build_report.json, and a plain name keeps it a safe label.
            raise ValueError(
                "must be lower-case letters, digits, - or _ (it names the recommender in its reports)"
            )
        return value

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "config") -> RecommendConfig:
        """Validate ``raw``; every problem in one ``ConfigError`` line (``; ``-separated)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the top level must be a mapping (name, items, interactions, ...)")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_problems(exc)}") from None

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "missing":
            message = "missing"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def load_config(path: str | Path) -> RecommendConfig:
    """Read and validate a recommender config.

    Example:
        >>> cfg = load_config("configs/movielens.yaml")  # doctest: +SKIP

    Raises:
        ConfigError: missing file, bad YAML, or bad fields (all named, in one line).
    """
    p = Path(path)
    raw = read_yaml_config(p, "recommender config", "tunelab app recommend build --help")
    return RecommendConfig.from_dict(raw, source=str(p))
