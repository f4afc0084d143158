"""Bad input a reviewer found reported wrongly: a truncated encoder's ``.safetensors`` as "unexpected
SafetensorError", a damaged ``config.json`` blamed on the tokenizer, a recommender's ``vectors.npy``
of the wrong length as "unexpected IndexError", a folder given for a file as "not found", and a
``method.target_modules`` entry naming no layer passed by ``validate`` and refused by ``train``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from recommend_fixtures import config_dict, write_world
from test_cli_output_review_fixes import error_lines

from tunelab.cli.main import main
from tunelab.errors import ConfigError, DataError, ModelNotFoundError


def truncate(path: Path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def one_error_line(err: str) -> str:
    [line] = error_lines(err)  # no traceback, no "unexpected"
    assert len(err.strip().splitlines()) == 1, err
    return line


# -- 1. a truncated .safetensors in a sentence encoder ----------------------------------------------


@pytest.fixture
def cut_encoder(tiny_bert: Path, tmp_path: Path) -> Path:
    """The tiny BERT (a folder sentence-transformers loads with mean pooling), weights cut short."""
    folder = tmp_path / "cut-encoder"
    shutil.copytree(tiny_bert, folder)
    truncate(folder / "model.safetensors")
    return folder


def test_a_truncated_encoder_safetensors_is_one_line_from_the_embeddings_loader(cut_encoder: Path) -> None:
    from tunelab.embeddings import load_encoder

    with pytest.raises(ConfigError, match=r"cut-encoder: not a sentence encoder \(SafetensorError\); give a"):
        load_encoder(str(cut_encoder))


def test_zeroshot_with_a_truncated_encoder_is_one_line(
    cut_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.yaml"
    labels.write_text("sports: games and matches\nfood: meals and cooking\n", encoding="utf-8")
    code = main(["zeroshot", str(labels), "--out", str(tmp_path / "z"), "--encoder", str(cut_encoder)])
    assert code != 0
    assert "not a sentence encoder (SafetensorError)" in one_error_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def built_recommender(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    from tunelab.apps.recommend import RecommendConfig, build

    root = tmp_path_factory.mktemp("rec-bad-input")
    build(RecommendConfig.from_dict(config_dict(write_world(root), encoder=tiny_bert)), root / "rec")
    return root / "rec"


@pytest.fixture
def rec_copy(built_recommender: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "rec"
    shutil.copytree(built_recommender, folder)
    return folder


def test_a_recommender_with_a_truncated_encoder_is_a_damaged_folder(rec_copy: Path) -> None:
    from tunelab.apps.recommend import Recommender

    truncate(rec_copy / "encoder" / "model.safetensors")
    with pytest.raises(
        ConfigError, match=r"rec: a damaged recommender folder \(SafetensorError: .*build it again"
    ):
        Recommender.load(rec_copy)


# -- 2. a damaged config.json is not the tokenizer's fault ------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"), [('{"model_type": "bert", "hidden', r"Unterminated string"), ("[]", r"a JSON array")]
)
def test_a_damaged_config_json_is_named_not_the_tokenizer(
    tiny_bert: Path, tmp_path: Path, text: str, why: str
) -> None:
    from tunelab.models.classifier import load_tokenizer

    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    (folder / "config.json").write_text(text, encoding="utf-8")
    with pytest.raises(ModelNotFoundError) as raised:
        load_tokenizer(folder)
    message = str(raised.value)
    assert message.startswith(f"model folder {folder}: config.json is not a JSON object (")
    assert message.endswith("); save the model again with save_pretrained()")
    assert re.search(why, message) and "tokenizer" not in message


# -- 3. vectors.npy of another length ---------------------------------------------------------------


def test_a_recommender_whose_vectors_miss_a_row_is_a_damaged_folder(rec_copy: Path) -> None:
    """It loaded, and ranking failed with "unexpected IndexError" (a server started on it)."""
    from tunelab.apps.recommend import Recommender

    vectors = np.load(rec_copy / "vectors.npy")
    np.save(rec_copy / "vectors.npy", vectors[:-1])
    refused = (
        rf"rec: a damaged recommender folder \(ValueError: vectors\.npy has {len(vectors) - 1} rows for the "
        rf"{len(vectors)} items of items\.parquet\); build it again"
    )
    with pytest.raises(ConfigError, match=refused):
        Recommender.load(rec_copy)


def test_the_recommend_rank_command_names_vectors_of_another_length(
    rec_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = np.load(rec_copy / "vectors.npy")
    np.save(rec_copy / "vectors.npy", np.vstack([vectors, vectors[:1]]))
    assert main(["app", "recommend", "rank", str(rec_copy), "--user", "u0"]) != 0
    line = one_error_line(capsys.readouterr().err)
    assert f"vectors.npy has {len(vectors) + 1} rows for the {len(vectors)} items" in line


# -- 4. a folder where a file is expected -----------------------------------------------------------


def test_validate_a_folder_says_it_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == f"error: {tmp_path}: a folder, not a file; give the YAML run file inside it"


def test_zeroshot_a_folder_of_labels_says_it_is_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "labels"
    folder.mkdir()
    assert main(["zeroshot", str(folder), "--out", str(tmp_path / "z")]) != 0
    line = one_error_line(capsys.readouterr().err)
    assert line == f"error: {folder}: a folder, not a file; give the label file inside it"


def test_a_knowledge_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    from tunelab.apps.support.knowledge import read_passages

    with pytest.raises(DataError, match=r": a folder, not a file; give the knowledge file inside it \(\.md,"):
        read_passages(tmp_path)


# -- 5. target_modules that name no layer -----------------------------------------------------------


def validate_args(model: Path, train: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "validate",
        f"data.train={train}",
        f"model.name={model}",
        f"output_dir={tmp_path / 'runs'}",
        *extra,
    ]


def test_validate_refuses_target_modules_that_match_no_module(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate passed it; train then failed "No modules were targeted for adaptation"."""
    args = validate_args(tiny_bert, labelled_csvs[0], tmp_path, "method=lora", "method.target_modules=[nope]")
    assert main(args) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"error: method.target_modules: nope matches no module of {tiny_bert}; "
        "modules it could adapt include query, key, value, dense"
    )


