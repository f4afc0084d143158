"""A trained run and a zero-shot run of one base model join one ensemble (README, ensembles).

Their ``tokenizer/`` folders were compared byte for byte: a zero-shot run saves sentence-transformers'
copy of the tokenizer and a trained run the model folder's, which differ in the call state saved
with them (truncation, padding, the default length cap), so every such ensemble was refused with
"their tokenizers differ".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tunelab
from tunelab.errors import RunError
from tunelab.inference.forward import softmax

LABELS = ["food", "sports", "weather"]
TEXTS = ["the match went to extra time", "rain all day tomorrow"]


def _probs(run: Path) -> np.ndarray:
    return softmax(np.asarray(tunelab.load(run).logits(TEXTS), dtype=np.float64))


def _tokenizer_config(run: Path) -> dict:
    return json.loads((run / "tokenizer" / "tokenizer_config.json").read_text(encoding="utf-8"))


def test_a_trained_run_and_a_zero_shot_run_of_one_base_make_an_ensemble(
    tiny_bert: Path, labelled_csvs, tiny_overrides, tmp_path: Path
) -> None:
    from tunelab.ensembling import ensemble
    from tunelab.zeroshot import zero_shot

    train, test = labelled_csvs
    overrides = tiny_overrides(tiny_bert, train, test, tmp_path, "name=run", epochs=2)
    trained = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    zs = zero_shot(LABELS, tmp_path / "zs", encoder=str(tiny_bert), max_length=32, test=test).path
    # what made them refused: the saved call state differs
    assert _tokenizer_config(trained)["model_max_length"] != _tokenizer_config(zs)["model_max_length"]

    built = ensemble([trained, zs], tmp_path / "ens", calibrate=False)
    expected = np.mean([_probs(trained), _probs(zs)], axis=0)
    assert np.allclose(_probs(built.path), expected, atol=1e-5)


def test_tokenizers_that_split_text_differently_are_still_refused(
    tiny_bert: Path, labelled_csvs, tmp_path: Path
) -> None:
    from tunelab.ensembling import ensemble
    from tunelab.zeroshot import zero_shot

    test = labelled_csvs[1]
    runs = [
        zero_shot(LABELS, tmp_path / name, encoder=str(tiny_bert), max_length=32, test=test).path
        for name in ("a", "b")
    ]
    path = runs[1] / "tokenizer" / "tokenizer.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved["model"]["vocab"] = {f"{token}x": i for token, i in saved["model"]["vocab"].items()}
    path.write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(RunError, match="their tokenizers differ"):
        ensemble(runs, tmp_path / "ens", calibrate=False)
