"""The search space: a YAML file mapping config fields to the values a search may try.

```yaml
train.learning_rate: {low: 1e-5, high: 1e-3, log: true}   # a float range (log scale)
train.epochs: {low: 2, high: 6}                            # whole numbers when both ends are
train.warmup_ratio: {low: 0.0, high: 0.2, step: 0.05}
method.r: [4, 8, 16]                                       # a choice
method: [lora, full]
```

Keys are the ``key=value`` override names (``data.*``, ``model.*``, ``method``/``method.<option>``,
``train.*``); each is checked against the run config with its extreme values before a trial runs,
so a typo or a value the config refuses is one line naming the file and key, not a failed trial
an hour in. Values are applied as overrides, so anything ``tunelab train key=value`` takes works.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import ConfigError, TunelabError
from tunelab.yaml_names import dump_yaml

if TYPE_CHECKING:
    import optuna

    from tunelab.config import RunConfig

_RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class Dimension:
    """One config field and the values a search may give it.

    Attributes:
        key: the override name (``train.learning_rate``, ``method.r``).
        choices: the values of a choice; None for a range.
        low, high: a range's ends (both included).
        log: sample a range on a log scale.
        step: a range's grid step; None for any value.
        integer: a range of whole numbers.
    """

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        """This field's value for ``trial``, drawn by the study's sampler."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.integer:
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list[Any]:
        """The values to check the config accepts: every choice, or both ends of the range."""
        if self.choices is not None:
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.integer else [self.low, self.high]  # type: ignore[arg-type]

    def inside(self) -> float | None:
        """A value a real range with whole-number ends draws that is not whole (``4.5`` of ``{low: 4.0,
        high: 16.0}``), to check too; None for others.

        Such ends pass as whole numbers, yet the range draws reals: a field that takes whole numbers
        only (``train.batch_size``) passed the check of its ends and failed the first trial, whose
        advice, drawing other values, could never work.
        """
        if self.choices is not None or self.integer or self.low is None or self.high is None:
            return None
        if not (float(self.low).is_integer() and float(self.high).is_integer()):
            return None  # an end that is not whole is checked itself
        value = float(self.low) + (float(self.step) if self.step else 0.5)
        return value if not value.is_integer() and value <= self.high else None

    def refuses(self, value: Any) -> str | None:
        """Why this field cannot be given ``value`` (``search(first=...)``), as the words after it; None
        when it can. A choice is matched by value and kind, as the space tells its choices apart (``1``
        and ``true`` differ); a range's value must lie on it (inside both ends, whole for whole
        numbers, on the step's grid): Optuna only warned and trained a value off the range."""
        if self.choices is not None:
            if any(isinstance(c, bool) == isinstance(value, bool) and c == value for c in self.choices):
                return None
            return f"is not one of its choices {list(self.choices)}; give one of them"
        assert self.low is not None and self.high is not None
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            return f"is not a number; give one from {self.low:g} to {self.high:g}"
        if not self.low <= value <= self.high:
            return f"is outside its range {self.low:g} to {self.high:g}; give a value within it"
        if self.integer and not float(value).is_integer():
            return f"is not a whole number (the range {self.whole_ends()} draws whole numbers); give one"
        if self.step and abs((k := (value - self.low) / self.step) - round(k)) > 1e-8:
            return f"is not on its grid (from {self.low:g} in steps of {self.step:g}); give a value on it"
        return None

    def whole_ends(self) -> str:
        """The range's ends written as whole numbers, for the advice to use them: ``(4, 16)``."""
        return f"({int(self.low or 0)}, {int(self.high or 0)})"

    def describe(self) -> str:
        """This field's values for a person, as ``search.json`` stored them before ``spec`` existed.

        Not exact: a whole-number range and a real one print alike (``2 to 6``), bounds are rounded
        to 6 digits and choices lose their types (``1`` and ``'1'``), so a changed space is told by
        ``spec``, never by this alone.
        """
        if self.choices is not None:
            return f"{self.key}: one of {', '.join(map(str, self.choices))}"
        scale = ", log scale" if self.log else ""
        step = f", step {self.step:g}" if self.step else ""
        return f"{self.key}: {self.low:g} to {self.high:g}{scale}{step}"

    def spec(self) -> dict[str, Any]:
        """The values this field can take, exactly: what a resumed search compares with the space its
        trials were drawn from (see ``same_spec``).

        The kind (``choice``, ``int`` or ``float``) is explicit; a range's bounds and step are the
        numbers Optuna draws with (whole ones for ``int``, as ``suggest`` passes them; reals for
        ``float``, so ``{low: 0, high: 0.5}`` and ``{low: 0.0, high: 0.5}`` stay one space), and
        choices keep their types (``1``, ``1.0``, ``'1'`` and ``true`` are other overrides).
        """
        if self.choices is not None:
            return {"key": self.key, "kind": "choice", "choices": list(self.choices)}
        assert self.low is not None and self.high is not None
        if self.integer:
            low, high, step = int(self.low), int(self.high), int(self.step or 1)
            return {"key": self.key, "kind": "int", "low": low, "high": high, "step": step, "log": self.log}
        step = None if self.step is None else float(self.step)
        return {
            "key": self.key,
            "kind": "float",
            "low": float(self.low),
            "high": float(self.high),
            "step": step,
            "log": self.log,
        }

    def distribution(self) -> Any:
        """The Optuna distribution ``suggest`` draws from (what ``study.db`` records for each trial)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        spec = self.spec()
        if spec["kind"] == "choice":
            return CategoricalDistribution(spec["choices"])
        kind = IntDistribution if spec["kind"] == "int" else FloatDistribution
        return kind(spec["low"], spec["high"], log=spec["log"], step=spec["step"])


def distribution_spec(key: str, distribution: Any) -> dict[str, Any]:
    """``Dimension.spec`` of the field ``key`` as an Optuna distribution records it (a trial in
    ``study.db``): how a study saved before ``spec`` existed tells which space its trials came from."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return {"key": key, "kind": "choice", "choices": list(distribution.choices)}
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    cast = int if kind == "int" else float
    step = None if distribution.step is None else cast(distribution.step)
    return {
        "key": key,
        "kind": kind,
        "low": cast(distribution.low),
        "high": cast(distribution.high),
        "step": step,
        "log": bool(distribution.log),
    }


