"""``monitor.yaml``: what a monitor reads, which runs classify, which topics it follows, when it alerts.

    name: markets
    store: null                    # PostgreSQL URL or SQLite file; default: the service's database
    sources:
      - follow: feeds/news.jsonl   # followed as it grows (tail -F)
      - directory: feeds/inbox     # every *.jsonl dropped there, once
    runs:
      sentiment: runs/fin-sentiment     # a run folder or an exported artifact (onnx-int8)
      ner: runs/fin-ner                 # optional: companies named
      topic: null                       # optional: else the documents' topic, else zero-shot
    negative_label: negative
    topics:
      - name: earnings
        description: quarterly results, profit, revenue, guidance
      - rates                            # a name alone is its own description
    detector:                      # the defaults: a Poisson CUSUM on each key's negatives a minute
      method: cusum                #   (or zscore: robust z-scores of the window's negative volume/share)
      window: 30m                  #   the CUSUM's memory and the window counted (zscore: 15m)
      step: 1m
      baseline: 3d                 #   the baseline rate's span (zscore: 1d)
      h: 10                        #   alert at a log-likelihood ratio of 10 nats (zscore: threshold: 4)
      shift: 3                     #   designed to find 3x the baseline negative rate
      share: false                 #   true: a Bernoulli CUSUM on the negative share too
      release: 0                   #   the episode ends when S is back to 0 (zscore: 2)
      min_volume: 5                #   at least 5 negatives in the window
      max_keys: 2000               #   topics and companies watched at once (~35 KB each; the
                                   #   listed topics always, besides; see detector.Detector)
    max_future: 5m                 # documents dated further ahead of the clock are refused
                                   #   (default 5m, a quarter of the window if less; under half of it)
    webhook: https://alerts.example.com/hooks/monitor   # optional: POST each new alert here

Relative paths are relative to the current directory, as in run configs. Every problem is
reported at once, in one line naming the file and the field. A detector section with
``threshold`` and no ``method`` is a z-score section (as every one was before the CUSUM); the
CUSUM's settings were chosen on dev streams (README, "Monitor on a news stream").
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.apps.monitor.classify import OTHER_TOPIC, Topic
from tunelab.apps.monitor.detector import METHODS, DetectorSettings
from tunelab.apps.monitor.documents import MAX_TEXT_CHARS
from tunelab.apps.yaml_config import read_yaml_config
from tunelab.atomic import locale_cannot_name
from tunelab.errors import ConfigError
from tunelab.serve.inputs import is_http_url, without_secrets
from tunelab.yaml_names import bool_as_written, number_as_written

MAX_FUTURE_S = 36500 * 86400  # a hundred years
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"([0-9]{1,9})([smhdw])")
_TOP = (
    "name",
    "store",
    "sources",
    "runs",
    "negative_label",
    "topics",
    "zero_shot",
    "companies",
    "detector",
    "batch_size",
    "max_text_chars",
    "max_future",
    "poll",
    "webhook",
)
_DETECTOR_DURATIONS = {"window": "window_s", "step": "step_s", "baseline": "baseline_s"}
_DETECTOR_OTHERS = (
    "method",
    "h",
    "shift",
    "share",
    "threshold",
    "release",
    "min_volume",
    "min_history",
    "max_docs",
    "max_keys",
)
# Fields that mean something to one method only: given with the other, they would be ignored.
_METHOD_ONLY = {"threshold": "zscore", "h": "cusum", "shift": "cusum", "share": "cusum"}


def parse_duration(value: Any, where: str) -> int:
    """Seconds from ``90``, ``"30s"``, ``"15m"``, ``"1h"``, ``"1d"`` or ``"1w"``; whole seconds also
    as the other number fields take them (``"90"``, ``3_600``, ``90.0``: see ``number_as_written``).

    Units are read as written, not lower-cased: ``M`` is a month in Grafana and PromQL (a trend's
    ``bucket=1M``), and meant one minute here. It is refused; ``S``, ``H``, ``D`` and ``W`` mean one
    thing only and are read as ``s``, ``h``, ``d`` and ``w``, as before.

    Raises:
        ConfigError: naming ``where``.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        if value >= 10**9:  # a 400-digit poll: OverflowError where it was made a float
            raise ConfigError(
                f"{where}: {value} seconds is over 31 years; give at most 999999999 (or e.g. 4w)"
            )
        return value
    # As the other number fields read it (number_as_written): "1800" and 3_600 (text to the strict
    # YAML reader) are whole seconds, as the message below says; so is 1800.0, a whole number. ASCII
    # digits only and at most nine, as with a unit ("²" and a 23-digit trend bucket stay refused).
    number = number_as_written(value) if not isinstance(value, str) or value.isascii() else value
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        number = int(number)
    if isinstance(number, int) and not isinstance(number, bool) and 0 < number < 10**9:
        return number
    text = str(value).strip()
    if re.fullmatch(r"[0-9]{1,9}M", text):
        raise ConfigError(
            f"{where}: {value!r}: M is not a unit: minutes are m (e.g. 15m); months are not "
            "supported: use 4w or 30d"
        )
    match = _DURATION.fullmatch(text.lower())  # ASCII digits: "²d" is no duration
    if match and int(match[1]) > 0:
        return int(match[1]) * _UNITS[match[2]]
    # "or seconds" read as allowing 0.5 (which is seconds): say they are whole and at least 1
    raise ConfigError(
        f"{where}: {value!r} is not a duration; use e.g. 30s, 15m, 1h, 1d or whole seconds from 1 (90)"
    )


