"""A task registered from outside tunelab (a plug-in, as docs/extending.md describes) through the
parts that read a task without naming it: the HTTP API's predict response, the registry's checks,
the CLI's printed scores and ``tunelab runs``, ``tunelab tasks``.

The toy task (texts labelled ``pos``/``neg``, scored by ``toy_acc``, results ``{"polarity",
"confidence"}``) is registered per test into a copy of the registry, so no other test sees it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from test_serve_app import FakeEncoded  # the server's stand-in encoded batch

import tunelab.tasks.registry as registry
from tunelab.cli.main import main
from tunelab.cli.output import headline_lines
from tunelab.errors import ConfigError
from tunelab.serve.app import ServedModel, create_app
from tunelab.serve.settings import ServeSettings
from tunelab.tasks import Task, available_tasks, register_task

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ToyData:
    texts: list[str]
    labels: list[int] | None
    source: str
    text_pairs: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, positions: list[int]) -> ToyData:
        labels = None if self.labels is None else [self.labels[i] for i in positions]
        return dataclasses.replace(self, texts=[self.texts[i] for i in positions], labels=labels)


class ToyResult(BaseModel):
    polarity: str
    confidence: float


def _read(path: Any, data: Any) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    return [r[data.text_column] for r in rows], [r[data.label_column] for r in rows]


class ToyTask(Task):
    """The smallest whole task: one label per text, softmax, its own metric and result schema."""

    name = "toy_polarity"
    family = "toy"
    description = "toy plug-in: pos/neg polarity"
    headline_keys = ("loss", "toy_acc")
    metrics = ("toy_acc", "loss")

    def load_splits(self, data: Any) -> Any:
        from tunelab.data.labels import LabelMap
        from tunelab.data.splits import Splits

        texts, names = _read(data.train, data)
        labels = LabelMap(sorted(set(names)), task=self.name)
        ids = [labels.id_of(n) for n in names]
        cut = max(1, len(texts) // 4)
        train = ToyData(texts[cut:], ids[cut:], str(data.train))
        dev = ToyData(texts[:cut], ids[:cut], f"{data.train} (dev)")
        test = self.read_labelled(data.test, data, labels, field="data.test") if data.test else None
        return Splits(train=train, dev=dev, test=test, labels=labels, notes=[])

    def read_labelled(self, path: Any, data: Any, labels: Any, *, field: str) -> ToyData:
        texts, names = _read(path, data)
        return ToyData(texts, [labels.id_of(n) for n in names], str(path))

    def encode(self, tokenizer: Any, dataset: Any, *, max_length: int, stride: int = 0) -> Any:
        from tunelab.data.encoding import encode_texts

        return encode_texts(tokenizer, dataset.texts, None, max_length=max_length, labels=dataset.labels)

    def encode_texts(
        self, tokenizer: Any, texts: Any, text_pairs: Any, *, max_length: int, stride: int = 0
    ) -> Any:
        from tunelab.data.encoding import encode_texts

        return encode_texts(tokenizer, texts, text_pairs, max_length=max_length)

    def batch_labels(self, enc: Any, indices: list[int], *, width: int, num_labels: int) -> Any:
        import torch

        return torch.tensor([enc.labels[i] for i in indices], dtype=torch.long)

    def build_model(self, path: Any, labels: Any, *, pooling: str, seed: int | None) -> Any:
        from tunelab.models import build_classifier

        return build_classifier(path, labels.names, "single_label_classification", pooling=pooling, seed=seed)

    def load_model(self, folder: Any) -> Any:
        from tunelab.models.classifier import load_classifier

        return load_classifier(folder, problem_type="single_label_classification")

    def loss(self, logits: Any, labels: Any, weights: Any, *, smoothing: float = 0.0) -> Any:
        import torch.nn.functional as F

        return F.cross_entropy(logits.float(), labels, weight=weights, label_smoothing=smoothing)

    def soft_targets(self, logits: Any) -> Any:
        return logits.softmax(-1)

    def score(self, logits: Any, enc: Any, labels: Any, *, threshold: float | None = None) -> Any:
        import numpy as np
        import torch
        import torch.nn.functional as F

        gold = np.asarray(enc.labels)
        loss = float(F.cross_entropy(torch.as_tensor(logits).float(), torch.as_tensor(gold)))
        accuracy = float((logits.argmax(-1) == gold).mean())
        # toy_margin: a number the task does not headline (the CLI printed every number it got)
        return {"loss": loss, "toy_acc": accuracy, "toy_margin": float(np.ptp(logits, axis=-1).mean())}, None

    def parity_metric(self, run_metric: str) -> str:
        return "toy_acc"

    def agreement(self, before: Any, after: Any, *, threshold: Any, enc: Any = None) -> float:
        return float((before.argmax(-1) == after.argmax(-1)).mean())

    def write_report(self, out_dir: Any, metrics: Any, **kw: Any) -> dict[str, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.md").write_text(json.dumps(metrics), encoding="utf-8")
        return {"report.md": out_dir / "report.md"}

    def decode(self, logits: Any, enc: Any, texts: Any, labels: Any, *, threshold: Any, top_k: int) -> Any:
        probs = logits.softmax(-1) if hasattr(logits, "softmax") else logits
        return [{"polarity": labels.names[int(p.argmax())], "confidence": float(p.max())} for p in probs]

    @property
    def result_schema(self) -> type[BaseModel]:
        return ToyResult


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the registry for the test, the original put back after it. The built-ins are loaded
    first: registered into the copy only, they would be missing from the original for good (their
    modules, once imported, never register again)."""
    available_tasks()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.fixture
