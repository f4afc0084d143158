"""Request and response bodies of the HTTP API (what ``/docs`` shows).

Limits that depend on the server's settings (texts per request, characters per text) are checked
in the predict route, not here, so the schema stays static and the messages can name the setting.

A predict response's ``results`` hold one schema per task: ``ClassificationResult`` for
single- and multi-label models, ``EntityResult`` for token-classification (NER) models, so a
client reads ``task`` and knows the shape of every result. No NER model can be trained yet; its
schema is fixed here so that clients written today keep working when one is served::

    {"entities": [{"text": "Acme", "label": "ORG", "start": 0, "end": 4, "score": 0.98}]}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_key"])
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, examples=[["I still have not received my new card"]])
    top_k: int = Field(3, ge=1, le=100, description="how many ranked labels each result lists")
    version: str | None = Field(None, description="pin a model version (else the active one)")

    @field_validator("texts")
    @classmethod
    def _not_blank(cls, texts: list[str]) -> list[str]:
        blank = [i for i, text in enumerate(texts) if not text.strip()]
        if blank:
            raise ValueError(f"texts[{blank[0]}] is empty; every text needs some non-space characters")
        return texts


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
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    score: float


class EntityResult(BaseModel):
    """One text's entities (task ``ner``), in order of appearance."""

    entities: list[Entity]


class UsageCount(BaseModel):
    texts: int
    tokens: int


class PredictResponse(BaseModel):
    model: str
    version: str
    format: str = Field(examples=["torch", "onnx-int8"])
    task: str = Field(examples=["single_label", "multi_label", "ner"])
    results: list[ClassificationResult] | list[EntityResult] = Field(
        description="one per text: ClassificationResult (single_label, multi_label) or EntityResult (ner)"
    )
    usage: UsageCount


class ModelVersionInfo(BaseModel):
    version: str
    format: str
    task: str
    labels: int
    source: str = Field(description="the run or artifact folder it was loaded from")
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
    source: str
    versions: list[ModelVersionInfo]


class ModelList(BaseModel):
    models: list[ModelInfo]


class LoadVersionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="run or export artifact folder, as seen by the server")
    version: str | None = Field(None, description="default: one more than the highest numeric version")
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
