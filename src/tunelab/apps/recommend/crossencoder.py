"""Optional cross-encoder re-scoring of a ranking's top candidates (``model.cross_encoder: true``).

The bi-encoder scores a user's query (their recent positives as text) and an item independently,
so it cannot read one against the other; a cross-encoder reads the query and the item's text in
one pass and can. It costs one transformer pass per (user, item) pair, so it only re-scores the
``model.cross_encoder_top`` best candidates of the blended ranking.

- **Model**: sentence-transformers' ``CrossEncoder`` (one output, a relevance logit) started from the
  same bundled encoder as the bi-encoder, trained with its ``BinaryCrossEntropyLoss`` on pairs from
  the bi-encoder's training triples: (query, the item engaged with next) is 1; (query, each hard
  negative) and (query, another triple's target) are 0. The loop is ours for the same reason as
  the bi-encoder's (``textmodel``): the library's trainer needs ``datasets``.
- **Blend**: the re-scored score is not the cross-encoder's alone: a logistic regression on two
  features, the blended score's logit and the cross-encoder's logit, fitted on the validation
  users' own top candidates (label: the user went on to like the item), says how much each is
  worth, as the ranker does for the other features. Its probability replaces the blended score of
  the top candidates; every other candidate keeps its blended score, scaled below the lowest
  re-scored one, so a ranking is still in score order and the top stays on top.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.apps.recommend.config import ModelSection
from tunelab.apps.recommend.live import REBUILD
from tunelab.apps.recommend.ranker import dump_estimators, load_estimators, older_pickle
from tunelab.apps.recommend.textmodel import Triple, loss_summary, pick_device, train_batches
from tunelab.atomic import open_permissions
from tunelab.embeddings import refuse_pickled_weights, without_library_chatter
from tunelab.errors import ConfigError

log = logging.getLogger(__name__)

FOLDER = "cross_encoder"
CALIBRATION = "cross_calibration.skops"
#: What tunelab wrote before (a pickle): never opened, as ``ranker.PICKLED``.
PICKLED_CALIBRATION = "cross_calibration.pkl"


class CrossScorer:
    """The cross-encoder: ``fit`` on triples, ``logits`` of one query against item texts."""

    def __init__(self, model: Any, *, max_length: int, device: str = "auto") -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device)
        self.max_length = max_length
        self._lock = threading.Lock()

    @classmethod
    def from_base(cls, cfg: ModelSection) -> CrossScorer:
        """A one-logit CrossEncoder on the bundled (or a local) encoder's weights; the scoring head
        is new (initialised at random) and learned by ``fit``.

        The encoder comes through the public ``tunelab.load_encoder`` (the apps use only the public
        API): it is saved to a temporary folder, which ``CrossEncoder`` reads as a Hugging Face
        model folder and puts its head on."""
        import tempfile

        import torch
        from sentence_transformers.cross_encoder import CrossEncoder

        from tunelab.apps.recommend.textmodel import base_encoder

        # "some weights newly initialized" (the head, as meant) and sentence-transformers' WARNING
        # "Converting SentenceTransformer model /tmp/tunelab-cross-... to CrossEncoder", which
        # reached every build's log: hidden for this thread only, where the process-wide verbosity
        # switch and warnings filter used before hid a server's other threads' warnings too
        with tempfile.TemporaryDirectory(prefix="tunelab-cross-") as tmp, without_library_chatter():
            base_encoder(cfg.base).save(tmp)
            torch.manual_seed(cfg.seed)  # the new scoring head's initial weights
            model = CrossEncoder(tmp, num_labels=1, max_length=cfg.max_length, device="cpu")
        return cls(model, max_length=cfg.max_length, device=cfg.device)

    def fit(self, triples: list[Triple], cfg: ModelSection, *, progress: bool = False) -> dict[str, Any]:
        """Train on the pairs of ``triples`` (module docstring); the loss curve's summary."""
        import torch
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

        pairs = _pairs(triples, seed=cfg.seed)
        if not pairs:
            return {"pairs": 0, "steps": 0, "note": "no training triples: the cross-encoder is untrained"}
        loss_fn = BinaryCrossEntropyLoss(self.model)

        def batch_loss(rows: np.ndarray) -> Any:
            batch = [pairs[i] for i in rows]
            labels = torch.tensor([b[2] for b in batch], dtype=torch.float32, device=self.device)
            return loss_fn([[b[0] for b in batch], [b[1] for b in batch]], labels)

        lr = cfg.cross_encoder_learning_rate
        losses = train_batches(
            self.model, len(pairs), batch_loss, cfg, lr=lr, desc="cross-encoder", progress=progress
        )
        positives = sum(1 for p in pairs if p[2] == 1.0)
        return {"pairs": len(pairs), "positives": positives, **loss_summary(losses)}

    def logits(self, query: str, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        """Relevance logits (C,) of ``query`` against each of ``texts``."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        import torch

        with self._lock:
            scores = self.model.predict(
                [(query, t) for t in texts],
                batch_size=batch_size,
                activation_fn=torch.nn.Identity(),
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    def save(self, folder: str | Path) -> None:
        with without_library_chatter():  # as TextModel.save: no shard-writing bar in any log
            self.model.save(str(Path(folder) / FOLDER))
        open_permissions(Path(folder) / FOLDER)  # safetensors writes 0600: a server could not read it

    @classmethod
    def load(cls, folder: str | Path, *, max_length: int, device: str = "auto") -> CrossScorer:
        device = pick_device(device, loading=True)
        from sentence_transformers.cross_encoder import CrossEncoder

        path = Path(folder) / FOLDER
        if not path.is_dir():  # else taken for a hub id (see TextModel.load)
            raise FileNotFoundError(f"no {FOLDER}/ folder")
        refuse_pickled_weights(path, str(folder), fix=REBUILD)  # as TextModel.load: unpickling runs code
        with without_library_chatter():
            model = CrossEncoder(
                str(path),
                max_length=max_length,
                device="cpu",
                local_files_only=True,
                model_kwargs={"use_safetensors": True},
            )
        return cls(model, max_length=max_length, device=device)


def _pairs(triples: list[Triple], *, seed: int) -> list[tuple[str, str, float]]:
    """(query, item text, label) pairs: each triple's target (1), its hard negatives (0) and the
    target of another triple (0, an easy negative the hard ones do not cover) unless the user
    liked that item too."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, str, float]] = []
    others = rng.permutation(len(triples))
    for t, other in zip(triples, others, strict=True):
        out.append((t.query, t.positive, 1.0))
        out.extend((t.query, n, 0.0) for n in t.negatives)
        easy = triples[other].positive
        if len(triples) > 1 and easy != t.positive and easy not in t.liked:
            out.append((t.query, easy, 0.0))
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class CrossStage:
    """The cross-encoder and its learned blend with the blended score (module docstring).

    Attributes:
        scorer: the cross-encoder.
        calibrator: logistic regression on (logit of the blended score, cross-encoder logit).
        top: how many of a ranking's best candidates are re-scored.
        report: what the fit saw, for the build report.
    """

    scorer: CrossScorer
    calibrator: Any
    top: int
    report: dict[str, Any] = field(default_factory=dict)

    def rescore(self, query: str, texts: list[str], scores: np.ndarray) -> np.ndarray:
        """``scores`` (C,) with the best ``top`` replaced by the blend's probability and the rest
        scaled below the lowest of those (order kept among them)."""
        scores = np.asarray(scores, dtype=np.float32)
        if len(scores) == 0:
            return scores
        n = min(self.top, len(scores))
        best = np.argsort(-scores, kind="stable")[:n]
        logits = self.scorer.logits(query, [texts[i] for i in best])
        p = self.probability(scores[best], logits)
        out = scores.copy()
        rest = np.ones(len(scores), dtype=bool)
        rest[best] = False
        if rest.any():
            ceiling = float(p.min()) * (1 - 1e-3)
            high = float(out[rest].max())
            if high > ceiling:  # scores are probabilities: high > ceiling >= 0
                out[rest] = out[rest] * (ceiling / high)
        out[best] = p
        return out

    def probability(self, blended: np.ndarray, logits: np.ndarray) -> np.ndarray:
        X = np.column_stack([_logit(blended), logits])
        return self.calibrator.predict_proba(X)[:, 1].astype(np.float32)

    def save(self, folder: str | Path) -> None:
        self.scorer.save(folder)
        # skops, as the ranker: a LogisticRegression and a number, nothing a pickle must hold.
        dump_estimators({"calibrator": self.calibrator, "top": self.top}, Path(folder) / CALIBRATION)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        max_length: int,
        device: str = "auto",
        report: dict[str, Any] | None = None,
    ) -> CrossStage | None:
        """The stage saved in ``folder``, or None when the folder was built without one.

        Raises:
            ConfigError: a folder built by an older tunelab (``cross_calibration.pkl``, never
                unpickled), or a file naming a type beyond scikit-learn's and Python's.
        """
        root = Path(folder)
        if not (root / CALIBRATION).is_file():
            if (root / PICKLED_CALIBRATION).exists():
                raise ConfigError(older_pickle(root / PICKLED_CALIBRATION))
            return None
        saved = load_estimators(root / CALIBRATION, ())
        scorer = CrossScorer.load(root, max_length=max_length, device=device)
        return cls(scorer, saved["calibrator"], int(saved["top"]), report or {})


