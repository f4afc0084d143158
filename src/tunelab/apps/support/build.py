"""``build_bot``: an intent run, an answers file and a knowledge base -> a bot folder.

Everything is checked before anything is written (answers against the model's labels, slots
against the NER run, the knowledge file), then the folder is assembled in a temporary sibling and
renamed into place: a failed or interrupted build leaves no half folder, and a running service
reading the old bot sees the old one or the new one.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.apps.support.answers import read_answers
from tunelab.apps.support.bot import check_intent_model, intent_hint, run_finished_at
from tunelab.apps.support.config import (
    ANSWERS_YAML,
    BOT_YAML,
    CALIBRATION_JSON,
    DEFAULT_KNOWLEDGE_THRESHOLD,
    KNOWLEDGE_DIR,
    BotConfig,
    Thresholds,
)
from tunelab.apps.support.knowledge import (  # restore_interrupted: moved there, kept importable here
    ANN_MIN_PASSAGES,
    KnowledgeIndex,
    Passage,
    read_passages,
    remove_stale_tmp,
    restore_interrupted,
    sibling_dir,
    swap_in,
)
from tunelab.atomic import atomic_write_json, naming_output_folder, rename_new
from tunelab.embeddings import bundled_name, encoder_reference
from tunelab.errors import ConfigError, DataError, TunelabError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    """What ``build_bot`` wrote.

    Attributes:
        folder: the bot folder.
        name: the bot's name.
        calibration: what ``calibration.json`` holds (temperature, ECE before/after, dev rows; when
            nothing was fitted, ``fitted`` false and ``reason`` saying why temperature 1 was kept).
        passages: knowledge passages indexed (0 without a knowledge base).
        search: ``exact`` or ``hnsw`` (faiss), the knowledge index's search.
        unanswered: the model's intents without an answer template (knowledge or hand-off).
        warnings: things the user should know, one line each (the CLI prints them).
    """

    folder: Path
    name: str
    calibration: dict[str, Any]
    passages: int
    search: str
    unanswered: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def build_bot(
    run: str | Path,
    answers: str | Path,
    knowledge: str | Path | None,
    out: str | Path,
    *,
    ner: str | Path | None = None,
    dev: str | Path | None = None,
    encoder: str = "minilm-l6",
    name: str | None = None,
    overwrite: bool = False,
    ann_min_passages: int = ANN_MIN_PASSAGES,
    oos_label: str = "oos",
    knowledge_threshold: float | None = None,
) -> BuildResult:
    """Build a bot folder at ``out``.

    Args:
        run: the intent model's run folder (a single-label classifier).
        answers: the answers YAML (see ``tunelab.apps.support.answers``).
        knowledge: the knowledge file (.md, .csv, .jsonl), or None for none.
        out: the bot folder to write, e.g. ``bots/banking``.
        ner: an NER run filling ``{entity: TYPE}`` slots.
        dev: labelled ``text``/``label`` rows to calibrate on; default: the run's own dev split.
        encoder: the sentence encoder of the knowledge index (a bundled name, or a folder: stored
            absolute, so the bot loads from any working folder).
        name: the bot's name (default: the folder's name).
        overwrite: replace an existing bot folder at ``out``.
        ann_min_passages: from this many passages on, the index is approximate (HNSW).
        oos_label: the intent model's out-of-scope class, if it has one (``export-feedback``
            labels answer-only resolutions with it): the bot hands off what it tops.
        knowledge_threshold: the knowledge threshold until ``tune`` sets one (default 0.50,
            measured on the default encoder's similarities: another encoder is warned about).

    Raises:
        ConfigError: ``out`` exists (and ``overwrite`` is off, or it is not a bot folder), the
            answers file or a run is wrong; DataError: a data file is wrong. Nothing is written.
    """
    import tunelab

    target = Path(out)
    restore_interrupted(target)  # before the check: a bot an interrupted build set aside is still there
    _check_target(target, overwrite)
    if knowledge_threshold is not None and not math.isfinite(knowledge_threshold):
        raise ConfigError(f"knowledge_threshold {knowledge_threshold}: give a finite number, e.g. 0.5")
    parsed = read_answers(answers)
    predictor = tunelab.load(run)
    check_intent_model(predictor, run)
    warnings: list[str] = []
    unanswered = parsed.check_intents(
        predictor.labels.names, knowledge=knowledge is not None, oos_label=oos_label
    )
    if unanswered:
        n = len(unanswered)
        warnings.append(
            f"{n} intent{'s have' if n > 1 else ' has'} no answer template and will be answered from the "
            f"knowledge base when a passage is close enough, else handed off: {', '.join(unanswered)}"
        )
    passages = read_passages(knowledge) if knowledge is not None else []
    _check_tags(passages, predictor.labels.names)
    ner_path = _check_ner(parsed, ner)
    calibration = _calibrate(predictor, dev, warnings)
    encoder = encoder_reference(encoder)  # stored absolute when a folder: bot.yaml and the index
    index = (
        KnowledgeIndex.build(passages, model=encoder, ann_min_passages=ann_min_passages) if passages else None
    )
    if index is not None and knowledge_threshold is None and bundled_name(encoder) != "minilm-l6":
        # Cosine similarities sit on each encoder's own scale (e5-small-multilingual's at 0.77-0.91
        # for any two texts): at a threshold measured on MiniLM's, every message found a passage.
        warnings.append(
            f"--encoder {encoder}: the default knowledge threshold {DEFAULT_KNOWLEDGE_THRESHOLD:.2f} was "
            "measured on minilm-l6's similarities, not this encoder's; before serving the bot, run "
            f"tunelab app support tune {target} --dev DEV.csv --target precision=0.95"
        )
    thresholds = Thresholds()
    if knowledge_threshold is not None:
        thresholds.knowledge = float(knowledge_threshold)
    config = BotConfig(
        name=name or target.resolve().name,
        run=str(predictor.run.root.resolve()),
        encoder=encoder,
        ner=ner_path,
        temperature=float(calibration["temperature"]),
        thresholds=thresholds,
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tunelab_version=tunelab.__version__,
        oos_label=oos_label,
        run_finished_at=run_finished_at(predictor),
        run_intents=list(predictor.labels.names),
    )

    def write(tmp: Path) -> None:
        config.save(tmp)
        shutil.copyfile(answers, tmp / ANSWERS_YAML)
        if index is not None:
            index.save(tmp / KNOWLEDGE_DIR)
        atomic_write_json(tmp / CALIBRATION_JSON, calibration)

    write_folder(target, write, overwrite=overwrite)
    for line in warnings:
        log.info("%s", line)
    return BuildResult(
        folder=target,
        name=config.name,
        calibration=calibration,
        passages=len(passages),
        search=index.search_kind if index is not None else "none",
        unanswered=unanswered,
        warnings=warnings,
    )


def write_folder(target: Path, write: Any, *, overwrite: bool = True) -> None:
    """Run ``write(tmp)`` on a fresh sibling temp folder, then put it at ``target`` (replacing it).

    An existing ``target`` is swapped with the new folder in one atomic step (``exchange``), so a
    kill or power cut at any moment leaves a whole folder there, the old one or the new one. Where
    the OS or file system cannot swap, it takes two renames (old aside, new in); a kill between
    them leaves ``target`` missing and the old folder in a hidden ``.NAME.<hex>.old`` sibling,
    which the next ``write_folder`` (or ``restore_interrupted``) puts back first. Temporary
    folders that killed writes left beside ``target`` are removed once an hour old
    (``remove_stale_tmp``): nothing else ever removed them.

    ``overwrite`` False: a folder at ``target`` is never replaced (``rename_new``). The build checked
    when it began; a second build to the same ``--out`` meanwhile had its finished folder replaced
    by this one's, both saying they succeeded: this one is refused (FileExistsError) instead.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(target)
    remove_stale_tmp(target)
    tmp = sibling_dir(target, "tmp")
    # A refused write whose error names no file (safetensors' and numpy's on a full disk) is said
    # naming the folder being built: the line read "no space left on device" and nothing more.
    try:
        with naming_output_folder(target):
            write(tmp)
            if overwrite:
                swap_in(tmp, target)
            else:
                try:
                    rename_new(tmp, target)
                except FileExistsError:
                    raise ConfigError(
                        f"{target}: another process put a folder there while this one was built; "
                        "give --overwrite to replace it, or another --out"
                    ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_target(target: Path, overwrite: bool) -> None:
    """``--out`` can take the bot: not under a file, writable, and a bot when it exists.

    Writable is checked here, before the model loads: a read-only folder failed only after the
    model was loaded and calibrated and the knowledge embedded, as "unexpected OSError" naming the
    hidden temporary folder.
    """
    from tunelab import check_writable  # the public API's, as apps use
    from tunelab.apps.out_path import check_out_parents

    check_out_parents(target)
    # the temporary folder is made beside the bot and renamed onto it
    check_writable(target, "--out", fix="give --out DIR in a folder you can write", beside=True)
    if not target.exists():
        return
    if not (target / BOT_YAML).is_file():
        raise ConfigError(f"{target}: exists and is not a bot folder; give another --out (it is left as is)")
    if not overwrite:
        raise ConfigError(
            f"{target}: a bot is already there; give --overwrite to replace it, or another --out"
        )


def _check_tags(passages: list[Passage], intents: list[str]) -> None:
    """Every passage's ``intent`` tag is one of the model's intents: tune and eval judge a knowledge
    answer by it, so a misspelt tag counted every answer of its passage wrong and could turn the
    knowledge path off with advice to add training data."""
    for passage in passages:
        if passage.intent is not None and passage.intent not in intents:
            raise DataError(
                f"{passage.source}: intent {passage.intent}: not an intent of the model "
                f"({intent_hint(passage.intent, intents)}); fix the tag or remove it"
            )


def _check_ner(parsed: Any, ner: str | Path | None) -> str | None:
    """Load the NER run (if any) and check the entity slots against the types it tags."""
    import tunelab

    if ner is None:
        parsed.check_entities(None, ner=None)
        return None
    predictor = tunelab.load(ner)
    if predictor.output != "entities":
        raise ConfigError(f"{ner}: a {predictor.task_name} run; --ner takes a token_classification (NER) run")
    parsed.check_entities(set(predictor.entity_types), ner=str(ner))
    return str(predictor.run.root.resolve())


def _calibrate(predictor: Any, dev: str | Path | None, warnings: list[str]) -> dict[str, Any]:
    """Fit the temperature on dev logits: ``dev`` rows, else the run's own dev split.

    Rows whose label the model lacks (out of scope) are left out: calibration says how far to
    trust the model on the intents it knows; out-of-scope rows are what ``tune`` is for.
    """
    from tunelab.evaluate.calibration import fit_temperature

    texts, labels, source, dropped = _dev_rows(predictor, dev, warnings)
    if not texts:
        return {"temperature": 1.0, "fitted": False, "dev": source, "rows": 0}
    kept = {"dev": source, "rows": len(texts), "rows_out_of_scope": dropped}
    # One label (a continued run's dev split, carved from new rows of a new label only) says nothing
    # about how sure to be between labels: the fit runs off to the bound (T = 100), every confidence
    # flattens to ~1/L, below the intent threshold, and the bot silently hands off everything.
    # T = 1 is kept, as the ensemble refuses such a split (tunelab.ensembling.build).
    if len(set(labels)) < 2:
        reason = (
            f"the {len(texts)} dev rows hold one label ({predictor.labels.names[labels[0]]}); "
            "temperature kept at 1; give --dev FILE with rows of several labels"
        )
        warnings.append(f"calibration: {reason}")
        return {"temperature": 1.0, "fitted": False, "reason": reason, **kept}
    logits = predictor.logits(texts)  # (N, L)
    fitted = fit_temperature(logits, np.asarray(labels))
    if not fitted.fitted:
        reason = (
            f"every one of the {len(texts)} dev rows is predicted right, so there is no "
            "temperature to fit (1 kept); give --dev FILE with more rows for honest confidences"
        )
        warnings.append(f"calibration: {reason}")
        return {**fitted.to_dict(), "reason": reason, **kept}
    return {**fitted.to_dict(), **kept}


def _dev_rows(
    predictor: Any, dev: str | Path | None, warnings: list[str]
) -> tuple[list[str], list[int], str | None, int]:
    """``(texts, label ids, where from, rows dropped as out of scope)``; no texts when none."""
    from tunelab.apps.support.rows import read_labelled, run_columns_of

    names = predictor.labels
    hint = "calibration needs dev data: give --dev FILE (text,label rows the model was not trained on)"
    if dev is not None:
        rows = read_labelled(dev, run_columns_of(predictor))
        kept = [(t, names.id_of(lab)) for t, lab in zip(rows.texts, rows.labels, strict=True) if lab in names]
        if not kept:
            warnings.append(f"{dev}: no row has a label the intent model knows; temperature left at 1.0")
            return [], [], str(dev), len(rows)
        return [t for t, _ in kept], [i for _, i in kept], str(dev), len(rows) - len(kept)
    try:
        split = predictor.dev_split()
    except (TunelabError, OSError) as exc:
        warnings.append(f"the run's dev split cannot be read ({exc}); temperature left at 1.0: {hint}")
        return [], [], None, 0
    if split is None:
        warnings.append(f"the run has no dev split; temperature left at 1.0 (uncalibrated): {hint}")
        return [], [], None, 0
    if not split.texts:
        warnings.append(f"the run's dev split is empty; temperature left at 1.0: {hint}")
        return [], [], None, 0
    ids = [names.id_of(label) for label in split.labels]
    return split.texts, ids, f"the run's dev split ({split.source})", 0