def toy(own_registry: None) -> ToyTask:
    """The toy task, registered for one test."""
    return register_task(ToyTask())  # type: ignore[return-value]


# --- 1. the HTTP API answers with the plug-in's own results --------------------------------------


class ToyPredictor:
    """What the server reads of a loaded run, for the toy task (``pos`` for a text with "good")."""

    format = "torch"
    task_name = "toy_polarity"
    labels = SimpleNamespace(names=["neg", "pos"])
    run = SimpleNamespace(name="toy")

    def __init__(self, task: Task) -> None:
        self.task = task

    def encode(self, texts: list[str]) -> FakeEncoded:
        return FakeEncoded(list(texts))

    def predict_encoded(self, enc: Any, texts: list[str], *, top_k: int = 3, batch_size: int = 64) -> Any:
        return [{"polarity": "pos" if "good" in t else "neg", "confidence": 0.75} for t in enc.texts]


def test_served_plug_in_task_answers_with_its_own_result_schema(toy: ToyTask, tmp_path: Path) -> None:
    settings = ServeSettings(data_dir=tmp_path, db=None, require_keys=False, max_wait_ms=1)
    app = create_app(settings, [ServedModel("toy", "1", ToyPredictor(toy), "runs/toy")])
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/v1/models/toy/predict", json={"texts": ["a good film", "dull"]})
        assert r.status_code == 200, r.text  # was a 500: the response took the built-in result types only
        body = r.json()
        assert body["task"] == "toy_polarity"
        assert body["results"] == [
            {"polarity": "pos", "confidence": 0.75},
            {"polarity": "neg", "confidence": 0.75},
        ]
        # /docs still shows the built-in shapes, and only them
        spec = client.get("/openapi.json").json()
        results = spec["components"]["schemas"]["PredictResponse"]["properties"]["results"]
        assert {o["items"]["$ref"].rsplit("/", 1)[-1] for o in results["anyOf"]} == {
            "ClassificationResult",
            "EntityResult",
        }


# --- 2. a plug-in cannot take a registered name ---------------------------------------------------

# A fresh interpreter: the built-in tasks are not loaded yet, as in a plug-in imported first.
SHADOW = textwrap.dedent(
    """
    from pydantic import BaseModel
    from tunelab.errors import ConfigError
    from tunelab.tasks import Task, register_task

    class Result(BaseModel):
        x: int

    stubs = {hook: (lambda *a, **k: None) for hook in Task.__abstractmethods__}
    Shadow = type("Shadow", (Task,), {**stubs, "__module__": __name__, "name": "single_label", "family": "x",
                                      "metrics": ("acc",), "result_schema": property(lambda s: Result)})
    try:
        register_task(Shadow())
        print("registered")
    except ConfigError as exc:
        print("refused:", exc)
    """
)


def test_plug_in_cannot_replace_a_built_in_task() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SHADOW], capture_output=True, text=True, timeout=120, cwd=ROOT, check=True
    )
    out = done.stdout.strip()
    # It was registered, and every later lookup raised "already registered" inside tunelab's own import.
    assert out.startswith("refused:"), out
    assert "__main__.Shadow" in out and "tunelab.tasks.classification.task.ClassificationTask" in out


def test_a_second_plug_in_of_a_name_is_refused_naming_both(toy: ToyTask, one_line: Any) -> None:
    class Other(ToyTask):
        pass

    with pytest.raises(ConfigError) as exc:
        register_task(Other())
    text = one_line(exc)
    assert f"{__name__}.ToyTask" in text and "Other" in text and "'toy_polarity'" in text


# --- 5. the class attributes tunelab reads are checked when the task registers --------------------


class _Bad(ToyTask):
    name = "toy_bad"


