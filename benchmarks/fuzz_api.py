"""A longer schemathesis run against ``tunelab serve`` than the bounded one in the test suite.

Starts ``tunelab serve RUN`` (a fresh SQLite store, four keys: plain, admin, rate-limited, and
none) and fuzzes every operation of its OpenAPI schema as each identity, with data that fits the
schema and data that does not (``tests/e2e/fuzz_helpers.py`` says what is checked). Prints the
operations, the cases sent per operation, the statuses, every distinct failure with the curl
command that reproduces it, and whether the usage rows equal the keyed predict requests.

    .venv/bin/python benchmarks/fuzz_api.py RUN                      # 50 cases per operation x mode
    .venv/bin/python benchmarks/fuzz_api.py RUN --examples 200 --seed 3 --json fuzz.json

Any finished run serves (the model's quality does not matter here); the README figures used the
tiny 2-layer BERT of the test fixtures. Exits 1 when a failure was found.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from fuzz_helpers import FUZZ_KEYS, KnownCase, fuzz_api, fuzz_identities, revokes_one_of  # noqa: E402
from serve_helpers import make_keys, start_server  # noqa: E402

from tunelab.atomic import atomic_write_text  # noqa: E402

MODEL = "bench"
TEXTS = ["I still have not received my new card", "football match with my team"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a finished run or export artifact to serve")
    parser.add_argument("--examples", type=int, default=50, help="cases per operation, identity and mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not args.run.is_dir():  # the server's refusal came back as pytest's Failed, 10 lines of traceback
        sys.exit(f"{args.run}: no such run folder; give a finished run or export artifact")

    with tempfile.TemporaryDirectory(prefix="fuzz-api-") as tmp:
        data_dir = Path(tmp) / "data"
        tokens = make_keys(None, data_dir, FUZZ_KEYS)
        server = start_server(
            [f"{MODEL}={args.run}"],
            data_dir=data_dir,
            args=("--max-texts", "8", "--max-chars", "200", "--max-body", "16KB", "--max-wait-ms", "2"),
        )
        try:
            with server.store() as store:
                own = {k.name for k in store.list_keys()} | {k.key_id for k in store.list_keys()}
            report = fuzz_api(
                server.url,
                fuzz_identities(tokens),
                max_examples=args.examples,
                seed=args.seed,
                protect=revokes_one_of(own),
                known={"name": MODEL},
                known_cases=(
                    KnownCase("POST", "/v1/models/{name}/predict", {"name": MODEL}, {"texts": TEXTS}, 4),
                ),
                on_operation=lambda label, n: print(f"  {label}: {n} cases", flush=True),
            )
            keyed = {r for who in ("plain", "admin", "limited") for r in report.predict_ids.get(who, [])}
            rows = {row.request_id for row in server.usage_rows()}
            alive = server.proc.poll() is None
        finally:
            server.stop()

    per_operation: Counter[str] = Counter()
    for label, n in report.cases.items():
        per_operation[label.split(" ", 1)[1]] += n
    print(f"\n{report.summary()}")
    print("cases per operation (all identities):")
    for op in report.operations:
        print(f"  {op}: {per_operation[op]}")
    usage_ok = rows == keyed
    print(
        f"usage rows: {len(rows)} for {len(keyed)} keyed predict requests "
        f"({'equal' if usage_ok else 'NOT equal'}); server {'alive' if alive else 'DIED'}"
    )
    if report.failures:
        print(f"\n{len(report.failures)} distinct failures:\n\n{report.failure_text(limit=100)}")
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps(
                {
                    "run": str(args.run),
                    "operations": report.operations,
                    "cases": report.total,
                    "cases_per_operation": dict(per_operation),
                    "statuses": {str(k): v for k, v in sorted(report.statuses.items())},
                    "failures": report.failures,
                    "usage_rows_equal_keyed_predicts": usage_ok,
                    "seconds": round(report.seconds, 1),
                    "examples": args.examples,
                    "seed": args.seed,
                },
                indent=2,
            ),
        )
    return 0 if not report.failures and usage_ok and alive else 1


if __name__ == "__main__":
    sys.exit(main())
