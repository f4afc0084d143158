"""Zero-shot classification: labels described in YAML, scored by embeddings or NLI, no training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import tunelab
from tunelab.cli.main import main
from tunelab.errors import ConfigError, ModelNotFoundError, RunError
from tunelab.inference.forward import softmax
from tunelab.models.tiny import save_tiny_bert
from tunelab.zeroshot import describe_label, read_label_descriptions, zero_shot, zero_shot_predictor

DESCRIPTIONS = {
    "sports": "football match goal team",
    "food": "pizza cheese dinner recipe",
    "weather": "rain snow storm forecast",
}
TEXTS = ["football match and a goal today", "pizza and cheese for dinner", "rain and snow and cold wind"]


@pytest.fixture
def labels_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "labels.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in DESCRIPTIONS.items()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_nli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT NLI classifier (contradiction, neutral, entailment), bundled tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-nli")
    return save_tiny_bert(folder, labels=["contradiction", "neutral", "entailment"])


def test_label_names_become_words_by_a_fixed_rule() -> None:
    assert describe_label("card_arrival") == "card arrival"
    assert describe_label("Refund_not_showing_up") == "refund not showing up"
    assert describe_label("reverted_card_payment?") == "reverted card payment"
    assert describe_label("topUp-failed") == "top up failed"
    assert describe_label("情感_正面") == "情感 正面"


def test_a_list_of_names_is_described_by_the_names(tmp_path: Path) -> None:
    path = tmp_path / "names.yaml"
    path.write_text("- card_arrival\n- top_up_failed\n", encoding="utf-8")
    assert read_label_descriptions(path) == {"card_arrival": "card arrival", "top_up_failed": "top up failed"}


def test_a_list_of_star_ratings_or_yes_no_keeps_the_names_as_written(tmp_path: Path) -> None:
    """YAML read "- 1" and "- yes" as 1 and True, then refused them as "not a label name"."""
    path = tmp_path / "stars.yaml"
    path.write_text("- 1\n- 2\n- '3'\n", encoding="utf-8")
    assert list(read_label_descriptions(path)) == ["1", "2", "3"]
    path.write_text("- yes\n- no\n", encoding="utf-8")
    assert read_label_descriptions(path) == {"yes": "yes", "no": "no"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "no labels"),
        ("a: first\nb: second\na: third\n", "label 'a' appears twice (lines 1 and 3)"),
        ("a: 3\nb: two\n", "label 'a': the description must be text"),
        ("a: null\nb: two\n", "label 'a': the description must be text"),
        ("a: '  '\nb: two\n", "label 'a': the description is empty"),
        ("- a\n- b\n- a\n", "label 'a' appears twice"),
        ("a: only one\n", "only one label"),
        ("just a sentence\n", "expected 'label: description' lines"),
        ("a: [unclosed\n", "not valid YAML"),
        ("a: Same  words\nb: same words\n", "labels 'a' and 'b' have the same description"),
        ("- card_arrival\n- card-arrival\n", "labels 'card_arrival' and 'card-arrival' have the same"),
        ("? [a, b]\n: x\nc: y\n", "line 1: a label name must be plain text"),
    ],
)
def test_a_bad_label_file_fails_in_one_line_naming_the_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_label_descriptions(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_label_names_are_read_as_written_not_as_yaml_values(tmp_path: Path) -> None:
    """``yes:``, ``null:`` and ``1:`` name labels, not True, None and 1."""
    path = tmp_path / "labels.yaml"
    path.write_text("yes: the customer agrees\nno: the customer refuses\nnull: says nothing\n1: one\n")
    assert list(read_label_descriptions(path)) == ["yes", "no", "null", "1"]


def test_a_missing_label_file_says_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="label file not found"):
        read_label_descriptions(tmp_path / "nope.yaml")


def test_a_trained_runs_labels_json_gives_its_label_names(tmp_path: Path) -> None:
    """The folder's message pointed at the run's labels.json, which was then read as a label named
    ``labels`` whose description was a list ("the description must be text")."""
    from tunelab.data.labels import LabelMap

    run = tmp_path / "run"
    run.mkdir()
    LabelMap(["card_arrival", "top_up_failed"], task="single_label").save(run / "labels.json")
    with pytest.raises(ConfigError, match=re.escape(f"give the label file (this run's own labels: {run}")):
        read_label_descriptions(run)
    assert read_label_descriptions(run / "labels.json") == {
        "card_arrival": "card arrival",
        "top_up_failed": "top up failed",
    }
    LabelMap(["O", "B-ORG", "I-ORG"], task="token_classification").save(run / "labels.json")
    with pytest.raises(ConfigError, match="token_classification run's tags"):
        read_label_descriptions(run / "labels.json")


def test_embedding_logits_are_scaled_cosines_of_the_encoders_own_embeddings(tiny_bert: Path) -> None:
    from tunelab.embeddings import embed

    predictor = zero_shot_predictor(DESCRIPTIONS, encoder=str(tiny_bert))
    # sentence-transformers embeds the raw texts; the backend gets token ids: the same vectors.
    expected = (
        20.0 * embed(TEXTS, model=str(tiny_bert)) @ embed(list(DESCRIPTIONS.values()), model=str(tiny_bert)).T
    )
    np.testing.assert_allclose(predictor.logits(TEXTS), expected, atol=1e-4)
    results = predictor.predict(TEXTS, top_k=3)
    assert [r["label"] for r in results] == [list(DESCRIPTIONS)[i] for i in expected.argmax(axis=1)]


def test_the_template_is_what_gets_embedded(tiny_bert: Path) -> None:
    from tunelab.embeddings import embed

    predictor = zero_shot_predictor(DESCRIPTIONS, encoder=str(tiny_bert), template="This is about {}.")
    prompts = [f"This is about {d}." for d in DESCRIPTIONS.values()]
    expected = 20.0 * embed(TEXTS, model=str(tiny_bert)) @ embed(prompts, model=str(tiny_bert)).T
    np.testing.assert_allclose(predictor.logits(TEXTS), expected, atol=1e-4)
    with pytest.raises(ConfigError, match="exactly one"):
        zero_shot_predictor(DESCRIPTIONS, encoder=str(tiny_bert), template="no slot")
    # other braces fail in format() (or, doubled around the slot, leave none): refused up front
    for bad in ("It is about {} {x}", "{} {0}", "About: {}}", "{{}}"):
        with pytest.raises(ConfigError, match="no other braces"):
            zero_shot_predictor(DESCRIPTIONS, encoder=str(tiny_bert), template=bad)
    literal = zero_shot_predictor(DESCRIPTIONS, encoder=str(tiny_bert), template="{{topic}}: {}")
    assert literal.logits(TEXTS).shape == (len(TEXTS), len(DESCRIPTIONS))


def _assert_as_the_pipeline(tiny_nli: Path, texts: list[str], ours: np.ndarray) -> None:
    """``ours`` (softmaxed) equals transformers' zero-shot-classification pipeline on ``texts``."""
    from transformers import pipeline

    reference = pipeline("zero-shot-classification", model=str(tiny_nli), device="cpu")
    hypotheses = list(DESCRIPTIONS.values())
    for i, text in enumerate(texts):
        out = reference(text, candidate_labels=hypotheses, hypothesis_template="This example is {}.")
        expected = dict(zip(out["labels"], out["scores"], strict=True))
        np.testing.assert_allclose(ours[i], [expected[h] for h in hypotheses], atol=1e-5)


