"""What a run report says besides the scores: the recipe, the data, how training went, the mistakes.

Every task's report (``Task.write_report``) takes one ``ReportContext`` and places its sections
through the functions here, so the hyper-parameters, the data summary of ``tunelab validate``
(:mod:`tunelab.data.summary`), the sentences of :mod:`tunelab.evaluate.diagnose` and the table of
most confident mistakes (:mod:`tunelab.evaluate.mistakes`) look the same whatever the task, and no
report code asks which task it is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.evaluate.mistakes import SHOWN, Mistakes, short, write_csv
from tunelab.evaluate.render import Block, Preformatted, Section, Table, Text

if TYPE_CHECKING:
    from tunelab.config import RunConfig

logger = logging.getLogger(__name__)

MISTAKES_CSV = "mistakes.csv"
DATA_SUMMARY_JSON = "data_summary.json"
"""In a run folder: ``DataSummary.to_dict()`` of its data, for the reports ``tunelab eval`` writes."""


@dataclass
class ReportContext:
    """The run-level facts a report shows around a split's metrics; every part is optional.

    Attributes:
        hyperparameters: the recipe that mattered, by name (see ``hyperparameters``).
        data_summary: ``DataSummary.lines()`` of the run's data, as ``tunelab validate`` prints it.
        data_title: the heading of the data summary's section.
        notes: plain sentences about training (``diagnose.training_notes``).
        mistakes: the task's wrong predictions on the reported split, most confident first.
        warnings: lines about the scored rows themselves, shown first (``tunelab eval --data`` on
            rows the run trained on: the data summary describes the run's own splits, not them).
    """

    hyperparameters: dict[str, Any] = field(default_factory=dict)
    data_summary: list[str] | None = None
    data_title: str = "Data"
    notes: list[str] = field(default_factory=list)
    mistakes: Mistakes | None = None
    warnings: list[str] = field(default_factory=list)


def hyperparameters(
    cfg: RunConfig, *, default_learning_rate: float | None = None, head_init: str | None = None
) -> dict[str, Any]:
    """The settings that decide a run's result, as the report's table shows them.

    Args:
        cfg: the run's config (``config.json``).
        default_learning_rate: the method's default, used when ``train.learning_rate`` is unset
            (None: unknown, a method not registered in this process).
        head_init: how the head really began (a skipped probe leaves a random head), which sets
            the head's learning rate; ``train.head_init`` when None.
    """
    import dataclasses

    from tunelab.train.optim import fitted_head, head_learning_rate

    t = cfg.train
    lr = t.learning_rate or default_learning_rate
    head = None
    if lr is not None:
        # A continued head (train --from) learns as a random or a probe head (tunelab.train.optim).
        head = head_learning_rate(dataclasses.replace(t, head_init=fitted_head(head_init or t.head_init)), lr)
    shown_lr: Any = lr
    if not t.learning_rate:  # the method's default; unknown where the method is not registered here
        shown_lr = f"{lr:g} (the method's default)" if lr else "the method's default"
    options = ", ".join(f"{k}={v}" for k, v in sorted(cfg.method.options.items()))
    batch = f"{t.batch_size}" + (
        f" × {t.grad_accum_steps} accumulated = {t.batch_size * t.grad_accum_steps}"
        if t.grad_accum_steps > 1
        else ""
    )
    return {
        "model": cfg.model.name,
        "method": cfg.method.name + (f" ({options})" if options else ""),
        "epochs": f"{t.epochs:g}",
        "learning rate": shown_lr,
        "head learning rate": head,
        "batch size": batch,
        "max length (tokens)": cfg.model.max_length,
        "seed": t.seed,
        "warmup ratio": t.warmup_ratio,
        "weight decay": t.weight_decay,
        "head init": head_init or t.head_init,
        "selection metric": t.metric,
        "early stopping patience": "off" if t.patience is None else t.patience,
    }


def front_sections(context: ReportContext) -> list[Section]:
    """Warnings about the scored rows, the hyper-parameters and the data summary, shown after the
    run's facts."""
    from tunelab.evaluate.report import format_value  # that module imports this one

    sections: list[Section] = []
    if context.warnings:
        blocks: list[Block] = [Text(f"! {line}") for line in context.warnings]
        sections.append(Section("Overlap with the run's data", blocks))
    if context.hyperparameters:
        rows = [[name, format_value(value)] for name, value in context.hyperparameters.items()]
        sections.append(Section("Hyper-parameters", [Table(["Setting", "Value"], rows)]))
    if context.data_summary:
        flagged = sum(line.startswith("!") for line in context.data_summary)
        lead = (
            f"As tunelab validate reports it; {flagged} line(s) marked ! need a look."
            if flagged
            else "As tunelab validate reports it; nothing flagged."
        )
        summary: list[Block] = [Text(lead), Preformatted("\n".join(context.data_summary))]
        sections.append(Section(context.data_title, summary))
    return sections


def training_blocks(context: ReportContext) -> list[Block]:
    """The sentences about training, shown above the training curves."""
    return [Text(note) for note in context.notes]


def mistake_section(context: ReportContext, out_dir: Path | None) -> Section | None:
    """The most confident mistakes as a table; all of them go to ``mistakes.csv`` in ``out_dir``."""
    found = context.mistakes
    if found is None:
        return None
    if not found.rows:
        if out_dir is not None:  # an earlier eval into this folder left its mistakes: not these
            (Path(out_dir) / MISTAKES_CSV).unlink(missing_ok=True)
        return Section("Most confident mistakes", [Text(f"No mistakes on {found.total:,} {found.example}s.")])
    if out_dir is not None:
        write_csv(Path(out_dir) / MISTAKES_CSV, found)
    shown = found.rows[:SHOWN]
    lead = f"{len(found.rows):,} of {found.total:,} {found.example}s are wrong, the surest first"
    if len(found.rows) > len(shown):
        lead += f" (the {len(shown)} surest are shown; all of them are in {MISTAKES_CSV})"
    lead += f". Confidence: {found.confidence}."
    rows = [[short(m.shown()), short(m.gold), short(m.predicted), f"{m.confidence:.3f}"] for m in shown]
    table = Table([found.example.capitalize(), "Gold", "Predicted", "Confidence"], rows, frozenset({3}))
    return Section("Most confident mistakes", [Text(lead), table])


def run_facts(meta: Mapping[str, Any]) -> list[Section]:
    """The run's facts (model, data files, time...) as the first section, when there are any."""
    from tunelab.evaluate.report import format_value  # that module imports this one

    if not meta:
        return []
    rows = [[str(key), format_value(value)] for key, value in meta.items()]
    return [Section("Run", [Table(["Field", "Value"], rows)])]


def saved_data_summary(run_root: Path) -> list[str] | None:
    """The lines of the data summary a run saved when it trained; None for an older run.

    The report goes on without it whatever is wrong with the file, but a damaged one (cut short,
    not JSON, not an object) says so in one warning: the section was left out with no word.
    """
    from tunelab.data.summary import DataSummary, SummaryTerms
    from tunelab.runs.json_files import JsonFileError, read_json_object

    path = Path(run_root) / DATA_SUMMARY_JSON
    try:
        raw = read_json_object(path)
    except OSError:  # absent: a run older than the file, or one that saved none (an ensemble)
        return None
    except JsonFileError as exc:
        logger.warning(
            "%s: cannot read (%s); the report leaves out the run's training data", path, exc.reason
        )
        return None
    try:
        raw["terms"] = SummaryTerms(**raw["terms"])
        return DataSummary(**raw).lines()
    except (ValueError, TypeError, KeyError):  # written by another version
        return None


def saved_training_notes(run_root: Path, metric: str, task: Any = None) -> list[str]:
    """The notes the run's own report made (``diagnose.training_notes``), read off its
    ``logs/metrics.jsonl``; none when the log is absent or unreadable (a line cut by a kill is
    skipped, as a resume skips it). ``task`` says which of its metrics are lower-is-better."""
    import json

    from tunelab.evaluate.diagnose import training_notes

    try:
        lines = (Path(run_root) / "logs" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):  # absent (zero-shot, ensemble), or not UTF-8
        return []
    history = []
    for line in lines:
        try:
            history.append(json.loads(line))
        except ValueError:
            continue
    return training_notes(history, metric=metric, task=task)


def eval_context(predictor: Any, logits: Any, enc: Any, dataset: Any) -> ReportContext:
    """The context of a ``tunelab eval`` report: the run's recipe, training data and the notes on
    how it trained (from its metrics log, as its own report said them), and the mistakes on the
    evaluated file."""
    cfg, run = predictor.config, predictor.run
    summary = run.read_summary()
    # A run that was not fine-tuned (tunelab.zeroshot) has no training recipe to show, and an
    # ensemble's config is its first member's: its members are what made it.
    members = summary.get("members")
    notes: list[str] = []
    if isinstance(members, list):
        recipe: dict[str, Any] = {f"member {i}": _member(m) for i, m in enumerate(members, start=1)}
    elif was_trained(cfg):
        recipe = hyperparameters(
            cfg,
            default_learning_rate=_default_learning_rate(cfg.method.name),
            head_init=summary.get("head_init"),
        )
        # The README promised them for eval reports too; only the training-time report had them.
        notes = saved_training_notes(run.root, cfg.train.metric, predictor.task)
    else:
        recipe = {"model": cfg.model.name, "method": cfg.method.name + " (not trained)"}
    return ReportContext(
        hyperparameters=recipe,
        data_summary=saved_data_summary(run.root),
        data_title="The run's training data",
        notes=notes,
        mistakes=predictor.task.mistakes(
            logits, enc, dataset, predictor.labels, threshold=predictor.threshold
        ),
    )


def was_trained(cfg: RunConfig) -> bool:
    """Whether the run was fine-tuned, from what it recorded: ``train`` refuses a run without
    ``data.train``, and a zero-shot run (``tunelab.zeroshot``) records none.

    Not from the registry of methods: a plug-in method's run (or its export) read where the plug-in
    is not imported was reported "(not trained)", its recipe left out.
    """
    return cfg.data.train is not None


def _default_learning_rate(method: str) -> float | None:
    """The method's default learning rate where the method is registered in this process; None where
    it is not (a plug-in not imported), and the report says "the method's default" without it."""
    from tunelab.errors import ConfigError
    from tunelab.methods import get_method

    try:
        return get_method(method).default_learning_rate
    except ConfigError:
        return None


def _member(member: Any) -> str:
    """An ensemble member as the report's table shows it: its run and calibration temperature."""
    if not isinstance(member, dict):
        return str(member)
    t = member.get("temperature")
    return f"{member.get('path', '?')}" + (f" (temperature {t:.3g})" if isinstance(t, int | float) else "")