def fit_cross_stage(
    scorer: CrossScorer,
    candidates: list[tuple[str, list[str], np.ndarray, np.ndarray]],
    top: int,
) -> CrossStage:
    """Fit the blend of the blended score and the cross-encoder's on validation users' top lists.

    Args:
        scorer: the trained cross-encoder.
        candidates: per validation user, (query, item texts, blended scores, labels) over the
            user's candidates (labels: 1 where the user went on to like the item).
        top: how many of each user's best candidates to re-score.

    Raises:
        ValueError: no positive (or no negative) among the users' top candidates.
    """
    from sklearn.linear_model import LogisticRegression

    X, y = [], []
    users = 0
    for query, texts, scores, labels in candidates:
        if len(scores) == 0:
            continue
        best = np.argsort(-np.asarray(scores), kind="stable")[:top]
        logits = scorer.logits(query, [texts[i] for i in best])
        X.append(np.column_stack([_logit(np.asarray(scores)[best]), logits]))
        y.append(np.asarray(labels)[best])
        users += 1
    found = np.unique(np.concatenate(y)) if X else np.zeros(0)
    if 1 not in found:
        raise ValueError(f"no positive among the validation users' top {top} candidates to fit it on")
    if 0 not in found:
        raise ValueError(f"every one of the validation users' top {top} candidates is a positive")
    rows, labels = np.vstack(X), np.concatenate(y).astype(np.int8)
    calibrator = LogisticRegression(max_iter=1000).fit(rows, labels)
    coef = calibrator.coef_.ravel()
    report = {
        "top": top,
        "users": users,
        "rows": len(rows),
        "positives": int(labels.sum()),
        "weights": {"blended_logit": float(coef[0]), "cross_logit": float(coef[1])},
    }
    return CrossStage(scorer, calibrator, top, report)
