"""Shared fixtures: a tiny random BERT saved as a local model folder, and small labelled CSVs.

The tiny model (2 layers, hidden 32) has the bundled MiniLM tokenizer, so ``model.name=<folder>``
trains in seconds on a CPU; only the integration tests load the real bundled weights. Tests never
touch the network: ``HF_HUB_OFFLINE`` is set before anything imports ``huggingface_hub``.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import random
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Three classes, each with words no other class uses, so even a 2-layer random BERT learns them.
CLASS_WORDS = {
    "sports": ["football", "tennis", "goal", "match", "team", "score", "player", "league"],
    "food": ["pizza", "bread", "cheese", "soup", "salad", "dinner", "recipe", "kitchen"],
    "weather": ["rain", "snow", "sunny", "storm", "cloud", "wind", "forecast", "cold"],
}
FILLER = ["the", "a", "today", "really", "was", "about", "my", "very", "new", "and", "this", "of"]


def make_texts(label: str, n: int, seed: int) -> list[str]:
    """``n`` short sentences for ``label``: two or three class words among filler words."""
    rng = random.Random(f"{label}-{seed}")
    texts = []
    for _ in range(n):
        words = rng.sample(CLASS_WORDS[label], rng.randint(2, 3)) + rng.sample(FILLER, rng.randint(2, 4))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts


def write_labelled_csv(path: Path, per_class: int, seed: int) -> Path:
    import pandas as pd

    rows = [{"text": t, "label": label} for label in CLASS_WORDS for t in make_texts(label, per_class, seed)]
    pd.DataFrame(rows).sample(frac=1.0, random_state=seed).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """The tiny model gains nothing from threads, and on a busy 2-core machine two threads per
    process oversubscribe the cores and make each step ~30x slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a random 2-layer BERT (safetensors) and the bundled tokenizer.

    Saved as a bare ``BertModel``, like a pre-trained encoder: every classifier built from it gets
    a fresh head.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tunelab.models import resolve_model

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("minilm-l6").path))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    return folder


@pytest.fixture(scope="session")
def labelled_csvs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(train.csv, test.csv)``: 3 classes (sports, food, weather), 20 and 8 rows per class."""
    folder = tmp_path_factory.mktemp("data")
    train = write_labelled_csv(folder / "train.csv", per_class=20, seed=1)
    test = write_labelled_csv(folder / "test.csv", per_class=8, seed=2)
    return train, test


@pytest.fixture
def train_csv(labelled_csvs: tuple[Path, Path]) -> Path:
    return labelled_csvs[0]


@pytest.fixture
def test_csv(labelled_csvs: tuple[Path, Path]) -> Path:
    return labelled_csvs[1]


@pytest.fixture
def text_maker():
    """``make_texts(label, n, seed)``: sentences of ``label``'s distinctive words (see CLASS_WORDS)."""
    return make_texts


@pytest.fixture
def class_names() -> list[str]:
    return sorted(CLASS_WORDS)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (public datasets, never copied into it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    # transformers' own deprecation notice, raised inside peft/transformers on every LoRA forward.
    config.addinivalue_line("filterwarnings", "ignore:.*is_gradient_checkpointing.*:FutureWarning")
