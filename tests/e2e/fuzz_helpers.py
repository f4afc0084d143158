"""Fuzz a running ``tunelab serve`` over its own OpenAPI schema with schemathesis.

Used by ``tests/e2e/test_fuzz.py`` (a bounded run) and ``benchmarks/fuzz_api.py`` (a longer one).
Every operation in ``/openapi.json`` is fuzzed once per identity (a key, an admin key, no key,
...) and per generation mode (data that fits the schema, and data that does not). Each answer is
checked against the schema: no 5xx, a documented status, a documented content type, a body that
matches the documented schema, the documented headers (WWW-Authenticate on 401, Retry-After on
429). On top of that, each identity gets what its key allows: without a key every ``/v1``
operation is refused, a plain key never passes an admin operation.

Failures are collected, not raised inside Hypothesis, so one run reports every distinct failure
with the curl command that reproduces it, and the number of cases is exact (no shrinking).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
AUTH_HEADERS = ("authorization", "x-api-key")
ADMIN_TAGS = ("keys (admin)",)
ADMIN_OPERATIONS = (
    ("POST", "/v1/models/{name}/versions"),
    ("POST", "/v1/models/{name}/activate"),
    ("DELETE", "/v1/models/{name}/versions/{version}"),
)
# Refused before the key is read: body too large (middleware) and malformed JSON (parsed first).
BEFORE_AUTH = (400, 413)


@dataclass(frozen=True)
class Identity:
    """Who sends the requests: ``headers`` carry its key (none for the anonymous identity)."""

    name: str
    headers: dict[str, str]
    admin: bool = False

    @property
    def keyed(self) -> bool:
        return bool(self.headers)


# The keys a fuzz run creates (``make_keys``); the limited one's 3rd valid predict is a 429.
FUZZ_KEYS: dict[str, dict[str, Any]] = {
    "fuzz-plain": {},
    "fuzz-admin": {"admin": True},
    "fuzz-limited": {"rate": "2/min", "quota": "100/day"},
}


def fuzz_identities(tokens: dict[str, str]) -> list[Identity]:
    """Plain, admin (its key in ``X-API-Key``), limited and anonymous, from ``FUZZ_KEYS``' tokens."""
    return [
        Identity("plain", {"Authorization": f"Bearer {tokens['fuzz-plain']}"}),
        Identity("admin", {"X-API-Key": tokens["fuzz-admin"]}, admin=True),
        Identity("limited", {"Authorization": f"Bearer {tokens['fuzz-limited']}"}),
        Identity("anonymous", {}),
    ]


def revokes_one_of(own: set[str]) -> Callable[[Any], bool]:
    """A ``protect`` predicate: the case revokes a key named (or with an id) in ``own``."""

    def revokes(case: Any) -> bool:
        return case.method.upper() == "DELETE" and (case.path_parameters or {}).get("name") in own

    return revokes


@dataclass
class FuzzReport:
    operations: list[str] = field(default_factory=list)
    cases: Counter[str] = field(default_factory=Counter)  # "identity METHOD /path" -> cases sent
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)  # label -> statuses
    failures: dict[str, str] = field(default_factory=dict)  # distinct failure -> how to reproduce
    predict_ids: dict[str, list[str]] = field(default_factory=dict)  # identity -> metered request ids
    skipped: Counter[str] = field(default_factory=Counter)  # cases left out by ``protect``
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{len(self.operations)} operations, {self.total} cases in {self.seconds:.1f} s, "
            f"{len(self.failures)} distinct failures; statuses {statuses}"
        )

    def failure_text(self, limit: int = 20) -> str:
        items = list(self.failures.items())[:limit]
        return "\n\n".join(f"{key}\n{how}" for key, how in items)


def _describe(exc: BaseException) -> list[str]:
    """One line per distinct check failure in ``exc`` (a schemathesis Failure or a group of them)."""
    if isinstance(exc, BaseExceptionGroup):
        return [line for sub in exc.exceptions for line in _describe(sub)]
    title = getattr(exc, "title", type(exc).__name__)
    message = getattr(exc, "message", str(exc))
    first = next((line for line in str(message).splitlines() if line.strip()), "")
    return [f"{title}: {first[:300]}" if first else str(title)]


def _is_admin_operation(method: str, path: str, tags: list[str] | None) -> bool:
    return (method, path) in ADMIN_OPERATIONS or any(t in ADMIN_TAGS for t in tags or [])


@dataclass(frozen=True)
class KnownCase:
    """A request known to be valid, sent as each identity ``repeat`` times beside the fuzzed ones.

    Generated data rarely passes every check the schema cannot state (a served model's name, a
    text that is not blank), so without these the model, the usage rows of answered requests and
    the rate and quota answers (429 with Retry-After) would go untested.
    """

    method: str
    path: str
    path_parameters: dict[str, str] = field(default_factory=dict)
    body: Any = None
    repeat: int = 1


