"""``tunelab ensemble``: the mean of the members' (calibrated) probabilities, usable like any run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import tunelab
from tunelab.cli.main import main
from tunelab.ensembling import ensemble
from tunelab.errors import ConfigError, RunError
from tunelab.inference.forward import softmax
from tunelab.tasks import available_tasks, get_task

TEXTS = ["football match and a goal today", "pizza and cheese for dinner", "rain and snow and cold wind"]


def train_runs(
    tiny_bert, tiny_overrides, train, test, out, variants: list[list[str]], epochs: int
) -> list[Path]:
    """One tiny run per list of overrides in ``variants`` (each names its own run)."""
    runs = []
    for extra in variants:
        overrides = tiny_overrides(tiny_bert, train, test, out, *extra, epochs=epochs)
        runs.append(tunelab.train(None, overrides=overrides, show_progress=False).run_dir)
    return runs


@pytest.fixture(scope="module")
def members(tiny_bert, labelled_csvs, tiny_overrides, tmp_path_factory) -> list[Path]:
    """Three tiny runs of one label set, differing by seed (dev split and test file each)."""
    train, test = labelled_csvs
    variants = [["data.dev_size=0.2", f"train.seed={seed}", f"name=m{seed}"] for seed in (1, 2, 3)]
    return train_runs(tiny_bert, tiny_overrides, train, test, tmp_path_factory.mktemp("runs"), variants, 2)


@pytest.fixture(scope="module")
def ens(members, tmp_path_factory) -> Path:
    return ensemble(members, tmp_path_factory.mktemp("ens") / "abc").path


def _probs(run: Path, temperature: float = 1.0) -> np.ndarray:
    return softmax(np.asarray(tunelab.load(run).logits(TEXTS), dtype=np.float64) / temperature)


def test_the_ensemble_probabilities_are_the_mean_of_its_members(members, ens) -> None:
    summary = tunelab.load(ens).run.read_summary()
    temperatures = [m["temperature"] for m in summary["members"]]
    # calibrated on their dev splits; a member that gets every dev row right keeps T = 1 (the fit ran
    # off to the bound, 0.05, and made the ensemble near-certain of anything)
    for m in summary["members"]:
        assert m["calibration"].startswith("fitted on") or (
            m["calibration"].startswith("none (all ")
            and "predicted right" in m["calibration"]
            and m["temperature"] == 1.0
        ), m
    expected = np.mean([_probs(r, t) for r, t in zip(members, temperatures, strict=True)], axis=0)
    got = softmax(np.asarray(tunelab.load(ens).logits(TEXTS), dtype=np.float64))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # and what predict reports is that mean
    result = tunelab.load(ens).predict(TEXTS[0], top_k=3)
    names = tunelab.load(ens).labels.names
    for item in result["top_k"]:
        assert item["score"] == pytest.approx(expected[0][names.index(item["label"])], abs=1e-6)


def test_uncalibrated_members_average_their_plain_probabilities(members, tmp_path) -> None:
    built = ensemble(members[:2], tmp_path / "ab", calibrate=False)
    assert [m["temperature"] for m in built.members] == [1.0, 1.0]
    expected = (_probs(members[0]) + _probs(members[1])) / 2
    got = softmax(np.asarray(tunelab.load(built.path).logits(TEXTS), dtype=np.float64))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_ensemble_evaluates_and_predicts_like_a_run(
    members, ens, labelled_csvs, tmp_path, capsys
) -> None:
    _, test = labelled_csvs
    metrics = tunelab.evaluate(ens, test)
    # the accuracy of the argmax of the members' mean calibrated probabilities on the test rows
    rows = pd.read_csv(test)
    summary = tunelab.load(ens).run.read_summary()
    temperatures = [m["temperature"] for m in summary["members"]]
    mean = np.mean(
        [
            softmax(np.asarray(tunelab.load(r).logits(rows["text"].tolist()), dtype=np.float64) / t)
            for r, t in zip(members, temperatures, strict=True)
        ],
        axis=0,
    )
    predicted = [tunelab.load(ens).labels.names[i] for i in mean.argmax(axis=1)]

    def accuracy(gold: list[str]) -> float:
        return float(np.mean([p == g for p, g in zip(predicted, gold, strict=True)]))

    assert metrics["accuracy"] == pytest.approx(accuracy(rows["label"].tolist()))
    assert Path(metrics["report"]).is_file()
    # the same rows, 6 of them relabelled: the accuracy is measured against the file's labels
    rotate = {"sports": "food", "food": "weather", "weather": "sports"}
    rows.loc[:5, "label"] = rows.loc[:5, "label"].map(rotate)
    rows.to_csv(tmp_path / "relabelled.csv", index=False)
    relabelled = tunelab.evaluate(ens, tmp_path / "relabelled.csv", out_dir=tmp_path / "eval")
    assert relabelled["accuracy"] == pytest.approx(accuracy(rows["label"].tolist()))
    assert relabelled["accuracy"] < metrics["accuracy"]
    saved = tunelab.evaluate(ens)  # metrics.json written when it was built
    assert saved["accuracy"] == pytest.approx(metrics["accuracy"])
    assert main(["predict", str(ens), TEXTS[1]]) == 0
    assert capsys.readouterr().out.startswith(f"{TEXTS[1]}\n  -> food (")
    assert main(["eval", str(ens), "--data", str(test)]) == 0


def test_the_ensemble_is_served(ens, tmp_path) -> None:
    from tunelab.serve.app import ServedModel, create_app
    from tunelab.serve.settings import ServeSettings

    settings = ServeSettings(data_dir=tmp_path, db=None, require_keys=False, max_wait_ms=1)
    served = [ServedModel("ens", "1", tunelab.load(ens), str(ens))]
    with TestClient(create_app(settings, served)) as client:
        r = client.post("/v1/models/ens/predict", json={"texts": TEXTS, "top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == "ensemble" and len(body["results"]) == 3
    assert [x["label"] for x in body["results"]] == [p["label"] for p in tunelab.load(ens).predict(TEXTS)]


def test_different_label_sets_are_refused_in_one_line(
    members, tiny_bert, labelled_csvs, tiny_overrides, tmp_path
) -> None:
    train, _ = labelled_csvs
    two = tmp_path / "two.csv"
    frame = pd.read_csv(train)
    frame[frame["label"] != "weather"].to_csv(two, index=False)
    overrides = tiny_overrides(tiny_bert, two, None, tmp_path / "runs", "name=two", epochs=1)
    other = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    with pytest.raises(RunError, match="the label sets differ") as caught:
        ensemble([members[0], other], tmp_path / "bad")
    assert "\n" not in str(caught.value) and "weather" in str(caught.value)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.partial").exists()
    assert main(["ensemble", str(members[0]), str(other), "--out", str(tmp_path / "bad")]) == 2


def test_one_run_is_not_an_ensemble(members, tmp_path) -> None:
    with pytest.raises(ConfigError, match="two or more runs"):
        ensemble(members[:1], tmp_path / "one")


def test_the_cli_builds_an_ensemble(members, tmp_path, capsys) -> None:
    out = tmp_path / "cli-ens"
    assert main(["ensemble", *map(str, members), "--out", str(out), "--no-calibrate", "-q"]) == 0
    assert "3 members" in capsys.readouterr().out
    assert tunelab.load(out).format == "ensemble"


def test_export_exports_every_member(ens, tmp_path, capsys) -> None:
    target = tmp_path / "ens-onnx"
    assert main(["export", str(ens), "--format", "onnx", "--output", str(target), "-q"]) == 0
    assert f"artifact: {target}" in capsys.readouterr().out
    report = json.loads((target / "parity.json").read_text(encoding="utf-8"))
    assert report["passed"] and report["agreement"] > 0.9 and len(report["members"]) == 3
    loaded = tunelab.load(target)
    assert loaded.format == "ensemble"
    members = loaded.run.read_summary()["members"]
    assert len(members) == 3
    for member in members:
        assert tunelab.load(target / member["path"]).format == "onnx"
    np.testing.assert_allclose(
        softmax(np.asarray(loaded.logits(TEXTS), dtype=np.float64)),
        softmax(np.asarray(tunelab.load(ens).logits(TEXTS), dtype=np.float64)),
        atol=1e-3,
    )


def test_an_exported_member_is_refused_before_any_member_is_exported(ens, tmp_path, monkeypatch) -> None:
    """The run members were exported (minutes) before the artifact member was refused, in words that
    did not say it was a member."""
    import shutil

    from tunelab.compress import build

    mixed = tmp_path / "mixed"
    shutil.copytree(ens, mixed)
    last = json.loads((mixed / "run.json").read_text(encoding="utf-8"))["members"][-1]["path"]
    member_json = mixed / last / "run.json"
    own = json.loads(member_json.read_text(encoding="utf-8"))
    own |= {"format": "onnx", "source_run": "runs/m3", "export": {"format": "onnx"}}
    member_json.write_text(json.dumps(own), encoding="utf-8")
    monkeypatch.setattr(build, "build_artifact", lambda *a, **k: pytest.fail("a member was exported"))
    with pytest.raises(RunError) as refused:
        tunelab.export(mixed, format="onnx", output=tmp_path / "out", show_progress=False)
    assert str(refused.value) == (
        f"member {last}: an exported onnx artifact cannot be exported again; ensemble the runs instead"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed"]


@pytest.mark.parametrize("task_name", available_tasks())
def test_every_task_inverts_its_own_probabilities(task_name: str) -> None:
    import torch

    task = get_task(task_name)
    rng = np.random.default_rng(0)
    probs = task.soft_targets(torch.from_numpy(rng.normal(size=(4, 5, 3)) * 3)).numpy()
    back = task.soft_targets(torch.from_numpy(task.logits_from_probabilities(probs))).numpy()
    np.testing.assert_allclose(back, probs, atol=1e-6)


def token_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the labels of each token: (N, T, L) -> (N, T, L)."""
    from scipy.special import softmax as scipy_softmax

    return scipy_softmax(np.asarray(logits, dtype=np.float64), axis=-1)


