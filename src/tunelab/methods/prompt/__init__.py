"""Prompt tuning: learned vectors prepended to the input embeddings; the encoder stays frozen.

Lester et al., 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning". ``tokens`` virtual
tokens (P, H) go before the T real ones, the attention mask and token types extended over them.
They steer the real tokens through attention; what the encoder hands on is the T real positions
only (a forward hook on its layer stack drops the first P), so every head reads what it reads
without a prompt: per-token logits stay (B, T, L), BERT's pooler reads the real [CLS], and mean
pooling averages the real tokens (averaging P identical-at-input virtual tokens in would drown the
sentence; on the tiny test encoder the loss then hardly moved).

Why not peft's ``PromptTuningConfig``: its models prepend only for the classes of a peft
``task_type``, pool over the virtual tokens, and for token classification return logits over
P + T positions (peft issue #482: by design, the caller drops them), which the task's loss and
decoding would misread. The forward is the few lines below; the options mirror peft's
(``num_virtual_tokens``, init from the vocabulary or random).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.errors import ConfigError
from tunelab.methods import wrapped_model
from tunelab.methods.options import Problems
from tunelab.methods.registry import Method, ModelLoader, register_method
from tunelab.methods.wrapped_model import WrappedModel

# WordPiece vocabularies put special and [unused] tokens first; Lester et al. initialise from the
# 5,000 most common tokens, which in a frequency-ordered vocabulary are the rows after those.
_VOCAB_ROWS = (1000, 6000)


@dataclass
class PromptOptions:
    """Prompt tuning options.

    ``tokens`` 20 is peft's documented example for classification (Lester et al. found 20 as good
    as 100 past 1B parameters, and more helps small models); ``init: vocab`` starts the prompt
    from the embeddings of sampled common tokens, which Lester et al. found better than random.
    """

    tokens: int = 20
    init: str = "vocab"
    train_pooler: bool = True

    def __post_init__(self) -> None:
        problems = Problems("prompt")
        problems.positive_int("tokens", self.tokens, 20)
        problems.choice("init", self.init, ("vocab", "random"))
        problems.raise_if_any()

    def check_model(self, model: nn.Module) -> None:
        """What ``PromptTuned`` checks of ``model``, for ``tunelab validate`` (on the model's
        skeleton): a layer stack to hook, and an encoder output the hook really cuts to T positions."""
        drop = _DropVirtual(self.tokens)
        handles = drop.attach(model)
        try:
            drop.probe(model)
        finally:
            for handle in handles:
                handle.remove()


class _DropVirtual:
    """Forward hook on the encoder's layer stack: drop the P virtual positions from its output
    while a ``PromptTuned`` forward runs in this thread, so everything after it sees (B, T, H).

    The layer stack's output is cut whole, its per-layer hidden states too: DeBERTa-v2 takes its
    sequence output from those (``encoder_outputs[1][-1]``), not from ``last_hidden_state``, so a cut
    of that alone never reached the head (NER failed on P + T logits, [CLS] pooling read virtual
    token 0). A second hook on the base model checks that what it hands on is T positions long, so
    an architecture whose output takes yet another path is refused in one line, not trained on
    virtual positions (``probe`` runs it once when the prompt is applied, before training).

    The switch is per thread: the service may run one model in several threads at once, and a
    forward that finishes must not switch off another's. The task model called on its own (no
    virtual tokens) passes through untouched.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._local = threading.local()

    @contextlib.contextmanager
    def armed(self, tokens: int) -> Iterator[None]:
        """Cut while the body runs; ``tokens``: the T real positions the encoder must hand on."""
        self._local.active, self._local.tokens = True, tokens
        try:
            yield
        finally:
            self._local.active = False

    def _cut(self, value: Any, length: int) -> Any:
        """``value`` with the first P positions dropped: each (B, P + T, H) tensor in it, at any depth
        of tuples (the per-layer hidden states); attention maps (4-D) and the rest as they are."""
        if isinstance(value, torch.Tensor):
            return value[:, self.n :] if value.dim() == 3 and value.shape[1] == length else value
        if isinstance(value, tuple | list):
            return type(value)(self._cut(v, length) for v in value)
        return value

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if not getattr(self._local, "active", False):
            return output
        if isinstance(output, tuple):
            return self._cut(output, output[0].shape[1])
        length = output.last_hidden_state.shape[1]  # P + T
        for key in list(output.keys()):  # a ModelOutput: last_hidden_state, hidden_states, ...
            setattr(output, key, self._cut(getattr(output, key), length))  # (B, P + T, H) -> (B, T, H)
        return output

    def check(self, module: nn.Module, inputs: Any, output: Any) -> None:
        """Forward hook on the base model: its sequence output must be the T real positions."""
        if not getattr(self._local, "active", False):
            return
        states = output[0]  # last_hidden_state, in a ModelOutput or a tuple
        if isinstance(states, torch.Tensor) and states.dim() == 3 and states.shape[1] != self._local.tokens:
            config = getattr(module, "config", None)
            raise ConfigError(
                f"method prompt: {getattr(config, 'model_type', type(module).__name__)} hands on "
                f"{states.shape[1]} positions for {self._local.tokens} tokens, its virtual ones kept "
                "(its encoder output takes a path prompt tuning cannot cut); use lora or full"
            )

    def attach(self, model: nn.Module) -> list[Any]:
        """Hook the cut onto ``model``'s layer stack and the check onto its base model; the handles."""
        return [
            layer_stack(model).register_forward_hook(self),
            model.base_model.register_forward_hook(self.check),
        ]

    def probe(self, model: nn.Module) -> None:
        """One forward of P virtual + 1 token through ``model``'s encoder, so an output the cut misses
        is refused when the prompt is applied (before any run folder), not at the first batch."""
        table = model.get_input_embeddings().weight  # (V, E)
        embeds = table.new_zeros(1, self.n + 1, table.shape[1])
        mask = torch.ones(1, self.n + 1, dtype=torch.long, device=table.device)
        modes = {m: m.training for m in model.modules()}
        model.eval()  # no dropout: the probe must not draw from the run's random numbers
        try:
            with torch.no_grad(), self.armed(1):
                model.base_model(inputs_embeds=embeds, attention_mask=mask)
        except ConfigError:
            raise
        except Exception:
            # What the probe cannot run says nothing about the cut: too many virtual tokens for the
            # positions (refused in its own words), an operation the meta device (validate's
            # skeleton) lacks. Training's forwards still run ``check``.
            pass
        finally:
            for m, training in modes.items():
                m.training = training

    def __deepcopy__(self, memo: dict) -> _DropVirtual:
        # Thread-local state cannot be copied; deepcopy memoises the result, so the wrapper and
        # the hooks of a copied model share one new switch.
        return _DropVirtual(self.n)

    def __getstate__(self) -> dict[str, int]:
        return {"n": self.n}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["n"])