def test_nli_scores_each_label_as_the_zero_shot_pipeline_does(tiny_nli: Path) -> None:
    predictor = zero_shot_predictor(DESCRIPTIONS, nli=str(tiny_nli))
    ours = softmax(predictor.logits(TEXTS))
    _assert_as_the_pipeline(tiny_nli, TEXTS, ours)


def test_nli_keeps_unknown_tokens_as_the_pipeline_does(tiny_nli: Path) -> None:
    """The premise was cut with get_special_tokens_mask, which marks [UNK] too: an emoji vanished."""
    texts = ["hello \U0001f642 world", "rain \u2603\u2603 and snow"]
    predictor = zero_shot_predictor(DESCRIPTIONS, nli=str(tiny_nli))
    unk = predictor.tokenizer.unk_token_id
    enc = predictor.encode(texts)
    assert all(unk in ids for ids in enc.input_ids)  # the case under test
    # the premise is the text's tokens between [CLS] and [SEP], [UNK] kept
    assert predictor.backend.scorer._premises(enc) == [list(ids[1:-1]) for ids in enc.input_ids]
    ours = softmax(predictor.logits(texts))
    _assert_as_the_pipeline(tiny_nli, texts, ours)


def test_a_max_length_over_the_encoders_positions_is_refused(tiny_bert: Path) -> None:
    """It was accepted, then a long text failed at predict time with a tensor-size RuntimeError."""
    import json

    positions = json.loads((tiny_bert / "config.json").read_text())["max_position_embeddings"]
    with pytest.raises(
        ConfigError, match=rf"max_length={positions + 1} \(--max-length\) is over the {positions}"
    ):
        zero_shot_predictor(DESCRIPTIONS, encoder=str(tiny_bert), max_length=positions + 1)
    assert zero_shot_predictor(DESCRIPTIONS, encoder=str(tiny_bert), max_length=positions).logits(TEXTS).shape