def test_an_ner_ensemble_averages_per_token_probabilities(
    tiny_bert, tagged_jsonls, tiny_overrides, tmp_path
) -> None:
    train, test = tagged_jsonls
    ner = "data.task=token_classification"
    variants = [[ner, f"train.seed={seed}", f"name=ner{seed}"] for seed in (1, 2)]
    runs = train_runs(tiny_bert, tiny_overrides, train, test, tmp_path / "runs", variants, 1)
    built = ensemble(runs, tmp_path / "ner-ens")
    assert [m["temperature"] for m in built.members] == [1.0, 1.0]  # temperature scaling is single-label
    texts = ["maria visited rome today", "john left berlin"]
    expected = np.mean([token_softmax(tunelab.load(r).logits(texts)) for r in runs], axis=0)
    got = token_softmax(tunelab.load(built.path).logits(texts))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert "entities" in tunelab.load(built.path).predict(texts[0])


def test_a_member_whose_dev_split_cannot_be_read_stops_the_build(
    tiny_bert, labelled_csvs, tiny_overrides, members, tmp_path
) -> None:
    """Calibrate every member or none: no silent mix of fitted and raw temperatures (review 13 #2)."""
    import shutil

    train, test = labelled_csvs
    moved = shutil.copy(train, tmp_path / "moved.csv")
    overrides = tiny_overrides(
        tiny_bert, moved, test, tmp_path / "runs", "data.dev_size=0.2", "name=b", epochs=1
    )
    b = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    Path(moved).unlink()  # b's training file (its dev split was carved from it) moved away
    with pytest.raises(ConfigError) as err:
        ensemble([members[0], b], tmp_path / "ab")
    message = str(err.value)
    assert "\n" not in message and str(b) in message and "cannot be read" in message
    assert "--dev FILE" in message and "--no-calibrate" in message
    assert not (tmp_path / "ab").exists() and not list(tmp_path.glob("ab*"))
    # the two ways out both work
    assert ensemble([members[0], b], tmp_path / "raw", calibrate=False).path.is_dir()
    built = ensemble([members[0], b], tmp_path / "ondev", dev=test)
    for m in built.members:  # on --dev's rows (fitted there, or all of them right: T = 1 kept)
        assert f"rows of {test}" in m["calibration"], m
        assert m["calibration"].startswith("fitted on") or m["temperature"] == 1.0, m


