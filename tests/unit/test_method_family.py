"""The method family through the real pipeline: ``tunelab.train`` -> run -> ``tunelab.load`` -> predict.

Every registered method (``available_methods()``) on a sequence task (``single_label``) and a token
task (``token_classification``), on the tiny model, with the method's own defaults. Checked:

- only the method's own parameters and the head train: every weight the task model had before
  ``apply``, but the head's (and BERT's pooler), is frozen and unchanged after training; something
  new and the head did move; run.json counts exactly the trainable parameters;
- the run's ``weights/`` holds only them: no tensor named like a frozen base weight, no more
  numbers than were trainable, and far fewer bytes than the base model;
- the reloaded run (``tunelab.load``: merged where the method can) gives the logits the trained
  model gave on the test set, and predicts.

AdaLoRA's rank reallocation has its own test below. The method is observed by wrapping its
registered ``apply`` (and the trainer's ``predict_logits``) for one test, nothing else changed.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import tunelab
from tunelab.errors import ConfigError
from tunelab.methods import available_methods, get_method, registry

TASKS = ("single_label", "token_classification")
HEAD = ("classifier", "pooler")  # the head, and BERT's pooler (trained beside adapters when read)
EPOCHS = 2


def is_head(name: str) -> bool:
    return any(part in HEAD for part in name.split("."))


@dataclass
class Seen:
    """What one method did inside ``tunelab.train``."""

    before: dict[str, torch.Tensor] = field(default_factory=dict)  # task model's weights before apply
    originals: dict[str, nn.Parameter] = field(default_factory=dict)  # the same, as objects
    applied: dict[str, torch.Tensor] = field(default_factory=dict)  # trainable weights right after apply
    model: nn.Module | None = None
    predictions: list[tuple[Any, np.ndarray]] = field(default_factory=list)  # (enc, logits) per call
    steps: list[int] = field(default_factory=list)
    observed: list[Any] = field(default_factory=list)  # observe(model) after every step


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch):
    """``watch(method_name, observe=None) -> Seen``: wraps the method's ``apply`` and ``on_step`` (after
    which ``observe(model)`` is recorded) and the trainer's ``predict_logits``, for this test."""
    trainer = importlib.import_module("tunelab.train.trainer")  # ``tunelab.train`` is the function
    seen = Seen()
    real_predict = trainer.predict_logits

    def predict(model: nn.Module, enc: Any, **kwargs: Any) -> np.ndarray:
        out = real_predict(model, enc, **kwargs)
        seen.predictions.append((enc, out))
        return out

    monkeypatch.setattr(trainer, "predict_logits", predict)

    def start(name: str, observe: Callable[[nn.Module], Any] | None = None) -> Seen:
        method = get_method(name)

        def apply(model: nn.Module, options: Any) -> nn.Module:
            seen.originals = dict(model.named_parameters())
            seen.before = {n: p.detach().clone() for n, p in seen.originals.items()}
            seen.model = method.apply(model, options)
            seen.applied = {
                n: p.detach().clone() for n, p in seen.model.named_parameters() if p.requires_grad
            }
            return seen.model

        def on_step(model: nn.Module, step: int) -> None:
            if method.on_step is not None:
                method.on_step(model, step)
            seen.steps.append(step)
            if observe is not None:
                seen.observed.append(observe(model))

        monkeypatch.setitem(
            registry._REGISTRY, name, dataclasses.replace(method, apply=apply, on_step=on_step)
        )
        return seen

    return start


