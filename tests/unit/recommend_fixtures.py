"""A tiny recommender world for the tests: 40 items in four genres, 15 users with clear tastes.

Each genre has words no other genre uses, so even a tiny random encoder tells them apart. Users
0-14 each love one genre (rating 5 on 7-9 of its items, in time order) and dislike a couple of
items of another genre (rating 1). Shared by the recommender's, the benchmark's and the service's
tests::

    from recommend_fixtures import write_world, config_dict
    paths = write_world(tmp_path)                       # items.csv, ratings.csv
    cfg = RecommendConfig.from_dict(config_dict(paths, encoder=tiny_bert))
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

GENRES = {
    "space": ["rocket", "galaxy", "alien", "planet", "astronaut", "orbit", "comet", "nebula"],
    "cooking": ["pizza", "bread", "soup", "cheese", "kitchen", "recipe", "baker", "salad"],
    "sports": ["football", "tennis", "goal", "league", "stadium", "coach", "match", "player"],
    "horror": ["ghost", "zombie", "haunted", "vampire", "curse", "crypt", "scream", "witch"],
}
ITEMS_PER_GENRE = 10
USERS = 15
DAY = 86_400
T0 = 1_600_000_000


def items_rows() -> list[dict[str, Any]]:
    rows = []
    for g, (genre, words) in enumerate(GENRES.items()):
        rng = random.Random(genre)
        for j in range(ITEMS_PER_GENRE):
            a, b, c = rng.sample(words, 3)
            rows.append(
                {
                    "item_id": f"{genre[:3]}{j}",
                    "title": f"The {a} and the {b}",
                    "genres": f"{genre}|{c}",
                    "n": g * ITEMS_PER_GENRE + j,
                }
            )
    return rows


def user_genre(u: int) -> str:
    return list(GENRES)[u % len(GENRES)]


def ratings_rows() -> list[dict[str, Any]]:
    rows = []
    genres = list(GENRES)
    for u in range(USERS):
        rng = random.Random(u)
        genre = user_genre(u)
        liked = rng.sample(range(ITEMS_PER_GENRE), 7 + u % 3)
        other = genres[(genres.index(genre) + 1) % len(genres)]
        disliked = rng.sample(range(ITEMS_PER_GENRE), 2)
        t = T0 + u * 3600
        for j in liked:
            t += DAY
            rows.append({"user": f"u{u}", "item": f"{genre[:3]}{j}", "rating": 5.0, "ts": t})
        for j in disliked:
            t += DAY // 2
            rows.append({"user": f"u{u}", "item": f"{other[:3]}{j}", "rating": 1.0, "ts": t})
    return sorted(rows, key=lambda r: r["ts"])


def write_world(folder: Path, *, fmt: str = "csv", unknown: int = 0) -> dict[str, Path]:
    """Write ``items.<fmt>`` and ``ratings.<fmt>`` (csv, jsonl or parquet) into ``folder``.

    ``unknown``: that many extra ratings naming items the items file lacks.
    """
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    items = pd.DataFrame(items_rows()).drop(columns="n")
    ratings = pd.DataFrame(ratings_rows())
    if unknown:
        extra = [{"user": "u0", "item": f"ghost-{i}", "rating": 5.0, "ts": T0 + i} for i in range(unknown)]
        ratings = pd.concat([ratings, pd.DataFrame(extra)], ignore_index=True)
    paths = {"items": folder / f"items.{fmt}", "ratings": folder / f"ratings.{fmt}"}
    for frame, path in ((items, paths["items"]), (ratings, paths["ratings"])):
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")), encoding="utf-8")
        else:
            frame.to_parquet(path, index=False)
    return paths


def config_dict(
    paths: dict[str, Path], *, encoder: str | Path = "minilm-l6", **sections: Any
) -> dict[str, Any]:
    """A config for the world: a fast text model (few pairs, short texts) and small CF."""
    cfg: dict[str, Any] = {
        "name": "tiny",
        "items": {
            "path": str(paths["items"]),
            "id_column": "item_id",
            "text_fields": ["title", "genres"],
            "list_separators": {"genres": "|"},
        },
        "interactions": {
            "path": str(paths["ratings"]),
            "user_column": "user",
            "item_column": "item",
            "time_column": "ts",
            "rating_column": "rating",
            "positive": "rating >= 4",
        },
        "model": {
            "base": str(encoder),
            "history": 3,
            "max_length": 64,
            "max_pairs": 48,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "device": "cpu",
        },
        "cf": {"factors": 8, "iterations": 5},
        "ranker": {"kind": "logistic", "negatives": 5, "hard_negatives": 2},
        "split": {"val_frac": 0.2, "min_positives": 5},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return cfg


def make_code_running_skops(path: Path, key: str, marker: Path) -> None:
    """Rewrite the skops file at ``path`` (a dict) so its entry ``key`` is built by calling
    ``os.mkdir(marker)``: what a crafted file's ``os.system`` would be, in skops's own format."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    schema = json.loads(members["schema.json"])
    text = {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "__id__": 3}
    args = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "__id__": 2}
    args["content"] = [{**text, "content": json.dumps(str(marker)), "is_json": True}]
    schema["content"][key] = {
        "__class__": "mkdir",
        "__module__": "os",
        "__loader__": "ConstructorFromReduceNode",
        "__id__": 1,
        "content": args,
    }
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


class MkdirWhenUnpickled:
    """Unpickled, it calls ``os.mkdir(marker)``: a crafted pickle of an older recommender folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.mkdir, (self.marker,))


def assert_no_pickle_in(folder: Path) -> None:
    """No file under ``folder`` is a pickle (protocols 2-5 start with 0x80 and the protocol; no
    ``.pkl``), every ``.npy``/``.npz`` (and each array inside a ``.skops`` zip) reads with
    ``allow_pickle=False``, and each ``.safetensors`` opens as one (its first 8 bytes are a length,
    which may start 0x80 0x02)."""
    import io
    import zipfile

    import numpy as np

    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert path.suffix not in (".pkl", ".pickle", ".pt", ".pth", ".bin"), path
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as f:
                assert list(f.keys()), path
            continue
        assert path.read_bytes()[:2] not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), path
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                for name in data.files:
                    data[name]
        elif path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif path.suffix == ".skops":  # a zip of schema.json and the arrays as .npy
            with zipfile.ZipFile(path) as z:
                assert "schema.json" in z.namelist(), path
                for name in z.namelist():
                    if name.endswith(".npy"):
                        np.load(io.BytesIO(z.read(name)), allow_pickle=False)