def test_a_member_without_a_dev_split_stops_the_build(
    tiny_bert, labelled_csvs, tiny_overrides, members, tmp_path
) -> None:
    train, test = labelled_csvs
    overrides = tiny_overrides(
        tiny_bert, train, test, tmp_path / "runs", "data.dev_size=0", "name=nodev", epochs=1
    )
    b = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    with pytest.raises(ConfigError, match="no dev split to calibrate on; give --dev FILE"):
        ensemble([members[0], b], tmp_path / "ab")


def test_a_dev_file_of_one_label_is_refused_for_calibration(labelled_csvs, members, tmp_path) -> None:
    """A continued run's own dev split can hold its new label alone: no temperature can be fitted
    on it (the fit ran off to 17 on two rows), so the build stops naming the ways out."""
    import pandas as pd

    _, test = labelled_csvs
    rows = pd.read_csv(test)
    one = tmp_path / "one.csv"
    rows[rows["label"] == rows["label"].iloc[0]].to_csv(one, index=False)
    with pytest.raises(ConfigError) as err:
        ensemble(members[:2], tmp_path / "ab", dev=one)
    message = str(err.value)
    assert "\n" not in message and "dev rows of one label" in message
    assert "--dev FILE with rows of several labels" in message and "--no-calibrate" in message
    assert not list(tmp_path.glob("ab*"))


