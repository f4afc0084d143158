"""The ``zeroshot`` artifact format: a backend whose logits compare texts with label descriptions.

A zero-shot run folder has a run's layout; its ``run.json`` says ``format: zeroshot`` and, under
``zeroshot``, which scorer (``embedding`` or ``nli``), model, template and scale; the labels'
descriptions are ``weights/descriptions.json``. The predictor looks the format up like any other
(``tunelab.inference.backends``), so eval, predict and serve take a zero-shot run as they take a
trained one. ``zero_shot_predictor`` builds the same predictor in memory, for
``tunelab predict --zero-shot labels.yaml``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.data.encoding import Encoded
from tunelab.errors import ConfigError, RunError
from tunelab.runs.json_files import NotJsonError, read_json
from tunelab.zeroshot.labels import parse_label_descriptions, read_label_descriptions
from tunelab.zeroshot.scorers import (
    DEFAULT_SCALE,
    EMBEDDING_TEMPLATE,
    NLI_TEMPLATE,
    EmbeddingScorer,
    NliScorer,
)

FORMAT = "zeroshot"
LABEL_MISSING, LABEL_ADD_ONE = "has no description in the label file", "describe it in the label file"
DESCRIPTIONS_JSON = "descriptions.json"  # under weights/


@dataclass(frozen=True)
class ZeroShotSpec:
    """How a zero-shot classifier scores: what ``run.json`` keeps under ``zeroshot``.

    Attributes:
        scorer: ``embedding`` (cosine of sentence embeddings) or ``nli`` (entailment).
        model: the sentence encoder or NLI model, by name or folder (``tunelab.models.resolve_model``).
        template: how a description becomes the compared sentence, with ``{}`` for it.
        scale: embedding only: cosine x scale are the logits.
    """

    scorer: str = "embedding"
    model: str = "minilm-l6"
    template: str = EMBEDDING_TEMPLATE
    scale: float = DEFAULT_SCALE

    def __post_init__(self) -> None:
        if self.scorer not in ("embedding", "nli"):
            raise ConfigError(f"zeroshot scorer {self.scorer!r}: use embedding or nli")
        try:  # format() is what the scorers call: any other brace ({x}, {0}, '}') fails there
            filled = self.template.format("\x00")
        except (IndexError, KeyError, ValueError):
            filled = ""
        if self.template.count("{}") != 1 or filled.count("\x00") != 1:
            raise ConfigError(
                f"template {self.template!r}: put exactly one {{}} where the description goes and no "
                "other braces (write {{ and }} for literal ones), e.g. 'This is about {}'"
            )
        if not self.scale > 0:
            raise ConfigError(f"scale {self.scale}: use a positive number, e.g. {DEFAULT_SCALE:g}")

    @classmethod
    def make(
        cls, *, encoder: str | None = None, nli: str | None = None, template: str | None = None
    ) -> ZeroShotSpec:
        """The spec for an NLI model when ``nli`` is given, else for the sentence ``encoder``."""
        if nli is not None:
            if encoder is not None:
                raise ConfigError("give a sentence encoder (--encoder) or an NLI model (--nli), not both")
            return cls(scorer="nli", model=_anchored(nli), template=template or NLI_TEMPLATE)
        return cls(model=_anchored(encoder or "minilm-l6"), template=template or EMBEDDING_TEMPLATE)

    def scorer_for(self, descriptions: list[str]) -> EmbeddingScorer | NliScorer:
        if self.scorer == "nli":
            return NliScorer(self.model, descriptions, template=self.template)
        return EmbeddingScorer(self.model, descriptions, template=self.template, scale=self.scale)


def _anchored(model: str | Path) -> str:
    """A model folder as an absolute path (the run folder is loaded from any directory, served or
    moved); a registry name such as ``minilm-l6`` or a hub id as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else str(model)


class ZeroShotBackend:
    """Logits from comparing texts with the labels' descriptions (see ``tunelab.zeroshot.scorers``)."""

    name = FORMAT

    def __init__(
        self, scorer: EmbeddingScorer | NliScorer, spec: ZeroShotSpec, descriptions: dict[str, str]
    ) -> None:
        self.scorer = scorer
        self.spec = spec
        self.descriptions = descriptions  # label -> description, in the label map's order

    def logits(self, enc: Encoded, *, batch_size: int = 64) -> np.ndarray:
        return self.scorer.logits(enc, batch_size=batch_size)


