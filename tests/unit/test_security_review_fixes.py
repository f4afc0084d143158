"""Folders received from elsewhere (runs, ensembles, NLI models, knowledge indexes) run no code and
fail in one line: the security review's findings."""

from __future__ import annotations

import builtins
import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab.errors import DataError, ModelNotFoundError, RunError, TunelabError

_names = itertools.count()


@pytest.fixture
def no_prompt(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Answers "y" to transformers' "Do you wish to run the custom code? [y/N]" (as a user at a
    terminal might), and records every question asked: none may be."""
    asked: list[str] = []

    def answer(prompt: str = "") -> str:
        asked.append(prompt)
        return "y"

    monkeypatch.setattr(builtins, "input", answer)
    return asked


def _plant_code(folder: Path, marker: Path, body: str) -> str:
    """A module in ``folder`` that creates ``marker`` when imported; returns its (unique) name."""
    name = f"crafted_code_{next(_names)}"
    (folder / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code ran')\n{body}", encoding="utf-8"
    )
    return name


def _crafted_config(folder: Path, marker: Path, auto_class: str) -> None:
    """``folder``'s config.json with a model type transformers does not know and an ``auto_map``
    naming a module beside it, as a crafted folder would have."""
    module = _plant_code(
        folder,
        marker,
        "from transformers import PretrainedConfig\n"
        "class CraftedConfig(PretrainedConfig):\n    model_type = 'crafted'\n"
        "class CraftedModel:\n    pass\n",
    )
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["model_type"] = f"crafted_{module}"
    config["auto_map"] = {"AutoConfig": f"{module}.CraftedConfig", auto_class: f"{module}.CraftedModel"}
    path.write_text(json.dumps(config), encoding="utf-8")


def _crafted_tokenizer_config(folder: Path, marker: Path) -> None:
    module = _plant_code(folder, marker, "from transformers import BertTokenizerFast as CraftedTokenizer\n")
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "CraftedTokenizer"
    config["auto_map"] = {"AutoTokenizer": [f"{module}.CraftedTokenizer", f"{module}.CraftedTokenizer"]}
    path.write_text(json.dumps(config), encoding="utf-8")


def _assert_refused(caught: pytest.ExceptionInfo[Any], marker: Path, asked: list[str]) -> None:
    message = str(caught.value)
    assert "\n" not in message
    assert "names Python code of its own (auto_map), which tunelab never runs" in message, message
    assert not marker.exists(), "the folder's code ran"
    assert asked == [], "transformers asked whether to run the folder's code"


# -- 1. from_pretrained never runs a folder's code ---------------------------------------------------


@pytest.fixture(scope="module")
def run(tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path_factory) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("security-runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "name=sec", epochs=1)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def test_a_run_whose_weights_name_their_own_code_is_refused_without_a_prompt(
    run: Path, tmp_path: Path, no_prompt: list[str]
) -> None:
    """A run's weights/config.json with an unknown model_type and an auto_map made transformers ask
    "Do you wish to run the custom code? [y/N]", and "y" ran the folder's Python file."""
    assert tunelab.load(run).predict("football match")["label"]  # tunelab's own run loads, no prompt
    assert no_prompt == []
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    marker = tmp_path / "ran"
    _crafted_config(copy / "weights", marker, "AutoModelForSequenceClassification")
    with pytest.raises(TunelabError) as caught:
        tunelab.load(copy)
    _assert_refused(caught, marker, no_prompt)
    assert "cannot load the classifier" in str(caught.value)