def test_calibration_matches_dev_labels_to_the_run_by_name(members, tmp_path, monkeypatch) -> None:
    """The dev split's ids index a label map built afresh; the logits follow labels.json (review 13 S3)."""
    import dataclasses

    from tunelab.data.labels import LabelMap
    from tunelab.evaluate import calibration

    run = tunelab.load(members[0])
    task_class = type(run.task)
    real_load = task_class.load_splits
    fresh = real_load(run.task, run.config.data)
    by_name = [run.labels.names.index(fresh.labels.names[i]) for i in fresh.dev.labels]

    def reordered(self, data):  # the same rows, the fresh label map in another order
        got = real_load(self, data)
        names = list(reversed(got.labels.names))
        dev = dataclasses.replace(got.dev, labels=[names.index(got.labels.names[i]) for i in got.dev.labels])
        return dataclasses.replace(got, labels=LabelMap(names=names, task=got.labels.task), dev=dev)

    fitted_on: list[list[int]] = []
    real_fit = calibration.fit_temperature

    def spy(logits, labels):
        fitted_on.append(np.asarray(labels).tolist())
        return real_fit(logits, labels)

    monkeypatch.setattr(task_class, "load_splits", reordered)
    monkeypatch.setattr(calibration, "fit_temperature", spy)
    ensemble(members[:2], tmp_path / "ab")
    assert fitted_on[0] == by_name and len(set(by_name)) > 1


def test_metrics_match_dev_and_test_labels_to_the_run_by_name(members, tmp_path, monkeypatch) -> None:
    """Data whose label map now comes out in another order (a new label sorted first) must not
    shift the ids the ensemble's dev and test metrics are scored with."""
    import dataclasses

    from tunelab.data.labels import LabelMap

    plain = ensemble(members[:2], tmp_path / "plain", calibrate=False).metrics
    run = tunelab.load(members[0])
    task_class = type(run.task)
    real_load = task_class.load_splits

    def reordered(self, data):
        got = real_load(self, data)
        names = list(reversed(got.labels.names))
        moved = {}
        for split in ("dev", "test"):
            rows = getattr(got, split)
            moved[split] = dataclasses.replace(
                rows, labels=[names.index(got.labels.names[i]) for i in rows.labels]
            )
        return dataclasses.replace(got, labels=LabelMap(names=names, task=got.labels.task), **moved)

    monkeypatch.setattr(task_class, "load_splits", reordered)
    again = ensemble(members[:2], tmp_path / "reordered", calibrate=False).metrics
    assert set(plain) == {"dev", "test"}
    assert again["dev"]["accuracy"] == plain["dev"]["accuracy"]
    assert again["test"]["accuracy"] == plain["test"]["accuracy"]


def test_the_members_training_texts_stay_out_of_the_ensemble(members, ens) -> None:
    assert all((m / "rehearsal.jsonl").is_file() for m in members)  # each member stored its sample
    assert not list(ens.rglob("rehearsal.jsonl"))


