"""Loading a bottleneck adapter run read its weights file a second time (the tensor names, for the
legacy-Pfeiffer check) beside ``wrapped_model.load``'s read, whatever the run's kind: now only a
Pfeiffer run with ``train_layer_norm``, the only kind that can be legacy, has its names read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tunelab.methods.adapter as adapter_mod
from tunelab.methods import get_method
from tunelab.methods.registry import ModelLoader


@pytest.mark.parametrize(
    ("options", "names_read"),
    [
        ({"kind": "houlsby"}, 0),
        ({"kind": "houlsby", "train_layer_norm": True}, 0),
        ({"kind": "pfeiffer"}, 0),
        ({"kind": "pfeiffer", "train_layer_norm": True}, 1),
    ],
)
def test_only_a_run_that_can_be_legacy_pfeiffer_reads_its_tensor_names_again(
    saved_adapter: Any,
    adapter_loader: ModelLoader,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    names_read: int,
) -> None:
    folder = saved_adapter("adapter", tmp_path / "run", **options)
    calls: list[Path] = []
    original = adapter_mod._saved_names

    def spy(where: Path) -> set[str] | None:
        calls.append(where)
        return original(where)

    monkeypatch.setattr(adapter_mod, "_saved_names", spy)
    model = get_method("adapter").load(folder, adapter_loader)
    assert len(calls) == names_read
    assert any(".adapter." in n for n, _ in model.named_parameters())