def same_spec(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two ``spec`` dicts are one space. Not ``==``: Python has ``2 == 2.0`` and ``1 == True``,
    the very differences a spec records, so the comparison is of canonical JSON text."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def spec_text(spec: dict[str, Any]) -> str:
    """A ``spec`` for a person, exact where ``describe`` is not: ``whole numbers 2 to 6``, ``real
    numbers 2.0 to 6.0``, ``one of [1, "1", true]`` (an error names what changed by it)."""
    if spec.get("kind") == "choice":
        return f"one of {json.dumps(spec.get('choices'), ensure_ascii=False)}"
    kind = "whole numbers" if spec.get("kind") == "int" else "real numbers"
    step = spec.get("step")
    steps = (
        f" in steps of {step!r}" if step is not None and not (kind == "whole numbers" and step == 1) else ""
    )
    scale = ", log scale" if spec.get("log") else ""
    return f"{kind} {spec.get('low')!r} to {spec.get('high')!r}{steps}{scale}"


def override(key: str, value: Any) -> str:
    """``key=value`` as ``tunelab train`` reads it back: YAML text, so ``1e-05`` stays a float.

    On one line whatever its length: safe_dump wraps at 80 columns (and a text with a line break
    spans lines), and only the first line was kept. A text is written as JSON, which YAML reads.
    """
    if isinstance(value, str):
        return f"{key}={json.dumps(value, ensure_ascii=False)}"
    text = dump_yaml(value, default_flow_style=True, width=float("inf"))  # reads back as value
    return f"{key}={text.splitlines()[0]}"


def load_space(path: str | Path) -> list[Dimension]:
    """Read and check a space file's syntax (``check_space`` checks it against a config).

    Raises:
        ConfigError: one line naming the file and the key, for a missing or empty file, bad
            YAML, or a value that is neither a list of choices nor a ``{low, high}`` range.
    """
    from tunelab.apps.yaml_config import read_yaml_config
    from tunelab.yaml_names import load_names_yaml

    p = Path(path)
    # A key given twice is refused (load_names_yaml): YAML kept the last silently, so
    # train.batch_size searched only the second list. Values are read as yaml.safe_load reads them.
    raw = read_yaml_config(p, "search space file", "tunelab search --help", parse=load_names_yaml)
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"{p}: a search space maps config fields to values, e.g. "
            "'train.learning_rate: {low: 1e-5, high: 1e-3, log: true}' or 'method.r: [4, 8, 16]'"
        )
    return [_dimension(p, str(key), value) for key, value in raw.items()]