def layer_stack(model: nn.Module) -> nn.Module:
    """The encoder's module that runs its layers (BERT's ``BertEncoder``: a ``layer`` ModuleList)."""
    for _, module in model.base_model.named_modules():
        if isinstance(getattr(module, "layer", None), nn.ModuleList):
            return module
    raise ConfigError(
        "method prompt: cannot find the encoder's layers (a module with a 'layer' list) in this model; "
        "prompt tuning supports BERT-family encoders"
    )


class PromptTuned(WrappedModel):
    """The task model reading ``prompt`` (P, H) before every input."""

    method = "prompt"

    def __init__(self, model: nn.Module, options: PromptOptions) -> None:
        super().__init__(model, options)
        table = model.get_input_embeddings().weight.detach()  # (V, H)
        n = options.tokens
        if options.init == "vocab":
            lo, hi = min(_VOCAB_ROWS[0], table.shape[0] - 1), min(_VOCAB_ROWS[1], table.shape[0])
            start = table[torch.randint(lo, max(hi, lo + 1), (n,))].clone()
        else:
            start = torch.randn(n, table.shape[1]) * table.std()
        self.prompt = nn.Parameter(start)  # (P, H)
        self.max_positions = getattr(model.base_model.config, "max_position_embeddings", None)
        self.drop_virtual = _DropVirtual(n)
        self.drop_virtual.attach(model)
        self.drop_virtual.probe(model)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        if inputs_embeds is None:
            inputs_embeds = self.model.get_input_embeddings()(input_ids)  # (B, T, H)
        b, t, p = inputs_embeds.shape[0], inputs_embeds.shape[1], self.prompt.shape[0]
        if self.max_positions is not None and p + t > self.max_positions:
            raise ConfigError(
                f"method prompt: {p} virtual tokens + {t} tokens exceed the model's "
                f"{self.max_positions} positions; lower model.max_length to {self.max_positions - p} "
                "or method.tokens"
            )
        prompt = self.prompt.to(inputs_embeds.dtype).expand(b, -1, -1)  # (B, P, H)
        embeds = torch.cat([prompt, inputs_embeds], dim=1)  # (B, P + T, H)
        if attention_mask is None:
            attention_mask = torch.ones(b, t, dtype=torch.long, device=embeds.device)
        mask = torch.cat([attention_mask.new_ones(b, p), attention_mask], dim=1)  # (B, P + T)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = torch.cat([token_type_ids.new_zeros(b, p), token_type_ids], dim=1)
        with self.drop_virtual.armed(t):
            return self.model(inputs_embeds=embeds, attention_mask=mask, **kwargs)


def apply(model: nn.Module, cfg: PromptOptions) -> nn.Module:
    wrapped_model.train_only_head(model, cfg.train_pooler)
    return PromptTuned(model, cfg)


def load(folder: Path, loader: ModelLoader) -> nn.Module:
    return wrapped_model.load(folder, loader, method="prompt", options_cls=PromptOptions, apply=apply)


register_method(
    Method(
        name="prompt",
        config_cls=PromptOptions,
        apply=apply,
        save=wrapped_model.save,
        load=load,
        # Prompt vectors live on the embeddings' scale (MiniLM's ~0.05 per entry): larger steps than
        # LoRA's, far smaller than Lester et al.'s 0.3 for T5's much larger embeddings.
        default_learning_rate=1e-2,
        stores_base=False,
        description="learned virtual tokens before the input (ours); tiny, weakest on small encoders",
        cannot_merge="a learned prompt is extra input, not a change to any weight; "
        "it cannot be folded into the base model",
        extra_positions=lambda options: int(options.tokens),
    )
)
