"""The support bots a server answers for (``tunelab serve --bot bots/<name>``), each behind a batcher.

A bot's ``reply`` runs its intent model, so under load concurrent messages are worth batching
exactly like predict texts: each bot gets a ``MicroBatcher`` whose "predictor" is the adapter below,
turning a batch of (text, history) items into one ``Bot.reply_many`` call in the batcher's own
thread. The event loop never runs a bot, one bot never runs two batches at once, and a message
that breaks a batch fails alone (the batcher retries the others one by one).

The bots are loaded before the app is built (the CLI loads them before binding the port); the
``Bot`` class is the app's (``tunelab.apps.support.bot``) and is never imported here: anything
with ``name``, ``folder``, ``reply`` and ``reply_many`` serves.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from tunelab.errors import ConfigError
from tunelab.serve.batcher import MicroBatcher
from tunelab.serve.registry import ModelNotServedError

log = logging.getLogger(__name__)


class BotFailedError(RuntimeError):
    """A bot raised while answering: a server fault (HTTP 500, details in the log only)."""


@dataclass
class _Items:
    """A batch of (text, history) items, standing in for the batcher's encoding."""

    items: list[tuple[str, Sequence[str]]]

    @property
    def lengths(self) -> list[int]:
        return [0] * len(self.items)  # tokens: a bot does not report them; usage counts 0

    def __len__(self) -> int:
        return len(self.items)


class _BotAdapter:
    """``MicroBatcher``'s predictor interface over ``Bot.reply_many``."""

    def __init__(self, bot: Any) -> None:
        self.bot = bot

    def encode(self, items: list[tuple[str, Sequence[str]]]) -> _Items:
        return _Items(list(items))

    def predict_encoded(
        self, enc: _Items, texts: list[Any], *, top_k: int = 3, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        replies = self.bot.reply_many([t for t, _ in enc.items], [list(h) for _, h in enc.items])
        if len(replies) != len(enc.items):
            raise BotFailedError(
                f"bot {self.bot.name!r} gave {len(replies)} replies to {len(enc.items)} messages"
            )
        return [{"reply": r} for r in replies]


@dataclass
class ServedBot:
    """One loaded bot, where it came from, and its batcher."""

    name: str
    bot: Any
    source: str
    batcher: MicroBatcher
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    async def reply(self, text: str, history: Sequence[str], *, lane: Hashable = None) -> Any:
        """The bot's ``Reply`` to ``text`` after ``history`` (batched with concurrent messages).

        ``lane``: the sender's key id, so each key's messages wait in their own lane of the
        batcher and one key's burst does not hold other customers' messages back.

        Raises:
            BotFailedError: the bot raised; the cause is chained for the server log.
        """
        try:
            out = await self.batcher.submit(cast(Any, [(text, tuple(history))]), lane=lane)
        except Exception as exc:
            raise BotFailedError(f"bot {self.name!r} failed: {type(exc).__name__}") from exc
        return out.results[0]["reply"]


class BotRegistry:
    """Name -> ``ServedBot``; fixed at start (``--bot``), read by the routes.

    Args:
        bots: loaded bots, each served as its ``name``, or ``(name, bot)`` pairs to serve one
            under another name (``--bot NAME=DIR``).
    """

    def __init__(self, bots: Iterable[Any] = (), *, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        self._bots: dict[str, ServedBot] = {}
        for item in bots:
            name, bot = (str(item[0]), item[1]) if isinstance(item, tuple) else (str(item.name), item)
            if name in self._bots:
                raise ConfigError(
                    f"--bot {bot.folder}: a bot named {name!r} is already served (from "
                    f"{self._bots[name].source}); serve one under another name with --bot NAME=DIR"
                )
            batcher = MicroBatcher(
                cast(Any, _BotAdapter(bot)), max_batch=max_batch, max_wait_ms=max_wait_ms, name=f"bot-{name}"
            )
            self._bots[name] = ServedBot(name, bot, str(bot.folder), batcher)

    def names(self) -> list[str]:
        return sorted(self._bots)

    def __contains__(self, name: object) -> bool:
        return name in self._bots

    def __len__(self) -> int:
        return len(self._bots)

    def get(self, name: str) -> ServedBot:
        """The bot, or a 404 naming the bots that are served."""
        served = self._bots.get(name)
        if served is None:
            names = ", ".join(self.names()) or "none (start the server with --bot bots/<name>)"
            raise ModelNotServedError(f"bot {name!r} is not served (served: {names})", code="unknown_bot")
        return served

    def all(self) -> list[ServedBot]:
        return [self._bots[n] for n in self.names()]

    def start(self) -> None:
        for served in self._bots.values():
            served.batcher.start()

    async def close(self) -> None:
        for served in self._bots.values():
            await served.batcher.close()


__all__ = ["BotFailedError", "BotRegistry", "ServedBot"]
