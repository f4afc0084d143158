"""The micro-batcher with a fake predictor: order, grouping, waiting, splitting and failures."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tunelab.serve.batcher import BatcherClosed, MicroBatcher


@dataclass
class FakeEncoded:
    texts: list[str]

    @property
    def lengths(self) -> list[int]:
        return [len(t.split()) + 2 for t in self.texts]  # + [CLS] and [SEP]

    def __len__(self) -> int:
        return len(self.texts)


class FakePredictor:
    """Labels each text with itself; records batch sizes and the threads that ran them."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> FakeEncoded:
        return FakeEncoded(list(texts))

    def predict_encoded(
        self, enc: FakeEncoded, texts: list[str], *, top_k: int = 3, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        assert len(texts) == len(enc)  # the texts the batch was encoded from
        with self._lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            self.threads.add(threading.current_thread().name)
            self.batches.append(list(enc.texts))
            if self.delay:
                time.sleep(self.delay)
            if self.fail_on is not None and self.fail_on in enc.texts:
                raise RuntimeError(f"cannot predict {self.fail_on!r}")
            ranks = [{"label": f"{t}-{i}", "score": 1.0 / (i + 1)} for t in enc.texts for i in range(top_k)]
            return [
                {"label": t, "score": 1.0, "top_k": ranks[j * top_k : (j + 1) * top_k]}
                for j, t in enumerate(enc.texts)
            ]
        finally:
            with self._lock:
                self.concurrent -= 1


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_results_come_back_in_order_with_token_counts() -> None:
    async def main() -> None:
        batcher = MicroBatcher(FakePredictor(), max_batch=8, max_wait_ms=1)
        out = await batcher.submit(["a b", "c", "d e f"])
        assert [r["label"] for r in out.results] == ["a b", "c", "d e f"]
        assert out.tokens == [4, 3, 5]
        await batcher.close()

    run(main())


def test_concurrent_requests_share_a_batch_and_each_gets_its_own_results() -> None:
    fake = FakePredictor()
    sizes: list[int] = []

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=32, max_wait_ms=50, on_batch=sizes.append)
        outs = await asyncio.gather(*(batcher.submit([f"r{i}-a", f"r{i}-b"]) for i in range(10)))
        for i, out in enumerate(outs):
            assert [r["label"] for r in out.results] == [f"r{i}-a", f"r{i}-b"]
        await batcher.close()

    run(main())
    assert sizes == [20] and len(fake.batches) == 1


def test_batches_are_cut_at_max_batch_without_splitting_small_requests() -> None:
    fake = FakePredictor()

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=5, max_wait_ms=50)
        outs = await asyncio.gather(*(batcher.submit([f"r{i}-{j}" for j in range(2)]) for i in range(6)))
        assert [r["label"] for out in outs for r in out.results] == [
            f"r{i}-{j}" for i in range(6) for j in range(2)
        ]
        await batcher.close()

    run(main())
    assert [len(b) for b in fake.batches] == [4, 4, 4]  # 2+2 fit, a third pair would make 6 > 5


def test_a_request_larger_than_max_batch_is_split_and_reassembled() -> None:
    fake = FakePredictor()

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=4, max_wait_ms=1)
        texts = [f"t{i}" for i in range(10)]
        out = await batcher.submit(texts)
        assert [r["label"] for r in out.results] == texts
        assert len(out.tokens) == 10
        await batcher.close()

    run(main())
    assert [len(b) for b in fake.batches] == [4, 4, 2]


def test_a_lone_request_waits_at_most_max_wait() -> None:
    async def main() -> float:
        batcher = MicroBatcher(FakePredictor(), max_batch=32, max_wait_ms=30)
        await batcher.submit(["warm up"])
        start = time.perf_counter()
        await batcher.submit(["alone"])
        elapsed = time.perf_counter() - start
        await batcher.close()
        return elapsed

    elapsed = run(main())
    assert 0.025 <= elapsed < 0.5


def test_a_full_batch_does_not_wait() -> None:
    async def main() -> float:
        batcher = MicroBatcher(FakePredictor(), max_batch=4, max_wait_ms=2000)
        start = time.perf_counter()
        await batcher.submit(["a", "b", "c", "d"])
        elapsed = time.perf_counter() - start
        await batcher.close()
        return elapsed

    assert run(main()) < 1.0


