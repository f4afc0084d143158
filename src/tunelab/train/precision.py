"""Training precision: bf16 autocast where the CPU computes bf16 natively, fp32 elsewhere.

``train.precision`` is ``auto`` (the default), ``fp32`` or ``bf16``. Under bf16 the forward pass
runs in ``torch.autocast("cpu", dtype=torch.bfloat16)``: matrix products take bf16 inputs and
accumulate in fp32, while the master weights, the optimizer state, the loss and the gradients
applied to the weights stay fp32. On a CPU with ``avx512_bf16`` or AMX the bf16 products run
natively (measured in README, "Training speed"); without them bf16 is emulated and slower than
fp32, so ``auto`` picks fp32 there and a forced ``bf16`` is a config error rather than a silent
slowdown. Evaluation, prediction and export stay fp32 (the saved weights are fp32).
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from tunelab.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
# CPU flags (as Linux names them in /proc/cpuinfo) under which bf16 matrix products run natively.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo; empty where there is none (macOS, Windows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() != "Linux" or not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def bf16_flags() -> list[str]:
    """The flags of ``BF16_FLAGS`` this CPU has (empty: no native bf16)."""
    flags = cpu_flags()
    return [flag for flag in BF16_FLAGS if flag in flags]


@dataclass(frozen=True)
class Precision:
    """The precision a run trains in, and why (the sentence logged to the run's train.log)."""

    name: str  # "fp32" or "bf16"
    reason: str


def resolve_precision(requested: str, *, resuming: bool = False) -> Precision:
    """The precision for a ``train.precision`` value, detected now, on this machine.

    ``resuming``: a run resumed on another machine. ``--resume`` takes no overrides, so a forced
    ``bf16`` there falls back to fp32 (said in the reason) instead of leaving the run stuck.

    Raises:
        ConfigError: ``bf16`` was asked for on a CPU without native bf16 (a new run).
    """
    if requested == "fp32":
        return Precision("fp32", "train.precision=fp32")
    native = bf16_flags()
    if native:
        return Precision("bf16", f"train.precision={requested}, the CPU has {', '.join(native)}")
    if requested == "bf16" and resuming:
        return Precision(
            "fp32", "train.precision=bf16, but the CPU this run resumed on has neither avx512_bf16 nor AMX"
        )
    if requested == "bf16":
        raise ConfigError(
            "train.precision=bf16: this CPU has neither avx512_bf16 nor AMX, so bf16 would be emulated "
            "and slower than fp32; use train.precision=auto (picks fp32 here) or fp32"
        )
    return Precision("fp32", "train.precision=auto, the CPU has no avx512_bf16 or AMX")


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """The context a training forward pass runs in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