def load_zero_shot(ctx: Any) -> ZeroShotBackend:
    """The format loader (``LoadContext`` -> backend): the spec from run.json, descriptions from weights/."""
    raw = ctx.summary.get(FORMAT)
    path = ctx.run.weights / DESCRIPTIONS_JSON
    if not isinstance(raw, dict) or not path.is_file():
        raise RunError(
            f"{ctx.run.root}: an incomplete zero-shot run (no spec or {path.name}); build it again"
        )
    spec = _read_spec(raw, ctx.run.run_json)
    descriptions = _read_descriptions(path)
    missing = [n for n in ctx.labels.names if n not in descriptions]
    if missing:
        raise RunError(f"{path}: no description for {', '.join(missing)}; build the run again")
    ordered = {n: descriptions[n] for n in ctx.labels.names}
    # labels.json keeps names only: `eval` of a zero-shot run on a file with another label advised
    # "add training rows with it", to a run that has no training data
    ctx.labels.missing, ctx.labels.add_one = LABEL_MISSING, LABEL_ADD_ONE
    return ZeroShotBackend(spec.scorer_for(list(ordered.values())), spec, ordered)


_REBUILD = "build it again with tunelab zeroshot"


def _read_spec(raw: dict[str, Any], run_json: Path) -> ZeroShotSpec:
    """run.json's ``zeroshot`` as a spec; a key or a type it cannot hold is a damaged run (it was
    "unexpected TypeError"), and a key this version does not know is a newer tunelab's run."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(ZeroShotSpec)}
    unknown = [str(k) for k in raw if k not in known]
    if unknown:
        raise RunError(
            f"{run_json}: zeroshot has {', '.join(map(repr, unknown))}, which this tunelab does not know "
            f"(a run built by a newer tunelab?); upgrade tunelab, or {_REBUILD}"
        )
    for key, value in raw.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number if key == "scale" else isinstance(value, str)):
            kind = "a number" if key == "scale" else "text"
            raise RunError(
                f"{run_json}: a damaged zero-shot run (zeroshot.{key} is {value!r}, not {kind}); {_REBUILD}"
            )
    try:
        return ZeroShotSpec(**raw)
    except ConfigError as exc:  # a value the spec refuses (scale -1, a template without {})
        raise RunError(f"{run_json}: a damaged zero-shot run ({exc}); {_REBUILD}") from None


def _read_descriptions(path: Path) -> dict[str, str]:
    """weights/descriptions.json: label -> description; anything else is a damaged run."""
    try:
        descriptions = read_json(path)
    except NotJsonError:  # truncated, not JSON, not UTF-8
        raise RunError(f"{path}: a damaged zero-shot run (not JSON); {_REBUILD}") from None
    if not isinstance(descriptions, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in descriptions.items()
    ):
        raise RunError(
            f"{path}: a damaged zero-shot run (not an object of label: description text); {_REBUILD}"
        )
    return descriptions


def load_descriptions(labels: str | Path | dict[str, str] | list[str]) -> dict[str, str]:
    """Descriptions from a YAML file, or from a dict / list given in code (checked the same way)."""
    if isinstance(labels, (str, Path)):
        return read_label_descriptions(labels)
    return parse_label_descriptions(labels, "labels")


def zero_shot_predictor(
    labels: str | Path | dict[str, str] | list[str],
    *,
    encoder: str | None = None,
    nli: str | None = None,
    template: str | None = None,
    max_length: int = 128,
) -> Any:
    """A ``Predictor`` that classifies by the labels' descriptions, built in memory (no folder).

    Args:
        labels: a YAML file of ``label: description`` (or of label names), or the same as a dict/list.
        encoder: the sentence encoder to compare embeddings with (default: the bundled MiniLM).
        nli: an NLI model folder; scores by entailment instead of embeddings.
        template: ``{}`` is replaced by each description (default ``{}``, or for NLI
            ``This example is {}.``).
        max_length: tokens read per text.

    Example:
        >>> p = tunelab.zero_shot_predictor({"card_arrival": "my card has not arrived",  # doctest: +SKIP
        ...                                  "top_up_failed": "my top-up did not work"})
        >>> p.predict("still waiting for my new card")["label"]  # doctest: +SKIP
        'card_arrival'
    """
    from tunelab.config import ModelConfig, RunConfig
    from tunelab.data import LabelMap
    from tunelab.inference import Predictor

    descriptions = load_descriptions(labels)
    spec = ZeroShotSpec.make(encoder=encoder, nli=nli, template=template)
    scorer = spec.scorer_for(list(descriptions.values()))
    # A text longer than the encoder's positions failed at predict time ("The size of tensor a
    # (702) must match ... (512)"); NLI fits the premise to its model's limit itself.
    limit = scorer.max_positions() if isinstance(scorer, EmbeddingScorer) else None
    if limit is not None and max_length > limit:
        raise ConfigError(
            f"max_length={max_length} (--max-length) is over the {limit} positions of {spec.model}; "
            f"use at most {limit}"
        )
    config = RunConfig(model=ModelConfig(name=spec.model, max_length=max_length))
    config.method.name = FORMAT
    label_map = LabelMap(
        names=list(descriptions),
        missing=LABEL_MISSING,
        add_one=LABEL_ADD_ONE,
    )
    backend = ZeroShotBackend(scorer, spec, descriptions)
    return Predictor(backend, scorer.tokenizer, label_map, config=config)


def spec_dict(spec: ZeroShotSpec) -> dict[str, Any]:
    return asdict(spec)