def fuzz_api(
    base_url: str,
    identities: list[Identity],
    *,
    max_examples: int,
    seed: int = 0,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
    protect: Callable[[Any], bool] | None = None,
    known: dict[str, str] | None = None,
    known_cases: tuple[KnownCase, ...] = (),
    on_operation: Callable[[str, int], None] | None = None,
) -> FuzzReport:
    """Fuzz every operation of the server at ``base_url`` as each identity; see the module doc.

    Args:
        max_examples: cases per operation, identity and mode (Hypothesis ``max_examples``).
        seed: Hypothesis seed; the same seed and server state send the same cases.
        protect: ``protect(case) -> True`` leaves a case out (e.g. revoking the fuzzer's own keys).
        known: path parameters that name what exists, e.g. ``{"name": "topics"}``: each operation
            with such a parameter is fuzzed again with it fixed, or random names would only ever
            reach the 404 (the model, its versions and the quota would go untested).
        known_cases: valid requests sent as each identity too (see ``KnownCase``).
        on_operation: called with ``(label, cases)`` after each operation and identity (progress).
    """
    started = time.perf_counter()
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    fuzzer = _Fuzzer(base_url, FuzzReport(), requests.Session(), protect)
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzer.report.operations = [f"{op.method.upper()} {op.path}" for op in operations]
    for op in operations:
        method, path = op.method.upper(), op.path
        for who in identities:
            label = f"{who.name} {method} {path}"
            fixed = {k: v for k, v in (known or {}).items() if f"{{{k}}}" in path}
            variants = [{}, fixed] if fixed else [{}]
            for mode, path_parameters in [(m, v) for m in modes for v in variants]:
                strategy = op.as_strategy(generation_mode=mode, path_parameters=path_parameters or None)
                try:
                    fuzzer.generated(op, who, label, strategy, max_examples=max_examples, seed=seed)
                except hypothesis.errors.Unsatisfiable:
                    if mode is GenerationMode.POSITIVE:
                        raise
                    # Nothing in the operation can be made invalid (no parameters, no body).
            for kc in known_cases:
                if (kc.method.upper(), kc.path) == (method, path):
                    for _ in range(kc.repeat):
                        case = op.Case(
                            path_parameters=kc.path_parameters,
                            body=kc.body,
                            media_type="application/json" if kc.body is not None else None,
                        )
                        fuzzer.send(op, who, label, case)
            if on_operation is not None:
                on_operation(label, fuzzer.report.cases[label])
    fuzzer.report.seconds = time.perf_counter() - started
    return fuzzer.report


@dataclass
class _Fuzzer:
    base_url: str
    report: FuzzReport
    session: requests.Session
    protect: Callable[[Any], bool] | None

    def generated(
        self, op: Any, who: Identity, label: str, strategy: Any, *, max_examples: int, seed: int
    ) -> None:
        """Send ``max_examples`` cases drawn from ``strategy`` (fixed seed, no shrinking)."""

        @hypothesis.seed(seed)
        @hypothesis.settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=False,  # the seed above fixes the cases
            phases=(Phase.explicit, Phase.generate),  # no shrinking: failures are collected, not raised
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @hypothesis.given(case=strategy)
        def run(case: Any) -> None:
            self.send(op, who, label, case)

        run()

    def send(self, op: Any, who: Identity, label: str, case: Any) -> None:
        """Send one case as ``who`` and record its status and every check it fails."""
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in AUTH_HEADERS}
        case.headers = {**headers, **who.headers}
        if self.protect is not None and self.protect(case):
            self.report.skipped[label] += 1
            return
        response = case.call(base_url=self.base_url, session=self.session, timeout=60)
        report = self.report
        report.cases[label] += 1
        report.statuses[response.status_code] += 1
        report.by_operation.setdefault(label, Counter())[response.status_code] += 1
        metered = ("/predict", "/messages", "/documents", "/users/{user_id}", "/items", "/events")
        if op.path.endswith(metered):  # metered routes: a usage row each
            rid = (response.headers.get("x-request-id") or [""])[0]
            report.predict_ids.setdefault(who.name, []).append(rid)
        problems: list[str] = []
        try:
            case.validate_response(response, checks=CHECKS, headers=case.headers)
        except (AssertionError, BaseExceptionGroup) as exc:
            problems += _describe(exc)
        method, path = op.method.upper(), op.path
        problems += _access_problems(
            who,
            response.status_code,
            secured=bool(op.definition.raw.get("security")),
            admin_only=_is_admin_operation(method, path, op.definition.raw.get("tags")),
        )
        for problem in problems:
            key = f"[{label} -> {response.status_code}] {problem}"
            report.failures.setdefault(key, case.as_curl_command())


def _access_problems(who: Identity, status: int, *, secured: bool, admin_only: bool) -> list[str]:
    """What the identity's key should have made the server answer, and it did not."""
    if not secured or status in BEFORE_AUTH:
        return []
    if not who.keyed and status != 401:
        return [f"a request without a key was answered {status}, expected 401"]
    if who.keyed and admin_only and not who.admin and status != 403:
        return [f"a non-admin key on an admin operation was answered {status}, expected 403"]
    return []


__all__ = [
    "CHECKS",
    "FUZZ_KEYS",
    "FuzzReport",
    "Identity",
    "KnownCase",
    "fuzz_api",
    "fuzz_identities",
    "revokes_one_of",
]
