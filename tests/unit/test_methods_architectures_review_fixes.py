"""Methods on encoders other than BERT, as a reviewer found them:

1. ``method=prompt`` on DeBERTa-v2 cut the virtual positions where DeBERTa-v2 does not read its
   output (NER failed on P + T logits, [CLS] pooling read virtual token 0); an encoder whose output
   the cut cannot reach is now refused in one line when the prompt is applied;
2. Houlsby adapters on MPNet got the feed-forward adapters only, without a word; ``validate`` said
   "config ok" to method/architecture pairs ``train`` refuses (ALBERT + prompt, DeBERTa-v2 + prefix,
   DistilBERT or ALBERT + adapter);
3. ``method.train_pooler=true`` left ALBERT's pooler (a bare linear layer ``pooler``) frozen.

The encoders are tiny random ones (2 layers, hidden 32) with the tiny BERT's tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tunelab.data.labels import LabelMap
from tunelab.errors import ConfigError
from tunelab.methods import get_method
from tunelab.preflight import validate_run
from tunelab.tasks import get_task

ARCHITECTURES = ("deberta-v2", "mpnet", "albert", "distilbert")


@pytest.fixture(scope="module")
def encoders(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder per architecture: a random bare encoder (safetensors) and the tiny BERT's tokenizer."""
    import transformers as tr

    tokenizer = tr.AutoTokenizer.from_pretrained(str(tiny_bert))
    shared = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, max_position_embeddings=160)
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    configs = {
        "deberta-v2": tr.DebertaV2Config(**shared, **sizes),
        "mpnet": tr.MPNetConfig(**shared, **sizes),
        "albert": tr.AlbertConfig(**shared, **sizes, embedding_size=16),
        "distilbert": tr.DistilBertConfig(**shared, dim=32, n_layers=2, n_heads=2, hidden_dim=37),
    }
    root = tmp_path_factory.mktemp("encoders")
    folders = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        folder = root / name
        tr.AutoModel.from_config(config).save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))
        folders[name] = folder
    return folders


def build(folder: Path, task: str, pooling: str = "cls") -> nn.Module:
    """The task's model on ``folder`` with a fresh head (as ``train`` builds it)."""
    names = ["O", "B-PER", "B-LOC"] if task == "token_classification" else ["a", "b", "c"]
    return get_task(task).build_model(folder, LabelMap(names, task=task), pooling=pooling, seed=0)


def applied(model: nn.Module, method: str, **options: Any) -> nn.Module:
    chosen = get_method(method)
    return chosen.apply_to(model, chosen.parse_options(options))


