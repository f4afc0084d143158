"""Request and response bodies of the HTTP API (what ``/docs`` shows).

Limits that depend on the server's settings (texts per request, characters per text) are checked
in the predict route, not here, so the schema stays static and the messages can name the setting.

A predict response's ``results`` hold one schema per task: ``ClassificationResult`` for
single- and multi-label models, ``EntityResult`` for token-classification (NER) models, so a
client reads ``task`` and knows the shape of every result. Each task names its schema
(``Task.result_schema``); the built-in tasks' union below is written out for ``/docs``, and
``tests/unit/test_common_tasks_methods.py`` fails if a built-in task's schema is missing from it. A
task registered from outside tunelab (a plug-in) has results of its own schema: the predict route
validates each against it, and they go out as that schema's JSON objects (``/docs`` shows only the
built-in shapes; the plug-in documents its own).
An NER result, character offsets into the text as sent (``end`` exclusive), score the mean
probability of the entity's words' tags::

    {"entities": [{"text": "Acme", "label": "ORG", "start": 0, "end": 4, "score": 0.98}]}
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from tunelab.serve.registry import SERVED_NAME_PATTERN


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_key"])
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


def _text_problem(text: str, where: str) -> str | None:
    """Why ``text`` cannot be classified, or None: blank, or not encodable (a lone UTF-16 surrogate
    such as ``"\ud800"`` is valid JSON but no tokenizer takes it; refused here, before a batch).

    Blank is no visible character: a text of only zero-width spaces passed ``text.strip()`` and was
    classified (a bot answered it confidently) and billed like any other.
    """
    # Imported here: ``tunelab.data`` imports pandas, which this module (and the settings that read
    # its limits) does not need otherwise.
    from tunelab.data.scripts import has_visible_text

    if not has_visible_text(text):
        return (
            f"{where} is empty; every text needs some visible characters (spaces and zero-width ones "
            "such as U+200B do not count)"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"{where} is not valid Unicode (a lone surrogate {text[exc.start]!a} at character "
            f"{exc.start}); send UTF-8 text"
        )
    return None


# What the server takes, declared in the schema so that clients and fuzzers see it; the validators
# below still do the checking, with messages that name the text.
Text = Annotated[str, WithJsonSchema({"type": "string", "minLength": 1, "pattern": r"\S"})]

# A hard cap on every list a request sends (texts, pairs, documents, items, events), above any
# ``max_texts_per_request`` (settings cap it here): without it a 1 MB body of 500,000 numbers made
# pydantic list 500,000 errors, 12 s of the event loop for every other client. With it, validation
# stops at the first ``too_long``; the route still applies the smaller configured limit.
MAX_LIST_ITEMS = 10_000
_TEXTS_OR_PAIRS = {
    "oneOf": [
        {"required": ["texts"], "properties": {"texts": {"type": "array"}}},
        {"required": ["pairs"], "properties": {"pairs": {"type": "array"}}},
    ]
}


class PredictRequest(BaseModel):
    """Single texts in ``texts``, or for a model trained on text pairs, ``pairs``: never both.

    ``pairs`` are ``[text, text_pair]`` (e.g. premise and hypothesis, question and context), in
    the order of the run's ``data.text_column`` and ``data.text_pair_column``; a pair counts as
    one text for limits, usage and quota.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_TEXTS_OR_PAIRS)

    # Declared before ``texts`` so that the ``texts`` validator sees it.
    pairs: list[tuple[Text, Text]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        examples=[[["A man is playing a guitar.", "Someone is making music."]]],
        description="[text, text_pair] per item, for a model trained on text pairs (instead of texts)",
    )
    texts: list[Text] | None = Field(
        None,
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        validate_default=True,
        examples=[["I still have not received my new card"]],
        description="the texts to classify (a text-pair model takes pairs instead)",
    )
    top_k: int = Field(3, ge=1, le=100, description="how many ranked labels each result lists")
    # min_length: "" pinned nothing in the body but was an unknown version as ?version= (one rule)
    version: str | None = Field(
        None, min_length=1, max_length=64, description="pin a model version (else the active one)"
    )

    @field_validator("pairs")
    @classmethod
    def _pairs_usable(cls, pairs: list[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
        for i, pair in enumerate(pairs or ()):
            for j, text in enumerate(pair):
                problem = _text_problem(text, f"pairs[{i}][{j}]")
                if problem:
                    raise ValueError(problem)
        return pairs

    @field_validator("texts")
    @classmethod
    def _texts_usable(cls, texts: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if "pairs" not in info.data:  # pairs were invalid: that error says it
            return texts
        if texts is None and info.data["pairs"] is None:
            message = "Field required: give texts (or pairs for a text-pair model)"
            raise PydanticCustomError("missing", message)
        if texts is not None and info.data["pairs"] is not None:
            raise ValueError("give texts or pairs, not both")
        for i, text in enumerate(texts or ()):
            problem = _text_problem(text, f"texts[{i}]")
            if problem:
                raise ValueError(problem)
        return texts

    @property
    def size(self) -> int:
        """How many texts (or pairs) the request holds."""
        return len(self.texts if self.texts is not None else self.pairs or ())


class LabelScore(BaseModel):
    label: str
    score: float


class ClassificationResult(BaseModel):
    """One text's prediction; ``labels``/``scores`` only for multi-label models."""

    label: str
    score: float
    top_k: list[LabelScore]
    labels: list[str] | None = None
    scores: list[float] | None = None


class Entity(BaseModel):
    """One span found in a text; ``start``/``end`` are character offsets (end exclusive)."""

    text: str = Field(examples=["Acme"])
    label: str = Field(examples=["ORG"])
    start: int = Field(
        ge=0,
        description=(
            "offset of the entity's first character in the text, counted in Unicode code points "
            "(Python string indices), not UTF-16 code units: a character outside the BMP (an emoji) counts 1"
        ),
    )
    end: int = Field(
        ge=0,
        description=(
            "offset just past the entity's last character (exclusive), in Unicode code points (Python "
            "string indices), not UTF-16 code units; text[start:end] in Python is the entity"
        ),
    )
    score: float


class EntityResult(BaseModel):
    """One text's entities (task ``token_classification``), in order of appearance."""

    entities: list[Entity]


_BUILT_IN_RESULTS = (ClassificationResult, EntityResult)


class UsageCount(BaseModel):
    texts: int
    tokens: int


class PredictResponse(BaseModel):
    model: str
    version: str
    format: str = Field(examples=["torch", "onnx-int8"])
    task: str = Field(examples=["single_label", "multi_label", "token_classification"])
    # The last option is a plug-in task's results as JSON objects: out of /docs (SkipJsonSchema),
    # which shows the built-in shapes as before.
    results: list[ClassificationResult] | list[EntityResult] | SkipJsonSchema[list[dict[str, Any]]] = Field(
        description=(
            "one per text: ClassificationResult (single_label, multi_label) "
            "or EntityResult (token_classification); a task added by a plug-in answers with its own "
            "result schema"
        )
    )
    usage: UsageCount

    @field_validator("results", mode="wrap")
    @classmethod
    def _plug_in_results(cls, value: Any, handler: Any) -> Any:
        """A plug-in task's results, validated by the route with the task's own ``result_schema``,
        pass as that schema's JSON: the built-in union alone refused them (every such /predict was a
        500 after it was billed), and matched against it a result with extra fields that happened to
        fit ``ClassificationResult`` would lose them."""
        if (
            isinstance(value, list)
            and value
            and all(isinstance(r, BaseModel) and not isinstance(r, _BUILT_IN_RESULTS) for r in value)
        ):
            return [r.model_dump(mode="json") for r in value]
        return handler(value)


class ModelVersionInfo(BaseModel):
    version: str
    format: str
    task: str
    labels: int
    source: str | None = Field(
        None, description="the run or artifact folder it was loaded from (admin keys only, else null)"
    )
    run: str
    active: bool
    in_flight: int
    loaded_at: datetime


class ModelInfo(BaseModel):
    name: str
    active: str
    format: str
    task: str
    labels: int
    source: str | None = Field(None, description="the active version's folder (admin keys only, else null)")
    versions: list[ModelVersionInfo]


class ModelList(BaseModel):
    models: list[ModelInfo]


class LoadVersionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # No NUL: a filesystem path cannot hold one (os.path.realpath raises on it).
    path: str = Field(
        description="run or export artifact folder, as seen by the server",
        min_length=1,
        pattern=r"^[^\x00]+$",
    )
    # A served name's rule: "a/b" was loaded but no DELETE route could name it; "x\ny" became a
    # metric label value.
    version: str | None = Field(
        None,
        pattern=SERVED_NAME_PATTERN,  # `tunelab serve NAME@VERSION=PATH` checks the CLI's with it too
        description="default: one more than the highest numeric version; else a letter or digit, then up to "
        "63 of [A-Za-z0-9_.-]",
    )
    activate: bool = True


class ActivateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str


class KeyCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, examples=["acme"])
    rate: str | None = Field(None, examples=["20/s"], description="requests per period; none: unlimited")
    quota: str | None = Field(
        None, examples=["100000/month"], description="texts per period; none: unlimited"
    )
    admin: bool = False


class KeyInfo(BaseModel):
    id: str
    name: str
    admin: bool
    rate: str | None
    quota: str | None
    created_at: datetime
    revoked_at: datetime | None
    active: bool


class KeyCreated(KeyInfo):
    token: str = Field(description="shown once; only its hash is stored")


class KeyList(BaseModel):
    keys: list[KeyInfo]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}