def test_an_out_folder_inside_a_member_is_refused_in_one_line(members, tmp_path) -> None:
    """The member was copied into itself until the path was too long (a 172 KB error)."""
    import shutil

    copy = tmp_path / "cp"
    shutil.copytree(members[0], copy)
    with pytest.raises(RunError, match=r"--out .*cp/ens: inside member .*cp \(or holding it\)"):
        ensemble([copy, members[1]], copy / "ens")
    assert not (copy / "ens").exists() and not (copy / "ens.partial").exists()


@pytest.mark.parametrize(
    ("out", "says"),
    [("e.partial", "marks an unfinished run"), ("afile/e", "is a file, not a folder")],
)
def test_an_out_nothing_could_load_or_make_is_refused_first(members, tmp_path, out: str, says: str) -> None:
    """`--out runs/e.partial` built a folder nothing loads (and --resume of it failed too); under
    a file it failed with 'unexpected NotADirectoryError' after loading every member."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=says):
        ensemble(members[:2], tmp_path / out, calibrate=False)
    assert not (tmp_path / "e.partial").exists()


def test_the_same_run_twice_is_refused(members, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"the same run as .*give each member once"):
        ensemble([members[0], members[0].parent / ".." / members[0].parent.name / members[0].name],
                 tmp_path / "twice", calibrate=False)  # fmt: skip


def test_dev_without_calibration_is_refused_not_ignored(members, labelled_csvs, tmp_path) -> None:
    with pytest.raises(ConfigError, match="--dev is read to calibrate"):
        ensemble(members[:2], tmp_path / "e", calibrate=False, dev=labelled_csvs[1])


def test_bad_dev_options_are_refused_before_the_members_load(
    members, labelled_csvs, tmp_path, monkeypatch
) -> None:
    import tunelab.inference as inference

    def never(*args, **kwargs):
        raise AssertionError("a member was loaded before the options were checked")

    monkeypatch.setattr(inference, "load", never)
    with pytest.raises(ConfigError, match=r"data\.nonsense"):
        ensemble(members[:2], tmp_path / "e", dev=labelled_csvs[1], dev_options=["data.nonsense=1"])


def test_a_dev_file_a_member_cannot_read_names_the_member(members, tmp_path) -> None:
    """Each member reads --dev with its own column names; the error did not say which member."""
    dev = tmp_path / "dev.csv"
    dev.write_text("sentence,intent\npizza,food\ngoal,sports\n", encoding="utf-8")
    with pytest.raises(tunelab.TunelabError, match=rf"--dev for member {members[0]}: "):
        ensemble(members[:2], tmp_path / "e", dev=dev)


def test_an_ensemble_keeps_its_first_members_resolved_data_files(members, ens) -> None:
    """Its config.json, copied from the first member, keeps relative paths: without the member's
    data_files, eval and predict from another folder read a same-named file as the run's own."""
    member = json.loads((members[0] / "run.json").read_text(encoding="utf-8"))
    summary = json.loads((ens / "run.json").read_text(encoding="utf-8"))
    assert member["data_files"]["train"] and summary["data_files"] == member["data_files"]
    assert summary["data"] == member["data"]


def test_rows_another_member_trained_on_are_left_out_of_the_metrics(
    tiny_bert, labelled_csvs, tiny_overrides, tmp_path
) -> None:
    """Members that carved test from one file with other split seeds: most of the first member's
    test rows were the second's training rows, and metrics.json scored them with no word."""
    from tunelab.data.held_out import normalised

    train, _ = labelled_csvs
    variants = [["data.test_size=0.25", f"data.split_seed={seed}", f"name=s{seed}"] for seed in (1, 2)]
    runs = train_runs(tiny_bert, tiny_overrides, train, None, tmp_path / "runs", variants, 1)
    first, second = (tunelab.load(r) for r in runs)
    own = first.task.load_splits(first.config.data)
    theirs = {normalised(t, None) for t in second.task.load_splits(second.config.data).train.texts}
    leaked = {
        split: sum(normalised(t, None) in theirs for t in getattr(own, split).texts)
        for split in ("dev", "test")
    }
    assert leaked["test"] > 0  # else this test checks nothing
    built = ensemble(runs, tmp_path / "ens", calibrate=False)
    summary = json.loads((built.path / "run.json").read_text(encoding="utf-8"))
    for split in ("dev", "test"):
        total = len(getattr(own, split).texts)
        if leaked[split] == total:
            assert split not in built.metrics
            assert any(n.startswith(f"{split}: all {total} rows left out") for n in summary["notes"])
            continue
        assert built.metrics[split]["n"] == total - leaked[split]
        if leaked[split]:
            assert any(
                n.startswith(f"{split}: {leaked[split]} of {total} rows left out of the metrics")
                and str(runs[1]) in n
                for n in summary["notes"]
            ), summary["notes"]
    # the exported ensemble is scored on the same rows
    target = tmp_path / "ens-onnx"
    assert main(["export", str(built.path), "--format", "onnx", "--output", str(target), "-q"]) == 0
    exported = json.loads((target / "metrics.json").read_text(encoding="utf-8"))
    assert {k: m["n"] for k, m in exported.items()} == {k: m["n"] for k, m in built.metrics.items()}
    assert json.loads((target / "run.json").read_text(encoding="utf-8"))["notes"] == summary["notes"]