def test_a_run_whose_tokenizer_names_its_own_code_is_refused_without_a_prompt(
    run: Path, tmp_path: Path, no_prompt: list[str]
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    marker = tmp_path / "ran"
    _crafted_tokenizer_config(copy / "tokenizer", marker)
    with pytest.raises(TunelabError) as caught:
        tunelab.load(copy)
    _assert_refused(caught, marker, no_prompt)
    assert "no usable tokenizer" in str(caught.value)


def test_a_base_model_that_names_its_own_code_is_refused_without_a_prompt(
    tiny_bert: Path, tmp_path: Path, no_prompt: list[str]
) -> None:
    from tunelab.models import build_classifier, load_tokenizer

    base = tmp_path / "base"
    shutil.copytree(tiny_bert, base)
    marker = tmp_path / "ran"
    _crafted_config(base, marker, "AutoModel")
    with pytest.raises(ModelNotFoundError) as caught:
        build_classifier(base, ["a", "b"])
    _assert_refused(caught, marker, no_prompt)
    tokenizer_marker = tmp_path / "ran-tokenizer"
    _crafted_tokenizer_config(base, tokenizer_marker)
    with pytest.raises(ModelNotFoundError) as caught:
        load_tokenizer(base)
    _assert_refused(caught, tokenizer_marker, no_prompt)


def test_a_token_classifier_folder_that_names_its_own_code_is_refused_without_a_prompt(
    tiny_bert: Path, tmp_path: Path, no_prompt: list[str]
) -> None:
    from tunelab.tasks.token_classification.task import TokenClassificationTask

    folder = tmp_path / "ner"
    shutil.copytree(tiny_bert, folder)
    marker = tmp_path / "ran"
    _crafted_config(folder, marker, "AutoModelForTokenClassification")
    with pytest.raises(ModelNotFoundError, match="cannot load a token classifier") as caught:
        TokenClassificationTask().load_model(folder)
    _assert_refused(caught, marker, no_prompt)


def test_an_nli_folder_that_names_its_own_code_is_refused_without_a_prompt(
    tmp_path: Path, no_prompt: list[str]
) -> None:
    from tunelab.models.tiny import save_tiny_bert
    from tunelab.zeroshot.scorers import NliScorer

    folder = save_tiny_bert(tmp_path / "nli", labels=["contradiction", "neutral", "entailment"])
    assert NliScorer(folder, ["sports", "food"], template="This is about {}.").entailment == 2
    marker = tmp_path / "ran"
    _crafted_config(folder, marker, "AutoModelForSequenceClassification")
    with pytest.raises(ModelNotFoundError, match="no NLI model there") as caught:
        NliScorer(folder, ["sports", "food"], template="This is about {}.")
    _assert_refused(caught, marker, no_prompt)
    tokenizer_marker = tmp_path / "ran-tokenizer"
    _crafted_tokenizer_config(folder, tokenizer_marker)
    with pytest.raises(ModelNotFoundError, match="no NLI model there") as caught:
        NliScorer(folder, ["sports", "food"], template="This is about {}.")
    _assert_refused(caught, tokenizer_marker, no_prompt)


def test_a_torch_int8_config_that_names_its_own_code_is_refused_without_a_prompt(
    tiny_bert: Path, tmp_path: Path, no_prompt: list[str]
) -> None:
    from tunelab.compress.torch_int8 import LAYOUT_FILE, WEIGHTS_FILE, load_torch_int8

    folder = tmp_path / "int8"
    folder.mkdir()
    shutil.copy(tiny_bert / "config.json", folder / "config.json")
    (folder / LAYOUT_FILE).write_text(json.dumps({"pooling": "mean", "num_labels": 2, "layers": []}))
    (folder / WEIGHTS_FILE).write_bytes(b"")
    marker = tmp_path / "ran"
    _crafted_config(folder, marker, "AutoModelForSequenceClassification")
    with pytest.raises(RunError, match=r"config\.json: cannot read") as caught:
        load_torch_int8(folder)
    _assert_refused(caught, marker, no_prompt)


# -- 2. an ensemble's members stay under its weights/ ------------------------------------------------


@pytest.fixture
def ensemble_of(run: Path, tmp_path: Path):
    """``ensemble_of(members)``: an ensemble folder whose run.json lists ``members`` (its one real
    member, a copy of ``run``, is at weights/m1)."""

    def make(members: list[Any]) -> Path:
        root = tmp_path / "ens"
        shutil.copytree(run, root)
        shutil.copytree(run, root / "weights" / "m1")
        summary = json.loads((root / "run.json").read_text(encoding="utf-8"))
        summary.update(format="ensemble", members=members)
        (root / "run.json").write_text(json.dumps(summary), encoding="utf-8")
        return root

    return make


def test_an_ensembles_own_member_loads(ensemble_of) -> None:
    ens = ensemble_of([{"path": "weights/m1", "temperature": 1.0}])
    assert tunelab.load(ens).predict("football match")["label"]


@pytest.mark.parametrize(
    "member",
    [
        {"path": "../outside"},  # a run beside the ensemble: outside --model-root when served
        {"path": "weights/../../outside"},
        {"path": "ABSOLUTE"},  # the run's absolute path
        {"path": "."},  # the ensemble itself: recursed until RecursionError
        {"path": "weights"},
        {"path": "weights/missing"},
    ],
)
def test_an_ensemble_member_outside_its_weights_folder_is_refused(
    run: Path, ensemble_of, tmp_path: Path, member: dict[str, str]
) -> None:
    shutil.copytree(run, tmp_path / "outside")
    path = str(tmp_path / "outside") if member["path"] == "ABSOLUTE" else member["path"]
    ens = ensemble_of([{"path": "weights/m1"}, {"path": path, "temperature": 1.0}])
    with pytest.raises(RunError) as caught:
        tunelab.load(ens)
    assert str(caught.value) == (
        f"{ens / 'run.json'}: member {path!r} is not a folder under weights/; build the ensemble again"
    )


@pytest.mark.parametrize("member", [5, "weights/m1", None, {"temperature": 1.0}, {"path": 3}])
def test_an_ensemble_member_that_is_no_object_with_a_path_is_refused(ensemble_of, member: Any) -> None:
    """A member that is not an object ended in "unexpected TypeError"."""
    ens = ensemble_of([member])
    with pytest.raises(RunError, match=r"run\.json: member .* is not an object with a path; build the"):
        tunelab.load(ens)


def test_the_members_rows_are_read_only_from_under_weights(run: Path, ensemble_of, tmp_path: Path) -> None:
    from tunelab.ensembling.build import member_setups

    ens = ensemble_of([{"path": "weights/m1"}])
    assert len(member_setups(ens, {"members": [{"path": "weights/m1"}]})) == 1
    for member in ({"path": str(run)}, {"path": ".."}, 5):
        with pytest.raises(RunError, match="build the ensemble again"):
            member_setups(ens, {"members": [member]})


# -- 3. an NLI model's weights come from safetensors only -------------------------------------------


def test_an_nli_folder_with_only_a_pickled_checkpoint_is_refused(tmp_path: Path) -> None:
    """pytorch_model.bin is a pickle: it loaded, against DESIGN's safetensors-only rule."""
    import torch
    from safetensors.torch import load_file

    from tunelab.models.tiny import save_tiny_bert
    from tunelab.zeroshot.scorers import NliScorer

    folder = save_tiny_bert(tmp_path / "nli", labels=["contradiction", "neutral", "entailment"])
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError) as caught:
        NliScorer(folder, ["sports", "food"], template="This is about {}.")
    message = str(caught.value)
    assert message.startswith(f"{folder}: no NLI model there (") and "\n" not in message
    assert "saved with save_pretrained (config.json and model.safetensors)" in message


