"""The shipped MovieLens config end to end on a subset, with the real bundled encoder (slow)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tunelab.apps.recommend import build, load_config, load_dataset

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "movielens.yaml"


@pytest.mark.slow
def test_movielens_subset_builds_and_ranks_with_the_real_model(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "movielens_small" / "ml-latest-small"
    ratings = pd.read_csv(source / "ratings.csv")
    ratings = ratings[ratings["userId"] <= 120]
    movies = pd.read_csv(source / "movies.csv")
    movies = movies[movies["movieId"].isin(ratings["movieId"])].head(1500)
    ratings = ratings[ratings["movieId"].isin(movies["movieId"])]
    tags = pd.read_csv(source / "tags.csv")
    movies.to_csv(tmp_path / "movies.csv", index=False)
    ratings.to_csv(tmp_path / "ratings.csv", index=False)
    tags.to_csv(tmp_path / "tags.csv", index=False)
    shipped = load_config(CONFIG)
    items = shipped.items.model_copy(
        update={
            "path": str(tmp_path / "movies.csv"),
            "extra_text": [
                shipped.items.extra_text[0].model_copy(update={"path": str(tmp_path / "tags.csv")})
            ],
        }
    )
    cfg = shipped.model_copy(
        update={
            "items": items,
            "interactions": shipped.interactions.model_copy(update={"path": str(tmp_path / "ratings.csv")}),
            "model": shipped.model.model_copy(update={"max_pairs": 64, "batch_size": 16}),
        }
    )
    ds = load_dataset(cfg)
    toy = ds.items.set_index("item_id")["text"].get("1")
    assert toy is None or toy.startswith("Toy Story (1995). genres: Adventure, Animation, Children")
    rec = build(cfg, tmp_path / "rec", dataset=ds)
    assert rec.info["n_items"] == len(movies) and rec.info["search"] == "exact"
    assert rec.meta["ranker"]["auc_heldout_users"] > 0.6
    user = str(ratings["userId"].iloc[0])
    ranking = rec.rank(user, k=10)
    assert len(ranking.items) == 10 and not ranking.fallback
    assert all(item.reasons for item in ranking.items)
    added = rec.add_item("new-1", {"title": "Space Adventure Returns (2031)", "genres": "Sci-Fi|Adventure"})
    assert added["text"] == "Space Adventure Returns (2031). genres: Sci-Fi, Adventure"
    assert rec.items[-1] == "new-1" and 0 < rec.score_items(user, ["new-1"])[0] < 1
