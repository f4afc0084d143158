"""The configs and sample data the README and `make demo` use load as they are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunelab.config import RunConfig
from tunelab.data import load_splits
from tunelab.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def at_repo_root():
    # Config paths are relative to where tunelab runs: the repository root, as in the README.
    before = Path.cwd()
    os.chdir(ROOT)
    yield
    os.chdir(before)


def test_demo_config_and_sample_load(at_repo_root) -> None:
    cfg = RunConfig.from_yaml(ROOT / "configs" / "demo.yaml")
    splits = load_splits(cfg.data)
    assert len(splits.labels.names) == 77
    assert len(splits.train) + len(splits.dev) == 77 * 30
    assert splits.test is not None and len(splits.test) == 77 * 10
    assert cfg.train.head_init == "probe"


def test_banking77_config_loads(at_repo_root, shared_data: Path) -> None:
    cfg = RunConfig.from_yaml(ROOT / "configs" / "banking77.yaml")
    splits = load_splits(cfg.data)
    assert len(splits.labels.names) == 77
    assert splits.dev is None and len(splits.train) == 10_003 and len(splits.test) == 3_080


def test_chnsenticorp_config_loads_every_review_intact(at_repo_root, shared_data: Path) -> None:
    """train.tsv is unquoted TSV and three reviews open with '"': read quoted, the first of them
    swallowed 454 rows into one text. Every row comes back as the file has it."""
    cfg = RunConfig.from_yaml(ROOT / "configs" / "chnsenticorp.yaml")
    splits = load_splits(cfg.data)
    assert splits.labels.names == ["0", "1"]
    assert len(splits.train) == 9_600 and len(splits.dev) == 1_200
    raw = (shared_data / "chnsenticorp" / "ChnSentiCorp" / "train.tsv").read_text(encoding="utf-8")
    texts = [line.split("\t")[1].strip() for line in raw.splitlines()[1:]]
    assert sorted(splits.train.texts) == sorted(texts)


def test_conll2003_config_loads(at_repo_root, shared_data: Path) -> None:
    cfg = RunConfig.from_yaml(ROOT / "configs" / "conll2003.yaml")
    assert cfg.data.task == "token_classification" and cfg.train.metric == "entity_f1"
    splits = get_task(cfg.data.task).load_splits(cfg.data)
    assert set(splits.labels.names) == {"O"} | {
        f"{p}-{t}" for t in ("LOC", "MISC", "ORG", "PER") for p in "BI"
    }
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (14_041, 3_250, 3_453)


def test_financial_phrasebank_config_reads_the_file_as_shipped(at_repo_root, shared_data: Path) -> None:
    """Latin-1 ``sentence@label`` lines: FinBERT's 20% test and 16% dev (20% of the rest) carved out."""
    cfg = RunConfig.from_yaml(ROOT / "configs" / "financial_phrasebank.yaml")
    assert cfg.train.metric == "accuracy" and cfg.train.patience is not None
    splits = load_splits(cfg.data)
    assert splits.labels.names == ["negative", "neutral", "positive"]
    assert len(splits.test) == 970 and len(splits.dev) == 776  # ceil(0.2 and 0.16 of 4,846 lines)
    assert len(splits.train) + len(splits.dev) + len(splits.test) == 4_846
    assert any("ä" in t or "ö" in t for t in splits.train.texts)  # Latin-1 read as Latin-1
