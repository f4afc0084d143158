"""train.fast_dropout: dropout masks from 16 random bits per element, same distribution as torch's.

The distribution checks draw a million elements: the keep share's standard error is 3e-4, so the
tolerances below (10 standard errors) cannot fail by chance and do fail for a wrong keep rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import tunelab
from tunelab.models import build_classifier
from tunelab.train import fast_dropout as fd


@pytest.fixture
def mask_shapes(monkeypatch: pytest.MonkeyPatch) -> list[torch.Size]:
    """The shape of every mask the cheap draw makes while the test runs."""
    shapes: list[torch.Size] = []
    real = fd.keep_mask

    def recording(shape: torch.Size, *rest: Any) -> tuple[torch.Tensor, float]:
        shapes.append(shape)
        return real(shape, *rest)

    monkeypatch.setattr(fd, "keep_mask", recording)
    return shapes


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_the_keep_share_is_one_minus_p_and_the_mean_is_kept(p: float) -> None:
    torch.manual_seed(0)
    out = fd.dropout(torch.ones(1000, 1000), p)
    kept = (out > 0).float().mean().item()
    assert abs(kept - (1 - p)) < 0.003
    assert abs(out.mean().item() - 1.0) < 0.005
    values = out.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p), rel=1e-4)


def test_the_mask_is_seeded_by_torch_and_differs_between_seeds() -> None:
    x = torch.ones(64, 64)
    torch.manual_seed(3)
    a = fd.dropout(x, 0.1)
    torch.manual_seed(3)
    b = fd.dropout(x, 0.1)
    torch.manual_seed(4)
    c = fd.dropout(x, 0.1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_every_lane_of_the_random_words_is_uniform() -> None:
    """The four 16-bit lanes of each int64 word: a biased lane (e.g. a sign bit fixed at 0, as
    ``random_()`` without bounds gives) would drop far fewer elements at every fourth position."""
    torch.manual_seed(0)
    keep, _ = fd.keep_mask(torch.Size([4, 250_000]), 0.5, torch.device("cpu"))
    lanes = keep.reshape(-1, 4).float().mean(dim=0)
    assert torch.all((lanes - 0.5).abs() < 0.005), lanes


def test_eval_mode_and_p_zero_pass_the_input_through_and_p_one_drops_everything() -> None:
    x = torch.randn(8, 8)
    assert fd.dropout(x, 0.1, training=False) is x
    assert fd.dropout(x, 0.0) is x
    assert torch.count_nonzero(fd.dropout(x, 1.0)) == 0
    # p so close to 1 that it rounds to every 16-bit level dropped: torch's dropout, no 1/0 scale.
    torch.manual_seed(0)
    assert torch.count_nonzero(fd.dropout(torch.ones(1000), 0.999995)) <= 5


def test_the_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(0)
    x = torch.ones(100, 100, requires_grad=True)
    out = fd.dropout(x, 0.2)
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d(x * m * s)/dx = m * s = the output at x = 1


def test_bf16_input_stays_bf16() -> None:
    x = torch.ones(32, 32, dtype=torch.bfloat16)
    assert fd.dropout(x, 0.1).dtype == torch.bfloat16


def _encoder_attention() -> nn.Module:
    """A stand-in attention module that says what BERT's self-attention says: not causal."""
    module = nn.Module()
    module.is_causal = False
    return module


def _attention_inputs() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 7, 8) for _ in range(3))
    lengths = torch.tensor([7, 5, 2])
    mask = (torch.arange(7)[None, :] < lengths[:, None])[:, None, None, :].expand(3, 1, 7, 7)
    return q, k, v, mask


def test_attention_with_a_vanishing_dropout_matches_transformers_sdpa() -> None:
    """p = 1e-9 rounds to no dropped lane and scale 1: the cheap path must then compute exactly
    what sdpa computes without dropout, padding mask included."""
    q, k, v, mask = _attention_inputs()
    module = _encoder_attention()
    ours, _ = fd.attention(module, q, k, v, mask, dropout=1e-9, scaling=0.3)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.3)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_attention_drops_probabilities_with_the_cheap_draw(mask_shapes: list[torch.Size]) -> None:
    q, k, v, mask = _attention_inputs()
    calls = mask_shapes
    fd.attention(_encoder_attention(), q, k, v, mask, dropout=0.1)
    assert calls == [torch.Size([3, 4, 7, 7])]  # (batch, heads, queries, keys): the probabilities
    # Left to transformers' sdpa (which draws torch's mask): a causal module, a module that does
    # not say (sdpa takes it as causal), a position bias (T5), an explicit is_causal.
    causal = nn.Module()
    causal.is_causal = True
    for module, extra in [
        (causal, {}),
        (nn.Module(), {}),
        (_encoder_attention(), {"position_bias": torch.zeros(1, 4, 7, 7)}),
        (_encoder_attention(), {"is_causal": True}),
    ]:
        calls.clear()
        fd.attention(module, q, k, v, None, dropout=0.1, **extra)
        assert calls == [], extra


@pytest.mark.parametrize("pooling", ["cls", "mean"])  # transformers' classifier, tunelab's pooled one
def test_the_context_switches_dropout_and_attention_and_restores_them(tiny_bert: Path, pooling: str) -> None:
    model = build_classifier(tiny_bert, ["a", "b"], pooling=pooling, seed=0)
    dropouts = [m for m in model.modules() if type(m) is nn.Dropout]
    keys = list(model.state_dict())
    assert dropouts and model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError, match="boom"), fd.fast_dropout(model) as switched:
        assert switched >= len(dropouts) + 1
        assert all(type(m) is fd.FastDropout for m in dropouts)
        assert model.base_model.config._attn_implementation == fd.ATTENTION
        assert list(model.state_dict()) == keys
        raise RuntimeError("boom")
    assert all(type(m) is nn.Dropout for m in dropouts)
    assert model.config._attn_implementation == "sdpa"
    assert model.base_model.config._attn_implementation == "sdpa"
    with fd.fast_dropout(model, enabled=False) as switched:
        assert switched == 0 and all(type(m) is nn.Dropout for m in dropouts)


def test_eval_forward_is_unchanged_inside_the_context(tiny_bert: Path) -> None:
    model = build_classifier(tiny_bert, ["a", "b"], seed=0).eval()
    ids = torch.tensor([[101, 2000, 2001, 102], [101, 2003, 102, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
        with fd.fast_dropout(model):
            got = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(ref, got)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_training_loop_draws_masks_the_cheap_way_only_when_asked(
    enabled: bool,
    tiny_bert: Path,
    tiny_overrides: Any,
    labelled_csvs: tuple[Path, Path],
    tmp_path: Path,
    mask_shapes: list[torch.Size],
) -> None:
    calls = mask_shapes
    train, test = labelled_csvs
    overrides = tiny_overrides(
        tiny_bert, train, test, tmp_path, "train.epochs=1", f"train.fast_dropout={str(enabled).lower()}"
    )
    result = tunelab.train(None, overrides=overrides, show_progress=False)
    assert bool(calls) is enabled
    if enabled:  # hidden (batch, tokens, hidden) and attention (batch, heads, tokens, tokens) masks
        assert {len(shape) for shape in calls} >= {3, 4}
    # The switch is undone before anything is saved: no file of the run names the training attention.
    saved = [p for p in result.run_dir.rglob("*.json") if fd.ATTENTION in p.read_text(errors="replace")]
    assert saved == []
