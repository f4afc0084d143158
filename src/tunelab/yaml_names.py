"""YAML whose mapping keys are names (labels, intents): read as written, each given once.

PyYAML keeps the last of two equal keys without a word, and reads ``yes:``, ``null:`` and ``1:``
as True, None and 1; in a file of label or intent names both turn a typo into a silent change.
"""

from __future__ import annotations

from typing import Any

import yaml

from tunelab.errors import ConfigError


class NameKeyLoader(yaml.SafeLoader):
    """A safe loader whose mapping keys are their text as written; a repeated key is refused."""

    what = "key"  # the word the messages use for a key: "label", "intent"


def _name_mapping(loader: NameKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[str, int] = {}
    out: dict[Any, Any] = {}
    loader.flatten_mapping(node)  # merge keys (<<: *anchor) as SafeLoader reads them
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigError(
                f"{loader.name}: line {line}: a {loader.what} name must be plain text, not a list or mapping"
            )
        key = key_node.value
        if key in seen:
            raise ConfigError(
                f"{loader.name}: {loader.what} {key!r} appears twice (lines {seen[key]} and {line}); "
                f"give each {loader.what} once"
            )
        seen[key] = line
        out[key] = loader.construct_object(value_node, deep=True)
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
