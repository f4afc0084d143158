"""Support bot benchmark on BANKING77: answer, look up or hand off, with intents the model never saw.

The 77 intents are split with a seed: 15 are unknown and never trained on (5 supply the
out-of-scope rows of the dev file the thresholds are tuned on, the other 10 the out-of-scope rows
of the test set, so the test's unknown intents are unseen even by the tuning), 45 keep their
answer template from examples/support/banking77/answers.yaml, and 17 are covered only by their
knowledge passages (examples/support/banking77/knowledge.md, where the 15 unknown intents'
passages are dropped). The intent model is trained on the 62 known intents (configs/banking77.yaml's
recipe, in a ``tunelab train`` subprocess) on BANKING77's training rows minus a stratified 10% dev
split; the bot is built (calibrated on that dev split), tuned on dev with its out-of-scope rows to
a target precision, and scored once on the test set: where messages go (answer, knowledge,
hand-off), the accuracy of each path, the hand-off rate of unknown and of known intents, ECE
before and after calibration, the follow-up conversations with and without context, and
messages/s through ``POST /v1/apps/support/{bot}/messages`` at 16 concurrent clients.

    .venv/bin/python benchmarks/support_bot.py --prepare-only        # write the split's files, no training
    .venv/bin/python benchmarks/support_bot.py --limit 20 --set train.epochs=1 --seconds 10   # quick check
    .venv/bin/python benchmarks/support_bot.py --json support_bot.json   # the full benchmark
    .venv/bin/python benchmarks/support_bot.py --run runs/benchmarks/bench-support-bot-N --target handoff=0.10
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import serving  # benchmarks/bench_common.py

from tunelab.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "banking77"
EXAMPLES = ROOT / "examples" / "support" / "banking77"
OOS = "oos"
ANCHORS = {
    "BERT + confidence threshold, CLINC150": "96.2% in-scope accuracy at 52.3% out-of-scope recall",
    "Rasa fallback": "an untuned confidence threshold (0.3 by default)",
}
TARGET = {"accuracy_answered": 0.97, "oos_handoff": 0.70}

Row = tuple[str, str]  # (text, label)
PARTS = ("unknown_dev", "unknown_test", "knowledge_only", "templated")


@dataclass(frozen=True)
class IntentSplit:
    """Which intents play which part; every tuple sorted, the four disjoint."""

    unknown_dev: tuple[str, ...]  # never trained on; their training rows are dev's out-of-scope rows
    unknown_test: tuple[str, ...]  # never trained on, never tuned on; the test's out-of-scope rows
    templated: tuple[str, ...]  # known, with an answer template
    knowledge_only: tuple[str, ...]  # known, answered only through their knowledge passages

    @property
    def known(self) -> tuple[str, ...]:
        """The intents the model is trained on."""
        return tuple(sorted(self.templated + self.knowledge_only))

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(sorted(self.unknown_dev + self.unknown_test))


def split_intents(
    intents: list[str],
    *,
    seed: int = 0,
    unknown_dev: int = 5,
    unknown_test: int = 10,
    knowledge_only: int = 17,
) -> IntentSplit:
    """Shuffle the intent names with ``seed`` and cut them into the four parts (the rest templated).

    The names are sorted first, so the split depends on the set of intents and the seed only.
    """
    names = sorted(set(intents))
    if len(names) <= unknown_dev + unknown_test + knowledge_only:
        held = unknown_dev + unknown_test + knowledge_only
        raise ValueError(f"{len(names)} intents: too few to hold {held} out and keep one with a template")
    order = random.Random(seed).sample(names, len(names))
    a, b, c = unknown_dev, unknown_dev + unknown_test, unknown_dev + unknown_test + knowledge_only
    return IntentSplit(
        unknown_dev=tuple(sorted(order[:a])),
        unknown_test=tuple(sorted(order[a:b])),
        knowledge_only=tuple(sorted(order[b:c])),
        templated=tuple(sorted(order[c:])),
    )


@dataclass(frozen=True)
class RowSplit:
    """The rows each stage sees; unknown intents' rows carry the label ``OOS``."""

    train: list[Row]  # known intents only
    dev: list[Row]  # held out of train (known) + out-of-scope rows of the dev-unknown intents
    test: list[Row]  # known intents' test rows + out-of-scope rows of the test-unknown intents

    @property
    def dev_known(self) -> list[Row]:
        return [r for r in self.dev if r[1] != OOS]

    @property
    def test_known(self) -> list[Row]:
        return [r for r in self.test if r[1] != OOS]

    def counts(self) -> dict[str, int]:
        return {
            "train": len(self.train),
            "dev_known": len(self.dev_known),
            "dev_oos": len(self.dev) - len(self.dev_known),
            "test_known": len(self.test_known),
            "test_oos": len(self.test) - len(self.test_known),
        }