@pytest.mark.parametrize("out", ["zs.partial", "afile/zs"])
def test_a_zero_shot_out_nothing_could_load_is_refused_first(
    tiny_bert: Path, tmp_path: Path, out: str
) -> None:
    from tunelab.zeroshot import zero_shot

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=r"--out .*(marks an unfinished run|is a file, not a folder)"):
        zero_shot(DESCRIPTIONS, tmp_path / out, encoder=str(tiny_bert))
    assert not (tmp_path / "zs.partial").exists()


def test_nli_needs_an_entailment_output_and_an_existing_model(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"NLI model .* not found .*no such folder"):
        zero_shot_predictor(DESCRIPTIONS, nli=str(tmp_path / "missing"))
    # a BERT whose outputs are not NLI labels (LABEL_0, LABEL_1)
    with pytest.raises(ModelNotFoundError, match="not an NLI model"):
        zero_shot_predictor(DESCRIPTIONS, nli=str(tiny_bert))


def test_an_nli_description_longer_than_the_model_reads_is_refused_when_built(tiny_nli: Path) -> None:
    """The text is cut to make room, the hypothesis never: one past the model's 128 positions built
    and then failed at predict time with "The size of tensor a (...) must match"."""
    from tunelab.errors import ConfigError

    long = {**DESCRIPTIONS, "food": " ".join(["pizza pasta bread cheese"] * 60)}
    with pytest.raises(
        ConfigError, match=r"makes a hypothesis of \d+ tokens .* reads at most 128; shorten it"
    ):
        zero_shot_predictor(long, nli=str(tiny_nli))


def test_a_zero_shot_run_folder_predicts_evaluates_and_moves_like_a_run(
    tiny_bert: Path, labels_yaml: Path, labelled_csvs, tmp_path: Path
) -> None:
    _, test = labelled_csvs
    result = zero_shot(labels_yaml, tmp_path / "runs" / "zs", encoder=str(tiny_bert), test=test)
    assert result.path == tmp_path / "runs" / "zs" and not (tmp_path / "runs" / "zs.partial").exists()
    summary = json.loads((result.path / "run.json").read_text(encoding="utf-8"))
    assert summary["format"] == "zeroshot" and summary["zeroshot"]["scorer"] == "embedding"
    in_memory = zero_shot_predictor(labels_yaml, encoder=str(tiny_bert))
    np.testing.assert_allclose(tunelab.load(result.path).logits(TEXTS), in_memory.logits(TEXTS), atol=1e-5)
    evaluated = tunelab.evaluate(result.path, test)
    assert evaluated["accuracy"] == pytest.approx(result.metrics["test"]["accuracy"])
    moved = tmp_path / "elsewhere"
    result.path.rename(moved)
    assert tunelab.load(moved).predict(TEXTS[0])["label"] == in_memory.predict(TEXTS[0])["label"]
    with pytest.raises(RunError, match="exists"):
        zero_shot(labels_yaml, moved, encoder=str(tiny_bert))


