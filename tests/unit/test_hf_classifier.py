"""tunelab's classifiers are Hugging Face models: saved with ``save_pretrained``, loaded with the
Auto classes (also where tunelab is not installed), and old run folders still load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from tunelab.methods import get_method
from tunelab.methods.registry import ModelLoader
from tunelab.models import build_classifier, load_tokenizer
from tunelab.models.classifier import load_classifier, save_classifier
from tunelab.models.pooled_classifier import PooledClassifier

LABELS = ["food", "sports", "weather"]
TEXTS = ["the football match was great", "pizza and cheese for dinner", "rain"]


@pytest.fixture
def batch(tiny_bert: Path) -> dict[str, torch.Tensor]:
    return dict(load_tokenizer(tiny_bert)(TEXTS, padding=True, return_tensors="pt"))


def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**batch).logits


@pytest.mark.parametrize(
    ("pooling", "cls"), [("cls", BertForSequenceClassification), ("mean", PooledClassifier)]
)
def test_the_classifier_is_a_transformers_model_with_its_labels(
    tiny_bert: Path, tmp_path: Path, batch: dict[str, torch.Tensor], pooling: str, cls: type
) -> None:
    model = build_classifier(tiny_bert, LABELS, "multi_label_classification", pooling=pooling, seed=0)
    assert type(model) is cls and model.pooling == pooling
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.label2id == {name: i for i, name in enumerate(LABELS)}
    assert model.config.problem_type == "multi_label_classification"
    assert build_classifier(tiny_bert, LABELS, pooling=pooling).config.problem_type == (
        "single_label_classification"
    )
    expected = logits(model, batch)
    save_classifier(model, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "model.safetensors"}
    # The stock Auto class loads it (with tunelab imported, the mean-pooled model is registered).
    loaded = AutoModelForSequenceClassification.from_pretrained(str(tmp_path))
    assert type(loaded) is cls and loaded.config.id2label == dict(enumerate(LABELS))
    torch.testing.assert_close(logits(loaded, batch), expected)
    torch.testing.assert_close(logits(load_classifier(tmp_path), batch), expected)


def test_the_mean_pooled_model_loads_where_tunelab_is_not_installed(
    tiny_bert: Path, tmp_path: Path, batch: dict[str, torch.Tensor]
) -> None:
    model = build_classifier(tiny_bert, LABELS, pooling="mean", seed=0)
    save_classifier(model, tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text(encoding="utf-8"))
    assert config["auto_map"]["AutoModelForSequenceClassification"] == "pooled_classifier.PooledClassifier"
    assert (tmp_path / "saved" / "pooled_classifier.py").is_file()
    np.save(tmp_path / "input_ids.npy", batch["input_ids"].numpy())
    np.save(tmp_path / "attention_mask.npy", batch["attention_mask"].numpy())
    np.save(tmp_path / "expected.npy", logits(model, batch).numpy())
    # A fresh Python whose imports of tunelab fail: a finder ahead of all others refuses them (the
    # venv's editable install would find the package otherwise), no PYTHONPATH, cwd outside the repo.
    script = """