@pytest.mark.parametrize(
    ("targets", "refused"),
    [
        ("[query,nope]", "nope matches no module"),  # peft dropped the typo without a word
        ("[attention]", "attention matches bert.encoder.layer.0.attention (a BertAttention), not a layer"),
        ("[classifier]", "classifier matches only classifier, which the method trains in full"),
        ("nope.*", "nope.* matches no module"),
    ],
)
def test_validate_refuses_target_modules_train_would_refuse(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, targets: str, refused: str
) -> None:
    from tunelab.preflight import validate_run

    overrides = [f"data.train={labelled_csvs[0]}", f"model.name={tiny_bert}", f"output_dir={tmp_path}"]
    report = validate_run(None, overrides=[*overrides, "method=lora", f"method.target_modules={targets}"])
    assert len(report.problems) == 1 and f"method.target_modules: {refused}" in report.problems[0]


@pytest.mark.parametrize("model", ["tiny", "minilm-l6"])
@pytest.mark.parametrize("method", ["lora", "adalora", "ia3", "loha", "lokr"])
@pytest.mark.parametrize(
    "extra",
    [[], ["model.pooling=mean"], ["method.target_modules=.*query"], ["method.target_modules=all-linear"]],
)
def test_default_and_regex_target_modules_still_validate(
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    tmp_path: Path,
    model: str,
    method: str,
    extra: list[str],
) -> None:
    from tunelab.preflight import validate_run

    name = tiny_bert if model == "tiny" else model
    overrides = [f"data.train={labelled_csvs[0]}", f"model.name={name}", f"output_dir={tmp_path}"]
    report = validate_run(None, overrides=[*overrides, f"method={method}", *extra])
    assert report.problems == []


def test_train_refuses_target_modules_that_match_no_module_before_building(
    tiny_bert: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, tiny_overrides
) -> None:
    import tunelab

    overrides = tiny_overrides(tiny_bert, labelled_csvs[0], None, tmp_path, "method=lora")
    with pytest.raises(ConfigError, match=r"method\.target_modules: nope matches no module"):
        tunelab.train(None, overrides=[*overrides, "method.target_modules=[nope]"], show_progress=False)
    assert not list(tmp_path.iterdir())  # refused before a run folder was made


def test_token_classification_target_modules_are_checked_against_its_model(
    tiny_bert: Path, tagged_jsonls: tuple[Path, Path], tmp_path: Path
) -> None:
    from tunelab.preflight import validate_run

    overrides = [f"data.train={tagged_jsonls[0]}", "data.task=token_classification", "method=lora"]
    overrides += [f"model.name={tiny_bert}", f"output_dir={tmp_path}"]
    assert validate_run(None, overrides=overrides).problems == []
    # no pooler in a per-token model: peft found nothing to adapt
    report = validate_run(None, overrides=[*overrides, "method.target_modules=[pooler.dense]"])
    assert report.problems == [
        f"method.target_modules: pooler.dense matches no module of {tiny_bert}; "
        "modules it could adapt include query, key, value, dense"
    ]
