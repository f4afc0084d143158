"""What the service stores about API keys and usage, and the interface every backend implements.

Two backends share one SQL schema (``store/sql.py``): SQLite in WAL mode (the default, one file in
the data folder) and PostgreSQL (``--db postgresql://...``). Records are frozen dataclasses with UTC
timestamps; ``KeyRecord`` carries the secret's hash for verification but never shows it in
``to_dict`` or ``repr``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tunelab.errors import TunelabError
from tunelab.serve.limits import Quota, Rate


class StoreError(TunelabError):
    """The key/usage database cannot be opened, reached or written."""


class KeyNotFoundError(StoreError):
    """No (active) key has the given name or id."""


class DuplicateKeyError(StoreError):
    """An active key already has this name."""


@dataclass(frozen=True)
class KeyRecord:
    """One API key. The token itself is never stored: only ``secret_hash`` (see ``serve/keys.py``)."""

    key_id: str
    name: str
    admin: bool
    rate: Rate | None
    quota: Quota | None
    created_at: datetime
    revoked_at: datetime | None = None
    secret_hash: str = field(default="", repr=False, compare=False)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view for listings and the admin API (no secret, no hash)."""
        return {
            "id": self.key_id,
            "name": self.name,
            "admin": self.admin,
            "rate": str(self.rate) if self.rate else None,
            "quota": str(self.quota) if self.quota else None,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "active": self.active,
        }


def billed(status: int) -> bool:
    """A request is billed, and counts against its key's quota, when it succeeded: any 2xx status
    (200, or 201 for an item a recommender added)."""
    return 200 <= status < 300


@dataclass(frozen=True)
class UsageRecord:
    """One request as billed: who, which model, how much, and how it ended (HTTP status)."""

    at: datetime
    key_id: str | None
    key_name: str | None
    model: str | None
    version: str | None
    texts: int
    tokens: int
    status: int
    latency_ms: float
    request_id: str
    app: str | None = None  # the application a request went through (``support``), else None: predict

    @property
    def product(self) -> str | None:
        """What was called: the model's name, or ``app/bot`` (``support/bank``) for an application."""
        return f"{self.app}/{self.model}" if self.app else self.model

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "key_id": self.key_id,
            "key_name": self.key_name,
            "model": self.model,
            "version": self.version,
            "texts": self.texts,
            "tokens": self.tokens,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "request_id": self.request_id,
            "app": self.app,
        }


@dataclass(frozen=True)
class UsageGroup:
    """Usage summed over the requests of one (key, app, model, status): what summaries and bills show."""

    key_id: str | None
    key_name: str | None
    model: str | None
    status: int
    requests: int
    texts: int
    tokens: int
    latency_ms_sum: float
    app: str | None = None

    @property
    def product(self) -> str | None:
        """What was called: the model's name, or ``app/bot`` (``support/bank``) for an application."""
        return f"{self.app}/{self.model}" if self.app else self.model


class Store(ABC):
    """Keys and usage records. Every method is safe to call from many threads at once.

    Writes are single transactions committed before the method returns, so a usage record that
    was acknowledged survives a crash right after.
    """

    @abstractmethod
    def create_key(
        self,
        *,
        key_id: str,
        name: str,
        secret_hash: str,
        admin: bool = False,
        rate: Rate | None = None,
        quota: Quota | None = None,
        created_at: datetime | None = None,
    ) -> KeyRecord:
        """Insert a key; ``DuplicateKeyError`` if an active key already has ``name``."""

    @abstractmethod
    def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with this id (active or revoked), or ``None``."""

    @abstractmethod
    def list_keys(self, include_revoked: bool = True) -> list[KeyRecord]:
        """All keys, oldest first."""

    @abstractmethod
    def revoke_key(self, name_or_id: str) -> KeyRecord:
        """Revoke the active key with this id or name; ``KeyNotFoundError`` if there is none."""

    @abstractmethod
    def record_usage(self, rec: UsageRecord) -> None:
        """Write one usage row in one transaction, committed before returning."""

    @abstractmethod
    def usage(
        self,
        *,
        key_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        key_name: str | None = None,
    ) -> list[UsageRecord]:
        """Usage rows with ``since <= at < until``, oldest first."""

    @abstractmethod
    def usage_groups(
        self,
        *,
        key_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        key_name: str | None = None,
    ) -> list[UsageGroup]:
        """Usage summed per (key, model, status), computed in the database."""

    @abstractmethod
    def texts_used(self, key_id: str, since: datetime, until: datetime | None = None) -> int:
        """Texts in successful (2xx, ``billed``) requests of ``key_id`` from ``since`` to before
        ``until`` (no end: None): the quota count."""

    @abstractmethod
    def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers a trivial query (readiness checks)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
