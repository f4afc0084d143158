"""Request and response bodies of the sentiment monitor's routes (``/v1/apps/monitor/...``).

A document's fields are described here for clients and ``/docs``, but checked by the monitor
itself (``tunelab.apps.monitor.check_batch``), the same check a followed file's lines get: one
message naming the document's index and what is wrong (``documents[3]: no id ...``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tunelab.serve.schemas import MAX_LIST_ITEMS

DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "time", "text"],
    "properties": {
        "id": {
            "anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}],
            "description": "unique per monitor: a document sent again is stored and counted once",
        },
        "time": {
            # 64: documents.MAX_TIME_CHARS (not imported: that loads the monitor app for a schema)
            "anyOf": [{"type": "string", "maxLength": 64}, {"type": "number"}],
            "description": "ISO 8601 (no offset: UTC) or epoch seconds",
            "examples": ["2026-03-02T09:30:00Z"],
        },
        "text": {"type": "string", "minLength": 1, "pattern": r"\S"},
        "source": {"type": ["string", "null"], "description": "where it came from (a feed's name)"},
        "topic": {"type": ["string", "null"], "description": "its topic, when the sender knows it"},
    },
}


class DocumentsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="stored all or nothing: one bad document refuses the batch, naming its index",
        json_schema_extra={"items": DOCUMENT_SCHEMA},
    )


class AlertOut(BaseModel):
    id: str = Field(description="stable per monitor, key and start: the webhook's Idempotency-Key")
    monitor: str
    key: str = Field(description="topic:<name> or company:<name>")
    kind: str = Field(description="negative_share or negative_volume: the level that crossed first")
    started_at: datetime
    ended_at: datetime | None = Field(description="null while the episode goes on")
    level: float = Field(
        description="the level that opened it: the CUSUM statistic in nats (method cusum, the "
        "default) or the robust z-score (method zscore)"
    )
    baseline: float
    observed: float
    docs: list[str] = Field(description="ids of the negative documents that triggered it (the latest)")


class IngestResponse(BaseModel):
    monitor: str
    received: int = Field(description="documents in the request (what is billed)")
    stored: int = Field(description="new documents classified and stored")
    duplicates: int = Field(description="ids stored before or repeated in the batch: not counted again")
    alerts: list[AlertOut] = Field(description="alerts this batch opened")
    unwatched: int = Field(
        0,
        description="topics and companies (each once a document) of this batch the detector does not "
        "watch: the monitor's detector.max_keys keys are taken (stored and in the trend; no alert on them)",
    )


class TrendBucket(BaseModel):
    start: datetime
    count: int
    negative: int
    negative_share: float | None = Field(description="null for an empty bucket")


class TrendResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    monitor: str
    topic: str | None
    company: str | None = Field(description="normalised as the classifier does (Acme Corp. -> acme)")
    bucket: str
    bucket_s: int
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    from_cut: bool = Field(
        False,
        description="no from was given and the stored history is longer than 5,000 buckets: from is "
        "the start of the last 5,000 (a document dated decades back no longer makes every bucket too many)",
    )
    buckets: list[TrendBucket] = Field(description="aligned to UTC, empty ones included")
    alerts: list[AlertOut] = Field(description="the key's alert episodes overlapping the range")


class AlertList(BaseModel):
    monitor: str
    alerts: list[AlertOut] = Field(description="oldest first")


class MonitorInfo(BaseModel):
    name: str
    source: str | None = Field(None, description="the monitor config's file (admin keys only, else null)")
    loaded_at: datetime
    following: bool = Field(description="the server also follows the config's sources")
    webhook: bool = Field(description="new alerts are POSTed to a webhook")


class MonitorList(BaseModel):
    monitors: list[MonitorInfo]


__all__ = [
    "AlertList",
    "AlertOut",
    "DocumentsRequest",
    "IngestResponse",
    "MonitorInfo",
    "MonitorList",
    "TrendBucket",
    "TrendResponse",
]