def _dimension(path: Path, key: str, value: Any) -> Dimension:
    where = f"{path}: {key}"
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: an empty list of choices; give at least one value")
        bad = [v for v in value if v is not None and not isinstance(v, bool | int | float | str)]
        if bad:
            raise ConfigError(
                f"{where}: choices must be single values (numbers, text, true/false), got {bad[0]!r}"
            )
        choices = tuple(_yaml11_float(v) for v in value)
        # By value once numbers are numbers: by repr, '1e-4' (text to YAML 1.1) and 0.0001, or 4 and
        # 4.0, were two choices that set the field alike. A bool is no number here (1 and true differ).
        seen: set[tuple[bool, Any]] = set()
        for written, choice in zip(value, choices, strict=True):
            same = (isinstance(choice, bool), choice)
            if same in seen:
                raise ConfigError(
                    f"{where}: the choice {written!r} is listed twice in {value} (equal numbers are one "
                    "choice); give each value once"
                )
            seen.add(same)
        return Dimension(key, choices=choices)
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where}: give a list of choices ([4, 8, 16]) or a range "
            f"({{low: 1e-5, high: 1e-3, log: true}}), not {value!r}"
        )
    unknown = sorted(set(map(str, value)) - _RANGE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown range key(s) {', '.join(unknown)} (use low, high, log, step)")
    if "low" not in value or "high" not in value:
        raise ConfigError(f"{where}: a range needs both low and high, e.g. {{low: 1e-5, high: 1e-3}}")
    low, high, step = (_number(where, name, value.get(name)) for name in ("low", "high", "step"))
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log={log!r} (use true or false)")
    assert low is not None and high is not None
    if not low < high:
        raise ConfigError(f"{where}: low ({low:g}) must be below high ({high:g})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0 (got {low:g})")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: step must be positive and cannot be combined with log")
    # YAML reads 1 as an int and 1.0 as a float: a range written in whole numbers is one of them.
    integer = all(isinstance(value.get(name), int) for name in ("low", "high")) and (
        step is None or float(step).is_integer()
    )
    return Dimension(key, low=low, high=high, log=log, step=step, integer=integer)


def _yaml11_float(value: Any) -> Any:
    """``1e-4`` as YAML 1.1 reads it (text: no dot) back to the number it was written as."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def _number(where: str, name: str, value: Any) -> float | None:
    """A finite number; YAML 1.1 reads ``1e-5`` (no dot) as text, so text that is a number counts."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: {name}={value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: {name}={value!r} is not a finite number")
    return value


