"""Exporting an ensemble: every member exported (and parity-checked) by ``tunelab.compress.export``.

The artifact is an ensemble folder again (``format: ensemble``) whose members are the exported
artifacts, so it loads, predicts and serves like the ensemble it came from. Its ``parity.json`` is
the whole ensemble's parity report, before and after, in the shape of every export's, with each
member's own under ``members``; ``metrics.json`` the exported ensemble's metrics on the first
member's test file and dev split, less the rows a member trained on (as the ensemble's own).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.ensembling.backend import FORMAT, member_folder
from tunelab.errors import TunelabError
from tunelab.inference.backends import LoadContext, get_format
from tunelab.runs import PARTIAL_SUFFIX, RunFolder
from tunelab.runs.links import refuse_links


def export_ensemble(
    source: RunFolder,
    summary: dict[str, Any],
    out: RunFolder,
    opts: Any,
    data: str | Path | None,
    stages: Any,
    *,
    data_options: dict[str, Any] | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """The composite export builder of the ``ensemble`` format (see ``register_composite_export``).

    Returns the parity report of the whole ensemble, before and after, in the shape every export
    reports (plus each member's own under ``members``). Raises ``ParityError`` like any export when
    the ensemble's metric falls by more than ``opts.max_drop`` (a member's own check runs first).
    """
    from tunelab.compress.build import COPIED
    from tunelab.compress.datasets import parity_data
    from tunelab.compress.export import export
    from tunelab.compress.parity import ParityError, compare, measure, render_markdown
    from tunelab.ensembling.build import _metrics, member_setups, trained_rows
    from tunelab.inference import load

    stages.set_description("export: check members")
    _refuse_inside_sources(out, summary)
    # the ensemble may be someone else's: a link in what is copied would put any file of this
    # machine in the artifact (each member's run is looked at by check_members)
    refuse_links(source.root, "tunelab export", only=COPIED)
    check_members(source, summary, opts)
    stages.set_description("export: members")
    out.weights.mkdir(exist_ok=True)
    members, reports = [], {}
    for member in summary.get("members") or []:
        # checked by check_members: a folder under the source's weights/, written under out's
        folder = member_folder(source.root, member)
        try:
            result = export(
                folder,
                format=opts.format,
                prune=opts.prune,
                prune_method=opts.prune_method,
                recover_epochs=opts.recover_epochs,
                output=out.weights / folder.relative_to((source.root / "weights").resolve()),
                data=data,
                data_options=data_options or None,
                max_drop=opts.max_drop,
                show_progress=show_progress,
            )
        except TunelabError as exc:  # a member's parity failure read as the whole ensemble's
            raise _of_member(exc, member["path"]) from None
        reports[member["path"]] = result.parity
        members.append({**member, "source": str(folder)})
    stages.update()
    for name in ("config.json", "labels.json"):
        shutil.copy2(source.root / name, out.root / name)
    shutil.copytree(source.tokenizer, out.tokenizer, symlinks=True)  # a link is never followed
    art_summary = {
        **summary,
        "name": out.name,
        "members": members,
        "source_run": str(source.root),
        "export": {
            "format": FORMAT,
            "member_format": opts.format,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    out.write_summary(art_summary)
    stages.set_description("export: parity check")
    original = load(source.root)
    check = parity_data(original, None if data is None else str(data), data_options)
    task, config = original.task, original.config
    enc = task.encode(
        original.tokenizer, check.dataset, max_length=config.model.max_length, stride=config.model.stride
    )
    common = {"task": task, "labels": original.labels, "threshold": original.threshold}
    exported = get_format(FORMAT)(
        LoadContext(run=out, config=config, labels=original.labels, summary=art_summary)
    )
    # the members' own model sizes, as each member's report measured them: the folders held whole
    # member runs (logs, plots, tokenizers; a LoRA member's adapter alone) against whole artifacts
    before = measure(original.backend, enc, **common, size_mb=_members_mb(reports, "before"))
    after = measure(exported, enc, **common, size_mb=_members_mb(reports, "after"))
    report = {
        "format": opts.format,
        "source_run": str(source.root),
        "data": {"name": check.name, "rows": len(check.dataset)},
    }
    report |= compare(
        before,
        after,
        metric=task.parity_metric(config.train.metric),
        task=task,
        threshold=original.threshold,
        max_drop=opts.max_drop,
        enc=enc,
    )
    report["members"] = reports
    ref = load(out.root / members[0]["path"])
    # the rows a member trained on stay out, as when the ensemble was built (its notes say so)
    trained, notes = trained_rows(member_setups(source.root, summary))
    metrics = _metrics(out, ref, art_summary, trained, notes)
    art_summary.pop("notes", None)
    if notes:
        art_summary["notes"] = notes
    art_summary["headline"] = {split: ref.task.headline(m) for split, m in metrics.items()}
    art_summary["parity"] = {k: report[k] for k in ("metric", "drop_points", "agreement", "passed")}
    atomic_write_json(out.metrics_json, metrics)
    atomic_write_json(out.root / "parity.json", report)
    parts = [render_markdown(report)]
    for path in reports:
        parts.append(f"## member {path}\n\n" + (out.root / path / "parity.md").read_text(encoding="utf-8"))
    atomic_write_text(out.root / "parity.md", "\n".join(parts))
    out.write_summary(art_summary)
    stages.update(stages.total - stages.n)
    if not report["passed"]:
        m = report["metric"]
        raise ParityError(
            f"{opts.format} export of the ensemble failed the parity check: {m} "
            f"{report['before'][m]:.2f}% -> {report['after'][m]:.2f}% on {check.name}, a drop of "
            f"{report['drop_points']:.2f} points, more than the allowed {opts.max_drop:g} (--max-drop); "
            "no artifact was written"
        )
    return report


def check_members(source: RunFolder, summary: dict[str, Any], opts: Any) -> None:
    """Run every member's own pre-export checks before any member is exported.

    Members were exported in order, so one whose model ``opts`` cannot take (a prefix member with
    ``--prune-method heads``, any non-classifier with ``torch-int8``, an exported artifact with any
    format) was refused only after the members before it were exported, pruned and distilled, and
    in words that did not say which member. A member is loaded only for a check that needs its model.

    Raises:
        TunelabError: of the member's check's kind, ``member <path>: <why>``.
        RunError: a member's run.json or config.json is damaged (the line loading it gives).
    """
    from tunelab.compress.build import COPIED, check_exportable
    from tunelab.errors import RunError
    from tunelab.inference import load
    from tunelab.inference.predictor import read_run_config, read_run_summary

    for member in summary.get("members") or []:
        folder = RunFolder(member_folder(source.root, member))
        # Read as loading the member reads them, so a damaged one is refused here, in the same line,
        # not after the members before it were exported (read as {}, run.json passed this check).
        own = read_run_summary(folder)
        read_run_config(folder)
        fmt = own.get("format", "torch")
        if "source_run" in own or "export" in own:
            raise RunError(
                f"member {member['path']}: an exported {fmt} artifact cannot be exported again; "
                "ensemble the runs instead"
            )
        if fmt != "torch":
            raise RunError(
                f"member {member['path']}: a {fmt} run cannot be exported; "
                "ensemble trained runs to export the ensemble"
            )
        refuse_links(folder.root, "tunelab export", only=COPIED)  # before any member is exported
    if opts.format != "torch-int8" and not opts.fractions:
        return  # onnx formats and magnitude pruning take every member a run can hold
    for member in summary.get("members") or []:
        try:
            check_exportable(load(member_folder(source.root, member)).model, opts)
        except TunelabError as exc:
            raise _of_member(exc, member["path"]) from None


def _of_member(exc: TunelabError, path: str) -> TunelabError:
    """``exc`` as the same kind of error (each export raises takes one message), naming the member."""
    return type(exc)(f"member {path}: {exc}")


def _refuse_inside_sources(out: RunFolder, summary: dict[str, Any]) -> None:
    """Refuse an output inside a member's source run, where it still is (export refused one inside
    the ensemble before claiming it): the artifact was silently written into that run.

    Raises:
        ConfigError: ``member <path>: --output X is inside the run R; give a folder beside it``.
    """
    from tunelab.compress.export import refuse_inside

    target = out.root.with_name(out.root.name.removesuffix(PARTIAL_SUFFIX))
    for member in summary.get("members") or []:
        given = member.get("source") if isinstance(member, dict) else None
        if isinstance(given, str) and Path(given).is_dir():
            try:
                refuse_inside(target, Path(given).resolve(), "--output")
            except TunelabError as exc:
                raise _of_member(exc, member.get("path")) from None


def _members_mb(reports: dict[str, dict[str, Any]], side: str) -> float:
    """The members' ``size_mb`` on one ``side`` (``before`` or ``after``) of their parity reports, summed."""
    return sum(float(report[side]["size_mb"]) for report in reports.values())
