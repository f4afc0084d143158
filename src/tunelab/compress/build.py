"""The stages of one export, run inside the artifact's ``.partial`` folder (see ``export.py``)."""

from __future__ import annotations

import copy
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from torch import nn

from tunelab.compress.datasets import parity_data, sample_batch
from tunelab.compress.options import ExportOptions
from tunelab.compress.parity import ParityError, compare, measure
from tunelab.errors import RunError
from tunelab.inference.backends import LoadContext, TorchBackend, get_format
from tunelab.runs import RunFolder
from tunelab.runs.links import refuse_links

#: What an export copies from the run as it is (the weights it writes anew).
COPIED = ("config.json", "labels.json", "tokenizer")


def build_artifact(
    source: RunFolder,
    summary: dict[str, Any],
    out: RunFolder,
    opts: ExportOptions,
    data: str | Path | None,
    stages: Any,
    *,
    data_options: dict[str, Any] | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Measure the run, prune, write the format's weights, measure the artifact, write reports.

    Returns:
        The parity report. Raises ``ParityError`` (after writing the reports, which the caller
        deletes with the folder) when the metric fell by more than ``opts.max_drop``.
    """
    from tunelab.inference import load

    # before the measuring: the run may be someone else's, and a link in what is copied would put
    # any file of this machine in the artifact (one to its own folder copied 40 levels deep)
    refuse_links(source.root, "tunelab export", only=COPIED)
    predictor = load(source.root)
    model: nn.Module = predictor.model.eval()
    check_exportable(model, opts)
    task = predictor.task
    check = parity_data(predictor, None if data is None else str(data), data_options)
    enc = task.encode(
        predictor.tokenizer,
        check.dataset,
        max_length=predictor.config.model.max_length,
        stride=predictor.config.model.stride,
    )
    common = {"task": task, "labels": predictor.labels, "threshold": predictor.threshold}
    stages.set_description("export: measure PyTorch eager")
    before = measure(TorchBackend(model), enc, **common, size_mb=_state_mb(model))
    stages.update()

    stages.set_description("export: prune" if opts.prune else "export: prepare")
    prune_info = _prune(model, opts, predictor, out, stages, show_progress)
    stages.update()

    stages.set_description(f"export: write {opts.format}")
    for name in ("config.json", "labels.json"):
        shutil.copy2(source.root / name, out.root / name)
    shutil.copytree(source.tokenizer, out.tokenizer, symlinks=True)  # a link is never followed
    format_info = _write_weights(model, opts.format, out, sample_batch(enc), prune_info)
    info = {
        "format": opts.format,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "prune": prune_info,
        "max_drop": opts.max_drop,
        "parity_data": check.name,
        **format_info,
    }
    art_summary = {**summary, "name": out.name, "format": opts.format, "source_run": str(source.root)}
    art_summary["export"] = info
    out.write_summary(art_summary)
    stages.update()

    stages.set_description(f"export: measure {opts.format}")
    backend = get_format(opts.format)(
        LoadContext(run=out, config=predictor.config, labels=predictor.labels, summary=art_summary)
    )
    after = measure(backend, enc, **common, size_mb=_folder_mb(out.weights))
    stages.update()

    stages.set_description("export: parity check")
    metric = task.parity_metric(predictor.config.train.metric)
    report = {
        "format": opts.format,
        "source_run": str(source.root),
        "data": {"name": check.name, "rows": len(check.dataset)},  # texts, not windows
    }
    report |= compare(
        before,
        after,
        metric=metric,
        task=task,
        threshold=predictor.threshold,
        max_drop=opts.max_drop,
        enc=enc,
    )
    art_summary["headline"] = {check.split: task.headline(after.metrics)}
    art_summary["parity"] = {k: report[k] for k in ("metric", "drop_points", "agreement", "passed")}
    from tunelab.compress.export import write_reports

    write_reports(out, art_summary, report, {check.split: after.metrics})
    stages.update()
    if not report["passed"]:
        b, a = report["before"][metric], report["after"][metric]
        hint = ""
        if opts.fractions and not opts.recover_epochs:
            hint = "; --recover-epochs 4 fine-tunes the pruned model to win most of it back"
        raise ParityError(
            f"{opts.format} export failed the parity check: {metric} {b:.2f}% -> {a:.2f}% on {check.name} "
            f"({len(check.dataset)} rows), a drop of {report['drop_points']:.2f} points, more than the "
            "allowed "
            f"{opts.max_drop:g} (--max-drop); no artifact was written{hint}"
        )
    return report


def check_exportable(model: nn.Module, opts: ExportOptions) -> None:
    """Refuse, before any work, a model that ``opts`` cannot export: torch-int8 of a model that is no
    plain sentence classifier, or structured pruning of one that keeps weights outside its base.

    An ensemble's export runs this on every member first, so a member that cannot be exported is
    named before the others are exported (and pruned, and distilled) for nothing.

    Raises:
        RunError: one line naming what to use instead.
    """
    if opts.format == "torch-int8":
        from tunelab.compress.torch_int8 import check_supported

        check_supported(model)
    if opts.fractions:
        from transformers import PreTrainedModel

        if not isinstance(model, PreTrainedModel):
            # Cutting heads or neurons reshapes the base; weights kept beside it (a prefix's keys and
            # values per head, say) would no longer fit. Which do is the method's business, so all refuse.
            raise RunError(
                f"--prune-method {opts.prune_method} reshapes the base model, and this run's model "
                f"({type(model).__name__}) keeps weights outside it (its method cannot merge); "
                "use --prune-method magnitude, or no pruning"
            )


def _prune(
    model: nn.Module, opts: ExportOptions, predictor: Any, out: RunFolder, stages: Any, show_progress: bool
) -> dict[str, Any] | None:
    """Prune ``model`` in place as ``opts`` says (and recover, if asked); what was done, or None."""
    if opts.prune is None:
        return None
    if opts.prune_method == "magnitude":
        from tunelab.compress.prune import prune_magnitude

        return prune_magnitude(model, opts.prune)
    from tunelab.compress.datasets import calibration_batches, training_texts
    from tunelab.compress.structured import prune_structured

    texts, replayed = training_texts(predictor)
    teacher = copy.deepcopy(model) if opts.recover_epochs else None
    batches = calibration_batches(texts, seed=predictor.config.data.split_seed)
    info: dict[str, Any] = {"method": opts.prune_method, "fraction": opts.prune}
    if replayed is not None:  # a continued run: its texts include the rows it replayed
        info["rehearsal_rows"] = replayed
    info |= prune_structured(model, **opts.fractions, calibration=batches)
    if teacher is not None:
        from tunelab.compress.recover import distill

        stages.set_description(f"export: recover ({opts.recover_epochs:g} epochs)")
        workdir = out.root / "recover"
        info["recovery"] = distill(
            model,
            teacher,
            texts,
            task=predictor.task,
            epochs=opts.recover_epochs,
            train_cfg=predictor.config.train,
            workdir=workdir,
            show_progress=show_progress,
        )
        out.logs.mkdir(parents=True, exist_ok=True)
        (workdir / "metrics.jsonl").replace(out.logs / "recover.jsonl")
        shutil.rmtree(workdir)
    return info


def _write_weights(
    model: nn.Module, fmt: str, out: RunFolder, sample: dict, prune_info: dict[str, Any] | None
) -> dict[str, Any]:
    from tunelab.compress.onnx_export import export_onnx

    out.weights.mkdir(parents=True, exist_ok=True)
    if fmt == "torch-int8":
        from tunelab.compress.torch_int8 import save_torch_int8

        return {"quantization": save_torch_int8(model, out.weights, shape=prune_info)}
    target = out.weights / "model.onnx"
    if fmt == "onnx":
        return {"onnx": export_onnx(model, sample, target)}
    from tunelab.compress.onnx_int8 import quantize_onnx

    fp32 = out.root / "model-fp32.onnx"
    onnx_info = export_onnx(model, sample, fp32)
    quant = quantize_onnx(fp32, target)
    fp32.unlink()
    return {"onnx": onnx_info, "quantization": quant}


def _state_mb(model: nn.Module) -> float:
    """Size of the model's tensors as stored uncompressed (the merged fp32 model a run loads)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