def sequence_lengths(model: nn.Module, base: nn.Module, ids: torch.Tensor) -> tuple[Any, list[int]]:
    """The model's output for ``ids`` and the length of what its encoder (``base``) handed on."""
    seen: list[int] = []
    handle = base.register_forward_hook(lambda _m, _i, out: seen.append(out[0].shape[1]))
    try:
        with torch.no_grad():
            out = model.eval()(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        handle.remove()
    return out, seen


# -- 1. prompt tuning's cut reaches the head, or the encoder is refused -------------------------------


def test_prompt_on_deberta_v2_gives_one_logit_row_per_token(encoders: dict[str, Path]) -> None:
    model = build(encoders["deberta-v2"], "token_classification")
    wrapped = applied(model, "prompt", tokens=5)
    ids = torch.randint(1000, 2000, (2, 7))
    out, lengths = sequence_lengths(wrapped, model.base_model, ids)
    assert lengths == [7]
    assert tuple(out.logits.shape) == (2, 7, 3)  # was (2, 12, 3): "Expected input batch_size ..."


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_prompt_on_deberta_v2_pools_the_real_tokens_only(encoders: dict[str, Path], pooling: str) -> None:
    model = build(encoders["deberta-v2"], "single_label", pooling=pooling)
    wrapped = applied(model, "prompt", tokens=5)
    seen: list[torch.Tensor] = []
    handle = model.classifier.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    ids = torch.randint(1000, 2000, (2, 7))
    try:
        out, lengths = sequence_lengths(wrapped, model.base_model, ids)
    finally:
        handle.remove()
    assert lengths == [7]  # was 12: [CLS] pooling read virtual token 0, mean pooling averaged them in
    assert tuple(out.logits.shape) == (2, 3) and seen


def test_prompt_trains_ner_on_deberta_v2(
    encoders: dict[str, Path], tagged_jsonls: tuple[Path, Path], tmp_path: Path, tiny_overrides: Any
) -> None:
    import tunelab

    train, test = tagged_jsonls
    overrides = tiny_overrides(
        encoders["deberta-v2"],
        train,
        test,
        tmp_path,
        "data.task=token_classification",
        "method=prompt",
        "name=ner",
        epochs=1,
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    assert "entity_f1" in result.metrics["test"]
    assert not list(tmp_path.glob("*.partial"))


class _Stack(nn.Module):
    """A layer stack (BERT's ``layer`` list), handing on a BERT-style output."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.ModuleList([nn.Linear(8, 8)])

    def forward(self, states: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.layer[0](states),)


class _SideEncoder(nn.Module):
    """An encoder whose sequence output takes another path than its layer stack's output."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Config", (), {"model_type": "sidepath", "max_position_embeddings": 64})()
        self.embeddings = nn.Embedding(50, 8)
        self.encoder = _Stack()

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> tuple:
        self.encoder(inputs_embeds)
        return (inputs_embeds * 2,)  # (B, P + T, H): the stack's cut output is never read


class _SideModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = _SideEncoder()
        self.classifier = nn.Linear(8, 2)

    @property
    def base_model(self) -> nn.Module:
        return self.encoder

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.embeddings

    def forward(self, **kwargs: Any) -> torch.Tensor:
        return self.classifier(self.encoder(**kwargs)[0])


def test_prompt_refuses_an_encoder_whose_output_the_cut_misses(one_line: Any) -> None:
    with pytest.raises(ConfigError) as exc:
        applied(_SideModel(), "prompt", tokens=3)
    text = one_line(exc)
    assert text.startswith("method prompt: sidepath hands on 4 positions for 1 tokens"), text
    assert "use lora or full" in text


# -- 2. adapters and validate ---------------------------------------------------------------------------


def test_houlsby_adapters_on_mpnet_are_refused_not_halved(encoders: dict[str, Path], one_line: Any) -> None:
    with pytest.raises(ConfigError) as exc:
        applied(build(encoders["mpnet"], "single_label"), "adapter", kind="houlsby")
    text = one_line(exc)
    assert text.startswith("method adapter: kind=houlsby puts an adapter after each layer's attention"), text
    assert "mpnet's has no BERT-style one" in text and "use method.kind=pfeiffer" in text
    pfeiffer = applied(build(encoders["mpnet"], "single_label"), "adapter", kind="pfeiffer")
    adapters = [n for n, _ in pfeiffer.named_modules() if n.endswith(".adapter")]
    assert len(adapters) == 2, adapters  # one per layer, after the feed-forward block


@pytest.mark.parametrize(
    ("architecture", "method", "problem"),
    [
        ("albert", "prompt", "method prompt: cannot find the encoder's layers"),
        ("deberta-v2", "prefix", "method prefix: deberta-v2 takes no key/value cache"),
        ("distilbert", "adapter", "method adapter: the model has no BERT-style layer outputs"),
        ("albert", "adapter", "method adapter: the model has no BERT-style layer outputs"),
        ("mpnet", "adapter", "method adapter: kind=houlsby puts an adapter after each layer's attention"),
    ],
)
def test_validate_refuses_what_train_refuses(
    encoders: dict[str, Path], train_csv: Path, architecture: str, method: str, problem: str
) -> None:
    report = validate_run(
        None,
        overrides=[
            f"data.train={train_csv}",
            f"model.name={encoders[architecture]}",
            f"method={method}",
            "model.max_length=32",
        ],
        count_tokens=False,
    )
    assert len(report.problems) == 1 and report.problems[0].startswith(problem), report.problems


@pytest.mark.parametrize(
    ("architecture", "method"), [("deberta-v2", "prompt"), ("distilbert", "prompt"), ("mpnet", "adapter")]
)
def test_validate_passes_pairs_train_takes(
    encoders: dict[str, Path], train_csv: Path, architecture: str, method: str
) -> None:
    extra = ["method.kind=pfeiffer"] if method == "adapter" else []
    report = validate_run(
        None,
        overrides=[
            f"data.train={train_csv}",
            f"model.name={encoders[architecture]}",
            f"method={method}",
            *extra,
        ],
        count_tokens=False,
    )
    assert report.ok, report.problems


# -- 3. ALBERT's pooler trains -------------------------------------------------------------------------


def test_lora_trains_albert_pooler_with_train_pooler(encoders: dict[str, Path]) -> None:
    wrapped = applied(build(encoders["albert"], "single_label"), "lora", train_pooler=True)
    trained = [n for n, p in wrapped.named_parameters() if p.requires_grad and "pooler" in n]
    assert {n.rsplit(".", 1)[-1] for n in trained} == {"weight", "bias"}, trained
    config = wrapped.peft_config["default"]
    assert "pooler" in config.modules_to_save


def test_head_only_methods_train_albert_pooler_only_when_asked(encoders: dict[str, Path]) -> None:
    from tunelab.methods import wrapped_model

    model = build(encoders["albert"], "single_label")
    pooler = model.base_model.pooler
    assert isinstance(pooler, nn.Linear)
    wrapped_model.train_only_head(model, True)
    assert all(p.requires_grad for p in pooler.parameters())
    wrapped_model.train_only_head(model, False)
    assert not any(p.requires_grad for p in pooler.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())


def test_bert_pooler_keeps_its_saved_name(tiny_bert: Path) -> None:
    from tunelab.methods.peft_adapters import head_modules

    model = build(tiny_bert, "single_label")
    assert head_modules(model, True) == ["classifier", "pooler.dense"]
    assert json.dumps(head_modules(model, False)) == '["classifier"]'