@pytest.mark.parametrize(
    ("attribute", "value", "said"),
    [
        # metrics = ("toy_acc"), a str: train.metric auto was 't', and `tunelab tasks` listed letters
        ("metrics", "toy_acc", "metrics must be a non-empty tuple"),
        ("metrics", (), "metrics must be a non-empty tuple"),  # an IndexError at train.metric: auto
        ("name", "", "name must be a non-empty str"),
        ("output", "polarity", "output must be one of 'label', 'labels', 'entities'"),
        ("headline_keys", "toy_acc", "headline_keys must be a tuple"),
        ("result_schema", property(lambda self: dict), "result_schema must be a pydantic BaseModel subclass"),
    ],
)
def test_register_task_checks_the_class_attributes(
    attribute: str, value: Any, said: str, own_registry: None, one_line: Any
) -> None:
    bad = type("BadToy", (_Bad,), {"__module__": __name__, attribute: value})
    with pytest.raises(ConfigError) as exc:
        register_task(bad())
    text = one_line(exc)
    assert text.startswith(f"task plug-in {__name__}.BadToy: ") and said in text


def test_tasks_lists_the_others_past_a_broken_task(
    toy: ToyTask, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken(ToyTask):
        name = "a_broken_toy"  # listed first

    broken = register_task(Broken())
    monkeypatch.setattr(broken, "metrics", (), raising=False)  # changed after it registered
    assert main(["tasks"]) == 1
    out, err = capsys.readouterr()
    assert "single_label:" in out and "token_classification:" in out
    assert "toy_polarity: toy plug-in" in out and "toy_acc (auto, the default), loss" in out
    (note,) = err.strip().splitlines()
    assert note.startswith("a_broken_toy: cannot be listed (task plug-in ") and "Broken" in note


# --- 3. the CLI prints a plug-in's own scores -------------------------------------------------------


def test_headline_lines_use_the_tasks_own_metrics(toy: ToyTask) -> None:
    metrics = {"loss": 0.7, "toy_acc": 0.625, "split": "dev", "n": 8}
    assert headline_lines(metrics, task="toy_polarity") == ["  toy_acc      62.50%"]
    # its task not imported here (`tunelab eval` of a plug-in's run): its numbers, less loss and counts
    assert headline_lines(metrics, task="not_registered") == ["  toy_acc      62.50%"]
    assert headline_lines({"loss": 0.7, "mae": 3.25}) == ["  mae          3.25"]  # not a share: no %
    # built-in metrics print as before
    assert headline_lines({"loss": 0.5, "accuracy": 0.5, "macro_f1": 0.25, "threshold": 0.5}) == [
        "  accuracy     50.00%",
        "  macro_f1     25.00%",
    ]


def _write_polarity(path: Path, rows: int) -> Path:
    words = {"pos": ["good", "great", "lovely"], "neg": ["bad", "awful", "poor"]}
    lines = []
    for i in range(rows):
        label = "pos" if i % 2 else "neg"
        text = f"the film was {words[label][i % 3]} {words[label][(i + 1) % 3]}"
        lines.append(json.dumps({"text": text, "label": label}) + "\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_cli_train_and_runs_show_the_plug_ins_metric(
    toy: ToyTask,
    tiny_bert: Path,
    tiny_overrides: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train, test = _write_polarity(tmp_path / "train.jsonl", 24), _write_polarity(tmp_path / "test.jsonl", 8)
    runs = tmp_path / "runs"
    overrides = tiny_overrides(tiny_bert, train, test, runs, "data.task=toy_polarity", "name=toy", epochs=1)
    assert main(["train", *overrides]) == 0
    out = capsys.readouterr().out
    # Under "dev (6 rows):" and "test (8 rows):" came no line at all: the scores printed were built-in names.
    for split in ("dev", "test"):
        section = out.split(f"{split} (", 1)[1].splitlines()
        assert section[1].split()[0] == "toy_acc" and section[1].endswith("%"), out
        assert not section[2].startswith("  "), out  # its headline only, not toy_margin too

    assert main(["runs", "--dir", str(runs)]) == 0
    header, _, row = capsys.readouterr().out.splitlines()
    assert "score" in header  # each score column showed "-"
    assert row[header.index("score") :].startswith("toy_acc ")
    assert "%" in row[header.index("score") :].split()[1]

    # eval and train name the task to the printer: its own headline, not every number it returned
    assert main(["eval", str(runs / "toy")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:] if not line.startswith("report")] == ["toy_acc"]


def test_an_exported_artifact_is_not_credited_with_its_source_runs_dev_score() -> None:
    """An export copies its source's best_dev_metric; `tunelab runs` showed it as the artifact's
    own score (an int8 artifact credited with the unexported model's dev accuracy)."""
    from tunelab.cli.runs_cmd import _own_score

    best = {"best_dev_metric": {"accuracy": 0.91}, "task": "single_label"}
    # Both are dev scores (the best dev value, the export's own dev headline): marked as such.
    assert _own_score(best, {}, {}) == "accuracy 91.00% (dev)"
    assert _own_score({**best, "source_run": "runs/banking"}, {}, {}) == "-"
    exported = _own_score({**best, "source_run": "runs/banking"}, {"accuracy": 0.84}, {})
    assert exported == "accuracy 84.00% (dev)"
