"""Review fixes in the methods and ``tunelab merge``: adapters load from safetensors only, a damaged
or foreign ``adapter_config.json`` is one line naming the folder, one module name typed on the
command line is a list of it, and ``merge --data`` takes the file's ``data.*`` reading options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import tunelab
from tunelab.cli.main import main
from tunelab.errors import ConfigError, RunError
from tunelab.methods import available_methods, get_method, peft_adapters
from tunelab.methods.registry import ModelLoader

#: the methods over peft: their ``load`` is ``peft_adapters.load`` bound to the method's peft type
PEFT_METHODS = [
    m for m in available_methods() if getattr(get_method(m).load, "func", None) is peft_adapters.load
]
#: the methods written here, each with an option value its options refuse (a ConfigError)
WRAPPED_METHODS = {"prompt": {"tokens": 0}, "prefix": {"tokens": 0}, "adapter": {"reduction_factor": 0}}


# -- 1. weights load from safetensors only ---------------------------------------------------------


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_a_pickled_adapter_bin_is_refused_not_loaded(
    method: str, adapter_loader: ModelLoader, saved_adapter: Any, one_line: Any, tmp_path: Path
) -> None:
    """peft fell back to ``adapter_model.bin`` through ``torch.load`` (a pickle: code would run)."""
    folder = saved_adapter(method, tmp_path / "weights")
    from safetensors.torch import load_file

    weights = folder / peft_adapters.ADAPTER_WEIGHTS
    torch.save(load_file(str(weights)), folder / "adapter_model.bin")
    weights.unlink()
    loader = adapter_loader
    m = get_method(method)
    expected = rf"{folder}: adapter_model\.safetensors is missing \(weights load from safetensors only\)"
    with pytest.raises(RunError, match=expected) as exc:
        m.load(folder, loader)
    assert one_line(exc).endswith("train the run again")
    with pytest.raises(RunError, match=expected):
        peft_adapters.attach(None, folder, loader, "a")
    host = peft_adapters.attach(None, saved_adapter(method, tmp_path / "other"), loader, "other")
    with pytest.raises(RunError, match=expected):
        peft_adapters.attach(host, folder, loader, "b")
    assert "b" not in host.peft_config


def test_a_folder_with_no_weights_at_all_names_the_file(adapter_loader: ModelLoader, tmp_path: Path) -> None:
    """It was peft's "Repo id must be a string" (the folder taken for a Hub repository)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    with pytest.raises(RunError, match=rf"{folder}: adapter_model\.safetensors is missing"):
        get_method("lora").load(folder, adapter_loader)


# -- 3. one module name typed on the command line ---------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "adalora", "loha", "lokr"])
def test_one_target_module_name_is_a_list_of_it(method: str, adapter_loader: ModelLoader) -> None:
    """``method.target_modules=query`` went to peft as a regex over whole module paths: "No modules
    were targeted"."""
    m = get_method(method)
    options = m.parse_options({"target_modules": "query"})
    assert options.target_modules == ["query"]
    model = m.apply(adapter_loader.base(), options)
    adapted = {n.split(".")[-1] for n, mod in model.named_modules() if hasattr(mod, "base_layer")}
    assert "query" in adapted and "value" not in adapted
    # a regex and all-linear are peft's to read, as before
    assert m.parse_options({"target_modules": ".*query"}).target_modules == ".*query"
    assert m.parse_options({"target_modules": "all-linear"}).target_modules == "all-linear"


def test_ia3_takes_one_name_for_both_module_lists(adapter_loader: ModelLoader) -> None:
    options = get_method("ia3").parse_options(
        {"target_modules": "output.dense", "feedforward_modules": "output.dense"}
    )
    assert options.target_modules == ["output.dense"] and options.feedforward_modules == ["output.dense"]
    get_method("ia3").apply(adapter_loader.base(), options)


def test_a_lora_run_with_one_target_module_trains(
    tiny_bert: Path, tiny_overrides: Any, labelled_csvs: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = labelled_csvs
    overrides = tiny_overrides(
        tiny_bert, train, test, tmp_path, "method=lora", "method.target_modules=query", "name=q", epochs=1
    )
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    config = json.loads((run / "weights" / peft_adapters.ADAPTER_CONFIG).read_text(encoding="utf-8"))
    assert config["target_modules"] == ["query"]


# -- 4. a damaged or foreign adapter_config.json ----------------------------------------------------


def rewrite_config(folder: Path, change: Any) -> None:
    path = folder / peft_adapters.ADAPTER_CONFIG
    meta = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(change(meta) if callable(change) else change), encoding="utf-8")


