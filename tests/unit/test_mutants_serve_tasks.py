"""Behaviour no test pinned, found by a second pass of mutation testing (serve, scoring, webhooks).

Each test kills a small, realistic change to the code that every other test let through: the
results would have been wrong, or a limit not kept, without a test failing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from test_serve_batcher import PairPredictor, run

from tunelab.serve.batcher import MicroBatcher
from tunelab.serve.request_limits import BodySizeLimit, RequestLimitError, check_texts
from tunelab.serve.webhook import OutboxWorker, Outgoing
from tunelab.tasks.classification.scoring import decode, score

# -- the batcher -----------------------------------------------------------------------------------


def test_a_paired_request_longer_than_a_batch_keeps_each_pair_with_its_text() -> None:
    """Split across batches, a request's later texts were sent with its first pairs (``a3|b1``)."""
    fake = PairPredictor()

    async def main() -> list[str]:
        batcher = MicroBatcher(fake, max_batch=2, max_wait_ms=1)
        out = await batcher.submit(["a1", "a2", "a3", "a4", "a5"], pairs=["b1", "b2", "b3", "b4", "b5"])
        await batcher.close()
        return [r["label"] for r in out.results]

    assert run(main()) == ["a1|b1", "a2|b2", "a3|b3", "a4|b4", "a5|b5"]
    assert max(len(b) for b in fake.batches) == 2  # it was split


def test_max_wait_is_taken_in_milliseconds() -> None:
    """A wait ten times too long (or short) is no error a timing test bounded loosely would see."""
    assert MicroBatcher(PairPredictor(), max_wait_ms=30).max_wait == pytest.approx(0.030)
    assert MicroBatcher(PairPredictor(), max_wait_ms=-5).max_wait == 0.0


# -- request limits --------------------------------------------------------------------------------


def send_chunks(max_bytes: int, sizes: list[int]) -> tuple[int, bytes]:
    """The status and body ``BodySizeLimit`` answers for a body sent as chunks of ``sizes`` bytes with
    no Content-Length (ASGI messages, as a server passes a chunked body on)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        n, more = 0, True
        while more:
            message = await receive()
            n += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(n).encode()})

    messages = [
        {"type": "http.request", "body": b"x" * size, "more_body": i < len(sizes) - 1}
        for i, size in enumerate(sizes)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodySizeLimit(app, max_bytes=max_bytes)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_chunked_body_is_counted_whole_not_chunk_by_chunk() -> None:
    """Five 60-byte chunks without a Content-Length against a 100-byte cap: each chunk is under it,
    the body is not; counted per chunk, 300 bytes went through."""
    status, body = send_chunks(100, [60] * 5)
    assert status == 413 and b"over max_body_bytes=100 bytes" in body
    assert send_chunks(100, [50, 50]) == (200, b"100")  # at the cap: taken


def test_exactly_the_text_limit_is_taken_and_one_more_is_refused() -> None:
    check_texts(["t"] * 8, max_texts=8, max_chars=100)
    with pytest.raises(
        RequestLimitError, match="9 texts in one request; the limit is max_texts_per_request=8"
    ):
        check_texts(["t"] * 9, max_texts=8, max_chars=100)


# -- multi-label scoring and decoding --------------------------------------------------------------

NAMES = ["a", "b", "c"]


def test_a_given_threshold_is_applied_not_tuned_again_on_the_rows_scored() -> None:
    """The threshold is tuned on dev and applied as given elsewhere: tuned on the rows being scored,
    test figures would be tuned on test labels (a 0.9 threshold scored 0.889 micro F1 instead of 0)."""
    logits = np.array([[2.0, -2.0, 0.5], [-2.0, 2.0, 0.5], [0.3, 0.3, -3.0]])
    labels = [[0, 2], [1], [0, 1]]
    metrics, used = score(logits, labels, NAMES, multi=True, threshold=0.9)
    assert used == 0.9 and metrics["threshold"] == 0.9
    assert metrics["micro_f1"] == 0.0  # no probability reaches 0.9 (the largest is sigmoid(2) = 0.88)
    _, tuned = score(logits, labels, NAMES, multi=True, threshold=None)
    assert tuned is not None and tuned < 0.9  # tuned when none is given


def test_multi_label_labels_are_those_at_or_above_the_threshold_best_first() -> None:
    """A logit of 0 is a probability of exactly 0.5, the default threshold: at it is in. And the
    labels come best first, as the README says, whatever their order in the run."""
    [out] = decode(np.array([[0.0, 3.0, -4.0]]), NAMES, multi=True, threshold=0.5, top_k=3)
    assert out["labels"] == ["b", "a"]
    assert out["scores"] == sorted(out["scores"], reverse=True) and out["scores"][1] == 0.5
    [out] = decode(np.array([[1.0, 2.0, 3.0]]), NAMES, multi=True, threshold=0.5, top_k=1)
    assert out["labels"] == ["c", "b", "a"]


# -- webhook retries -------------------------------------------------------------------------------


class FailingOutbox(OutboxWorker):
    """Every item fails; the retry times are recorded."""

    def __init__(self, clock: datetime) -> None:
        super().__init__(
            "http://receiver.invalid/hook",
            secret=None,
            timeout_s=1.0,
            backoff_s=100.0,
            max_backoff_s=10_000.0,
            max_attempts=None,
            poll_s=10_000.0,
            post=lambda *a: 200,
            now=lambda: clock,
        )
        self.retries: dict[str, datetime | None] = {}

    def lease(self, now: datetime, limit: int) -> list[Outgoing]:
        return []

    def delivered(self, key: str, now: datetime) -> None:
        raise AssertionError("nothing is delivered here")

    def failed(self, key: str, *, error: str, retry_at: datetime | None, now: datetime) -> None:
        self.retries[key] = retry_at


def test_the_worker_wakes_for_the_soonest_retry_not_the_latest() -> None:
    """Two failed items, due in 400 s and in 100 s: waking for the latest delayed the first by 300 s."""
    clock = datetime(2026, 3, 2, 12, tzinfo=UTC)
    worker = FailingOutbox(clock)

    async def fail_both() -> None:
        await worker._failed("late", 3, "HTTP 503")  # attempt 3: 4 x the back-off
        await worker._failed("soon", 1, "HTTP 503")  # attempt 1: the back-off

    asyncio.run(fail_both())
    assert worker.retries == {"late": clock + timedelta(seconds=400), "soon": clock + timedelta(seconds=100)}
    assert worker._wait_s() == pytest.approx(100.0)