def _by_label(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row[1], []).append(row)
    return out


def _cap(rows: list[Row], per_label: int | None, rng: random.Random) -> list[Row]:
    """At most ``per_label`` rows of each label, sampled with ``rng``, in label then input order."""
    if per_label is None:
        return list(rows)
    out: list[Row] = []
    for _label, group in sorted(_by_label(rows).items()):
        picked = sorted(rng.sample(range(len(group)), min(per_label, len(group))))
        out.extend(group[i] for i in picked)
    return out


def split_rows(
    train_rows: list[Row],
    test_rows: list[Row],
    intents: IntentSplit,
    *,
    dev_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
) -> RowSplit:
    """Cut BANKING77's rows into the benchmark's train, dev and test sets.

    Dev holds a stratified ``dev_fraction`` of the known intents' training rows (scikit-learn's
    ``train_test_split``) and out-of-scope rows from the dev-unknown intents' training rows, as
    many relative to its known rows as the test set has (10 x 40 : 62 x 40), taken evenly from the
    5 intents. The test-unknown intents' training rows and the dev-unknown intents' test rows are
    not used at all.

    Args:
        limit: a quick check: at most this many training rows and a quarter as many test rows per
            intent (at least 10, so that every intent keeps a dev row).
    """
    from sklearn.model_selection import train_test_split

    if limit is not None and limit < 10:
        raise ValueError("limit: at least 10 rows per intent (each intent needs a dev row)")
    rng = random.Random(seed)
    train_rows = _cap(train_rows, limit, rng)
    test_rows = _cap(test_rows, None if limit is None else max(limit // 4, 2), rng)
    known, unknown_dev, unknown_test = set(intents.known), set(intents.unknown_dev), set(intents.unknown_test)
    known_train = [r for r in train_rows if r[1] in known]
    train, dev_known = train_test_split(
        known_train, test_size=dev_fraction, stratify=[r[1] for r in known_train], random_state=seed
    )
    test_known = [r for r in test_rows if r[1] in known]
    test_oos = [(text, OOS) for text, label in test_rows if label in unknown_test]
    n_dev_oos = round(len(dev_known) * len(test_oos) / max(len(test_known), 1))
    # Round-robin over the dev-unknown intents' shuffled rows: the same number from each.
    groups = sorted(_by_label(train_rows).items())
    pools = [rng.sample(group, len(group)) for label, group in groups if label in unknown_dev]
    dev_oos: list[Row] = []
    while len(dev_oos) < n_dev_oos and any(pools):
        for pool in pools:
            if pool and len(dev_oos) < n_dev_oos:
                dev_oos.append((pool.pop()[0], OOS))
    return RowSplit(train=list(train), dev=[*dev_known, *dev_oos], test=[*test_known, *test_oos])


def read_rows(path: Path) -> list[Row]:
    """BANKING77's ``text,category`` CSV (quoted newlines inside texts: a real CSV reader, stripped)."""
    with path.open(encoding="utf-8", newline="") as f:
        return [(row["text"].strip(), row["category"]) for row in csv.DictReader(f) if row["text"].strip()]


def write_rows(path: Path, rows: list[Row]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def knowledge_sections(text: str) -> list[tuple[str, str | None, str]]:
    """The ``## question`` sections of a knowledge file: (title, intent tag or None, the section's text)."""
    sections = []
    for chunk in re.split(r"(?m)^(?=## )", text):
        if not chunk.startswith("## "):
            continue
        title = chunk.splitlines()[0][3:].strip()
        tag = re.search(r"(?m)^intent:\s*(\S+)\s*$", chunk)
        sections.append((title, tag.group(1) if tag else None, chunk))
    return sections


def subset_examples(intents: IntentSplit, work: Path) -> tuple[Path, Path, dict[str, str]]:
    """The benchmark's answers (templated intents only) and knowledge (no unknown intent's passages).

    Returns the two files and each kept passage title's intent, to score the knowledge path.
    """
    import yaml

    answers = yaml.safe_load((EXAMPLES / "answers.yaml").read_text(encoding="utf-8"))
    answers["intents"] = {k: v for k, v in answers["intents"].items() if k in set(intents.templated)}
    answers_path = work / "answers.yaml"
    answers_path.write_text(yaml.safe_dump(answers, sort_keys=False, allow_unicode=True, width=1000), "utf-8")
    drop = set(intents.unknown)
    sections = knowledge_sections((EXAMPLES / "knowledge.md").read_text(encoding="utf-8"))
    kept = [s for s in sections if s[1] not in drop]
    knowledge_path = work / "knowledge.md"
    knowledge_path.write_text("# Help centre\n\n" + "".join(s[2].rstrip() + "\n\n" for s in kept), "utf-8")
    return answers_path, knowledge_path, {title: tag for title, tag, _ in kept if tag}


def prepare(data: Path, work: Path, *, seed: int, limit: int | None) -> dict[str, Any]:
    """Write every input file of the benchmark into ``work``."""
    train_rows, test_rows = read_rows(data / "train.csv"), read_rows(data / "test.csv")
    intents = split_intents(sorted({label for _, label in train_rows}), seed=seed)
    rows = split_rows(train_rows, test_rows, intents, seed=seed, limit=limit)
    files = {name: work / f"{name}.csv" for name in ("train", "dev", "dev_known", "test", "test_known")}
    for name, part in [("train", rows.train), ("dev", rows.dev), ("dev_known", rows.dev_known),
                       ("test", rows.test), ("test_known", rows.test_known)]:  # fmt: skip
        write_rows(files[name], part)
    answers, knowledge, passage_intents = subset_examples(intents, work)
    return {"intents": intents, "rows": rows, "files": files, "answers": answers, "knowledge": knowledge,
            "passage_intents": passage_intents}  # fmt: skip


def cli(*args: str) -> None:
    """One ``tunelab`` command in a subprocess (its own memory and logs); a failed one exits with one
    line naming it (``tunelab app support build``), not a traceback: it printed its own error above."""
    try:
        subprocess.run([sys.executable, "-m", "tunelab.cli.main", *args], check=True)
    except subprocess.CalledProcessError as exc:
        what = " ".join(args[:3]) if args[0] == "app" else args[0]
        sys.exit(f"tunelab {what}: failed (exit {exc.returncode}); see the error above")


def train(files: dict[str, Path], overrides: list[str], out: Path) -> Path:
    """configs/banking77.yaml's recipe on the 62 known intents; the run's test split: their test rows."""
    name = f"bench-support-bot-{int(time.time())}"
    cli("train", str(ROOT / "configs" / "banking77.yaml"), f"data.train={files['train']}",
        f"data.test={files['test_known']}", "data.label_column=label", "data.dev_size=0",
        f"name={name}", f"output_dir={out}", *overrides, "--quiet")  # fmt: skip
    return out / name


def trained_file(run_dir: Path) -> str | None:
    """The ``data.train`` a run's config.json names (None: no config.json or no such field).

    ``--run`` reuses a run trained on ``support-bot-data-{limit}-{seed}/train.csv``: its labels
    depend on ``--seed`` alone, so a ``--limit 20`` run passed them for the full benchmark, whose dev
    split then held that run's training rows.
    """
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8")).get("data")
    train = data.get("train") if isinstance(data, dict) else None
    return train if isinstance(train, str) else None


def reply_kinds(replies: list[Any], rows: list[Row], passage_intents: dict[str, str]) -> dict[str, Any]:
    """Where ``rows`` went and how often each path was right (fractions; ``None`` where nothing went)."""
    kinds = Counter(r.kind for r in replies)
    n = len(rows)
    answers = [(r, label) for r, (_, label) in zip(replies, rows, strict=True) if r.kind == "answer"]
    found = [(r, label) for r, (_, label) in zip(replies, rows, strict=True) if r.kind == "knowledge"]
    answers_right = sum(r.intent == label for r, label in answers)
    found_right = sum(top_passage_intent(r, passage_intents) == label for r, label in found)

    def share(k: int, of: int) -> float | None:
        return round(k / of, 4) if of else None

    return {
        "rows": n,
        "answer": share(kinds["answer"], n),
        "knowledge": share(kinds["knowledge"], n),
        "handoff": share(kinds["handoff"], n),
        "answer_accuracy": share(answers_right, len(answers)),
        "knowledge_accuracy": share(found_right, len(found)),
        "answered_accuracy": share(answers_right + found_right, len(answers) + len(found)),
    }


def top_passage_intent(reply: Any, passage_intents: dict[str, str]) -> str | None:
    """The intent tag of a knowledge reply's best passage, found by its title (None: no tag)."""
    return passage_intents.get(reply.passages[0]["title"]) if reply.passages else None


def served_intent(reply: Any, passage_intents: dict[str, str]) -> str | None:
    """The intent a reply serves: a template's intent, or the tag of the best passage it shows."""
    return top_passage_intent(reply, passage_intents) if reply.kind == "knowledge" else reply.intent


def load_bot(folder: Path) -> Any:
    """The built bot (botcore's ``Bot``), imported here only: the rest of the file needs no bot."""
    from tunelab.apps.support.bot import Bot

    return Bot.load(folder)


def summarise(
    replies: list[Any], test: list[Row], intents: IntentSplit, passage_intents: dict[str, str]
) -> dict[str, Any]:
    """The test set's replies per group of intents, the out-of-scope recall, and the answer rate."""

    def part(keep: set[str]) -> dict[str, Any]:
        picked = [(r, row) for r, row in zip(replies, test, strict=True) if row[1] in keep]
        return reply_kinds([r for r, _ in picked], [row for _, row in picked], passage_intents)

    oos = part({OOS})
    # What a user sees: every answered message of the test set, unknown intents' ones all wrong.
    right = sum(
        served_intent(r, passage_intents) == label
        for r, (_, label) in zip(replies, test, strict=True)
        if r.kind != "handoff" and label != OOS
    )
    answered = sum(r.kind != "handoff" for r in replies)
    return {
        "known": part(set(intents.known)),
        "templated": part(set(intents.templated)),
        "knowledge_only": part(set(intents.knowledge_only)),
        "unknown": oos,
        "oos_recall": oos["handoff"],
        "answer_rate": round(answered / len(replies), 4) if replies else None,
        "precision_all_answered": round(right / answered, 4) if answered else None,
    }


def score(bot_dir: Path, run_dir: Path, prepared: dict[str, Any]) -> dict[str, Any]:
    """The test set through ``Bot.reply_many`` (in process), and ECE of the intent model before/after."""
    import numpy as np

    import tunelab
    from tunelab.evaluate.calibration import calibrated_probabilities as probs
    from tunelab.evaluate.calibration import expected_calibration_error as ece

    bot = load_bot(bot_dir)
    rows: RowSplit = prepared["rows"]
    intents: IntentSplit = prepared["intents"]
    start = time.perf_counter()
    replies = []
    for i in range(0, len(rows.test), 256):
        replies.extend(bot.reply_many([text for text, _ in rows.test[i : i + 256]]))
    seconds = time.perf_counter() - start
    result = summarise(replies, rows.test, intents, prepared["passage_intents"])
    result["in_process_messages_per_s"] = round(len(replies) / seconds, 1)
    # ECE on the known test rows: raw softmax against the temperature the bot was built with.
    predictor = tunelab.load(run_dir)
    names = predictor.labels.names
    texts = [text for text, _ in rows.test_known]
    labels = np.array([names.index(label) for _, label in rows.test_known])
    logits = predictor.logits(texts)  # (N, 62)
    temperature = read_temperature(bot_dir)
    result["temperature"] = temperature
    result["ece_before"] = round(ece(probs(logits, 1.0), labels), 4)
    result["ece_after"] = round(ece(probs(logits, temperature), labels), 4)
    result["intent_accuracy"] = round(float((logits.argmax(axis=1) == labels).mean()), 4)
    calibration = bot_dir / "calibration.json"
    if calibration.is_file():
        result["calibration_dev"] = json.loads(calibration.read_text(encoding="utf-8"))
    result["followups"] = followups(bot, intents, prepared["passage_intents"])
    return result


def read_temperature(bot_dir: Path) -> float:
    """The fitted temperature: calibration.json, else bot.yaml (both written by ``support build``)."""
    import yaml

    calibration = bot_dir / "calibration.json"
    data = json.loads(calibration.read_text(encoding="utf-8")) if calibration.is_file() else {}
    if "temperature" in data:
        return float(data["temperature"])
    return float(yaml.safe_load((bot_dir / "bot.yaml").read_text(encoding="utf-8"))["temperature"])


def read_followups(path: Path = EXAMPLES / "followups.jsonl") -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def followups(bot: Any, intents: IntentSplit, passage_intents: dict[str, str]) -> dict[str, Any]:
    """The hand-written follow-ups' last turns, alone and with the earlier turns as history.

    A reply resolves right when the intent it serves (``served_intent``; for a hand-off, its best
    candidate) is the expected one. Only conversations whose expected intent the model was trained
    on can resolve; the others are counted apart (a hand-off is the right outcome for them).
    """
    convs = read_followups()
    last = [c["turns"][-1] for c in convs]
    alone = bot.reply_many(last)
    context = bot.reply_many(last, [c["turns"][:-1] for c in convs])
    known = set(intents.known)
    mask = [c["intent"] in known for c in convs]

    def right(replies: list[Any]) -> dict[str, int]:
        picked = [(r, c) for r, c, m in zip(replies, convs, mask, strict=True) if m]
        served = [(served_intent(r, passage_intents) == c["intent"], r.kind) for r, c in picked]
        return {
            "intent_right": sum(ok for ok, _ in served),
            "answered_right": sum(ok and kind != "handoff" for ok, kind in served),
        }

    return {
        "conversations": len(convs),
        "known_intent": sum(mask),
        "without_context": right(alone),
        "with_context": right(context),
        "used_context": sum(r.used_context for r in context),
        "unknown_handed_off_with_context": sum(
            r.kind == "handoff" for r, m in zip(context, mask, strict=True) if not m
        ),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_load(
    run_dir: Path, bot_dir: Path, texts: list[str], *, clients: int, seconds: float
) -> dict[str, Any]:
    """Messages/s through ``POST /v1/apps/support/{bot}/messages``: ``tunelab serve --bot`` in a subprocess.

    A fresh SQLite store in a temporary folder holds one key, created with the keys API before the
    server starts. Each client sends one message after another, a new conversation every 3
    messages (so follow-ups carry history). Usage rows are matched with the requests sent.
    """
    from tunelab.serve.store import open_store

    data_dir = Path(tempfile.mkdtemp(prefix="support-bot-bench-"))
    route = f"/v1/apps/support/{bot_dir.name}/messages"
    # The run is also named as a model: `tunelab serve` takes one or more models besides --bot.
    with serving([f"intents={run_dir}", "--bot", str(bot_dir)], data_dir) as (url, token):
        out = asyncio.run(_load(url, route, token, texts, clients=clients, seconds=seconds))
    with open_store(None, data_dir) as store:
        ids = [row.request_id for row in store.usage(key_name="bench")]
    n = sum(out["statuses"].values())
    ordered = sorted(out["latencies"])

    def pct(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else math.nan

    return {
        "clients": clients,
        "seconds": round(out["wall"], 1),
        "messages": n,
        "messages_per_s": round(out["statuses"].get("200", 0) / out["wall"], 1),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "errors": {k: v for k, v in out["statuses"].items() if k != "200"},
        "kinds": dict(out["kinds"]),
        "usage_rows": len(ids),
        "usage_rows_match": sorted(ids) == sorted(out["ids"]),
    }


async def _load(
    url: str, route: str, token: str, texts: list[str], *, clients: int, seconds: float
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    sent_ids: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        for i in range(4):  # warm-up, outside the measurement (its usage rows are counted too)
            r = await client.post(route, json={"conversation_id": f"warm-{i}", "text": texts[i]})
            sent_ids.append(r.headers.get("x-request-id", ""))
        start = time.perf_counter()
        end = start + seconds

        async def one_client(i: int) -> None:
            rng = random.Random(i)
            k = 0
            while time.perf_counter() < end:
                body = {"conversation_id": f"bench-{i}-{k // 3}", "text": rng.choice(texts)}
                k += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(route, json=body)
                    statuses[str(r.status_code)] += 1
                    if r.headers.get("x-request-id"):
                        sent_ids.append(r.headers["x-request-id"])
                    if r.status_code == 200:
                        kinds[r.json().get("kind", "?")] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(one_client(i) for i in range(clients)))
        wall = time.perf_counter() - start
    return {"latencies": latencies, "statuses": statuses, "kinds": kinds, "ids": sent_ids, "wall": wall}


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


ROW = "{:<26} {:>5} {:>7} {:>7} {:>8} {:>9} {:>10} {:>12}"


def report(result: dict[str, Any]) -> None:
    """The table, the anchors and whether the issue's target holds (also stored in ``result``)."""
    s, rows = result["test"], result["rows"]
    print(f"\nSupport bot on BANKING77 (seed {result['seed']}, tuned to {result['target']} on dev): "
          f"{rows['test_known']} known-intent, {rows['test_oos']} unknown-intent test messages")  # fmt: skip
    print(
        ROW.format(
            "messages", "rows", "answer", "knowl.", "handoff", "ans. acc", "knowl. acc", "answered acc"
        )
    )
    parts = [("known intents", "known"), ("  with a template", "templated"),
             ("  knowledge only", "knowledge_only"), ("unknown intents", "unknown")]  # fmt: skip
    for label, key in parts:
        p = s[key]
        shares = [pct(p[k]) for k in ("answer", "knowledge", "handoff")]
        accuracies = [pct(p[k]) for k in ("answer_accuracy", "knowledge_accuracy", "answered_accuracy")]
        print(ROW.format(label, p["rows"], *shares, *accuracies))
    print(f"answer rate (all test messages) {pct(s['answer_rate'])}; precision of all answered messages, "
          f"unknown intents included, {pct(s['precision_all_answered'])}")  # fmt: skip
    print(f"intent model accuracy on known test rows {pct(s['intent_accuracy'])}; ECE {s['ece_before']:.4f} "
          f"before, {s['ece_after']:.4f} after calibration (T = {s['temperature']:.3f})")  # fmt: skip
    f = s["followups"]
    alone, context = f["without_context"], f["with_context"]
    print(f"follow-ups, {f['known_intent']} of {f['conversations']} with a known intent: right intent "
          f"{alone['intent_right']} without context, {context['intent_right']} with (answered and right: "
          f"{alone['answered_right']} / {context['answered_right']})")  # fmt: skip
    if "serve" in result:
        v = result["serve"]
        print(f"HTTP: {v['messages_per_s']} messages/s at {v['clients']} clients, p50 {v['p50_ms']} ms, "
              f"p95 {v['p95_ms']} ms, errors {sum(v['errors'].values())}, "
              f"usage rows match: {v['usage_rows_match']}")  # fmt: skip
    for name, value in ANCHORS.items():
        print(f"anchor: {name}: {value}")
    acc, oos = s["known"]["answered_accuracy"], s["oos_recall"]
    holds = bool(acc and oos and acc >= TARGET["accuracy_answered"] and oos >= TARGET["oos_handoff"])
    print(f"target: >= {TARGET['accuracy_answered']:.0%} accuracy of answered known-intent messages at "
          f">= {TARGET['oos_handoff']:.0%} of unknown-intent messages handed off: {pct(acc)} at "
          f"{pct(oos)} -> {'holds' if holds else 'does not hold'}")  # fmt: skip
    result["target_holds"] = holds


def save(result: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        atomic_write_json(path, result)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DATA), help="folder with BANKING77's train.csv and test.csv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the intent split and the dev split")
    parser.add_argument("--limit", type=int, help="quick check: at most N train, N/4 test rows per intent")
    parser.add_argument("--target", default="precision=0.97", help="tune target (default precision=0.97)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="training config overrides")
    parser.add_argument("--run", help="reuse this trained run instead of training: one this script "
                        "trained with the same --seed and --limit (checked: its data.train)")  # fmt: skip
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--seconds", type=float, default=30, help="length of the HTTP load (default 30)")
    parser.add_argument("--no-serve", action="store_true", help="skip the HTTP measurement")
    parser.add_argument("--prepare-only", action="store_true", help="write the split's files and stop")
    parser.add_argument("--out", default=str(ROOT / "runs" / "benchmarks"), help="where runs and bots go")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE (after each stage)")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 10:  # split_rows' rule: each intent needs a dev row
        parser.error("--limit: give at least 10 rows per intent (each intent needs a dev row)")
    data = Path(args.data)
    if not (data / "train.csv").is_file() or not (data / "test.csv").is_file():
        sys.exit(f"BANKING77 not found at {data}: this benchmark reads ../shared/data/banking77")
    out = Path(args.out)
    work = out / f"support-bot-data-{args.limit or 'all'}-{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    prepared = prepare(data, work, seed=args.seed, limit=args.limit)
    intents: IntentSplit = prepared["intents"]
    result: dict[str, Any] = {
        "seed": args.seed,
        "limit": args.limit,
        "target": args.target,
        "rows": prepared["rows"].counts(),
        "intents": {k: list(getattr(intents, k)) for k in PARTS},
        "work": str(work),
    }
    json_path = Path(args.json) if args.json else None
    if args.prepare_only:
        print(json.dumps(result, indent=2))
        return
    files, timings = prepared["files"], {}
    t0 = time.perf_counter()
    run_dir = Path(args.run) if args.run else train(files, args.set, out)
    timings["train_s"] = round(time.perf_counter() - t0, 1)
    if args.run:
        trained_on = trained_file(run_dir)
        if trained_on is None or Path(trained_on).resolve() != files["train"].resolve():
            sys.exit(f"{run_dir}: trained on {trained_on}, not {files['train']} (this --seed and --limit's "
                     "training rows, whose dev split it must not have seen); train it again")  # fmt: skip
    labels = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))
    if sorted(labels.get("labels", [])) != sorted(intents.known):
        sys.exit(f"{run_dir}: its intents are not the 62 known intents of --seed {args.seed}; train it again")
    bot_dir = out / f"{run_dir.name}-bot-{int(time.time())}" / "b77"
    t0 = time.perf_counter()
    cli("app", "support", "build", "--run", str(run_dir), "--answers", str(prepared["answers"]),
        "--knowledge", str(prepared["knowledge"]), "--dev", str(files["dev_known"]),
        "--out", str(bot_dir))  # fmt: skip
    timings["build_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    cli("app", "support", "tune", str(bot_dir), "--dev", str(files["dev"]), "--target", args.target)
    timings["tune_s"] = round(time.perf_counter() - t0, 1)
    result.update(run=str(run_dir), bot=str(bot_dir), timings=timings)
    save(result, json_path)
    result["test"] = score(bot_dir, run_dir, prepared)
    save(result, json_path)
    if not args.no_serve:
        texts = [text for text, _ in prepared["rows"].test]
        result["serve"] = serve_load(run_dir, bot_dir, texts, clients=args.clients, seconds=args.seconds)
    report(result)
    save(result, json_path)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
