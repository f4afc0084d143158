"""A bot folder's ``bot.yaml``: which runs it uses, its calibration temperature and thresholds.

A bot folder (``bots/<name>/``) is to a bot what a run folder is to a model::

    bot.yaml           this file
    answers.yaml       the answers file, copied at build time
    knowledge/         the passages and their embedding index (``KnowledgeIndex.save``)
    calibration.json   the temperature, and ECE/NLL before and after it, on the dev rows used
    tune/              after ``tunelab app support tune``: curve.csv, curve.png,
                       knowledge_curve.png, summary.json

Default thresholds, until ``tune`` measures better ones on labelled dev data:

- intent 0.90. The confidence is calibrated (temperature scaling), so among in-scope messages
  answered at >= 0.9 about nine in ten or more are right; the uncalibrated 1.000/0.000 of a
  fine-tuned model would make any threshold meaningless, and Rasa's untuned 0.3 answers far too
  much. Out-of-scope messages spread their probability over similar intents and mostly fall below.
- knowledge 0.50. A cosine similarity between a message and a passage (title and text) under the
  bundled MiniLM: on a five-passage banking FAQ, paraphrases of a passage's question scored
  0.57-0.66 and unrelated banking messages 0.11-0.41, so 0.5 lies between the two.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from tunelab.atomic import atomic_write_text
from tunelab.errors import ConfigError
from tunelab.yaml_names import DuplicateKeyError, dump_yaml, load_strict_yaml

BOT_YAML = "bot.yaml"
ANSWERS_YAML = "answers.yaml"
KNOWLEDGE_DIR = "knowledge"
CALIBRATION_JSON = "calibration.json"
TUNE_DIR = "tune"

DEFAULT_INTENT_THRESHOLD = 0.90
DEFAULT_KNOWLEDGE_THRESHOLD = 0.50
#: The knowledge threshold that turns knowledge answers off (similarities never exceed 1); ``tune``
#: writes it when no threshold meets its target. The highest ``thresholds.knowledge`` taken.
KNOWLEDGE_OFF = 1.01


@dataclass
class Thresholds:
    """When the bot answers: calibrated intent confidence, and knowledge passage similarity.

    Attributes:
        intent: a template answer needs the top intent's calibrated probability >= this.
        knowledge: a knowledge reply needs the best passage's cosine similarity >= this.
        per_intent: intent -> its own threshold, replacing ``intent`` for it (hand-edited; tune
            sets the global one, see ``tune``).
        chosen: how they were set, for the reader of bot.yaml.
    """

    intent: float = DEFAULT_INTENT_THRESHOLD
    knowledge: float = DEFAULT_KNOWLEDGE_THRESHOLD
    per_intent: dict[str, float] = field(default_factory=dict)
    chosen: str = "defaults (not tuned): see tunelab.apps.support.config"


@dataclass
class BotConfig:
    """What ``bot.yaml`` holds.

    Attributes:
        name: the bot's name (its folder's name unless given).
        run: the intent model's run folder (absolute).
        encoder: the sentence encoder of the knowledge index and its queries.
        ner: the NER run filling ``{entity: TYPE}`` slots, or None.
        temperature: logits are divided by this before the softmax (calibration).
        thresholds: see ``Thresholds``.
        built_at: ISO time of the build.
        tunelab_version: the version that built it.
        tuned: what ``tune`` used (target, dev file, rows, time), or None.
        oos_label: the intent model's out-of-scope class, if it has one (a model retrained on
            ``export-feedback`` rows does): a message it tops is handed off, never answered alone
            (a follow-up is still read with the previous message, as a message handed off is).
        run_finished_at, run_intents: the run as the bot was built on it (``run.json``'s
            ``finished_at``, with an artifact's ``export.created_at`` after it, see
            ``bot.run_finished_at``; its labels in order): the temperature, thresholds and answer checks
            belong to that model, so a load onto another run in the same folder is refused (empty:
            a bot built before these were recorded, not checked).
    """

    name: str
    run: str
    encoder: str = "minilm-l6"
    ner: str | None = None
    temperature: float = 1.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    built_at: str = ""
    tunelab_version: str = ""
    tuned: dict[str, Any] | None = None
    oos_label: str = "oos"
    run_finished_at: str = ""
    run_intents: list[str] = field(default_factory=list)

    def threshold_for(self, intent: str) -> float:
        return float(self.thresholds.per_intent.get(intent, self.thresholds.intent))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: str | Path) -> Path:
        """Write ``bot.yaml`` into ``folder`` atomically."""
        text = dump_yaml(self.to_dict(), sort_keys=False)  # reads back as written (NEL escaped)
        return atomic_write_text(Path(folder) / BOT_YAML, text)

    @classmethod
    def load(cls, folder: str | Path) -> BotConfig:
        """Read ``<folder>/bot.yaml``.

        Raises:
            ConfigError: no such folder or file, or a field is missing or wrong (named).
        """
        root = Path(folder)
        path = root / BOT_YAML
        if not path.is_file():
            what = "no such folder" if not root.exists() else f"not a bot folder (no {BOT_YAML})"
            raise ConfigError(f"{root}: {what}; build one with tunelab app support build")
        try:
            # strict, as monitor.yaml and rec.yaml are read: a second `thresholds:` block appended to
            # a tuned bot.yaml replaced the first, and its tuned thresholds went back to the defaults
            doc = load_strict_yaml(path.read_text(encoding="utf-8"))
        except DuplicateKeyError as exc:
            raise ConfigError(f"{path} line {exc.line}: {exc.advice()}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{path}: not readable YAML ({type(exc).__name__}); build the bot again"
            ) from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: not a bot config (a mapping); build the bot again")
        _known_keys(doc, [f.name for f in fields(cls)], path, "")
        try:
            raw = _mapping(doc.get("thresholds"), path, "thresholds")
            _known_keys(raw, [f.name for f in fields(Thresholds)], path, "thresholds.")
            thresholds = Thresholds(
                intent=_share(raw.get("intent", DEFAULT_INTENT_THRESHOLD), path, "thresholds.intent"),
                knowledge=_cosine(raw.get("knowledge", DEFAULT_KNOWLEDGE_THRESHOLD), path),
                per_intent={
                    str(k): _share(v, path, f"thresholds.per_intent.{k}")
                    for k, v in _mapping(raw.get("per_intent"), path, "thresholds.per_intent").items()
                },
                chosen=str(raw.get("chosen", "")),
            )
            config = cls(
                name=str(doc["name"]),
                run=str(doc["run"]),
                encoder=str(doc.get("encoder") or "minilm-l6"),
                ner=str(doc["ner"]) if doc.get("ner") else None,
                temperature=_number(doc.get("temperature", 1.0), path, "temperature"),
                thresholds=thresholds,
                built_at=str(doc.get("built_at", "")),
                tunelab_version=str(doc.get("tunelab_version", "")),
                tuned=doc.get("tuned"),
                oos_label=str(doc.get("oos_label") or "oos"),
                run_finished_at=str(doc.get("run_finished_at") or ""),
                run_intents=[str(x) for x in _list(doc.get("run_intents"), path, "run_intents")],
            )
        except KeyError as exc:
            raise ConfigError(f"{path}: missing field {exc.args[0]}; build the bot again") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if config.temperature <= 0:
            raise ConfigError(f"{path}: temperature: must be > 0, got {config.temperature}")
        return config


def _number(value: Any, path: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: {where}: must be a number, got {value!r}")
    if not math.isfinite(value):  # .nan compares false with every threshold: every reply handed off
        raise ConfigError(f"{path}: {where}: must be a finite number, got {value!r}")
    return float(value)


def _list(value: Any, path: Path, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: {where}: must be a list, got {value!r}")
    return value


def _known_keys(doc: dict[Any, Any], known: list[str], path: Path, prefix: str) -> None:
    """A misspelt key (``temprature:``) would be ignored and its default used without a word."""
    unknown = sorted((str(k) for k in doc if k not in known), key=str)
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"
        raise ConfigError(f"{path}: unknown field {prefix}{unknown[0]}{hint}")


def _mapping(value: Any, path: Path, where: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {where}: must be a mapping (name: value), got {value!r}")
    return value


def _cosine(value: Any, path: Path) -> float:
    """``thresholds.knowledge``: 55 (meant 0.55) turned knowledge answers off and -3 answered every
    message without a template from the knowledge base, never handing off; neither was refused."""
    where = "thresholds.knowledge"
    number = _number(value, path, where)
    if not -1.0 <= number <= KNOWLEDGE_OFF:
        raise ConfigError(
            f"{path}: {where}: must be a cosine similarity between -1 and 1 (or {KNOWLEDGE_OFF} to turn "
            f"knowledge answers off), got {number}"
        )
    return number


def _share(value: Any, path: Path, where: str) -> float:
    number = _number(value, path, where)
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"{path}: {where}: must be between 0 and 1, got {number}")
    return number