def check_space(
    space: list[Dimension], config: RunConfig | str | Path | None, overrides: list[str], path: str | Path
) -> None:
    """Check that the run config takes every choice and both ends of every range, as the trials
    will set them: a ``method.*`` option under each ``method`` the space chooses among (an option
    one of them does not take would fail that trial), and ``model.max_length`` against the model's
    positions (plus a prompt's). Data-dependent checks run once, on the base config (``check_run``).

    Each value is also checked as ``check_run`` checks a run's settings before it reads the data
    (``data.shots`` and ``augment`` against the task, ``self_training``, and a continued run's method,
    task and model against the run it continues, ``continual.from_run``): a value that only these
    refused failed the trial that drew it, after other trials had trained. A problem of the base
    config itself is left to ``check_run``, which says it without naming a space key.

    Raises:
        ConfigError: naming the space file, the key and what the config said, one line per key.
    """
    from tunelab.errors import several
    from tunelab.preflight import load_config

    methods = next((list(d.extremes()) for d in space if d.key == "method"), [None])
    errors: list[TunelabError] = []
    seen = _seen_with_base(config, overrides)
    base_refusal: list[str | None] = []  # the base config's own refusal, found when a value is refused
    for dim in space:
        under = [None] if dim.key == "method" else methods
        inside = dim.inside()
        values = [*dim.extremes(), *([] if inside is None else [inside])]
        for value, method in ((v, m) for v in values for m in under):
            with_method = [] if method is None else [override("method", method)]
            try:
                cfg = load_config(config, [*overrides, *with_method, override(dim.key, value)])
                _check_trial_config(cfg, seen)
            except TunelabError as exc:
                if not base_refusal:
                    base_refusal.append(_base_refusal(config, overrides, seen))
                if str(exc) == base_refusal[0]:
                    continue  # the base config's own problem: check_run says it, in its own words
                where = f"{dim.key}={value!r}" + ("" if method is None else f" with method={method}")
                if inside is not None and value == inside:
                    where += " (drawn from a range with real ends)"
                    hint = f"; use whole-number ends {dim.whole_ends()}"
                elif method is not None and dim.key.startswith("method."):
                    hint = "; search one method at a time, or only options every method takes"
                else:
                    hint = ""
                errors.append(ConfigError(f"{path}: {where} is refused by the run config: {exc}{hint}"))
                break
    if not errors:
        errors += _decay_corner(space, config, overrides, path)
    if errors:
        raise several(errors)


def check_first(
    first: Any,
    space: list[Dimension],
    config: RunConfig | str | Path | None,
    overrides: list[str],
    path: str | Path,
) -> None:
    """Check the values ``search(first=[...])`` queues as ``check_space`` checks the space's, before
    the study is made: each key one of the space's, each value one it can draw, and each trial's config
    as ``train`` would take it (with every ``method`` and weight-decay extreme it may still draw).

    A misspelled key was ignored (the trial drew its own value), a value off a range trained with
    Optuna's warning only, and a value not among the choices ended the search with Optuna's
    ValueError, trial 0 left "running" in ``study.db``.

    Raises:
        ConfigError: one line naming ``first[i]``, the key and what to give.
    """
    if not isinstance(first, list | tuple):
        raise ConfigError(f"first={first!r}: give a list of dicts of key: value, one per trial")
    dims = {d.key: d for d in space}
    for i, values in enumerate(first):
        if not isinstance(values, dict):
            raise ConfigError(f"first[{i}]={values!r}: give a dict of key: value (keys of {path})")
        for key, value in values.items():
            dim = dims.get(key)
            if dim is None:
                raise ConfigError(
                    f"first[{i}]: {key!r} is not a key of {path} (it searches {', '.join(dims)}); "
                    "give only those keys"
                )
            problem = dim.refuses(value)
            if problem is not None:
                raise ConfigError(f"first[{i}]: {key}={value!r} {problem} (in {path})")
        _check_first_config(i, values, space, config, overrides)