# -- 5. an ann.faiss that is not the HNSW index index.json says ------------------------------------


def _knowledge_folder(folder: Path, ann: Any, rows: int = 3) -> Path:
    import faiss

    from tunelab.apps.support.knowledge import KnowledgeIndex

    folder.mkdir()
    vectors = np.eye(rows, 4, dtype=np.float32)
    np.save(folder / KnowledgeIndex.VECTORS, vectors)
    passages = [
        json.dumps({"text": f"passage {i}", "title": "", "source": f"kb.md:{i}"}) for i in range(rows)
    ]
    (folder / KnowledgeIndex.PASSAGES).write_text("\n".join(passages) + "\n", encoding="utf-8")
    (folder / KnowledgeIndex.META).write_text(json.dumps({"model": "m", "search": "hnsw"}))
    faiss.write_index(ann, str(folder / KnowledgeIndex.ANN))
    return folder


def _hnsw(rows: int) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(4, 8, faiss.METRIC_INNER_PRODUCT)
    index.add(np.eye(rows, 4, dtype=np.float32))
    return index


def test_a_knowledge_index_whose_ann_file_is_another_index_type_is_one_line(tmp_path: Path) -> None:
    """index.json said hnsw and ann.faiss held a flat index: an uncaught AttributeError on .hnsw."""
    import faiss

    from tunelab.apps.support.knowledge import KnowledgeIndex

    good = KnowledgeIndex.load(_knowledge_folder(tmp_path / "good", _hnsw(3)))
    assert good.search_kind == "hnsw"
    for name, ann in (("flat", faiss.IndexFlatIP(4)), ("other", _hnsw(2))):
        folder = _knowledge_folder(tmp_path / name, ann)
        with pytest.raises(
            DataError,
            match=rf"^{re.escape(str(folder))}: not a knowledge index \(ValueError\); build it again$",
        ):
            KnowledgeIndex.load(folder)


def test_a_recommender_index_whose_ann_file_is_another_index_type_is_refused(tmp_path: Path) -> None:
    """Recommender.load turns the ValueError into "a damaged recommender folder ...; build it again"."""
    import faiss

    from tunelab.apps.recommend.index import ANN, VECTORS, ItemIndex

    np.save(tmp_path / VECTORS, np.eye(3, 4, dtype=np.float32))
    faiss.write_index(_hnsw(3), str(tmp_path / ANN))
    assert ItemIndex.load(tmp_path).kind == "hnsw"
    faiss.write_index(faiss.IndexFlatIP(4), str(tmp_path / ANN))
    with pytest.raises(ValueError, match=r"ann\.faiss holds a IndexFlatIP, not an HNSW index"):
        ItemIndex.load(tmp_path)
    faiss.write_index(_hnsw(2), str(tmp_path / ANN))
    with pytest.raises(ValueError, match=r"ann\.faiss does not index vectors\.npy"):
        ItemIndex.load(tmp_path)


def test_exporting_an_ensemble_with_a_member_outside_its_weights_reads_and_writes_nothing_outside(
    run: Path, ensemble_of, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export read a run.json member '../outside' and wrote its export to out/../outside."""
    from tunelab.cli.main import main

    shutil.copytree(run, tmp_path / "outside")
    outside = sorted(p.relative_to(tmp_path) for p in (tmp_path / "outside").rglob("*"))
    ens = ensemble_of([{"path": "weights/m1"}, {"path": "weights/../../outside", "temperature": 1.0}])
    target = tmp_path / "exp" / "ens-onnx"
    assert main(["export", str(ens), "--format", "onnx", "--output", str(target), "-q"]) != 0
    assert "member 'weights/../../outside' is not a folder under weights/" in capsys.readouterr().err
    assert not target.exists()
    assert not (tmp_path / "exp").exists() or not list((tmp_path / "exp").iterdir())  # nothing beside it
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "outside").rglob("*")) == outside
