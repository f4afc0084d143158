"""The text model: a sentence-transformers bi-encoder fine-tuned to match a user's recent positives
to the item they engaged with next.

A training example is a triple (query, positive, hard negative):

- query: the text of the user's positives before a target positive, most recent first, up to
  ``history`` items, joined with `` | `` and truncated to ``max_length`` tokens;
- positive: the target item's text;
- hard negatives: popular items the user never engaged with (drawn by popularity), which are the
  items a weak model confuses with a user's taste.

The loss is sentence-transformers' ``MultipleNegativesRankingLoss`` (InfoNCE): each query must
score its own target above every other target and hard negative in the batch. The loop around it
is ours, a dozen lines: ``SentenceTransformerTrainer`` needs the ``datasets`` package, which
tunelab does not depend on, and a plain AdamW loop over tokenized batches is all it would run.
The cost is bounded by ``max_pairs`` (default 20,000 triples, one epoch: ~15 min on 2 CPU cores
with MiniLM at 128 query tokens).

The same encoder embeds items (cached, unit length) and queries, so a dot product is a cosine;
item-item cosines give the "reason" of a recommendation (the user's items closest to it).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunelab.apps.recommend.config import ModelSection
from tunelab.apps.recommend.live import REBUILD
from tunelab.atomic import open_permissions
from tunelab.embeddings import refuse_pickled_weights, without_library_chatter
from tunelab.errors import ConfigError

log = logging.getLogger(__name__)

#: Between the texts of a query's history items.
JOIN = " | "


def query_text(history_texts: list[str], history: int) -> str:
    """The query for a user: their last ``history`` positives' texts, most recent first.

    ``history_texts`` is oldest first (as the interactions are ordered).
    """
    return JOIN.join(reversed(history_texts[-history:]))


def base_encoder(name: str) -> Any:
    """A private copy of the bundled (or a local folder's) encoder, resolved offline: fine-tuning
    changes the weights, so a copy is trained, never the object other apps embed with."""
    import tunelab

    return tunelab.load_encoder(name)


def pick_device(device: str, *, loading: bool = False) -> str:
    """``auto``: ``cuda`` when torch sees a GPU (fine-tuning is ~50x faster there), else ``cpu``.

    A device this machine lacks is a one-line ``ConfigError`` when building; when ``loading`` a
    folder built elsewhere (``device: cuda`` on a GPU machine, served on a CPU one) it is ``auto``.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        present = torch.cuda.is_available() and index < torch.cuda.device_count()
    elif device == "mps":
        present = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    else:
        present = True
    if present:
        return device
    if loading:
        log.warning("model.device %s is not available here; using %s", device, pick_device("auto"))
        return pick_device("auto")
    raise ConfigError(f"model.device: {device!r}, but torch sees no such device here; use auto or cpu")


@dataclass(frozen=True)
class Triple:
    """One training example; ``liked`` holds the texts of all the user's positives (one set
    shared by the user's triples), so a sampled negative is never an item they liked."""

    query: str
    positive: str
    negatives: tuple[str, ...]
    liked: frozenset[str] = frozenset()
    user: str = ""


def make_triples(
    train: pd.DataFrame, texts: dict[str, str], cfg: ModelSection, *, popularity: pd.Series | None = None
) -> list[Triple]:
    """Up to ``cfg.max_pairs`` training triples from the train positives (drawn at random, seeded).

    Args:
        train: interactions (``user_id``, ``item_id``, ``time``, ``positive``), any order.
        texts: item id -> text.
        cfg: the model section (history, max_pairs, hard_negatives, seed).
        popularity: item id -> positive count, for hard negatives (default: from ``train``).
    """
    rng = np.random.default_rng(cfg.seed)
    pos = train[train["positive"]].sort_values(["user_id", "time", "item_id"], kind="stable")
    if popularity is None:
        popularity = pos["item_id"].value_counts()
    pop_ids = popularity.index.to_numpy()
    pop_p = popularity.to_numpy(dtype=np.float64)
    pop_p = pop_p / pop_p.sum()
    candidates: list[tuple[list[str], int]] = []  # (the user's positives, target index)
    owner: dict[int, str] = {}  # id of a user's list -> the user
    for user, group in pos.groupby("user_id", sort=True):
        # each item once, where the user first liked it: a repeat as a target is already in its query
        ids = list(dict.fromkeys(group["item_id"].tolist()))
        owner[id(ids)] = str(user)
        candidates.extend((ids, t) for t in range(1, len(ids)))
    if not candidates or cfg.max_pairs == 0:
        return []
    take = min(cfg.max_pairs, len(candidates))
    chosen = rng.choice(len(candidates), size=take, replace=False)
    triples = []
    liked: dict[int, frozenset[str]] = {}  # one set per user (keyed by their list), shared
    for c in chosen:
        ids, t = candidates[c]
        seen = set(ids)
        negatives: list[str] = []
        for _ in range(cfg.hard_negatives):
            for _try in range(20):  # a popular item the user did not engage with
                cand = pop_ids[rng.choice(len(pop_ids), p=pop_p)]
                if cand not in seen and cand not in negatives:
                    negatives.append(str(cand))
                    break
        if len(negatives) < cfg.hard_negatives:
            continue  # a user who liked nearly every popular item: skip rather than mix shapes
        history = [texts[i] for i in ids[max(0, t - cfg.history) : t]]
        if id(ids) not in liked:
            liked[id(ids)] = frozenset(texts[i] for i in ids)
        triples.append(
            Triple(
                query_text(history, cfg.history),
                texts[ids[t]],
                tuple(texts[n] for n in negatives),
                liked[id(ids)],
                owner[id(ids)],
            )
        )
    return triples


class TextModel:
    """The bi-encoder: ``encode`` texts to unit vectors; ``fit`` on triples; ``save``/``load``.

    Encoding is serialised by a lock: one model object serves every thread of a server.
    """

    FOLDER = "encoder"

    def __init__(self, encoder: Any, *, max_length: int, device: str = "auto") -> None:
        self.device = pick_device(device)
        self.encoder = encoder.to(self.device)
        self.encoder.max_seq_length = max_length
        self.max_length = max_length
        self._lock = threading.Lock()

    @classmethod
    def from_base(cls, cfg: ModelSection) -> TextModel:
        return cls(base_encoder(cfg.base), max_length=cfg.max_length, device=cfg.device)

    def fit(self, triples: list[Triple], cfg: ModelSection, *, progress: bool = False) -> dict[str, Any]:
        """Fine-tune on ``triples`` with in-batch and hard negatives; the loss curve's summary."""
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        if not triples:
            return {"triples": 0, "steps": 0, "note": "no training triples: the base encoder is used as is"}
        model = self.encoder
        loss_fn = MultipleNegativesRankingLoss(model, scale=cfg.scale)
        # sentence-transformers >= 6 calls it preprocess; tokenize (3 to 5) is deprecated there.
        tokenize = getattr(model, "preprocess", None) or model.tokenize

        def batch_loss(rows: np.ndarray) -> Any:
            if len(rows) < 2:
                return None  # in-batch negatives need a second example
            batch = [triples[i] for i in rows]
            columns = [[b.query for b in batch], [b.positive for b in batch]]
            columns += [[b.negatives[j] for b in batch] for j in range(len(batch[0].negatives))]
            return loss_fn([_to(tokenize(col), self.device) for col in columns], None)

        losses = train_batches(
            model, len(triples), batch_loss, cfg, lr=cfg.learning_rate, desc="text model", progress=progress
        )
        return {"triples": len(triples), **loss_summary(losses)}

    def encode(self, texts: list[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Unit-length embeddings (N, H), float32."""
        if not texts:
            dim = self.encoder.get_sentence_embedding_dimension() or 0
            return np.zeros((0, dim), dtype=np.float32)
        with self._lock:
            vectors = self.encoder.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress and sys.stderr.isatty(),
            )
        return np.asarray(vectors, dtype=np.float32)

    def save(self, folder: str | Path) -> None:
        with without_library_chatter():  # transformers' "Writing model shards" bar, in any log
            self.encoder.save(str(Path(folder) / self.FOLDER))
        open_permissions(Path(folder) / self.FOLDER)  # safetensors writes 0600: a server could not read it

    @classmethod
    def load(cls, folder: str | Path, *, max_length: int, device: str = "auto") -> TextModel:
        device = pick_device(device, loading=True)
        from sentence_transformers import SentenceTransformer

        path = Path(folder) / cls.FOLDER
        # A missing folder was taken for a hub id: minutes of download retries (or a stranger's
        # model of that name) instead of one line. The load() that calls this names the folder.
        if not path.is_dir():
            raise FileNotFoundError(f"no {cls.FOLDER}/ folder")
        # A folder copied from elsewhere with pickled weights (pytorch_model.bin) loaded them, or ran
        # the code a crafted one names: refused in one line naming the file, before anything loads.
        refuse_pickled_weights(path, str(folder), fix=REBUILD)
        # a build saves safetensors only: a pickled file that slipped past the check is never read
        with without_library_chatter():  # transformers' "Loading weights" bar, in a server's log
            encoder = SentenceTransformer(
                str(path), device="cpu", local_files_only=True, model_kwargs={"use_safetensors": True}
            )
        return cls(encoder, max_length=max_length, device=device)


def train_batches(
    model: Any,
    n: int,
    batch_loss: Callable[[np.ndarray], Any],
    cfg: ModelSection,
    *,
    lr: float,
    desc: str,
    progress: bool = False,
) -> list[float]:
    """The fine-tuning loop the bi-encoder and the cross-encoder share: ``cfg.epochs`` seeded
    shuffles of ``n`` examples in batches of ``cfg.batch_size``, AdamW with 10% linear warm-up then
    linear decay, gradients clipped at 1. ``batch_loss`` maps a batch's example indices to the loss
    (None: skip the batch). Returns the loss of every step. Ours rather than sentence-transformers'
    trainers, which need the ``datasets`` package tunelab does not depend on."""
    import torch
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    total = (n + cfg.batch_size - 1) // cfg.batch_size * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, max(1, total // 10), total)
    model.train()
    losses: list[float] = []
    bar = tqdm(total=total, desc=desc, unit="batch", disable=None if progress else True)
    try:
        for _ in range(cfg.epochs):
            order = rng.permutation(n)
            for start in range(0, n, cfg.batch_size):
                loss = batch_loss(order[start : start + cfg.batch_size])
                if loss is None:
                    continue
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    finally:
        bar.close()
        model.eval()
    return losses


def loss_summary(losses: list[float]) -> dict[str, Any]:
    """Steps and the mean loss of the first and the last 10% of them (None without a step)."""
    k = max(1, len(losses) // 10)
    return {
        "steps": len(losses),
        "loss_first_10pct": float(np.mean(losses[:k])) if losses else None,
        "loss_last_10pct": float(np.mean(losses[-k:])) if losses else None,
    }


def _to(features: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