@pytest.mark.parametrize("method", WRAPPED_METHODS)
@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda meta, method: [1], "is not a {method} adapter's settings"),
        (lambda meta, method: {**meta, "options": "x"}, "is not a {method} adapter's settings"),
        (
            lambda meta, method: {**meta, "options": {**meta["options"], "bogus": 1}},
            "options do not fit method {method} (",
        ),
        (
            lambda meta, method: {**meta, "options": {**meta["options"], **WRAPPED_METHODS[method]}},
            "options do not fit method {method} (method {method}: ",
        ),
    ],
    ids=["list", "options-not-a-mapping", "unknown-option", "bad-value"],
)
def test_a_damaged_wrapped_adapter_config_is_one_line(
    method: str,
    change: Any,
    said: str,
    adapter_loader: ModelLoader,
    saved_adapter: Any,
    one_line: Any,
    tmp_path: Path,
) -> None:
    """They were "unexpected AttributeError/TypeError", or a ConfigError naming no folder."""
    folder = saved_adapter(method, tmp_path / "weights")
    rewrite_config(folder, lambda meta: change(meta, method))
    with pytest.raises(RunError) as exc:
        get_method(method).load(folder, adapter_loader)
    text = one_line(exc)
    assert text.startswith(f"{folder}: adapter_config.json ") and said.format(method=method) in text
    assert text.endswith("train the run again")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ([1], "adapter_config.json holds a list, not the adapter's settings"),
        ({"tunelab_method": "prompt", "format": 1, "options": {}}, "names no peft adapter (found 'prompt')"),
        (lambda meta: {**meta, "r": 4}, "cannot read the adapter (Error(s) in loading state_dict"),
    ],
    ids=["list", "foreign", "rank-disagrees"],
)
def test_a_damaged_peft_adapter_config_is_one_line(
    change: Any, said: str, adapter_loader: ModelLoader, saved_adapter: Any, one_line: Any, tmp_path: Path
) -> None:
    """They were "unexpected TypeError", "unexpected KeyError: 'peft_type'", and a RuntimeError of
    one line per tensor ("size mismatch for ...")."""
    folder = saved_adapter("lora", tmp_path / "weights")
    rewrite_config(folder, change)
    loader = adapter_loader
    with pytest.raises(RunError) as exc:
        get_method("lora").load(folder, loader)
    text = one_line(exc)
    assert text.startswith(f"{folder}: ") and said in text
    if "state_dict" in said:
        assert "size mismatch for" in text
    with pytest.raises(RunError) as attached:
        peft_adapters.attach(None, folder, loader, "a")
    assert one_line(attached).startswith(f"{folder}: ") and said in one_line(attached)


# -- 2. merge --data FILE data.FIELD=VALUE ----------------------------------------------------------


@pytest.fixture(scope="module")
def lora_run(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
) -> Path:
    train, test = labelled_csvs
    out = tmp_path_factory.mktemp("runs")
    overrides = tiny_overrides(tiny_bert, train, test, out, "method=lora", "name=run", epochs=1)
    return tunelab.train(None, overrides=overrides, show_progress=False).run_dir


def test_merge_reads_its_data_file_with_data_options(
    lora_run: Path, labelled_csvs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The reader's error said to add data.header=false data.column_names=[...]; merge refused them."""
    lines = labelled_csvs[1].read_text(encoding="utf-8").splitlines()[1:]  # no header row
    headless = tmp_path / "rows.txt"
    headless.write_text("\n".join(line.replace(",", "@", 1) for line in lines) + "\n", encoding="utf-8")
    out = tmp_path / "merged"
    argv = ["merge", str(lora_run), "--out", str(out), "-q", "--data", str(headless)]
    options = ["data.separator=@", "data.header=false", "data.column_names=[text,label]"]
    assert main([*argv, *options]) == 0, capsys.readouterr().err
    assert f"on {headless} ({len(lines)} rows)" in capsys.readouterr().out
    assert (out / "run.json").is_file()


def test_merge_refuses_data_options_without_data(lora_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.\* reading options need a file to read: give --data FILE"):
        tunelab.merge(lora_run, output=tmp_path / "m", data_options=["data.header=false"])
    with pytest.raises(ConfigError, match=r"data\.bogus=1"):
        tunelab.merge(lora_run, output=tmp_path / "m", data="x.csv", data_options=["data.bogus=1"])
    assert not (tmp_path / "m").exists()


def test_merge_help_shows_data_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["merge", "--help"])
    assert "data.header=false data.column_names=[text,category]" in capsys.readouterr().out