def test_members_that_share_their_split_lose_no_scored_row(members, ens, labelled_csvs) -> None:
    """The usual ensemble (training seeds of one config): every dev and test row is still scored."""
    summary = json.loads((ens / "run.json").read_text(encoding="utf-8"))
    assert not any("left out" in n for n in summary.get("notes", [])), summary.get("notes")
    metrics = json.loads((ens / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["test"]["n"] == len(pd.read_csv(labelled_csvs[1]))


def test_a_split_every_row_of_which_a_member_trained_on_is_not_scored() -> None:
    from tunelab.data.dataset import Dataset
    from tunelab.ensembling.build import _held_out_of_members

    rows = Dataset(["Pizza  tonight", "goal!"], None, [0, 1], source="test.csv")
    notes: list[str] = []
    trained = {("pizza tonight", None): "runs/b", ("goal!", None): "runs/c"}
    assert _held_out_of_members("test", rows, trained, notes) is None
    assert notes == [
        "test: all 2 rows left out, member(s) runs/b, runs/c trained on them (training, replayed or "
        "unlabelled rows): no test metrics"
    ]


def test_rows_the_first_member_trained_on_too_stay_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test text repeating one of the first member's own training texts is in each member's own
    metrics; dropping it because another member (same split) trained on it too made the ensemble's
    figures cover other rows than its members'."""
    from tunelab.ensembling import build as ensemble_build

    rows = {"a": [("Dup text", None), ("x", None)], "b": [("dup  text", None), ("y", None)]}
    monkeypatch.setattr(ensemble_build, "_member_rows", lambda cfg, task: rows[cfg])
    trained, notes = ensemble_build.trained_rows([(Path("runs/a"), "a", None), (Path("runs/b"), "b", None)])
    assert trained == {("y", None): "runs/b"} and notes == []


def test_a_self_trained_member_pooling_its_own_training_file_keeps_the_dev_rows_scored(
    tiny_bert, labelled_csvs, tiny_overrides, tmp_path
) -> None:
    """The README's recipe: the training file is also the unlabelled pool, dev carved from it.
    Training drops the pool's dev texts; counted as trained on, every dev row was left out."""
    train, test = labelled_csvs
    variants = [
        ["data.dev_size=0.2", "name=plain"],
        ["data.dev_size=0.2", "data.shots=4", f"self_training.unlabeled={train}", "name=selftrained"],
    ]
    runs = train_runs(tiny_bert, tiny_overrides, train, test, tmp_path / "runs", variants, 1)
    built = ensemble(runs, tmp_path / "ens", calibrate=False)
    notes = json.loads((built.path / "run.json").read_text(encoding="utf-8")).get("notes", [])
    assert not any(n.startswith("dev:") for n in notes), notes
    plain = tunelab.load(runs[0])
    assert built.metrics["dev"]["n"] == len(plain.task.load_splits(plain.config.data).dev.texts)


def test_labels_spelled_in_other_unicode_forms_are_named_as_such() -> None:
    """A run trained before label names were read in NFC kept "e" + U+0301: the refusal read
    "only here: éclair; only there: éclair", two names that print the same."""
    from types import SimpleNamespace

    from tunelab.data import LabelMap
    from tunelab.ensembling.build import _check_compatible

    def member(names: list[str]) -> SimpleNamespace:
        return SimpleNamespace(task=SimpleNamespace(name="single_label"), labels=LabelMap(names))

    folders = [SimpleNamespace(root=Path("runs/new")), SimpleNamespace(root=Path("runs/old"))]
    with pytest.raises(RunError, match="the same labels are spelled in other Unicode forms"):
        _check_compatible(folders, [member(["fudge", "\u00e9clair"]), member(["e\u0301clair", "fudge"])])


@pytest.mark.parametrize("file", ["run.json", "config.json"])
def test_a_member_with_a_damaged_file_is_refused_before_any_member_is_exported(
    ens, tmp_path, monkeypatch, file: str
) -> None:
    """The line was right (loading the member gives it) but came only after the members before it
    were exported: ``check_members`` read run.json as {} (a damaged one passed) and no config.json."""
    import shutil

    from tunelab.compress import build

    damaged = tmp_path / "damaged"
    shutil.copytree(ens, damaged)
    last = json.loads((damaged / "run.json").read_text(encoding="utf-8"))["members"][-1]["path"]
    (damaged / last / file).write_text("[1, 2]", encoding="utf-8")
    monkeypatch.setattr(build, "build_artifact", lambda *a, **k: pytest.fail("a member was exported"))
    with pytest.raises(RunError) as refused:
        tunelab.export(damaged, format="onnx", output=tmp_path / "out", show_progress=False)
    assert str(refused.value) == (
        f"{damaged / last / file}: cannot read (a JSON array, not an object); "
        "the run folder is damaged: train or export it again"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged"]


@pytest.mark.parametrize("file", ["run.json", "config.json"])
def test_member_setups_reads_a_members_files_as_loading_it_does(tmp_path, file: str) -> None:
    """config.json read by hand was "unexpected JSONDecodeError"; a damaged run.json read as {}
    silently gave the config's data files, not those the member trained on."""
    from tunelab.config import RunConfig
    from tunelab.data import LabelMap
    from tunelab.ensembling.build import member_setups

    member = tmp_path / "weights" / "m1"
    member.mkdir(parents=True)
    RunConfig().save(member / "config.json")
    LabelMap(["a", "b"]).save(member / "labels.json")
    (member / "run.json").write_text("{}", encoding="utf-8")
    assert len(member_setups(tmp_path, {"members": [{"path": "weights/m1"}]})) == 1  # whole, it reads
    (member / file).write_text('{"data": {', encoding="utf-8")
    with pytest.raises(RunError) as refused:
        member_setups(tmp_path, {"members": [{"path": "weights/m1"}]})
    message = str(refused.value)
    assert message.startswith(f"{member / file}: cannot read (not JSON: "), message
    assert message.endswith("the run folder is damaged: train or export it again")


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (
            "config",
            "config.json: cannot read (not JSON",
        ),  # the member's own advice was "train or export it again"
        ("temperature", "could not convert string to float"),  # was unexpected ValueError
    ],
)
def test_a_member_that_cannot_be_used_says_to_build_the_ensemble_again(
    ens, tmp_path, damage: str, says: str
) -> None:
    import shutil

    copy = tmp_path / "ens"
    shutil.copytree(ens, copy)
    summary = json.loads((copy / "run.json").read_text(encoding="utf-8"))
    first = summary["members"][0]
    if damage == "config":
        (copy / first["path"] / "config.json").write_text('{"data": ', encoding="utf-8")
    else:
        first["temperature"] = "warm"
        (copy / "run.json").write_text(json.dumps(summary), encoding="utf-8")
    with pytest.raises(RunError) as refused:
        tunelab.load(copy)
    message = str(refused.value)
    assert message.startswith(f"{copy}: member {Path(first['path']).name} cannot be used ("), message
    assert says in message and "\n" not in message
    assert message.endswith("build the ensemble again from its runs (tunelab ensemble RUN RUN ... --out)")


def test_merging_an_ensemble_is_refused_in_good_english(ens) -> None:
    """It said "... is a ensemble run, which holds no adapter of its own to merge"."""
    from tunelab.errors import RunError

    with pytest.raises(RunError, match=r"is an ensemble run, which holds no adapter of its own to merge"):
        tunelab.merge(ens)