def test_an_error_fails_only_the_requests_of_its_batch() -> None:
    fake = FakePredictor(fail_on="boom")

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=2, max_wait_ms=20)
        results = await asyncio.gather(
            batcher.submit(["boom", "x"]), batcher.submit(["fine", "y"]), return_exceptions=True
        )
        assert isinstance(results[0], RuntimeError) and "boom" in str(results[0])
        assert [r["label"] for r in results[1].results] == ["fine", "y"]
        # The worker survives the failure.
        assert (await batcher.submit(["later"])).results[0]["label"] == "later"
        await batcher.close()

    run(main())


def test_a_split_request_whose_first_part_fails_stops_its_other_parts() -> None:
    """Its answer was a 500 while the sibling parts stayed queued and ran, outside the key's
    in-flight cap (the request no longer counted). Only the failing part's forward runs, and at
    most one more that had already started when it failed."""
    fake = FakePredictor(fail_on="boom")

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=4, max_wait_ms=1)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(["boom", *(f"t{i}" for i in range(15))])
        await batcher.close()  # answers what is still queued: the cancelled parts are skipped

    run(main())
    assert fake.batches[0] == ["boom", "t0", "t1", "t2"]
    assert len(fake.batches) <= 2, fake.batches


def test_inference_runs_off_the_event_loop_one_batch_at_a_time() -> None:
    fake = FakePredictor(delay=0.05)

    async def main() -> int:
        batcher = MicroBatcher(fake, max_batch=1, max_wait_ms=0, name="m@1")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(4)))
        task.cancel()
        await batcher.close()
        return ticks

    ticks = run(main())
    assert ticks >= 10  # the loop kept running during 4 x 50 ms of inference
    assert fake.max_concurrent == 1
    assert len(fake.threads) == 1 and next(iter(fake.threads)).startswith("infer-m@1")


def test_top_k_is_per_request_within_a_shared_batch() -> None:
    async def main() -> None:
        batcher = MicroBatcher(FakePredictor(), max_batch=8, max_wait_ms=30)
        one, three = await asyncio.gather(batcher.submit(["a"], top_k=1), batcher.submit(["b"], top_k=3))
        assert len(one.results[0]["top_k"]) == 1 and len(three.results[0]["top_k"]) == 3
        await batcher.close()

    run(main())


def test_close_answers_what_is_queued_then_refuses_new_requests() -> None:
    fake = FakePredictor(delay=0.02)

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=1, max_wait_ms=0)
        pending = [asyncio.create_task(batcher.submit([f"t{i}"])) for i in range(3)]
        await asyncio.sleep(0)
        await batcher.close()
        outs = await asyncio.gather(*pending)
        assert [out.results[0]["label"] for out in outs] == ["t0", "t1", "t2"]
        with pytest.raises(BatcherClosed):
            await batcher.submit(["late"])

    run(main())


def test_a_cancelled_request_does_not_break_the_others() -> None:
    fake = FakePredictor(delay=0.05)

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=1, max_wait_ms=0)
        first = asyncio.create_task(batcher.submit(["first"]))
        gone = asyncio.create_task(batcher.submit(["gone"]))
        last = asyncio.create_task(batcher.submit(["last"]))
        await asyncio.sleep(0.01)
        gone.cancel()
        assert (await first).results[0]["label"] == "first"
        assert (await last).results[0]["label"] == "last"
        await batcher.close()

    run(main())
    assert ["gone"] not in fake.batches


def test_a_failing_batch_is_retried_per_request_so_only_the_bad_request_fails() -> None:
    fake = FakePredictor(fail_on="boom")

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=32, max_wait_ms=50)
        bodies = [["a", "b"], ["c", "boom"], ["d"], ["e", "f"]]
        results = await asyncio.gather(*(batcher.submit(b) for b in bodies), return_exceptions=True)
        assert isinstance(results[1], RuntimeError) and "boom" in str(results[1])
        for i in (0, 2, 3):
            assert [r["label"] for r in results[i].results] == bodies[i], results[i]
            assert len(results[i].tokens) == len(bodies[i])
        await batcher.close()

    run(main())
    # One shared batch that failed, then each of the four requests alone.
    assert fake.batches[0] == ["a", "b", "c", "boom", "d", "e", "f"]
    assert sorted(map(tuple, fake.batches[1:])) == [("a", "b"), ("c", "boom"), ("d",), ("e", "f")]