def _check_first_config(
    i: int,
    values: dict[str, Any],
    space: list[Dimension],
    config: RunConfig | str | Path | None,
    overrides: list[str],
) -> None:
    """``first[i]``'s trial config through ``check_space``'s per-value checks and the weight-decay
    check, crossed with the extremes of the keys it leaves to be drawn that decide them (the method,
    the rates and the decay)."""
    from tunelab.preflight import load_config

    drawn = [d for d in space if d.key in _DECAY_KEYS and d.key not in values]
    seen = _seen_with_base(config, overrides)
    for picked in itertools.product(*(d.extremes() for d in drawn)):
        extra = {d.key: v for d, v in zip(drawn, picked, strict=True)}
        # `method` first, as a trial sets it: its options apply to the method the trial trains
        chosen = sorted({**values, **extra}.items(), key=lambda kv: kv[0] != "method")
        try:
            cfg = load_config(config, [*overrides, *(override(k, v) for k, v in chosen)])
            _check_trial_config(cfg, seen)
            _check_decay(cfg)
        except TunelabError as exc:
            if str(exc) == _base_refusal(config, overrides, seen):
                continue  # the base config's own problem: check_run says it
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            also = "".join(f" with {k}={v!r}" for k, v in extra.items())
            raise ConfigError(f"first[{i}] ({shown}){also} is refused by the run config: {exc}") from None


#: Keys whose values are refused together, not alone: AdamW's lr x weight_decay must stay below 1,
#: with the learning rate in force (a null one is the method's default; a random head's is at least
#: 2e-3, train.head_init).
_DECAY_KEYS = (
    "method",
    "train.learning_rate",
    "train.head_learning_rate",
    "train.head_init",
    "train.weight_decay",
)


def _decay_corner(
    space: list[Dimension], config: RunConfig | str | Path | None, overrides: list[str], path: str | Path
) -> list[TunelabError]:
    """Every combination of the extremes of the keys that decide the weight decay's bound, checked
    as the trials will set them: each key alone passed against the base config, and the trials that
    drew a large rate with a large decay failed one by one (``learning_rate: [0.9]`` with
    ``weight_decay: [2.0]`` ended the search on its first trial). The weight decay is checked only
    against the rates the space gives with it (a decay of 300 with rates up to 1e-4 is fine, whatever
    the base config's rate)."""
    import itertools

    from tunelab.preflight import load_config

    dims = [d for d in space if d.key in _DECAY_KEYS]
    if not dims:
        return []  # the base config's own check (tunelab.preflight) covers every trial
    for values in itertools.product(*(d.extremes() for d in dims)):
        chosen = [override(d.key, v) for d, v in zip(dims, values, strict=True)]
        try:
            _check_decay(load_config(config, [*overrides, *chosen]))
        except TunelabError as exc:
            together = ", ".join(f"{d.key}={v!r}" for d, v in zip(dims, values, strict=True))
            return [ConfigError(f"{path}: {together} (drawn together by a trial) is refused: {exc}")]
    return []


def _check_decay(cfg: RunConfig) -> None:
    """``train``'s weight-decay check, with the learning rate in force (the method's default)."""
    from tunelab.methods import get_method
    from tunelab.train.optim import check_weight_decay, learning_rate_in_force

    check_weight_decay(cfg.train, learning_rate_in_force(cfg.train, get_method(cfg.method.name)))


