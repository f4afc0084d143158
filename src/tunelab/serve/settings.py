"""Server settings: one validated object the CLI builds and every part of the app reads.

Pydantic lives here because this is the edge (flags and environment variables); the domain code
below it takes plain values. Sizes accept ``1MB``/``512KiB``-style strings so the CLI flag and
the Python API read alike.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tunelab.errors import ConfigError
from tunelab.serve.inputs import is_http_url, without_secrets
from tunelab.serve.model_roots import DEFAULT_ROOT
from tunelab.serve.schemas import MAX_LIST_ITEMS
from tunelab.serve.store import default_data_dir, default_db

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_size(value: str | int) -> int:
    """Bytes from ``1048576``, ``1MB`` (10^6) or ``1MiB`` (2^20); a bad value names the accepted forms."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise ConfigError(f"size {value!r}: use bytes or a number with KB, MB, KiB or MiB (e.g. 1MB)")
    return int(float(match.group(1)) * _UNITS[unit])


class ServeSettings(BaseModel):
    """Everything ``tunelab serve`` can be told; defaults suit a laptop and 64 concurrent clients."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # inf: wait forever

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch: int = Field(32, ge=1, description="texts per model forward pass")
    max_wait_ms: float = Field(
        5.0, ge=0, le=60_000, description="how long a batch waits to fill after its first text"
    )
    max_texts_per_request: int = Field(64, ge=1, le=MAX_LIST_ITEMS)
    max_in_flight_per_key: int = Field(
        256, ge=1, description="texts one key may have waiting or running at once (tunelab.serve.in_flight)"
    )
    max_chars_per_text: int = Field(2000, ge=1)
    max_body_bytes: int = Field(1024 * 1024, ge=64)
    mask_logs: bool = True
    db: str | None = Field(
        default_factory=default_db, description="postgresql://... URL ($TUNELAB_DB); None: SQLite in data_dir"
    )
    data_dir: Path = Field(
        default_factory=default_data_dir, description="$TUNELAB_DATA_DIR, else the user data folder"
    )
    model_roots: tuple[Path, ...] = Field(
        (Path(DEFAULT_ROOT),),
        min_length=1,
        validate_default=True,
        description="folders POST /v1/models/{name}/versions may load from (absolute; default ./runs)",
    )
    threads: int = Field(1, ge=1, description="torch / ONNX Runtime intra-op threads")
    require_keys: bool = True
    log_level: str = "info"
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve /metrics without a key on this port too (None: not)"
    )
    metrics_host: str = Field("127.0.0.1", description="interface of the metrics_port listener")
    # Support bots (issue 10): conversations, hand-off tickets and their webhook.
    conversation_ttl_s: float = Field(
        1800.0, gt=0, description="a conversation's turns are context (and stored) for this long"
    )
    history_turns: int = Field(5, ge=0, description="earlier user messages passed to a bot as context")
    ticket_turns: int = Field(50, ge=1, description="most turns a hand-off ticket copies")
    handoff_webhook: str | None = Field(None, description="POST each new ticket here (http or https URL)")
    # Sentiment monitors (issue 11): where their alerts go (else each monitor config's webhook).
    alert_webhook: str | None = Field(None, description="POST each new monitor alert here (http(s) URL)")
    follow_sources: bool = Field(True, description="served monitors also follow their config's sources")
    webhook_secret: str | None = Field(
        default_factory=lambda: os.environ.get("TUNELAB_WEBHOOK_SECRET") or None,
        repr=False,
        description="signs webhook bodies (X-Tunelab-Signature: sha256=HMAC); $TUNELAB_WEBHOOK_SECRET",
    )
    webhook_timeout_s: float = Field(10.0, gt=0)
    webhook_backoff_s: float = Field(2.0, gt=0, description="wait before the first retry; doubled each time")
    webhook_max_backoff_s: float = Field(600.0, gt=0)
    webhook_max_attempts: int = Field(
        15, ge=1, description="attempts before a ticket's delivery is given up (alerts are never given up)"
    )
    webhook_poll_s: float = Field(5.0, gt=0, description="how often the outbox is read when nothing wakes it")

    @model_validator(mode="before")
    @classmethod
    def _data_dir_beats_env_db(cls, data: Any) -> Any:
        """A ``data_dir`` given without a ``db`` means SQLite there, as ``--data-dir`` does on the
        command line (``store.chosen_db``): ``ServeSettings(data_dir=X)`` used ``$TUNELAB_DB``'s
        database when the variable was set, another one than the folder named."""
        if isinstance(data, dict) and data.get("data_dir") is not None and "db" not in data:
            return {**data, "db": None}
        return data

    @field_validator("max_body_bytes", mode="before")
    @classmethod
    def _size(cls, value: str | int) -> int:
        return parse_size(value)

    @field_validator("handoff_webhook", "alert_webhook")
    @classmethod
    def _webhook_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not is_http_url(url):
            # without_secrets: a refused URL is echoed too, and its user:password with it was
            raise ValueError(
                f"{without_secrets(url)} is not an http(s) URL; give e.g. https://desk.example.com/hooks/tickets"
            )
        return url

    @field_validator("model_roots")
    @classmethod
    def _absolute(cls, roots: tuple[Path, ...]) -> tuple[Path, ...]:
        """Fixed against the directory the server started in, whatever happens to it later."""
        return tuple(Path(os.path.abspath(root)) for root in roots)


__all__ = ["ServeSettings", "parse_size", "without_secrets"]