def default_max_future(detector: DetectorSettings) -> int:
    """``max_future`` when none is given: the detector's ``lead_s``, 5 minutes (a quarter of the
    window when that is less), room for clock skew between a feed and this host."""
    return detector.lead_s


@dataclass(frozen=True)
class Source:
    """A followed file (``kind == "follow"``) or a watched folder (``"directory"``)."""

    kind: str
    path: Path
    pattern: str = "*.jsonl"

    def check(self, where: str, *, readable: bool = True) -> None:
        """Raise ``ConfigError`` when the path does not exist, is the wrong kind of thing or (with
        ``readable``) cannot be read by this process (found now, in one line, not as warnings once it
        runs)."""
        unnamed = locale_cannot_name(self.path)
        if unnamed is not None:  # pathlib says "not there" of a name the OS cannot be asked for
            raise ConfigError(f"{where}.{self.kind}: {self.path}: {unnamed}")
        if self.kind == "follow" and not self.path.is_file():
            what = "is a folder: use directory:" if self.path.is_dir() else "does not exist"
            raise ConfigError(
                f"{where}.follow: {self.path} {what} (create the file, even empty, or fix the path)"
            )
        if self.kind == "directory" and not self.path.is_dir():
            what = "is a file: use follow:" if self.path.exists() else "does not exist"
            raise ConfigError(f"{where}.directory: {self.path} {what}")
        if not readable:
            return
        try:
            if self.kind == "follow":
                with open(self.path, "rb"):
                    pass
            else:
                with os.scandir(self.path):
                    pass
        except OSError as exc:
            raise ConfigError(
                f"{where}.{self.kind}: {self.path} cannot be read ({exc.strerror or type(exc).__name__}); "
                "give the monitor's user read access"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {self.kind: str(self.path)}
        if self.kind == "directory":
            out["pattern"] = self.pattern
        return out


@dataclass(frozen=True)
class MonitorConfig:
    """A validated ``monitor.yaml`` (see the module docstring for every field)."""

    name: str
    sentiment: Path
    store: str | None = None
    sources: tuple[Source, ...] = ()
    topic_run: Path | None = None
    ner_run: Path | None = None
    negative_label: str = "negative"
    topics: tuple[Topic, ...] = ()
    embed_model: str = "minilm-l6"
    min_similarity: float = 0.3
    org_labels: tuple[str, ...] = ("ORG",)
    aliases: dict[str, str] = field(default_factory=dict)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    batch_size: int = 64
    max_text_chars: int = MAX_TEXT_CHARS
    # A document dated ahead of the clock would move every key's current window ahead with it
    # (event time): documents at the real time then count only as baseline, and a surge among
    # them is not seen. The detector holds such a document until the stream confirms it; in a
    # live stream this refuses them first. Five minutes tolerate clock skew, not a typo in the
    # year nor a local time read as UTC (see Monitor.latest_time); from_dict refuses half the
    # window or more, and defaults to a quarter of it when that is under 5 minutes.
    max_future_s: int = 300
    poll_s: float = 1.0
    webhook: str | None = None  # http(s) URL each new alert is POSTed to
    path: Path | None = None  # the file it was read from, for messages

    @classmethod
    def from_yaml(cls, path: str | Path) -> MonitorConfig:
        p = Path(path)
        raw = read_yaml_config(p, "monitor config", "tunelab app monitor run --help")
        try:
            return cls.from_dict(raw, path=p)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None

    @classmethod
    def from_dict(cls, raw: Any, *, path: Path | None = None) -> MonitorConfig:
        """Check every field, then raise one ``ConfigError`` listing all problems (``; ``-separated)."""
        if not isinstance(raw, dict):
            raise ConfigError("the top level must be a mapping (name, sources, runs, ...)")
        problems: list[str] = []
        unknown = _names(set(raw) - set(_TOP))
        if unknown:
            problems.append(f"unknown field {', '.join(unknown)} (known: {', '.join(_TOP)})")
        values: dict[str, Any] = {"path": path}

        name = _written(raw.get("name"))
        if not isinstance(name, str) or not NAME.fullmatch(name):  # match() let 'markets\n' through
            problems.append(
                f"name: {name!r} must be lower-case letters, digits, - or _ (it is part of the API's URLs)"
                + _QUOTE_IT * isinstance(name, float)
            )
        values["name"] = name

        store = raw.get("store")
        if store is not None and not isinstance(store, str):
            problems.append(f"store: {store!r} must be a PostgreSQL URL or a SQLite file path")
        values["store"] = store or None

        values["sources"] = _sources(raw.get("sources"), problems)
        _runs(raw.get("runs"), values, problems)

        negative = _written(raw.get("negative_label", "negative"))
        if not isinstance(negative, str) or not negative:
            problems.append(
                f"negative_label: {negative!r} must be a label name of the sentiment run"
                + _QUOTE_IT * isinstance(negative, float)
            )
        values["negative_label"] = negative
        values["topics"] = _topics(raw.get("topics"), problems)

        zero_shot = _section(raw, "zero_shot", ("model", "min_similarity"), problems)
        model = zero_shot.get("model", "minilm-l6")
        if not isinstance(model, str) or not model:
            problems.append(f"zero_shot.model: {model!r} must be a model name or folder")
        values["embed_model"] = model
        similarity = number_as_written(zero_shot.get("min_similarity", 0.3))
        if (
            isinstance(similarity, bool)
            or not isinstance(similarity, int | float)
            or not -1 <= similarity <= 1
        ):
            problems.append(f"zero_shot.min_similarity: {similarity!r} must be a cosine between -1 and 1")
        values["min_similarity"] = similarity

        companies = _section(raw, "companies", ("labels", "aliases"), problems)
        org_labels = companies.get("labels", ["ORG"])
        if isinstance(org_labels, str):
            org_labels = [org_labels]
        if (
            not isinstance(org_labels, list)
            or not org_labels
            or not all(isinstance(x, str) for x in org_labels)
        ):
            problems.append(f"companies.labels: {org_labels!r} must be a list of NER labels, e.g. [ORG]")
            org_labels = ["ORG"]
        values["org_labels"] = tuple(org_labels)
        aliases = companies.get("aliases") or {}
        if not isinstance(aliases, dict):
            problems.append("companies.aliases: must map a company name to the name to follow it under")
            aliases = {}
        values["aliases"] = _aliases(aliases, problems)

        values["detector"] = _detector(raw.get("detector"), problems)
        for key, default, low in (("batch_size", 64, 1), ("max_text_chars", MAX_TEXT_CHARS, 1)):
            value = number_as_written(raw.get(key, default))
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{key}: {value!r} must be a whole number >= {low}")
            values[key] = value
        try:
            values["poll_s"] = float(parse_duration(raw.get("poll", 1), "poll"))
        except ConfigError as exc:
            problems.append(str(exc))
        values["max_future_s"] = _max_future(raw.get("max_future"), values["detector"], problems)
        values["webhook"] = _webhook(raw.get("webhook"), problems)
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(**values)

    def check_sources(self, *, readable: bool = True) -> None:
        """Every source exists and is of its kind, and (``readable``) this process can read it.

        The command and the server check readability once, at start; ``run`` checks only
        existence, at its first call (a served follower calls it again after any failure): a
        source that became unreadable or went away since is warned about and retried by ``poll``
        while the others go on.
        """
        if not self.sources:
            raise ConfigError(
                f"{self.where}sources: none given; add `- follow: news.jsonl` or `- directory: inbox`"
            )
        for i, source in enumerate(self.sources):
            source.check(f"{self.where}sources[{i}]", readable=readable)

    @property
    def where(self) -> str:
        return f"{self.path}: " if self.path else ""


def _names(keys: set[Any]) -> list[str]:
    """Field names to list in a message, sorted; YAML keys need not be text (``1:`` is 1)."""
    return sorted(str(k) for k in keys)


def _max_future(raw: Any, detector: DetectorSettings, problems: list[str]) -> int:
    """``max_future`` in seconds: under half the detector's window, or one document dated that far
    ahead moves every key's window on by as much, and a surge at the real time goes unalerted."""
    if raw is None:
        return default_max_future(detector)
    try:
        seconds = parse_duration(raw, "max_future")
    except ConfigError as exc:
        problems.append(str(exc))
        return default_max_future(detector)
    if seconds > MAX_FUTURE_S:  # now + a huge delta overflows datetime
        problems.append(f"max_future: {raw!r} is over 36500d (a hundred years); give less")
    elif 2 * seconds >= detector.window_s:
        problems.append(
            f"max_future: {raw!r} ({seconds}s) must be under half the detector window "
            f"({detector.window_s}s): a document dated that far ahead moves every key's window ahead "
            "of the stream, and a surge in the documents at the real time goes unalerted; the default "
            f"is {default_max_future(detector)}s"
        )
    return seconds


# A number the YAML reader turned into a float, whose digits may differ from what was written (1.10)
_QUOTE_IT = "; it was read as a number: put it in quotes"


def _written(value: Any) -> Any:
    """A text field's whole number as its digits: ``negative_label: 1`` names the label "1" (SST-2's
    labels are 0 and 1) and ``name: 2024`` the monitor "2024", as a run file reads ``name=2024``; both
    were refused, the first as "1 must be a label name" of a run that has it."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _webhook(raw: Any, problems: list[str]) -> str | None:
    if raw is None:
        return None
    if not is_http_url(raw):
        # A value that may hold a password or a query token is shown as the flags show a refused
        # URL, without them (it was echoed whole); one with no "@", "?" or "#" as written.
        plain = not isinstance(raw, str) or not any(c in raw for c in "@?#")
        shown = repr(raw) if plain else without_secrets(raw)
        problems.append(
            f"webhook: {shown} is not an http(s) URL; give e.g. https://alerts.example.com/hooks/monitor"
        )
        return None
    return raw


def _section(raw: dict[str, Any], key: str, known: tuple[str, ...], problems: list[str]) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        problems.append(f"{key}: must be a mapping with {', '.join(known)}")
        return {}
    unknown = _names(set(value) - set(known))
    if unknown:
        problems.append(f"{key}: unknown field {', '.join(unknown)} (known: {', '.join(known)})")
    return value


def _aliases(raw: dict[Any, Any], problems: list[str]) -> dict[str, str]:
    """``companies.aliases`` keyed and valued by normalised company names. A name that is no visible
    text or normalises to nothing is refused: ``{acme: }`` followed Acme as the company "none" (str of
    None) and ``{acme: ''}`` stopped following it, both silently."""
    from tunelab.apps.monitor.classify import normalise_company
    from tunelab.data.scripts import has_visible_text

    def company(value: Any) -> str | None:
        value = _written(value)  # `3: ...` or `{x: 2024}`: the digits, as a name is read
        if not isinstance(value, str) or not has_visible_text(value):
            return None
        return normalise_company(value)

    out: dict[str, str] = {}
    for k, v in raw.items():
        shown = k if isinstance(k, str) and k.isprintable() and k.strip() == k and k else repr(k)
        key, target = company(k), company(v)
        if key is None:
            problems.append(
                f"companies.aliases: {k!r} is not a company name; give the name as documents write it"
                + _QUOTE_IT * isinstance(k, float)
            )
        elif target is None:
            blank = v is None or (isinstance(v, str) and not has_visible_text(v))
            given = "" if blank else f"{v!r} is not a company name; "
            problems.append(
                f"companies.aliases.{shown}: {given}give the name to follow it under"
                + _QUOTE_IT * isinstance(v, float)
            )
        else:
            out[key] = target
    return out


def _sources(raw: Any, problems: list[str]) -> tuple[Source, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append("sources: must be a list of `follow: FILE` or `directory: FOLDER` entries")
        return ()
    out = []
    for i, item in enumerate(raw):
        kinds = [k for k in ("follow", "directory") if isinstance(item, dict) and k in item]
        if len(kinds) != 1:
            problems.append(f"sources[{i}]: give exactly one of follow: FILE or directory: FOLDER")
            continue
        extra = _names(set(item) - {kinds[0], "pattern"})
        if extra:
            problems.append(
                f"sources[{i}]: unknown field {', '.join(extra)} (known: follow, directory, pattern)"
            )
        path, pattern = item[kinds[0]], item.get("pattern", "*.jsonl")
        if not isinstance(path, str) or not path.strip():
            problems.append(f"sources[{i}].{kinds[0]}: {path!r} must be a path")
            continue
        if not isinstance(pattern, str) or not pattern or "/" in pattern:
            problems.append(f"sources[{i}].pattern: {pattern!r} must be a file name pattern such as *.jsonl")
            continue
        out.append(Source(kinds[0], Path(path).expanduser(), pattern))
    return tuple(out)


def _runs(raw: Any, values: dict[str, Any], problems: list[str]) -> None:
    known = ("sentiment", "topic", "ner")
    if not isinstance(raw, dict):
        problems.append("runs: must be a mapping with sentiment: RUN (and optionally topic:, ner:)")
        values["sentiment"] = Path(".")
        return
    unknown = _names(set(raw) - set(known))
    if unknown:
        problems.append(f"runs: unknown field {', '.join(unknown)} (known: {', '.join(known)})")
    for key, target in (("sentiment", "sentiment"), ("topic", "topic_run"), ("ner", "ner_run")):
        value = raw.get(key)
        if value is None:
            if key == "sentiment":
                problems.append(
                    "runs.sentiment: required: the run (or exported artifact) that scores sentiment"
                )
            values[target] = None if key != "sentiment" else Path(".")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"runs.{key}: {value!r} must be a run folder")
            values[target] = None if key != "sentiment" else Path(".")
        else:
            values[target] = Path(value).expanduser()


def _topics(raw: Any, problems: list[str]) -> tuple[Topic, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append("topics: must be a list of names or {name, description} entries")
        return ()
    out: list[Topic] = []
    for i, item in enumerate(raw):
        item = _written(item)  # `- 2024` and `- name: 2024` name the topic "2024", as `name: 2024` does
        if isinstance(item, str):
            item = {"name": item}
        if isinstance(item, dict) and "name" in item:
            item = {**item, "name": _written(item["name"])}
        # has_visible_text, not strip(): a name of zero-width spaces is embedded as the topic's text
        # (Topic.prompt), and an invisible one failed at the first document in embed. Imported here:
        # tunelab.data imports pandas, which reading a config does not need.
        from tunelab.data.scripts import has_visible_text

        name_given = isinstance(item, dict) and isinstance(item.get("name"), str)
        if not name_given or not has_visible_text(item["name"]):
            read_as_number = isinstance(item, float) or (
                isinstance(item, dict) and isinstance(item.get("name"), float)
            )
            problems.append(
                f"topics[{i}]: give a name (and optionally a description)" + _QUOTE_IT * read_as_number
            )
            continue
        extra = _names(set(item) - {"name", "description"})
        if extra:
            problems.append(f"topics[{i}]: unknown field {', '.join(extra)} (known: name, description)")
        name, description = item["name"].strip(), item.get("description") or ""
        if name == OTHER_TOPIC:
            problems.append(f"topics[{i}]: {OTHER_TOPIC!r} is what documents near no topic get; rename it")
        elif name in {t.name for t in out}:
            problems.append(f"topics[{i}]: {name!r} is listed twice")
        elif not isinstance(description, str):
            problems.append(f"topics[{i}].description: must be text")
        else:
            out.append(Topic(name, description.strip()))
    return tuple(out)


def _detector(raw: Any, problems: list[str]) -> DetectorSettings:
    if raw is None:
        return DetectorSettings()
    known = (*_DETECTOR_DURATIONS, *_DETECTOR_OTHERS)
    if not isinstance(raw, dict):
        problems.append(f"detector: must be a mapping with {', '.join(known)}")
        return DetectorSettings()
    unknown = _names(set(raw) - set(known))
    if unknown:
        problems.append(f"detector: unknown field {', '.join(unknown)} (known: {', '.join(known)})")
    kwargs: dict[str, Any] = {}
    for key, target in _DETECTOR_DURATIONS.items():
        if key in raw:
            try:
                kwargs[target] = parse_duration(raw[key], f"detector.{key}")
            except ConfigError as exc:
                problems.append(str(exc))
    # as run files read them: `share: yes`, `max_docs: 1_000` (YAML 1.1 read them so; the strict
    # reading keeps them text, and the checks below refused them)
    kwargs.update(
        {
            k: bool_as_written(raw[k]) if k == "share" else number_as_written(raw[k])
            for k in _DETECTOR_OTHERS
            if k in raw and k != "method"
        }
    )
    if "method" in raw:
        kwargs["method"] = raw["method"]
    method = raw.get("method")
    if method is not None and not isinstance(method, str):
        problems.append(f"detector.method: {method!r} must be one of {', '.join(METHODS)}")
        return DetectorSettings()
    if method is None:
        # A section with the z-score's threshold and none of the CUSUM's fields is a z-score
        # section, as every detector section was before the CUSUM came.
        owners = {_METHOD_ONLY[k] for k in raw if k in _METHOD_ONLY}
        method = kwargs["method"] = "zscore" if owners == {"zscore"} else DetectorSettings.method
    for key, owner in _METHOD_ONLY.items():
        if key in raw and method in METHODS and method != owner:
            opens = "h" if method == "cusum" else "threshold"
            problems.append(
                f"detector.{key}: only for method {owner}; with method {method} the alert opens at "
                f"detector.{opens} (remove {key}, or set method: {owner})"
            )
            kwargs.pop(key)
    try:
        return DetectorSettings(**kwargs)
    except ConfigError as exc:
        problems.append(str(exc))
        return DetectorSettings()
