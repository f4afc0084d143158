"""Schemathesis fuzzes ``tunelab serve`` (a subprocess, the tiny run) over its OpenAPI schema.

Every operation, as a plain key, an admin key, a rate- and quota-limited key and no key, with
data that fits the schema and data that does not: no 5xx, every answer a documented status with
the documented body, content type and headers, each key refused where it should be, and the
usage table holds exactly one row per predict request sent with a valid key (none for keyless
ones). Bounded: a few cases per operation, a fixed seed (``benchmarks/fuzz_api.py`` runs longer).

Destructive admin operations are fuzzed too; the one case left out is revoking the fuzzer's own
keys (``DELETE /v1/keys/{name}`` naming one of them), which would turn the rest of the run into
403s. Keys the fuzzer creates are never used; versions it may retire are never active ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fuzz_helpers import FUZZ_KEYS, KnownCase, fuzz_api, fuzz_identities, revokes_one_of
from serve_helpers import ServerProcess

pytestmark = pytest.mark.e2e

pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency: pip install -e .[dev]")

MAX_EXAMPLES = 6
TEXTS = ["football match with my team", "pizza and cheese for dinner"]
SEED = 8


def test_fuzz_every_operation_as_each_identity(
    tiny_run: Path, server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory(
        [f"topics={tiny_run}"],
        keys=FUZZ_KEYS,
        data_dir=tmp_path / "data",
        args=("--max-texts", "8", "--max-chars", "200", "--max-body", "16KB", "--max-wait-ms", "2"),
    )
    with server.store() as store:
        own = {k.name for k in store.list_keys()} | {k.key_id for k in store.list_keys()}
    identities = fuzz_identities(server.tokens)
    report = fuzz_api(
        server.url,
        identities,
        max_examples=MAX_EXAMPLES,
        seed=SEED,
        protect=revokes_one_of(own),
        known={"name": "topics"},
        known_cases=(
            KnownCase("POST", "/v1/models/{name}/predict", {"name": "topics"}, {"texts": TEXTS}, repeat=4),
        ),
    )
    print(report.summary())
    for label, statuses in report.by_operation.items():
        print(label, dict(statuses))

    assert len(report.operations) >= 13, report.operations
    assert all(report.cases[f"{who.name} {op}"] > 0 for who in identities for op in report.operations)
    assert not report.failures, f"{report.summary()}\n\n{report.failure_text()}"
    assert report.statuses[200] and report.statuses[429], "the model and the limits were reached"

    keyed = {rid for who in ("plain", "admin", "limited") for rid in report.predict_ids.get(who, [])}
    keyless = set(report.predict_ids.get("anonymous", []))
    assert keyed and keyless and "" not in keyed | keyless
    rows = server.usage_rows()
    assert len(rows) == len({row.request_id for row in rows}), "one usage row per request"
    assert {row.request_id for row in rows} == keyed, (
        f"{len(rows)} usage rows for {len(keyed)} keyed predict requests; "
        f"{len({r.request_id for r in rows} & keyless)} rows for keyless ones"
    )
    assert server.proc.poll() is None, server.log()[-3000:]