def train(
    method: str,
    task: str,
    tmp_path: Path,
    tiny_bert: Path,
    tiny_overrides: Any,
    data: dict[str, tuple[Path, Path]],
    *extra: str,
    epochs: float = EPOCHS,
) -> tuple[Path, dict[str, Any]]:
    train_file, test_file = data[task]
    overrides = tiny_overrides(
        tiny_bert,
        train_file,
        test_file,
        tmp_path,
        f"method={method}",
        f"data.task={task}",
        "name=run",
        "train.learning_rate=null",  # the method's default
        *extra,
        epochs=epochs,
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    return result.run_dir, result.summary


@pytest.fixture
def data(labelled_csvs: tuple[Path, Path], tagged_jsonls: tuple[Path, Path]) -> dict[str, tuple[Path, Path]]:
    return {"single_label": labelled_csvs, "token_classification": tagged_jsonls}


@pytest.mark.parametrize("method_name", available_methods())
@pytest.mark.parametrize("task_name", TASKS)
def test_method_trains_saves_only_its_weights_and_reloads_identically(
    method_name: str,
    task_name: str,
    watch: Any,
    data: dict[str, tuple[Path, Path]],
    tiny_bert: Path,
    tiny_overrides: Any,
    tmp_path: Path,
) -> None:
    method = get_method(method_name)
    seen = watch(method_name)
    if method.before_training is not None and task_name != "single_label":
        # SetFit draws its pairs by label: a one-line error, before any run folder exists.
        with pytest.raises(ConfigError, match="one label per row"):
            train(method_name, task_name, tmp_path, tiny_bert, tiny_overrides, data)
        assert not list(tmp_path.glob("run*"))
        return
    run, summary = train(method_name, task_name, tmp_path, tiny_bert, tiny_overrides, data)
    model = seen.model
    assert model is not None

    # -- only the method's own parameters and the head were trainable, and only they moved --------
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert summary["trainable_parameters"] == sum(p.numel() for p in trainable.values())
    original_ids = {id(p) for p in seen.originals.values()}
    for name, param in seen.originals.items():
        if method.stores_base:  # everything trains; full keeps the token embeddings by default
            is_words = param is model.get_input_embeddings().weight
            assert param.requires_grad or is_words, f"full fine-tuning froze {name}"
        elif not is_head(name):
            assert not param.requires_grad, f"base weight {name} is trainable"
            assert torch.equal(param.detach(), seen.before[name]), f"frozen base weight {name} moved"
    if not method.stores_base:
        new = {n for n, p in trainable.items() if id(p) not in original_ids and not is_head(n)}
        assert new, f"{method_name} added no parameters of its own"
        assert all(is_head(n) for n, p in trainable.items() if id(p) in original_ids)
        assert any(not torch.equal(trainable[n].detach(), seen.applied[n]) for n in new), (
            "nothing of the method moved"
        )
        total = sum(p.numel() for p in model.parameters())
        assert 0 < summary["trainable_parameters"] * 20 < total
    head = [n for n in trainable if is_head(n) and "classifier" in n]
    assert head and any(not torch.equal(trainable[n].detach(), seen.applied[n]) for n in head), (
        "the head did not train"
    )

    # -- the run's weights/ holds only them ------------------------------------------------------
    weights = run / "weights"
    tensors: dict[str, torch.Tensor] = {}
    for path in weights.glob("*.safetensors"):
        tensors |= load_file(str(path))
    assert tensors, f"no safetensors in {sorted(p.name for p in weights.iterdir())}"
    assert not [p for p in weights.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    if not method.stores_base:
        assert not (weights / "model.safetensors").exists()
        frozen = [n for n in seen.originals if not is_head(n)]
        copied = [k for k in tensors if any(k == n or k.endswith("." + n) for n in frozen)]
        assert not copied, f"frozen base weights saved: {copied[:3]}"
        # AdaLoRA saves its adapters truncated to the final ranks: fewer numbers, never more.
        assert sum(t.numel() for t in tensors.values()) <= summary["trainable_parameters"]
        saved = sum(p.stat().st_size for p in weights.rglob("*") if p.is_file())
        assert saved * 10 < (tiny_bert / "model.safetensors").stat().st_size

    # -- a reload predicts what the trained model predicted ------------------------------------
    enc, expected = seen.predictions[-1]  # the trainer's last call: the test set, after training
    predictor = tunelab.load(run)
    np.testing.assert_allclose(predictor.backend.logits(enc), expected, rtol=1e-4, atol=1e-5)
    results = predictor.predict(["maria visited rome", "football match with my team"])
    assert len(results) == 2 and all(isinstance(r, dict) for r in results)


def test_adalora_reallocates_its_rank_budget_while_training(
    watch: Any,
    data: dict[str, tuple[Path, Path]],
    tiny_bert: Path,
    tiny_overrides: Any,
    tmp_path: Path,
) -> None:
    from tunelab.methods.adalora import ranks

    seen = watch("adalora", observe=ranks)
    options = ["method.init_r=6", "method.target_r=2", "method.delta_t=1", "method.final_fraction=0.2"]
    run, summary = train(
        "adalora", "single_label", tmp_path, tiny_bert, tiny_overrides, data, *options, epochs=4
    )
    # update_and_allocate ran after every optimizer step, in order.
    assert seen.steps == list(range(summary["steps"]))
    layers = len(seen.observed[0])
    assert layers == 4  # query and value in 2 layers
    totals = [sum(r.values()) for r in seen.observed]
    assert totals[0] == 6 * layers  # the warm-up keeps every triplet
    assert totals[-1] == 2 * layers  # the final budget: target_r per layer on average
    assert all(a >= b for a, b in itertools.pairwise(totals)), "the budget only shrinks"
    assert len(set(totals)) > 3, f"the budget fell in one jump, not on a schedule: {totals}"
    final = seen.observed[-1]
    assert final != seen.observed[0]

    # The final ranks are saved: the adapter is stored truncated to them, and reloads with them.
    config = json.loads((run / "weights" / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["rank_pattern"] and config["total_step"] == summary["steps"]
    from tunelab.inference.backends import LoadContext, model_loader, run_method

    predictor = tunelab.load(run)
    ctx = LoadContext(run=predictor.run, config=predictor.config, labels=predictor.labels, summary=summary)
    reloaded = run_method(ctx).load(predictor.run.weights, model_loader(ctx))
    assert ranks(reloaded) == final
    stored = load_file(str(run / "weights" / "adapter_model.safetensors"))
    assert sorted(t.shape[0] for k, t in stored.items() if "lora_E" in k) == sorted(final.values())


@pytest.mark.parametrize(
    ("method", "option", "fragment"),
    [
        ("adalora", "method.target_r=20", "target_r=20 is above init_r=12"),
        ("adalora", "method.final_fraction=0.95", "leaves no steps"),
        (
            "ia3",
            "method.feedforward_modules=[query]",
            "feedforward_modules ['query'] are not in target_modules",
        ),
        # an int failed in train as "unexpected TypeError"
        ("ia3", "method.feedforward_modules=5", "feedforward_modules=5 (use a list of module names"),
        ("loha", "method.r=0", "r=0"),
        ("lokr", "method.decompose_factor=0", "decompose_factor=0"),
        ("prompt", "method.init=text", "init='text' (use one of vocab, random)"),
        ("prefix", "method.tokens=0", "tokens=0"),
        ("adapter", "method.kind=compacter", "kind='compacter' (use one of houlsby, pfeiffer)"),
        ("adapter", "method.reduction_factor=-2", "reduction_factor=-2"),
    ],
)
def test_a_bad_option_is_one_line_naming_the_field_and_nothing_is_written(
    method: str,
    option: str,
    fragment: str,
    train_csv: Path,
    tiny_bert: Path,
    tiny_overrides: Any,
    tmp_path: Path,
) -> None:
    out = tmp_path / "runs"
    overrides = tiny_overrides(tiny_bert, train_csv, None, out, f"method={method}", option)
    with pytest.raises(ConfigError) as info:
        tunelab.train(None, overrides=overrides, show_progress=False)
    message = str(info.value)
    assert message.startswith(f"method {method}: ") and fragment in message and "\n" not in message
    assert not out.exists() or not any(out.iterdir())


def test_prompt_tuning_refuses_inputs_longer_than_the_positions_left(tiny_bert: Path) -> None:
    from tunelab.models import build_classifier

    prompt = get_method("prompt")
    model = prompt.apply(
        build_classifier(tiny_bert, ["a", "b"], seed=0), prompt.parse_options({"tokens": 100})
    )
    with pytest.raises(
        ConfigError, match=r"100 virtual tokens \+ 40 tokens exceed the model's 128 positions"
    ):
        model(input_ids=torch.ones(1, 40, dtype=torch.long))


@pytest.mark.parametrize("method_name", ["prompt", "prefix", "adapter"])
def test_padding_does_not_change_what_the_methods_written_here_predict(
    method_name: str, tiny_bert: Path
) -> None:
    """The virtual tokens, the prefix and the adapters must respect the attention mask: a text
    alone and the same text padded in a batch beside a longer one get the same logits."""
    from tunelab.models import build_classifier, load_tokenizer

    method = get_method(method_name)
    model = method.apply(build_classifier(tiny_bert, ["a", "b", "c"], seed=0), method.parse_options({}))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    model.eval()
    tokenizer = load_tokenizer(tiny_bert)
    alone = tokenizer(["rain today"], return_tensors="pt")
    batch = tokenizer(
        ["rain today", "a much longer text about football and pizza tonight"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        torch.testing.assert_close(model(**alone).logits[0], model(**batch).logits[0], rtol=1e-4, atol=1e-5)


def test_adalora_loss_term_is_peft_s_orthogonality_regulariser(tiny_bert: Path) -> None:
    """peft adds it in ``AdaLoraModel.forward`` when the model computes its own loss (and a peft model
    without a task type never even calls that forward); the loop's loss is the task's, so
    ``Method.loss_term`` must give the number peft's forward adds."""
    from tunelab.models import build_classifier, load_tokenizer

    adalora = get_method("adalora")
    model = adalora.apply(build_classifier(tiny_bert, ["a", "b", "c"], seed=0), adalora.parse_options({}))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen))  # far from orthogonal
    model.eval()
    batch = dict(
        load_tokenizer(tiny_bert)(["rain today", "pizza for dinner"], padding=True, return_tensors="pt")
    )
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        with_term = model.base_model(**batch, labels=labels).loss  # AdaLoraModel.forward
        task_loss = nn.functional.cross_entropy(model(**batch).logits, labels)
        term = adalora.loss_term(model)
    assert term > 0.1
    torch.testing.assert_close(with_term - task_loss, term, rtol=1e-5, atol=1e-6)


def test_the_loop_adds_the_method_s_loss_term_to_every_batch(
    monkeypatch: pytest.MonkeyPatch, train_csv: Path, tiny_bert: Path, tiny_overrides: Any, tmp_path: Path
) -> None:
    full = get_method("full")
    calls: list[float] = []

    def shrink_head(model: nn.Module) -> torch.Tensor:
        term = 1e3 * model.classifier.weight.pow(2).sum()
        calls.append(float(term.detach()))
        return term

    monkeypatch.setitem(registry._REGISTRY, "full", dataclasses.replace(full, loss_term=shrink_head))
    overrides = tiny_overrides(tiny_bert, train_csv, None, tmp_path, "train.head_init=random", epochs=2)
    summary = tunelab.train(None, overrides=overrides, show_progress=False).summary
    assert len(calls) == summary["steps"]  # one batch per step here
    assert calls[-1] < 0.1 * calls[0], "the term's gradient did not reach the weights"
    losses = [json.loads(line) for line in (Path(summary_dir(tmp_path)) / "logs" / "metrics.jsonl").open()]
    assert all(r["loss"] < 10 for r in losses if r.get("event") == "train"), "the logged loss is the task's"


def summary_dir(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_exports_that_would_drop_weights_kept_beside_the_base_refuse_in_one_line(
    train_csv: Path, test_csv: Path, tiny_bert: Path, tiny_overrides: Any, tmp_path: Path
) -> None:
    """torch-int8 rebuilds the plain classifier from its config, and structured pruning reshapes
    the base: a prefix (a method that cannot merge) would be lost or no longer fit."""
    from tunelab.errors import RunError

    out = tmp_path / "runs"
    overrides = tiny_overrides(tiny_bert, train_csv, test_csv, out, "method=prefix", "name=p", epochs=1)
    run = tunelab.train(None, overrides=overrides, show_progress=False).run_dir
    with pytest.raises(RunError, match="torch-int8 rebuilds the plain classifier") as info:
        tunelab.export(run, format="torch-int8", show_progress=False)
    assert "PrefixTuned" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(RunError, match="--prune-method heads reshapes the base model"):
        tunelab.export(run, format="onnx", prune=0.25, prune_method="heads", show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["p"]


@pytest.mark.parametrize("method_name", ["prompt", "prefix", "adapter"])
def test_a_deep_copy_runs_its_own_weights_and_threads_do_not_interfere(
    method_name: str, tiny_bert: Path
) -> None:
    """compress deep-copies models (a teacher for distillation) and the service may run one model
    in several threads: the hooks the methods written here install must follow the copy, and a
    forward in one thread must not switch another's off."""
    import copy
    import threading

    from tunelab.models import build_classifier, load_tokenizer

    method = get_method(method_name)
    model = method.apply(
        build_classifier(tiny_bert, ["a", "b", "c"], pooling="cls", seed=0), method.parse_options({})
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    model.eval()
    batch = dict(
        load_tokenizer(tiny_bert)(
            ["rain today", "pizza for dinner tonight"], padding=True, return_tensors="pt"
        )
    )
    with torch.no_grad():
        expected = model(**batch).logits
        twin = copy.deepcopy(model)
        torch.testing.assert_close(twin(**batch).logits, expected)
        for name, p in twin.named_parameters():
            if p.requires_grad and not is_head(name):  # the method's own weights only
                p.add_(torch.randn(p.shape, generator=gen))
        assert not torch.allclose(twin(**batch).logits, expected), "the copy ran the original's weights"
        torch.testing.assert_close(model(**batch).logits, expected)

        wrong: list[int] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(20):
                    with torch.no_grad():
                        if not torch.allclose(model(**batch).logits, expected, atol=1e-5):
                            wrong.append(1)
            except BaseException as exc:  # surfaced below: an exception in a thread is otherwise lost
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert not wrong


@pytest.mark.parametrize("method", ["lora", "prefix"])
@pytest.mark.parametrize("damage", ["weights", "config"])
def test_a_damaged_adapter_file_is_one_line_naming_the_folder(
    method: str, damage: str, tmp_path: Path, tiny_bert: Path, tiny_overrides: Any, data: Any
) -> None:
    """A truncated adapter or a broken adapter_config.json was "unexpected SafetensorError" or
    "unexpected JSONDecodeError" (a full run's damage was already named)."""
    from tunelab.errors import RunError

    run, _ = train(method, "single_label", tmp_path, tiny_bert, tiny_overrides, data, epochs=1)
    weights = run / "weights"
    if damage == "weights":
        target = next(weights.glob("*.safetensors"))
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        next(weights.glob("*config.json")).write_text("{bad", encoding="utf-8")
    with pytest.raises(RunError, match=rf"{weights}: cannot read the .*; train the run again"):
        tunelab.load(run)


def test_ia3_takes_one_feedforward_module_name_as_typed() -> None:
    """feedforward_modules=output.dense (the README's value, on the command line) reached peft as a
    string, a regex over whole module paths that matched no layer: outputs rescaled, not inputs."""
    from tunelab.config import RunConfig

    cfg = RunConfig.from_yaml(None, ["method=ia3", "method.feedforward_modules=output.dense"])
    assert get_method("ia3").parse_options(cfg.method.options).feedforward_modules == ["output.dense"]


def _tiny_other(kind: str, folder: Path) -> Path:
    """A random 2-layer RoBERTa or DistilBERT with the bundled (BERT) tokenizer."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel, RobertaConfig, RobertaModel

    from tunelab.models import resolve_model

    tok = AutoTokenizer.from_pretrained(str(resolve_model("minilm-l6").path))
    sizes = {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id}
    if kind == "roberta":
        config = RobertaConfig(**sizes, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=130)  # fmt: skip
        model = RobertaModel(config)
    else:
        config = DistilBertConfig(**sizes, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                  max_position_embeddings=128)  # fmt: skip
        model = DistilBertModel(config)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def test_prefix_gives_roberta_its_own_positions_and_refuses_distilbert(tmp_path: Path) -> None:
    """RoBERTa counts positions from padding_idx + 1: the wrapper's arange(T) shifted every token by
    two. DistilBERT takes no key/value cache: the prefix was dropped and the first forward failed."""
    from tunelab.models import build_classifier

    method = get_method("prefix")
    roberta = build_classifier(_tiny_other("roberta", tmp_path / "roberta"), ["a", "b"], seed=0)
    wrapped = method.apply(roberta, method.parse_options({"tokens": 2}))
    seen: list[torch.Tensor] = []
    embeddings = wrapped.model.base_model.embeddings.position_embeddings
    embeddings.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    ids = torch.tensor([[101, 2000, 2001, 102]])
    wrapped(input_ids=ids)
    roberta.base_model(input_ids=ids)  # the encoder's own positions, without the wrapper
    assert torch.equal(seen[0], seen[1]), seen
    distil = build_classifier(_tiny_other("distil", tmp_path / "distil"), ["a", "b"], seed=0)
    with pytest.raises(ConfigError, match="distilbert takes no key/value cache"):
        method.apply(distil, method.parse_options({}))


@pytest.mark.parametrize("ff", ["output\\.dense$", "all-linear"])
def test_ia3_feedforward_modules_that_match_no_layer_are_refused(tiny_bert: Path, ff: str) -> None:
    """peft full-matches a string against whole module paths: these matched nothing, and IA3 rescaled
    the layers' outputs instead of their inputs without a word."""
    from tunelab.models import build_classifier

    method = get_method("ia3")
    options = method.parse_options({"feedforward_modules": ff})
    with pytest.raises(ConfigError, match=r"feedforward_modules=.* matches no layer"):
        method.apply(build_classifier(tiny_bert, ["a", "b"], seed=0), options)
    ok = method.parse_options({"feedforward_modules": ".*output\\.dense"})
    assert method.apply(build_classifier(tiny_bert, ["a", "b"], seed=0), ok) is not None
