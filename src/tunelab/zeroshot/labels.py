"""The label file of a zero-shot classifier: ``label: description`` in YAML, or a list of names.

The descriptions are what the classifier compares texts with, so a label without one gets its
name turned into words (``card_arrival`` -> ``card arrival``, :func:`describe_label`). Every bad
file is one line naming the file and the key: duplicates in particular, which plain YAML
loading would silently collapse into the last one.
"""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tunelab.data.scripts import has_visible_text
from tunelab.errors import ConfigError
from tunelab.yaml_names import load_names_yaml

EXAMPLE = "e.g. 'card_arrival: my new card has not arrived yet' on each line"


def describe_label(name: str) -> str:
    """A label name as words: ``card_arrival`` -> ``card arrival``, ``topUp-failed?`` -> ``top up failed``.

    The rule is fixed (split at every run of characters that are neither letters nor digits, and
    where lower case turns to upper case; then lower-case), so automatic descriptions never depend
    on any evaluation data. A name with no letters or digits stays as it is.
    """
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    words = " ".join(w for w in re.split(r"[\W_]+", spaced) if w).lower()
    return words or name


def parse_label_descriptions(raw: Any, source: str) -> dict[str, str]:
    """Labels and their descriptions from parsed YAML (a mapping, or a list of label names).

    Given in code, label names may also come as a tuple, a 1-D numpy array or a pandas Series
    (its values): each is read as the list it holds, with a list's checks.

    Raises:
        ConfigError: no labels, a non-string label or description, an empty description, a
            repeated name in a list, fewer than two labels (one label is no classifier), or
            names in anything else (a set has no order, a 2-D array no one list).
    """
    raw = _as_names_list(raw, source)
    if raw is None or raw == {} or raw == []:
        raise ConfigError(f"{source}: no labels; write one 'label: description' per line ({EXAMPLE})")
    if isinstance(raw, list):
        out: dict[str, str] = {}
        for i, name in enumerate(raw, 1):
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{source}: item {i} ({name!r}) is not a label name; give names as text")
            if name in out:
                raise ConfigError(f"{source}: label {name!r} appears twice; give each label once")
            out[str(name)] = describe_label(name)  # a plain str, not numpy's np.str_
    elif isinstance(raw, dict):
        out = {}
        for key, description in raw.items():
            if not isinstance(key, str) or not key.strip():
                raise ConfigError(f"{source}: key {key!r} is not a label name; quote it, e.g. '{key}': ...")
            if not isinstance(description, str):
                raise ConfigError(
                    f"{source}: label {key!r}: the description must be text, not {description!r}; "
                    f"write '{key}: {describe_label(key)}' or list names only (- {key})"
                )
            # not strip(): a description of zero-width spaces was embedded as the empty text
            if not has_visible_text(description):
                raise ConfigError(f"{source}: label {key!r}: the description is empty; describe the label")
            out[key] = description.strip()
    else:
        raise ConfigError(
            f"{source}: expected 'label: description' lines or a list of labels, not "
            f"{type(raw).__name__} ({EXAMPLE})"
        )
    if len(out) < 2:
        raise ConfigError(
            f"{source}: only one label ({next(iter(out))!r}); zero-shot picks among two or more"
        )
    first: dict[str, str] = {}
    for label, description in out.items():
        same = " ".join(description.lower().split())
        if same in first:
            raise ConfigError(
                f"{source}: labels {first[same]!r} and {label!r} have the same description "
                f"({description!r}), so one of them could never be chosen; describe them apart"
            )
        first[same] = label
    return out


def _as_names_list(raw: Any, source: str) -> Any:
    """A tuple, a 1-D numpy array or a pandas Series (or Index) of names as a list; anything else as
    given.

    ``raw == []`` compared an array or a Series element by element ("truth value of an array is
    ambiguous", or pandas' NotImplementedError), and a tuple was refused as "no list of labels".
    """
    if isinstance(raw, tuple):
        return list(raw)
    pd = sys.modules.get("pandas")  # a Series exists only once pandas is imported
    if pd is not None and isinstance(raw, pd.Series | pd.Index):
        return raw.tolist()
    np = sys.modules.get("numpy")
    if np is not None and isinstance(raw, np.ndarray):
        if raw.ndim != 1:
            raise ConfigError(
                f"{source}: a {raw.ndim}-D array of shape {raw.shape}; give label names as one list, "
                "e.g. ['sports', 'food']"
            )
        return raw.tolist()
    return raw


def read_label_descriptions(path: str | Path) -> dict[str, str]:
    """The labels of ``path`` with their descriptions, in file order.

    Raises:
        ConfigError: a missing file, bad YAML, a duplicate label, or anything
            :func:`parse_label_descriptions` refuses, in one line naming the file and key.
    """
    p = Path(path)
    try:
        folder = p.is_dir()
    except OSError as exc:  # a name over 255 bytes (ENAMETOOLONG) was "unexpected OSError"
        raise ConfigError(unusable_path(p, exc)) from None
    if folder:
        inside = p / "labels.json"
        own = f" (this run's own labels: {inside})" if inside.is_file() else " inside it"
        raise ConfigError(f"{p}: a folder, not a file; give the label file{own}")
    if not p.is_file():
        raise ConfigError(f"{p}: label file not found; write one 'label: description' per line ({EXAMPLE})")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8; save the label file as UTF-8") from None
    try:
        raw = load_names_yaml(text, str(p), what="label", list_names=True)
    except yaml.YAMLError as exc:
        _refuse_full_width_colon(p, text)
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if isinstance(raw, str):
        _refuse_full_width_colon(p, text)
    return parse_label_descriptions(_a_runs_label_names(raw, p), str(p))


def _a_runs_label_names(raw: Any, path: Path) -> Any:
    """A trained run's ``labels.json`` (``{"task": ..., "labels": [...]}``) as its list of names.

    Read as YAML it was a label ``labels`` whose description was a list ("the description must be
    text"), the advice the folder's own message led to. No real label file has that shape: a
    description is text. A run whose task finds spans (NER) has tags, not classes of a text.
    """
    if not (isinstance(raw, dict) and set(raw) == {"task", "labels"} and isinstance(raw["labels"], list)):
        return raw
    from tunelab.tasks.registry import get_task

    try:
        output = get_task(str(raw["task"])).output
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if output == "entities":
        raise ConfigError(
            f"{path}: a {raw['task']} run's tags (one per word), not classes of a text; write one "
            f"'label: description' per line ({EXAMPLE})"
        )
    return raw["labels"]


def unusable_path(path: str | Path, exc: OSError) -> str:
    """One line for a path the OS would not even look up: what is wrong with it and what to do."""
    if exc.errno == errno.ENAMETOOLONG:
        return f"{path}: file name too long; use a shorter name"
    return f"{path}: {(exc.strerror or type(exc).__name__).lower()}; check the path"


def _refuse_full_width_colon(path: Path, text: str) -> None:
    """Name the first line written with a full-width colon (``正面：好评``, as a Chinese input method
    types it). YAML takes only an ASCII colon: such lines were one string, or a YAML error on another
    line, and the message said neither why nor where."""
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if "\uff1a" in body and ":" not in body and not body.startswith("-"):
            fixed = body.replace("\uff1a", ": ", 1)
            raise ConfigError(
                f"{path} line {number} uses a full-width colon '\uff1a'; write 'label: description' "
                f"with an ASCII colon ({fixed})"
            )
