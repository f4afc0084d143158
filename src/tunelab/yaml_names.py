"""YAML read strictly: keys given once, and only what YAML 1.2 reads as booleans and numbers.

PyYAML keeps the last of two equal keys without a word, and reads ``yes:``, ``null:`` and ``1:``
as True, None and 1; in a file of label or intent names both turn a typo into a silent change.
``NameKeyLoader`` reads such a file's keys as written. ``StrictLoader`` is how run files and the
apps' configs (monitor.yaml, rec.yaml) are read: ``on``, ``no`` and ``1:30`` stay text there.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tunelab.errors import ConfigError

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _own_keys_once(loader: yaml.SafeLoader, node: yaml.MappingNode) -> list[yaml.Node]:
    """The keys ``node`` itself gives (not a merge key's ``<<: *base``), at the first call for it, else [].

    ``flatten_mapping`` puts the merged keys into ``node.value`` beside the node's own, and a node
    merged elsewhere is flattened before it is built; after that, a key overriding a merged one
    (``<<: *card`` then ``answer: ...``) would look given twice.
    """
    seen = loader.__dict__.setdefault("_keys_checked", set())
    if node in seen:
        return []
    seen.add(node)
    return [key_node for key_node, _ in node.value if key_node.tag != _MERGE_TAG]


class DuplicateKeyError(yaml.YAMLError):
    """A mapping gives one key twice (YAML keeps the last, silently)."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"line {line}: key {key!r} given twice; merge them")
        self.key, self.line = key, line

    def advice(self) -> str:
        return f"key {self.key!r} given twice; merge them"


#: The most values (scalars, lists and mappings, each alias counted as what it stands for) a YAML
#: document may stand for: far more than any config holds.
MAX_EXPANDED_VALUES = 100_000


class AliasBombError(yaml.YAMLError):
    """A document whose aliases (``*name``) make it stand for more than ``MAX_EXPANDED_VALUES`` values.

    The loader keeps an aliased value shared, but every message that quotes it, ``str()`` of a label
    list and ``config.json`` write it out whole: 400 bytes of nested aliases ("billion laughs") made
    a 72 MB error line, or a MemoryError. Reported as invalid YAML, naming the document's first line.
    """

    def __init__(self, mark: Any) -> None:
        super().__init__()
        self.problem_mark = mark
        self.problem = (
            f"its aliases (*name) make it stand for over {MAX_EXPANDED_VALUES:,} values; write the "
            "values out, or use fewer aliases"
        )

    def __str__(self) -> str:
        return self.problem


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def too_large(root: yaml.Node, limit: int = MAX_EXPANDED_VALUES) -> yaml.Node | None:
    """The value its aliases blow up, or None: the first (innermost) value that stands for more than
    ``limit`` values with every alias written out (each shared node counted once per use) and more
    than ``ALIAS_GROWTH`` times the values written in the whole document; a value that holds itself is
    one. A long file without aliases (50,000 labels) stands for what it writes and is taken. Linear
    in the distinct nodes, walked without recursion (a document may nest thousands deep)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    first_big: yaml.Node | None = None
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if first_big is None and sizes[key] > limit:
                first_big = node
            continue
        if key in sizes:
            continue
        if key in on_path:  # an alias inside the value it names
            return node
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return first_big if sizes[id(root)] > max(limit, ALIAS_GROWTH * len(sizes)) else None


#: How many times the values a document writes its aliases may make it stand for, past the limit.
ALIAS_GROWTH = 10


class _BoundedAliases:
    """A loader mixin refusing a document that its aliases make huge (``AliasBombError``)."""

    def get_single_node(self) -> Any:
        node = super().get_single_node()  # type: ignore[misc]
        huge = too_large(node) if node is not None else None
        if huge is not None:
            raise AliasBombError(huge.start_mark)  # its line: where the aliases pile up
        return node


class StrictLoader(_BoundedAliases, yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans (``true``/``false`` only), plain decimal numbers
    only, and no key given twice in one mapping.

    YAML 1.1 reads ``yes``, ``no``, ``on`` and ``off`` as booleans: ``data.labels=[no, yes]``
    became the labels ``False`` and ``True`` (then "no training row has them"), a monitor's
    ``negative_label: no`` was refused as False, and ``aliases: {ON: ON Semiconductor}`` followed
    the company 'true'. It also reads ``0042`` as octal 34, ``1:30`` as sexagesimal 90, ``007`` as 7
    and ``1_000`` as 1000: ``name=0042`` trained run "34", a monitor's ``window: 1:30`` was 90
    seconds. Such text stays text here; a field that wants a boolean or a number decides.
    A key given twice (``train:`` twice) kept only the last block; it is refused, naming its line.
    Keys a merge key brings (``<<: *base``) may be overridden.
    """

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        seen: set[Any] = set()
        for key_node in _own_keys_once(self, node):
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # construct_mapping refuses it ("found unhashable key")
            if key in seen:
                raise DuplicateKeyError(key, key_node.start_mark.line + 1)
            seen.add(key)
        super().flatten_mapping(node)


_NUMBER_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Decimal integers without leading zeros; no octal, hex, binary, sexagesimal or `_` separators.
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
# YAML 1.1's floats (`2.0e-4`, `.5`, `.inf`, `.nan`; `5e-5` without a dot stays text, which a float
# field converts) without `_` separators, sexagesimal `1:30.5` or leading zeros (`007.5`).
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:0|[1-9][0-9]*)\.[0-9]*(?:[eE][-+][0-9]+)?
        |\.[0-9]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


