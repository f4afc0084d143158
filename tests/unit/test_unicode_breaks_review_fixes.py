"""Texts holding Unicode line separators (U+2028, U+2029, U+0085: copied from web pages and Word,
or a cp1252 "…" read as Latin-1) are kept through the support bot's files.

``str.splitlines`` splits at them, though JSON holds them unescaped inside strings: a bot whose
knowledge held one could never load, and such a knowledge or conversations line was "not JSON".
PyYAML writes U+0085 raw in bot.yaml and reads it back as a space: a bot built on an intent holding
one was refused on every load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tunelab.apps.support.config import BotConfig
from tunelab.apps.support.knowledge import KnowledgeIndex, Passage, read_passages
from tunelab.apps.support.rows import read_conversations
from tunelab.yaml_names import dump_yaml

BREAKS = ["\u2028", "\u2029", "\x85"]


@pytest.mark.parametrize("brk", BREAKS, ids=["u2028", "u2029", "nel"])
def test_a_saved_knowledge_index_with_a_line_separator_in_a_passage_loads(tmp_path: Path, brk: str) -> None:
    text = f"Call us to block a lost card.{brk}We send a new one in 5 days."
    KnowledgeIndex([Passage(text, "Lost card", "kb.jsonl:1")], np.ones((1, 4)) / 2, model="m").save(
        tmp_path / "k"
    )
    assert [p.text for p in KnowledgeIndex.load(tmp_path / "k").passages] == [text]


@pytest.mark.parametrize("brk", BREAKS, ids=["u2028", "u2029", "nel"])
def test_a_knowledge_line_holding_a_raw_line_separator_is_read(tmp_path: Path, brk: str) -> None:
    path = tmp_path / "kb.jsonl"
    text = f"Call us.{brk}We send a new one."
    line = json.dumps({"title": "Lost card", "text": text}, ensure_ascii=False)
    path.write_text(
        line + "\n" + json.dumps({"title": "Hours", "text": "Open 9 to 5."}) + "\n", encoding="utf-8"
    )
    passages = read_passages(path)
    assert [(p.title, p.text, p.source) for p in passages] == [
        ("Lost card", text, f"{path}:1"),
        ("Hours", "Open 9 to 5.", f"{path}:2"),
    ]


@pytest.mark.parametrize("brk", BREAKS, ids=["u2028", "u2029", "nel"])
def test_a_conversation_holding_a_raw_line_separator_is_read(tmp_path: Path, brk: str) -> None:
    path = tmp_path / "c.jsonl"
    record = {"turns": [f"my card{brk}is lost", "still lost"], "intent": "lost_card"}
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    [conversation] = read_conversations(path)
    assert (conversation.turns, conversation.intent) == (record["turns"], "lost_card")


def test_bot_yaml_keeps_an_intent_holding_nel_and_other_scripts(tmp_path: Path) -> None:
    intents = ["card\x85lost", "卡丢了", "carte perdue", "line\u2028break"]
    config = BotConfig(name="b", run="r", run_intents=intents)
    config.save(tmp_path)
    assert BotConfig.load(tmp_path).run_intents == intents


def test_dump_yaml_keeps_letters_readable_where_nothing_needs_escaping() -> None:
    assert dump_yaml({"intents": ["卡丢了", "café"]}) == "intents:\n- 卡丢了\n- café\n"
