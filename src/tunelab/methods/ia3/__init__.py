"""IA3 through peft: learned vectors that rescale keys, values and feed-forward activations.

(IA)^3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning") multiplies chosen activations by trained vectors, initialised to 1: the
smallest adapter of the family (about 0.1% of MiniLM's weights with the defaults). The vectors
fold into the weights they scale, so a run merges into a plain model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from tunelab.errors import ConfigError
from tunelab.methods import peft_adapters
from tunelab.methods.options import Problems, names_as_list
from tunelab.methods.registry import Method, register_method


@dataclass
class Ia3Options:
    """IA3 options (see ``peft.IA3Config``).

    The defaults are peft's own choice for BERT: keys, values and the inputs of the ``output.dense``
    layers (the attention output and the feed-forward output), the latter listed as
    ``feedforward_modules`` (their input, not their output, is rescaled). ``feedforward_modules``
    must be among ``target_modules``.
    """

    target_modules: list[str] | str = field(default_factory=lambda: ["key", "value", "output.dense"])
    feedforward_modules: list[str] | str = field(default_factory=lambda: ["output.dense"])
    train_pooler: bool = True

    def __post_init__(self) -> None:
        problems = Problems("ia3")
        self.target_modules = problems.modules(
            "target_modules", self.target_modules, "[key, value, output.dense]"
        )
        # feedforward_modules=output.dense as typed: as peft's regex it matched no layer, and the
        # layers' outputs were rescaled instead of their inputs, silently
        ff = self.feedforward_modules = names_as_list(self.feedforward_modules)
        if not isinstance(ff, str | list) or (
            isinstance(ff, list) and not all(isinstance(m, str) and m for m in ff)
        ):  # an int failed in train as "unexpected TypeError: 'int' object is not iterable"
            problems.add(
                f"feedforward_modules={ff!r} (use a list of module names such as [output.dense], or [])"
            )
        else:
            problems.regex("feedforward_modules", ff, "[output.dense]")
        if isinstance(self.feedforward_modules, list) and isinstance(self.target_modules, list):
            extra = [m for m in self.feedforward_modules if m not in self.target_modules]
            if extra:
                problems.add(
                    f"feedforward_modules {extra} are not in target_modules {self.target_modules} "
                    "(add them there too)"
                )
        problems.raise_if_any()


def apply(model: nn.Module, cfg: Ia3Options) -> nn.Module:
    from peft import IA3Config

    config = IA3Config(
        target_modules=cfg.target_modules,
        feedforward_modules=cfg.feedforward_modules or [],
        modules_to_save=peft_adapters.head_modules(model, cfg.train_pooler),
    )
    wrapped = peft_adapters.wrap(model, config, "ia3")
    if cfg.feedforward_modules and not any(getattr(m, "is_feedforward", False) for m in wrapped.modules()):
        # peft full-matches a string against whole module paths: "output\.dense$" or "all-linear"
        # matched no layer, and IA3 rescaled those layers' outputs instead of inputs, silently
        raise ConfigError(
            f"method ia3: feedforward_modules={cfg.feedforward_modules!r} matches no layer among "
            "target_modules; give module names ([output.dense]) or a regex over the whole path "
            "(.*output\\.dense)"
        )
    saved = wrapped.peft_config[wrapped.active_adapter]
    if isinstance(saved.target_modules, set | list) and saved.feedforward_modules:
        # peft expands all-linear into the layers' short names ({"dense", "query", ...}) and saves
        # them beside feedforward_modules ["output.dense"], then refuses that config on load (not a
        # subset). Both match a layer by name suffix, so adding the feedforward names matches the
        # same layers and lets the run load.
        saved.target_modules = set(saved.target_modules) | set(saved.feedforward_modules)
    return wrapped


register_method(
    Method(
        name="ia3",
        config_cls=Ia3Options,
        apply=apply,
        save=peft_adapters.save,
        load=peft_adapters.loader_for("ia3", peft_type="IA3"),
        merge=peft_adapters.merge,
        sharing=peft_adapters.sharing_for("ia3", peft_type="IA3", mixed=False),
        # T-Few trained (IA)^3 with 3e-3; the vectors start at 1, so steps of that size matter.
        default_learning_rate=3e-3,
        stores_base=False,
        description="learned rescaling vectors on keys, values and feed-forward (peft); the smallest",
    )
)