import importlib.abc, sys
class NoTunelab(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tunelab":
            raise ImportError("tunelab is not installed here")
sys.meta_path.insert(0, NoTunelab())
try:
    import tunelab
except ImportError:
    pass
else:
    raise SystemExit("tunelab is importable")
import numpy as np, torch
from transformers import AutoModelForSequenceClassification
folder = sys.argv[1]
model = AutoModelForSequenceClassification.from_pretrained(folder + "/saved", trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert not [m for m in sys.modules if m.split(".")[0] == "tunelab"]
assert model.config.id2label[2] == "weather", model.config.id2label
ids, mask = (torch.from_numpy(np.load(f"{folder}/{n}.npy")) for n in ("input_ids", "attention_mask"))
with torch.no_grad():
    got = model(input_ids=ids, attention_mask=mask).logits.numpy()
np.testing.assert_allclose(got, np.load(folder + "/expected.npy"), rtol=1e-5, atol=1e-6)
print("remote ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "remote ok" in done.stdout, done.stderr[-2000:]


def _legacy_folder(tiny_bert: Path, folder: Path, pooling: str, head: torch.nn.Linear) -> Path:
    """A full run's weights as tunelab wrote them before: encoder folder + head.safetensors + head.json."""
    from safetensors.torch import save_file

    shutil.copytree(tiny_bert, folder)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(folder / "head.safetensors"))
    (folder / "head.json").write_text(json.dumps({"pooling": pooling, "num_labels": head.out_features}))
    return folder


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_full_run_saved_in_the_old_layout_is_converted_on_load(
    tiny_bert: Path, tmp_path: Path, batch: dict[str, torch.Tensor], pooling: str
) -> None:
    from transformers import BertModel

    torch.manual_seed(5)
    head = torch.nn.Linear(32, 3)
    folder = _legacy_folder(tiny_bert, tmp_path / "weights", pooling, head)
    # What the old classifier computed: BertModel -> pooler output or masked mean -> linear.
    with torch.no_grad():
        out = BertModel.from_pretrained(str(tiny_bert)).eval()(**batch)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (
            out.pooler_output
            if pooling == "cls"
            else (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        )
        expected = head(pooled)
    loaded = load_classifier(folder)
    assert loaded.pooling == pooling and loaded.num_labels == 3
    torch.testing.assert_close(logits(loaded, batch), expected, rtol=1e-5, atol=1e-6)
    # And it saves in the new layout, which loads without the old files.
    save_classifier(loaded, tmp_path / "new")
    assert not (tmp_path / "new" / "head.json").exists()
    torch.testing.assert_close(
        logits(load_classifier(tmp_path / "new"), batch), expected, rtol=1e-5, atol=1e-6
    )


def test_a_broken_old_layout_is_one_line(tiny_bert: Path, tmp_path: Path) -> None:
    from tunelab.errors import ModelNotFoundError

    folder = _legacy_folder(tiny_bert, tmp_path / "weights", "mean", torch.nn.Linear(32, 3))
    (folder / "head.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match=r"head\.safetensors") as info:
        load_classifier(folder)
    assert "\n" not in str(info.value)


def test_a_lora_adapter_saved_with_the_old_module_names_still_loads(
    tiny_bert: Path, tmp_path: Path, batch: dict[str, torch.Tensor]
) -> None:
    from safetensors.torch import load_file, save_file

    lora = get_method("lora")
    model = lora.apply(build_classifier(tiny_bert, LABELS, pooling="cls", seed=0), lora.parse_options({}))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    expected = logits(model, batch)
    lora.save(model, tmp_path)
    # The old classifier kept BERT under ``encoder`` where BertForSequenceClassification has ``bert``.
    path = tmp_path / "adapter_model.safetensors"
    weights = load_file(str(path))
    assert any(".bert." in k for k in weights)
    save_file(
        {k.replace("base_model.model.bert.", "base_model.model.encoder."): v for k, v in weights.items()},
        str(path),
    )

    def base() -> torch.nn.Module:
        return build_classifier(tiny_bert, LABELS, pooling="cls")

    loaded = lora.load(tmp_path, ModelLoader(base=base, whole=load_classifier))
    torch.testing.assert_close(logits(loaded, batch), expected, rtol=1e-4, atol=1e-5)


def test_the_stock_cls_classifier_exports_to_onnx_like_eager(tiny_bert: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from tunelab.compress.onnx_export import export_onnx

    model = build_classifier(tiny_bert, LABELS, pooling="cls", seed=0).eval()
    texts = ["rain", "a much longer text about football and pizza"]
    sample = dict(load_tokenizer(tiny_bert)(texts, padding=True, return_tensors="pt"))
    export_onnx(model, sample, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {k: v.numpy() for k, v in sample.items()})[0]
    np.testing.assert_allclose(got, logits(model, sample).numpy(), rtol=1e-4, atol=1e-5)


def test_a_torch_int8_export_in_the_old_layout_still_loads(
    tiny_bert: Path, tmp_path: Path, batch: dict[str, torch.Tensor]
) -> None:
    from safetensors.torch import load_file, save_file

    from tunelab.compress.torch_int8 import LAYOUT_FILE, WEIGHTS_FILE, load_torch_int8, save_torch_int8

    model = build_classifier(tiny_bert, LABELS, pooling="cls", seed=0).eval()
    save_torch_int8(model, tmp_path, shape=None)
    expected = logits(load_torch_int8(tmp_path), batch)
    # Rewrite it as exports were before: the bare encoder's config and the old ``encoder.*`` names.
    shutil.copy(tiny_bert / "config.json", tmp_path / "config.json")
    tensors = load_file(str(tmp_path / WEIGHTS_FILE))
    save_file(
        {k.replace("bert.", "encoder.", 1): v for k, v in tensors.items()}, str(tmp_path / WEIGHTS_FILE)
    )
    layout = json.loads((tmp_path / LAYOUT_FILE).read_text(encoding="utf-8"))
    layout["layers"] = [n.replace("bert.", "encoder.", 1) for n in layout["layers"]]
    (tmp_path / LAYOUT_FILE).write_text(json.dumps(layout), encoding="utf-8")
    old = load_torch_int8(tmp_path)
    torch.testing.assert_close(logits(old, batch), expected)


def test_a_checkpoint_from_before_the_upgrade_resumes_into_the_stock_cls_classifier(tiny_bert: Path) -> None:
    """Trainable weights saved under the old ``encoder.*`` names load into BERT's ``bert.*``."""
    from tunelab.train.checkpoint import load_trainable_state, trainable_state

    trained = build_classifier(tiny_bert, LABELS, pooling="cls", seed=0)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01)
    old_names = {
        ("encoder." + k.split(".", 1)[1] if k.startswith("bert.") else k): v
        for k, v in trainable_state(trained).items()
    }
    assert any(k.startswith("encoder.") for k in old_names)
    fresh = build_classifier(tiny_bert, LABELS, pooling="cls", seed=1)
    load_trainable_state(fresh, old_names)
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("task_name", ["single_label", "multi_label"])
def test_an_old_layout_run_gets_the_problem_type_of_its_task(
    tiny_bert: Path, tmp_path: Path, task_name: str
) -> None:
    """transformers knows single_label_classification and multi_label_classification only."""
    from tunelab.tasks import get_task

    folder = _legacy_folder(tiny_bert, tmp_path / "weights", "cls", torch.nn.Linear(32, 3))
    loaded = get_task(task_name).load_model(folder)
    assert loaded.config.problem_type == f"{task_name}_classification"
    save_classifier(loaded, tmp_path / "new")
    assert load_classifier(tmp_path / "new").config.problem_type == f"{task_name}_classification"


def test_a_lora_checkpoint_from_before_the_upgrade_resumes_into_the_stock_cls_classifier(
    tiny_bert: Path,
) -> None:
    """peft prefixes the old ``encoder.*`` names with ``base_model.model.``: renamed as well."""
    from tunelab.methods import get_method
    from tunelab.train.checkpoint import load_trainable_state, trainable_state

    lora = get_method("lora")
    trained = lora.apply(build_classifier(tiny_bert, LABELS, pooling="cls", seed=0), lora.parse_options({}))
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(0.01)
    old_names = {
        k.replace("base_model.model.bert.", "base_model.model.encoder."): v
        for k, v in trainable_state(trained).items()
    }
    assert any(".encoder.encoder.layer" in k for k in old_names)
    fresh = lora.apply(build_classifier(tiny_bert, LABELS, pooling="cls", seed=1), lora.parse_options({}))
    load_trainable_state(fresh, old_names)
    expected, got = trainable_state(trained), trainable_state(fresh)
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, msg=name)


def test_a_checkpoint_that_does_not_fit_the_model_is_one_line(tiny_bert: Path) -> None:
    from tunelab.errors import RunError
    from tunelab.train.checkpoint import load_trainable_state

    model = build_classifier(tiny_bert, LABELS, pooling="cls", seed=0)
    with pytest.raises(RunError, match=r"^checkpoint weight 'nothing.like.this' does not fit this model$"):
        load_trainable_state(model, {"nothing.like.this": torch.zeros(1)})