def test_batch_sizes_count_only_forwards_that_answered_and_a_lone_failure_is_not_retried() -> None:
    """The batch-size metric sees each answered text once: not the failed shared batch, not the
    failed retry. A batch of one request that fails is run once, not again alone."""
    fake = FakePredictor(fail_on="boom")
    sizes: list[int] = []

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=32, max_wait_ms=50, on_batch=sizes.append)
        bodies = [["a", "b"], ["c", "boom"], ["d"], ["e", "f"]]
        await asyncio.gather(*(batcher.submit(b) for b in bodies), return_exceptions=True)
        assert len(fake.batches) == 5  # the shared batch, then each request alone
        assert sorted(sizes) == [1, 2, 2]  # the three requests that were answered
        del fake.batches[:], sizes[:]
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(["boom", "x"])  # alone in its batch
        assert fake.batches == [["boom", "x"]] and sizes == []
        await batcher.close()

    run(main())


class PairPredictor(FakePredictor):
    """Labels ``text|pair``; records whether each batch came with pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[bool] = []

    def encode(self, texts: list[str], text_pairs: list[str] | None = None) -> FakeEncoded:
        self.kinds.append(text_pairs is not None)
        joined = texts if text_pairs is None else [f"{a}|{b}" for a, b in zip(texts, text_pairs, strict=True)]
        return FakeEncoded(joined)


def test_pairs_travel_with_their_texts_and_a_batch_holds_one_kind() -> None:
    fake = PairPredictor()

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=32, max_wait_ms=50)
        paired, alone, paired2 = await asyncio.gather(
            batcher.submit(["p1", "p2"], pairs=["h1", "h2"]),
            batcher.submit(["s1"]),
            batcher.submit(["p3"], pairs=["h3"]),
        )
        assert [r["label"] for r in paired.results] == ["p1|h1", "p2|h2"]
        assert [r["label"] for r in alone.results] == ["s1"]
        assert [r["label"] for r in paired2.results] == ["p3|h3"]
        with pytest.raises(ValueError, match="2 texts but 1 pairs"):
            await batcher.submit(["x", "y"], pairs=["only one"])
        await batcher.close()

    run(main())
    for batch, kind in zip(fake.batches, fake.kinds, strict=True):
        assert all(("|" in t) == kind for t in batch), (batch, kind)


def test_keys_take_turns_so_one_keys_queue_does_not_hold_another_keys_text_back() -> None:
    fake = FakePredictor(delay=0.01)

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=1, max_wait_ms=0)
        big = asyncio.create_task(batcher.submit([f"a{i}" for i in range(5)], lane="key-a"))
        small = asyncio.create_task(batcher.submit(["b0"], lane="key-b"))
        assert [r["label"] for r in (await big).results] == ["a0", "a1", "a2", "a3", "a4"]
        assert (await small).results[0]["label"] == "b0"
        await batcher.close()

    run(main())
    # First come, first served would run b0 after all five of key-a's batches.
    assert fake.batches == [["a0"], ["b0"], ["a1"], ["a2"], ["a3"], ["a4"]]


def test_keys_take_turns_inside_a_batch_and_each_keys_requests_keep_their_order() -> None:
    fake = FakePredictor()

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=4, max_wait_ms=50)
        tasks = [asyncio.create_task(batcher.submit([f"a{i}"], lane="key-a")) for i in range(4)]
        tasks += [asyncio.create_task(batcher.submit([f"b{i}"], lane="key-b")) for i in range(2)]
        outs = await asyncio.gather(*tasks)
        assert [o.results[0]["label"] for o in outs] == ["a0", "a1", "a2", "a3", "b0", "b1"]
        await batcher.close()

    run(main())
    assert fake.batches == [["a0", "b0", "a1", "b1"], ["a2", "a3"]]


def test_without_lanes_requests_run_first_come_first_served() -> None:
    fake = FakePredictor(delay=0.01)

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=1, max_wait_ms=0)
        big = asyncio.create_task(batcher.submit(["a0", "a1", "a2"]))
        small = asyncio.create_task(batcher.submit(["b0"]))
        await asyncio.gather(big, small)
        await batcher.close()

    run(main())
    assert fake.batches == [["a0"], ["a1"], ["a2"], ["b0"]]


def test_an_empty_request_is_answered_at_once_and_the_worker_goes_on() -> None:
    """An empty submit left an empty lane behind: the worker died on it and every later request
    waited for good."""
    fake = FakePredictor()

    async def main() -> None:
        batcher = MicroBatcher(fake, max_batch=4, max_wait_ms=0)
        assert (await batcher.submit([], lane="key-a")).results == []
        out = await asyncio.wait_for(batcher.submit(["b0"], lane="key-b"), 5)
        assert out.results[0]["label"] == "b0"
        await batcher.close()

    run(main())
