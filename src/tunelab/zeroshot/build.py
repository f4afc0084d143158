"""``zero_shot(labels, out)``: a label file -> a run folder that classifies without training.

Layout (a run's, so ``find_run``, eval, predict and serve take it)::

    run.json      format: zeroshot, zeroshot: {scorer, model, template, scale}, method: zeroshot
    config.json   model.name (the encoder or NLI model), model.max_length; method zeroshot
    labels.json   the labels in the file's order       tokenizer/  the model's tokenizer
    weights/descriptions.json   label -> description
    metrics.json  with ``test``: the classifier scored on that labelled file

The model itself is referenced by name or folder, not copied, as an adapter run references its
base model: the bundled encoder is always there, and an NLI model folder stays the user's.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_json, naming_output_folder
from tunelab.config import DataConfig
from tunelab.errors import ConfigError, RunError
from tunelab.runs import RunFolder
from tunelab.runs.folder import check_new_run_path, stale_claim
from tunelab.zeroshot.backend import DESCRIPTIONS_JSON, FORMAT, spec_dict, zero_shot_predictor
from tunelab.zeroshot.labels import unusable_path

logger = logging.getLogger(__name__)


@dataclass
class ZeroShotResult:
    """A written zero-shot run: its folder, descriptions and metrics (empty without ``test``)."""

    path: Path
    descriptions: dict[str, str]
    metrics: dict[str, Any]


def zero_shot(
    labels: str | Path | dict[str, str] | list[str],
    out: str | Path,
    *,
    encoder: str | None = None,
    nli: str | None = None,
    template: str | None = None,
    max_length: int = 128,
    test: str | Path | None = None,
    test_options: list[str] | None = None,
) -> ZeroShotResult:
    """Write a zero-shot classifier for ``labels`` as the run folder ``out``.

    Args:
        labels: a YAML file of ``label: description`` (or of names), or the same as a dict/list.
        out: the run folder; must not exist.
        encoder, nli, template, max_length: as :func:`tunelab.zeroshot.zero_shot_predictor`.
        test: a labelled file to score the classifier on (``metrics.json``); its labels must be
            among ``labels``.
        test_options: ``data.*=value`` reading options for ``test``.

    Raises:
        ConfigError: a bad label file or option.  RunError: ``out`` exists.
        DataError: ``test`` cannot be read or holds a label without a description.

    Example:
        >>> from tunelab.zeroshot import zero_shot  # doctest: +SKIP
        >>> zero_shot("labels.yaml", "runs/zs").path  # doctest: +SKIP
    """
    if test_options and test is None:
        raise ConfigError("data.* reading options need a file to read: give --test FILE")
    target = Path(out)
    # An empty folder a killed zeroshot left as its claim of the name is taken (made_in_one_go
    # removes it); refused here, it blocked the name for good, as ensemble's did.
    try:
        taken = target.exists()
    except OSError as exc:  # a name over 255 bytes (ENAMETOOLONG) was "unexpected OSError"
        raise ConfigError(f"--out {unusable_path(target, exc)}") from None
    if taken and not stale_claim(target):
        raise RunError(f"{target} exists; delete it or give another --out")
    check_new_run_path(target, "--out")
    predictor = zero_shot_predictor(
        labels, encoder=encoder, nli=nli, template=template, max_length=max_length
    )
    rows = None
    if test is not None:
        rows, read = _read_test(predictor, test, test_options)
        # Saved as it was read (detected or given: encoding, separator, columns), and resolved in
        # run.json's data_files, as a trained run's: ``eval --data`` and ``predict --input`` take
        # this file for the run's own and read it with these options, and a file of the same name
        # elsewhere is not taken for it (``with_training_paths``).
        predictor.config.data = dataclasses.replace(read, test=str(test))
    descriptions = predictor.backend.descriptions
    # tokenizers' full disk ("(os error 28)") names no file: the line names --out (see there)
    with naming_output_folder(target), RunFolder.made_in_one_go(target) as partial:
        predictor.config.save(partial.config_json)
        predictor.labels.save(partial.labels_json)
        predictor.tokenizer.save_pretrained(str(partial.tokenizer))
        partial.weights.mkdir()
        atomic_write_json(partial.weights / DESCRIPTIONS_JSON, descriptions)
        summary = {
            "name": partial.name,
            "status": "finished",
            "format": FORMAT,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "task": predictor.task.name,
            "num_labels": len(descriptions),
            "model": predictor.config.model.name,
            "method": FORMAT,
            FORMAT: spec_dict(predictor.backend.spec),
            "threshold": None,
            "data": {"train": None, "dev": None, "test": str(test) if test is not None else None},
            "data_files": {
                "train": None,
                "dev": None,
                "test": str(Path(test).resolve()) if test is not None else None,
            },
        }
        metrics: dict[str, Any] = {}
        if rows is not None:
            enc = predictor.task.encode(
                predictor.tokenizer, rows, max_length=predictor.config.model.max_length
            )
            metrics["test"], _ = predictor.task.score(
                predictor.backend.logits(enc), enc, predictor.labels, threshold=None
            )
            atomic_write_json(partial.metrics_json, metrics)
            summary["headline"] = {"test": predictor.task.headline(metrics["test"])}
        partial.write_summary(summary)
        final = partial.finish()
    logger.info("zero-shot run written: %s", final.root)
    return ZeroShotResult(path=final.root, descriptions=descriptions, metrics=metrics)


def _read_test(predictor: Any, test: str | Path, options: list[str] | None) -> tuple[Any, DataConfig]:
    """The labelled rows of ``test``, read as ``tunelab eval`` reads a file, and the options used."""
    from tunelab.data.file_options import options_for_file, parse_file_overrides

    read = options_for_file(test, predictor.config.data, parse_file_overrides(options))
    return predictor.task.read_labelled(test, read, predictor.labels, field=None), read