def _check_trial_config(cfg: RunConfig, seen: dict[Any, Any]) -> None:
    """What ``train`` would refuse in a trial before it trains: the method's options and task,
    ``data.shots`` against the task, dev data, the precision, ``model.max_length`` (plus the method's
    positions) against the model's, ``augment`` and ``self_training`` against the task, and a continued
    run (``continual.from_run``) against the run it continues: ``check_run``'s own checks of these.

    ``seen`` (from ``_seen_with_base``) holds the models found, and the augmentation, self-training
    files and continued runs already checked, by what decides them: WordNet, the file, the previous
    run and the data it is checked with are read only for a value that changes them from the base
    config's (``check_run`` reads those once, before any trial), and once per setting.
    """
    from tunelab.methods import get_method
    from tunelab.models import resolve_model
    from tunelab.preflight import check_augment, check_positions
    from tunelab.tasks import get_task
    from tunelab.tasks.base import refuse_unsampled_shots
    from tunelab.train.precision import resolve_precision

    method = get_method(cfg.method.name)
    options = method.parse_options(cfg.method.options)
    task = get_task(cfg.data.task)
    method.check_task(task.name)
    refuse_unsampled_shots(task, cfg.data)
    check_dev(cfg)
    resolve_precision(cfg.train.precision)  # a trial is a new run: a forced bf16 the CPU lacks
    models = seen.setdefault(_MODELS, {})
    if cfg.model.name not in models:
        models[cfg.model.name] = resolve_model(cfg.model.name).path
    check_positions(cfg, models[cfg.model.name], method, options)
    if _augment_key(cfg) not in seen:  # a WordNet that fails to load is tried again at each load
        check_augment(cfg, task)
        seen[_augment_key(cfg)] = True
    if _self_training_key(cfg) not in seen:
        from tunelab.train.pseudo_rows import check_self_training

        check_self_training(cfg, task)
        seen[_self_training_key(cfg)] = True
    if cfg.continual.from_run is not None and _continued_key(cfg) not in seen:
        from tunelab.tasks.base import checked_splits
        from tunelab.train.continual import open_previous

        splits_key = ("splits", repr(cfg.data))
        if splits_key not in seen:  # one read of the data per data settings, for any method and model
            seen[splits_key] = checked_splits(task, task.load_splits(cfg.data))
        open_previous(cfg, seen[splits_key], stores_base=method.stores_base)
        seen[_continued_key(cfg)] = True


_MODELS = "models"  # seen[_MODELS]: model name -> its folder
_MARKED = ("augment", "self_training", "continual")  # seen's keys of the settings checked (True)


def _augment_key(cfg: RunConfig) -> tuple[Any, ...]:
    """What ``check_augment`` reads of a config: the task and the augmentation methods."""
    return ("augment", cfg.data.task, tuple(cfg.augment.methods))


def _self_training_key(cfg: RunConfig) -> tuple[Any, ...]:
    """What ``check_self_training`` reads of a config: the unlabelled file and the data settings."""
    return ("self_training", cfg.self_training.unlabeled, repr(cfg.data))


def _continued_key(cfg: RunConfig) -> tuple[Any, ...]:
    """What ``open_previous`` reads of a config: the run continued, the model, the method, the data."""
    return ("continual", cfg.continual.from_run, cfg.model.name, cfg.method.name, repr(cfg.data))


def _seen_with_base(config: RunConfig | str | Path | None, overrides: list[str]) -> dict[Any, Any]:
    """``_check_trial_config``'s ``seen``, with the base config's augmentation, self-training file and
    continued run marked as checked: ``check_run`` checks (and reads) them before any trial, so a space
    that does not change them loads and reads none of them again."""
    from tunelab.preflight import load_config

    base = load_config(config, overrides)
    return {_MODELS: {}, **{key(base): True for key in (_augment_key, _self_training_key, _continued_key)}}


def _base_refusal(
    config: RunConfig | str | Path | None, overrides: list[str], seen: dict[Any, Any]
) -> str | None:
    """What the checks of a trial's config refuse in the base config itself (None when nothing): a
    problem every trial has, which ``check_run`` says of the base in its own words, so no space value
    or ``first`` entry is named for it (``data.shots=3`` on the command line of a multi_label run).
    The base's augmentation, self-training file and continued run are checked here too (``seen`` marks
    them checked for the values): only when a value was refused, to tell whether the base is refused
    alike."""
    from tunelab.preflight import load_config

    read = {k: v for k, v in seen.items() if not (isinstance(k, tuple) and k[0] in _MARKED)}
    try:
        cfg = load_config(config, overrides)
        _check_trial_config(cfg, read)
        _check_decay(cfg)
    except TunelabError as exc:
        return str(exc)
    return None


NO_DEV = (
    "tunelab search chooses on dev data only and this config has none: give data.dev=FILE, "
    "or data.dev_size=0.1 to hold out a share of train"
)


def check_dev(cfg: RunConfig) -> None:
    """Refuse a run without dev data: a search must not choose on training or test data."""
    if cfg.data.dev is None and cfg.data.dev_size <= 0:
        raise ConfigError(NO_DEV)