def test_a_zero_shot_runs_own_test_file_is_read_again_as_it_was_read(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval --data on the very file the run was scored on read it with the defaults (utf-8, ',')."""
    rows = ["football café goal;sports", "pizza and cheese;food", "rain and snow;weather"]
    (tmp_path / "semi.csv").write_bytes(("text;label\n" + "\n".join(rows) + "\n").encode("latin-1"))
    monkeypatch.chdir(tmp_path)
    result = zero_shot(labels_yaml, "zs", encoder=str(tiny_bert), test="semi.csv")
    assert tunelab.evaluate(result.path, "semi.csv")["accuracy"] == result.metrics["test"]["accuracy"]
    assert tunelab.predict_file(tunelab.load(result.path), "semi.csv", "p.csv") == 3
    # another semi.csv elsewhere is not taken for the run's own: its own layout is detected
    other = tmp_path / "other"
    other.mkdir()
    (other / "semi.csv").write_text("text,label\npizza,food\n", encoding="utf-8")
    monkeypatch.chdir(other)
    assert tunelab.evaluate(tmp_path / "zs", "semi.csv")["n"] == 1


def test_eval_of_a_saved_zero_shot_run_on_an_unknown_label_asks_for_a_description(
    tiny_bert: Path, labelled_csvs, tmp_path: Path
) -> None:
    """Loaded from its folder, the run's label map advised "add training rows with it"."""
    _, test = labelled_csvs
    run = zero_shot({"sports": "football", "food": "pizza"}, tmp_path / "zs", encoder=str(tiny_bert)).path
    with pytest.raises(tunelab.TunelabError) as info:
        tunelab.evaluate(run, test)  # the file also has weather rows
    assert "'weather' has no description in the label file" in str(info.value)
    assert "training" not in str(info.value)


def test_a_test_file_with_a_label_that_has_no_description_is_refused(
    tiny_bert: Path, labelled_csvs, tmp_path: Path
) -> None:
    _, test = labelled_csvs
    two = {"sports": "football", "food": "pizza"}  # the file also has weather rows
    with pytest.raises(tunelab.TunelabError, match="weather") as info:
        zero_shot(two, tmp_path / "zs", encoder=str(tiny_bert), test=test)
    # a zero-shot run has no training data: the fix is a description (it said "add training rows")
    assert "'weather' has no description in the label file" in str(info.value)
    assert "training" not in str(info.value)
    assert not (tmp_path / "zs").exists() and not (tmp_path / "zs.partial").exists()


def test_a_zero_shot_run_is_served(tiny_bert: Path, labels_yaml: Path, tmp_path: Path) -> None:
    from tunelab.serve.app import ServedModel, create_app
    from tunelab.serve.settings import ServeSettings

    run = zero_shot(labels_yaml, tmp_path / "zs", encoder=str(tiny_bert)).path
    settings = ServeSettings(data_dir=tmp_path, db=None, require_keys=False, max_wait_ms=1)
    served = [ServedModel("zs", "1", tunelab.load(run), str(run))]
    with TestClient(create_app(settings, served)) as client:
        r = client.post("/v1/models/zs/predict", json={"texts": TEXTS, "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == "zeroshot"
    assert [x["label"] for x in body["results"]] == [p["label"] for p in tunelab.load(run).predict(TEXTS)]


def test_export_of_a_zero_shot_run_is_refused_in_one_line(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path, capsys
) -> None:
    run = zero_shot(labels_yaml, tmp_path / "zs", encoder=str(tiny_bert)).path
    assert main(["export", str(run), "--output", str(tmp_path / "out")]) == 2
    assert "a zero-shot run has no trained weights to export" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_cli_predicts_with_zero_shot_and_writes_a_run(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path, capsys
) -> None:
    expected = zero_shot_predictor(labels_yaml, encoder=str(tiny_bert)).predict(TEXTS)
    argv = ["predict", "--zero-shot", str(labels_yaml), "--encoder", str(tiny_bert), *TEXTS, "--json"]
    assert main(argv) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["text"] for x in lines] == TEXTS
    assert [x["label"] for x in lines] == [e["label"] for e in expected]
    out = tmp_path / "zs"
    assert main(["zeroshot", str(labels_yaml), "--out", str(out), "--encoder", str(tiny_bert)]) == 0
    assert "zero-shot classifier of 3 labels" in capsys.readouterr().out
    assert main(["predict", str(out), TEXTS[0], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == expected[0]["label"]


def test_the_cli_explains_a_missing_run_or_a_stray_model_option(labels_yaml: Path, capsys) -> None:
    assert main(["predict"]) == 2
    assert "give a run folder" in capsys.readouterr().err
    assert main(["predict", "runs/x", "text", "--nli", "models/nli"]) == 2
    assert "only with --zero-shot" in capsys.readouterr().err
    assert main(["predict", "--zero-shot", str(labels_yaml), "--encoder", "e", "--nli", "n", "t"]) == 2
    assert "not both" in capsys.readouterr().err

    # a run folder and --zero-shot: the run's path was classified as a text, exit 0
    run = labels_yaml.parent / "somerun"
    run.mkdir()
    (run / "run.json").write_text("{}", encoding="utf-8")
    assert main(["predict", str(run), "--zero-shot", str(labels_yaml), "a text"]) == 2
    assert (
        "is a run folder: give a run folder or --zero-shot LABELS.yaml, not both" in capsys.readouterr().err
    )


def test_a_model_folder_is_recorded_absolute_so_the_run_loads_from_anywhere(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_bert.parent)
    result = zero_shot(labels_yaml, tmp_path / "runs" / "zs", encoder=tiny_bert.name)
    summary = json.loads((result.path / "run.json").read_text(encoding="utf-8"))
    assert summary["zeroshot"]["model"] == str(tiny_bert.resolve())
    monkeypatch.chdir(tmp_path)
    assert tunelab.load(result.path).predict(TEXTS[0])["label"]


def test_continuing_a_zero_shot_run_says_it_has_no_trained_weights(
    tiny_bert: Path, labels_yaml: Path, labelled_csvs, tmp_path: Path
) -> None:
    train, _ = labelled_csvs
    run = zero_shot(labels_yaml, tmp_path / "zs", encoder=str(tiny_bert)).path
    with pytest.raises(RunError, match="zero-shot run has no trained weights"):
        tunelab.train(from_run=run, overrides=[f"data.train={train}"], show_progress=False)


def test_eval_of_a_zero_shot_run_without_saved_metrics_asks_for_data(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path
) -> None:
    """Built without a test file it has no metrics.json: eval raised FileNotFoundError."""
    run = zero_shot(labels_yaml, tmp_path / "zs", encoder=str(tiny_bert)).path
    with pytest.raises(
        tunelab.TunelabError, match=r"no saved metrics to show; give a labelled file: --data FILE"
    ):
        tunelab.evaluate(run)


def test_an_encoder_folder_that_is_not_a_sentence_encoder_is_one_line(tmp_path: Path) -> None:
    """A run folder as --encoder gave "unexpected ValueError: Unrecognized model ..." (or 11 KB)."""
    folder = tmp_path / "not-an-encoder"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not-an-encoder: not a sentence encoder \(.*\); give a sentence-"):
        zero_shot_predictor(DESCRIPTIONS, encoder=str(folder)).predict("x")


def test_the_cli_names_the_zero_shot_classifier_when_pairs_are_given(
    labels_yaml: Path, tiny_bert: Path, capsys
) -> None:
    """It said "None classifies single texts"."""
    argv = ["predict", "--zero-shot", str(labels_yaml), "--encoder", str(tiny_bert), "--pair", "a", "b"]
    assert main(argv) == 2
    assert "error: the zero-shot classifier classifies single texts" in capsys.readouterr().err


def test_merge_of_a_zero_shot_run_says_it_has_nothing_to_merge(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path
) -> None:
    """It said "an exported zeroshot artifact; merge its source run instead": there is none."""
    from tunelab.compress.merge import merge

    run = zero_shot(labels_yaml, tmp_path / "zs", encoder=str(tiny_bert)).path
    with pytest.raises(RunError, match=r"is a zeroshot run, which holds no adapter of its own to merge"):
        merge(run)


def test_the_tokenizers_own_length_limit_counts_too(tiny_bert: Path, tmp_path: Path) -> None:
    """MPNet-style encoders number positions from a padding offset (514 positions, 512 tokens): the
    positions alone let --max-length 513 through, to fail at predict time."""
    import json
    import shutil

    copy = tmp_path / "enc"
    shutil.copytree(tiny_bert, copy)
    positions = json.loads((copy / "config.json").read_text())["max_position_embeddings"]
    config_path = copy / "tokenizer_config.json"
    tok = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config_path.write_text(json.dumps({**tok, "model_max_length": positions - 2}))
    with pytest.raises(ConfigError, match=rf"is over the {positions - 2} positions"):
        zero_shot_predictor(DESCRIPTIONS, encoder=str(copy), max_length=positions - 1)


def test_an_encoder_folder_without_a_tokenizer_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    """transformers made a 5-token tokenizer for it: every word [UNK], any two texts ~0.97 alike."""
    import shutil

    from tunelab.embeddings import embed
    from tunelab.models.classifier import TOKENIZER_FILES

    folder = tmp_path / "weights-only"
    shutil.copytree(tiny_bert, folder)
    for name in (*TOKENIZER_FILES, "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(ConfigError, match=r"no tokenizer files in .*weights-only"):
        embed(["card arrived late", "the weather is sunny"], model=str(folder))


def test_embed_takes_one_string_a_series_and_no_texts(tiny_bert: Path) -> None:
    """A str was embedded character by character, a Series failed on ``if not texts``, and no
    texts gave shape (0, 0) instead of (0, H)."""
    import pandas as pd

    from tunelab.embeddings import embed

    both = embed(["card not arrived", "where is my card"], model=str(tiny_bert))
    one = embed("card not arrived", model=str(tiny_bert))
    assert one.shape == (1, both.shape[1])
    np.testing.assert_allclose(one[0], both[0], atol=1e-5)
    series = embed(pd.Series(["card not arrived", "where is my card"]), model=str(tiny_bert))
    np.testing.assert_allclose(series, both, atol=1e-5)
    for empty in ([], pd.Series([], dtype=str)):
        none = embed(empty, model=str(tiny_bert))
        assert none.shape == (0, both.shape[1]) and none.dtype == np.float32


@pytest.mark.parametrize(
    ("damage", "where", "expected"),
    [
        ("descriptions:truncated", "descriptions.json", r"a damaged zero-shot run \(not JSON\)"),
        ("descriptions:list", "descriptions.json", r"a damaged zero-shot run \(not an object of label"),
        ("spec:scale", "run.json", r"a damaged zero-shot run \(zeroshot.scale is '20', not a number\)"),
        ("spec:negative", "run.json", r"a damaged zero-shot run \(scale -1"),
        ("spec:unknown", "run.json", r"zeroshot has 'pooling', which this tunelab does not know"),
    ],
)
def test_a_damaged_zero_shot_run_is_one_line_naming_the_file(
    tiny_bert: Path, labels_yaml: Path, tmp_path: Path, damage: str, where: str, expected: str
) -> None:
    """A truncated or listed descriptions.json, or a spec with a string scale or an unknown key, gave
    "unexpected JSONDecodeError / TypeError" naming no file."""
    run = zero_shot(labels_yaml, tmp_path / "zs", encoder=str(tiny_bert)).path
    descriptions, run_json = run / "weights" / "descriptions.json", run / "run.json"
    summary = json.loads(run_json.read_text(encoding="utf-8"))
    if damage == "descriptions:truncated":
        descriptions.write_text(descriptions.read_text(encoding="utf-8")[:15], encoding="utf-8")
    elif damage == "descriptions:list":
        descriptions.write_text(json.dumps(list(DESCRIPTIONS.values())), encoding="utf-8")
    else:
        changed = {
            "spec:scale": {"scale": "20"},
            "spec:negative": {"scale": -1},
            "spec:unknown": {"pooling": "cls"},
        }
        summary["zeroshot"].update(changed[damage])
        run_json.write_text(json.dumps(summary), encoding="utf-8")
    with pytest.raises(RunError) as caught:
        tunelab.load(run)
    message = str(caught.value)
    assert re.search(expected, message) and "\n" not in message
    assert where in message and "tunelab zeroshot" in message
