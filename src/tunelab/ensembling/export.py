"""Exporting an ensemble: every member exported (and parity-checked) by ``tunelab.compress.export``.

The artifact is an ensemble folder again (``format: ensemble``) whose members are the exported
artifacts, so it loads, predicts and serves like the ensemble it came from. Its ``parity.json``
holds each member's parity report; ``metrics.json`` the exported ensemble's metrics on the members'
test file and dev split.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.runs import RunFolder


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
    """The composite export builder of the ``ensemble`` format (see ``register_composite_export``)."""
    from tunelab.compress.export import export
    from tunelab.ensembling.build import _metrics
    from tunelab.predict import load

    stages.set_description("export: members")
    out.weights.mkdir(exist_ok=True)
    members, reports = [], {}
    for member in summary.get("members") or []:
        result = export(
            source.root / member["path"],
            format=opts.format,
            prune=opts.prune,
            prune_method=opts.prune_method,
            recover_epochs=opts.recover_epochs,
            output=out.root / member["path"],
            data=data,
            data_options=data_options or None,
            max_drop=opts.max_drop,
            show_progress=show_progress,
        )
        reports[member["path"]] = result.parity
        members.append({**member, "source": str(source.root / member["path"])})
    stages.update()
    for name in ("config.json", "labels.json"):
        shutil.copy2(source.root / name, out.root / name)
    shutil.copytree(source.tokenizer, out.tokenizer)
    art_summary = {
        **summary,
        "name": out.name,
        "members": members,
        "source_run": str(source.root),
        "export": {
            "member_format": opts.format,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    }
    out.write_summary(art_summary)
    ref = load(out.root / members[0]["path"])
    metrics = _metrics(out, ref, art_summary)
    art_summary["headline"] = {split: ref.task.headline(m) for split, m in metrics.items()}
    report = {
        "format": opts.format,
        "source_run": str(source.root),
        "passed": all(r.get("passed", True) for r in reports.values()),
        "members": reports,
    }
    atomic_write_json(out.metrics_json, metrics)
    atomic_write_json(out.root / "parity.json", report)
    parts = [f"# {opts.format} export of ensemble {source.root}\n"]
    for path in reports:
        text = (out.root / path / "parity.md").read_text(encoding="utf-8")
        parts.append(f"## member {path}\n\n{text}")
    atomic_write_text(out.root / "parity.md", "\n".join(parts))
    out.write_summary(art_summary)
    stages.update(stages.total - stages.n)
    return report