#: The words YAML 1.1 read as booleans, which a boolean field still takes (run files, monitor.yaml).
YAML11_BOOLS = {"yes": True, "no": False, "on": True, "off": False, "y": True, "n": False}


def bool_as_written(value: Any) -> Any:
    """A boolean field's value from ``StrictLoader``: ``yes``/``no``/``on``/``off`` (any case) as
    the booleans YAML 1.1 read them, as run files' boolean fields take them; anything else unchanged
    (the field refuses what is not a boolean)."""
    if isinstance(value, str) and value.strip().lower() in YAML11_BOOLS:
        return YAML11_BOOLS[value.strip().lower()]
    return value


def number_as_written(value: Any) -> Any:
    """A number field's value from ``StrictLoader``, which keeps ``0064``, ``1_000`` and ``5e-1`` as
    text: decimal digits (leading zeros and ``_`` allowed: 64, not octal 52) as an int, other text
    Python reads as a number as a float; anything else unchanged (the field refuses it by name)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if re.fullmatch(r"[-+]?[0-9](?:_?[0-9])*", text):
        return int(text.replace("_", ""), 10)
    try:
        return float(text)
    except ValueError:
        return value


def load_strict_yaml(text: str) -> Any:
    """``text`` parsed with ``StrictLoader``.

    Raises:
        DuplicateKeyError: a key given twice in one mapping (with its line).
        yaml.YAMLError: the text is not YAML (callers report it with its line).
    """
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass


class NameKeyLoader(_BoundedAliases, yaml.SafeLoader):
    """A safe loader whose mapping keys are their text as written; a repeated key is refused."""

    what = "key"  # the word the messages use for a key: "label", "intent"

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        seen: dict[str, int] = {}
        for key_node in _own_keys_once(self, node):
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(
                    f"{self.name}: line {line}: a {self.what} name must be plain text, not a list or mapping"
                )
            key = key_node.value
            if key in seen:
                raise ConfigError(
                    f"{self.name}: {self.what} {key!r} appears twice (lines {seen[key]} and {line}); "
                    f"give each {self.what} once"
                )
            seen[key] = line
        super().flatten_mapping(node)


def _name_mapping(loader: NameKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    # Merge keys (<<: *anchor) as SafeLoader reads them: the merged keys come first, so the
    # mapping's own keys override them.
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            line = key_node.start_mark.line + 1
            raise ConfigError(
                f"{loader.name}: line {line}: a {loader.what} name must be plain text, not a list or mapping"
            )
        out[key_node.value] = loader.construct_object(value_node, deep=True)
    return out


NameKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _name_mapping)


class NameListLoader(NameKeyLoader):
    """Also a list's plain items as written: ``- 1``, ``- yes`` and ``- null`` are names there
    (star ratings 1-5), which the safe loader made 1, True and None, then refused as no name."""


def _name_list(loader: NameListLoader, node: yaml.SequenceNode) -> list[Any]:
    return [
        item.value if isinstance(item, yaml.ScalarNode) else loader.construct_object(item, deep=True)
        for item in node.value
    ]


NameListLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _name_list)


def load_names_yaml(text: str, source: str, what: str = "key", *, list_names: bool = False) -> Any:
    """``text`` parsed with ``NameKeyLoader``; errors name ``source`` and call a key a ``what``.

    ``list_names``: list items are names too, kept as written (``NameListLoader``).

    Raises:
        ConfigError: a repeated key or a key that is not text (with its line).
        yaml.YAMLError: the text is not YAML (callers report it with its line).
    """
    loader = (NameListLoader if list_names else NameKeyLoader)(text)
    loader.name = source
    loader.what = what
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def dump_yaml(data: Any, **options: Any) -> str:
    """``yaml.safe_dump(data, allow_unicode=True, **options)``, or with non-ASCII characters escaped
    where that text would not read back as ``data``.

    Letters of every script stay readable (an intent in Chinese is written as such), but PyYAML
    writes U+0085 (NEL, which a cp1252 "…" read as Latin-1 becomes) raw inside a quoted string and
    reads it back as a space: a bot built on an intent holding one was refused on every load ("the
    run now has other intents than the bot was built on"), and rebuilding wrote the same file.
    """
    text = yaml.safe_dump(data, allow_unicode=True, **options)
    if yaml.safe_load(text) == data:
        return text
    return yaml.safe_dump(data, allow_unicode=False, **options)
