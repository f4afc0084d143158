"""docs/extending.md stays true: every hook and field it names exists, and it names every one there is."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from tunelab.methods.registry import Method
from tunelab.tasks.base import Task

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "extending.md"


def section(title: str) -> str:
    """The text of the ``## <title>`` section, up to the next ``## `` heading."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def named(text: str) -> set[str]:
    """Identifiers in backticks at the start of table cells, ``name(...)`` or ``name``."""
    cells = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    return {m for cell in cells for m in re.findall(r"`([a-z_]+)(?:\(|`)", cell)}


def task_hooks() -> set[str]:
    return {n for n, _ in inspect.getmembers(Task) if not n.startswith("_")}


def test_the_task_table_names_real_hooks_and_every_abstract_one() -> None:
    text = section("The task contract")
    documented = named(text)
    assert documented, "no hooks found in the task table"
    assert documented <= task_hooks(), f"not on Task: {sorted(documented - task_hooks())}"
    assert Task.__abstractmethods__ <= documented, (
        f"abstract hooks missing from the table: {sorted(Task.__abstractmethods__ - documented)}"
    )
    optional = task_hooks() - Task.__abstractmethods__
    hooks = {n for n in optional if callable(getattr(Task, n))}
    mentioned = set(re.findall(r"`([a-z_]+)\(", text))
    assert hooks <= mentioned, f"optional hooks not mentioned: {sorted(hooks - mentioned)}"
    for attr in ("name", "family", "description", "headline_keys", "metrics"):
        assert f"`{attr}`" in text


def test_the_method_table_names_every_field() -> None:
    documented = named(section("The method contract"))
    fields = {f.name for f in dataclasses.fields(Method)}
    assert documented == fields, (
        f"extra: {sorted(documented - fields)}, missing: {sorted(fields - documented)}"
    )


@pytest.mark.parametrize(
    "path",
    [
        "src/tunelab/tasks/registry.py",
        "src/tunelab/methods/__init__.py",
        "src/tunelab/serve/schemas.py",
        "tests/unit/test_common_tasks_methods.py",
        "tests/unit/test_method_hooks.py",
        "tests/unit/test_tasks.py",
    ],
)
def test_the_files_it_points_to_exist(path: str) -> None:
    assert path in DOC.read_text(encoding="utf-8") and (ROOT / path).is_file()


def test_the_readme_links_it() -> None:
    assert "(docs/extending.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def documented_dataset_attributes() -> set[str]:
    """The names in the bullets of "What a task's datasets must provide" (``len`` for ``len(dataset)``)."""
    text = section("The task contract")
    start = text.index("### What a task's datasets must provide")
    part = text[start : text.index("\n### ", start + 1)]
    return set(re.findall(r"^- `([a-z_]+)", part, flags=re.MULTILINE))


def test_the_dataset_attributes_code_outside_the_tasks_reads_are_documented() -> None:
    """Evaluation, preflight, the predictor, resume fingerprints and ensembles read a task's datasets
    directly; a new task's datasets must have what they read."""
    documented = documented_dataset_attributes()
    assert {"texts", "text_pairs", "labels", "source", "len", "subset"} <= documented
    used: set[str] = set()
    for path in (
        "src/tunelab/evaluate/on_run.py",
        "src/tunelab/preflight.py",
        "src/tunelab/inference/predictor.py",
        "src/tunelab/train/data_fingerprint.py",
        "src/tunelab/ensembling/build.py",
    ):
        code = (ROOT / path).read_text(encoding="utf-8")
        used |= set(re.findall(r"\b(?:dataset|splits\.(?:train|dev|test))\.([a-z_]+)\b", code))
    assert used <= documented, f"read outside tunelab/tasks/ but not documented: {sorted(used - documented)}"


def test_both_built_in_dataset_classes_have_the_documented_attributes() -> None:
    from tunelab.data.dataset import Dataset
    from tunelab.tasks.token_classification.data import NerDataset
    from tunelab.tasks.token_classification.reading import Sentence

    ner = NerDataset(
        sentences=[Sentence(tokens=["EU"], tags=["B-ORG"], lines=[1], source="t.txt")],
        labels=[[0]],
        source="t.txt",
    )
    rows = Dataset(texts=["hi"], text_pairs=None, labels=[0], source="t.csv")
    for dataset in (ner, rows):
        assert dataclasses.is_dataclass(dataset) and "labels" in {f.name for f in dataclasses.fields(dataset)}
        for name in documented_dataset_attributes() - {"len", "subset"}:
            getattr(dataset, name)
        assert len(dataset) == 1
    assert len(ner.subset([0])) == 1 and len(rows.take([0])) == 1
