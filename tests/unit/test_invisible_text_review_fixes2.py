"""Review fixes: a text of only invisible characters (U+200B, U+2060, a BOM) is empty in the places
that still decided "empty" with ``text.strip()``, which keeps them: ``embed``, a continued run's
rehearsal sample, self-training's unlabelled texts, the recommender's items and ids (files, Python
and HTTP), the monitor's documents and topic names, and zero-shot label descriptions. Each now gets
exactly what an empty text gets there, by ``tunelab.data.scripts.has_visible_text``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunelab.config import ContinualConfig, RunConfig
from tunelab.data import LabelMap
from tunelab.errors import ConfigError, DataError, RunError

INVISIBLE = ["\u200b", "\u200b\u2060", "\ufeff", " \u200b\t "]


# -- embed --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", *INVISIBLE])
def test_embed_refuses_an_invisible_text_as_it_refuses_an_empty_one(text: str) -> None:
    from tunelab.embeddings import embed

    # refused before the encoder is loaded, so no model is needed
    with pytest.raises(DataError, match=r"^text 2: empty or not a string .*give non-empty texts$"):
        embed(["card not arrived", text], model="no-such-model")


# -- continual rehearsal sample ---------------------------------------------------------------------


def _previous(tmp_path: Path, rows: list[dict]) -> object:
    from tunelab.train.continual import REHEARSAL_FILE, Previous

    (tmp_path / REHEARSAL_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return Previous(tmp_path, RunConfig.from_dict({}), LabelMap(["a", "b"]), {})


@pytest.mark.parametrize("text", ["", *INVISIBLE])
def test_a_rehearsal_row_of_invisible_text_is_refused_as_an_empty_one(tmp_path: Path, text: str) -> None:
    from tunelab.train.continual import read_rehearsal

    previous = _previous(tmp_path, [{"text": "fine", "label": "a"}, {"text": text, "label": "b"}])
    with pytest.raises(RunError, match=r"rehearsal\.jsonl: line 2: no text; each line"):
        read_rehearsal(previous, LabelMap(["a", "b"]), ContinualConfig(rehearsal=3), seed=0)


@pytest.mark.parametrize("pair", ["", *INVISIBLE])
def test_a_rehearsal_row_of_invisible_text_pair_is_refused_as_an_empty_one(tmp_path: Path, pair: str) -> None:
    from tunelab.train.continual import Previous, read_rehearsal

    previous = _previous(tmp_path, [{"text": "fine", "label": "a", "text_pair": pair}])
    cfg = RunConfig.from_dict({"data": {"text_pair_column": "second"}})
    previous = Previous(previous.root, cfg, previous.labels, {})
    with pytest.raises(RunError, match=r"line 1: no text_pair \(the run reads text pairs\)"):
        read_rehearsal(previous, LabelMap(["a", "b"]), ContinualConfig(rehearsal=3), seed=0)


# -- self-training's unlabelled texts ---------------------------------------------------------------


def test_unlabelled_texts_of_invisible_characters_are_skipped_as_empty_ones(tmp_path: Path) -> None:
    from tunelab.train.pseudo_rows import read_unlabeled

    path = tmp_path / "pool.jsonl"
    texts = ["card not arrived", "", *INVISIBLE, "where is \u200bmy card"]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    cfg = RunConfig.from_dict({"self_training": {"unlabeled": str(path)}})
    kept, skipped = read_unlabeled(cfg)
    # a text with a visible character stays as read (stripped), zero-width characters and all
    assert kept == ["card not arrived", "where is \u200bmy card"]
    assert skipped == 1 + len(INVISIBLE)


def test_an_unlabelled_file_of_only_invisible_texts_holds_no_text(tmp_path: Path) -> None:
    from tunelab.train.pseudo_rows import read_unlabeled

    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in INVISIBLE), encoding="utf-8")
    cfg = RunConfig.from_dict({"self_training": {"unlabeled": str(path)}})
    with pytest.raises(DataError, match=r"column 'text' holds no text; add texts or remove it$"):
        read_unlabeled(cfg)


# -- support bot ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", *INVISIBLE])
def test_the_bot_refuses_an_invisible_message_by_the_shared_rule(text: str) -> None:
    # bot.py's own copy of the rule is gone: the shared helper decides (a guard: same behaviour)
    from tunelab.apps.support import bot

    assert not hasattr(bot, "is_blank")
    with pytest.raises(DataError, match=r"^message 2: empty or not text; send a message with some visible"):
        bot.check_messages(["hello", text])
    assert bot.last_message(["earlier", text]) == "earlier"


# -- recommender ------------------------------------------------------------------------------------


def _items_config(tmp_path: Path, rows: list[dict]) -> object:
    from tunelab.apps.recommend.config import ItemsConfig

    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return ItemsConfig(path=str(path), text_fields=["title", "tags"])


@pytest.mark.parametrize("text", ["", *INVISIBLE])
def test_an_item_file_row_of_invisible_text_is_refused_as_an_empty_one(tmp_path: Path, text: str) -> None:
    from tunelab.apps.recommend.data import read_items

    cfg = _items_config(
        tmp_path,
        [{"item_id": "1", "title": "Up", "tags": "pixar"}, {"item_id": "2", "title": text, "tags": text}],
    )
    with pytest.raises(DataError, match=r"items\.jsonl: line 2 \(item '2'\): empty text in title, tags;"):
        read_items(cfg)


def test_an_invisible_field_is_left_out_of_an_item_text_as_an_empty_one(tmp_path: Path) -> None:
    from tunelab.apps.recommend.data import read_items

    rows = [
        {"item_id": "1", "title": "Up", "tags": "\u200b"},
        {"item_id": "2", "title": "\u2060", "tags": "fun"},
    ]
    items, _, _ = read_items(_items_config(tmp_path, rows))
    assert items["text"].tolist() == ["Up", "tags: fun"]  # as with "tags": "" and "title": ""


@pytest.mark.parametrize("text", ["", *INVISIBLE])
def test_an_item_added_with_invisible_text_is_refused_as_an_empty_one(tmp_path: Path, text: str) -> None:
    from tunelab.apps.recommend.recommender import Recommender

    fake = SimpleNamespace(config=SimpleNamespace(items=_items_config(tmp_path, [])))
    with pytest.raises(DataError, match=r"^item 'new': empty text; give at least one of title, tags"):
        Recommender.check_item(fake, "new", {"title": text})
    with pytest.raises(DataError, match=r"^item 'new': empty text;"):
        Recommender.check_item(fake, "new", {"title": text, "tags": [text]})


@pytest.mark.parametrize("item_id", ["", *INVISIBLE])
def test_an_invisible_id_is_empty_over_http_in_python_and_in_files(tmp_path: Path, item_id: str) -> None:
    from tunelab.apps.recommend.data import id_text, read_items
    from tunelab.apps.recommend.recommender import _check_id
    from tunelab.serve.recommend_schemas import id_problem

    assert id_problem(item_id) == "is empty; give an id with some visible characters"
    assert id_text(item_id) == ""
    with pytest.raises(DataError, match=r"^item id is empty$"):
        _check_id(item_id, "item id")
    cfg = _items_config(tmp_path, [{"item_id": item_id, "title": "Up", "tags": "pixar"}])
    with pytest.raises(DataError, match=r"line 1: empty item_id; every row needs one$"):
        read_items(cfg)


def test_the_http_item_schema_refuses_an_invisible_id_with_a_422_message() -> None:
    from pydantic import ValidationError

    from tunelab.serve.recommend_schemas import ItemIn

    with pytest.raises(ValidationError, match=r"item_id is empty; give an id with some visible characters"):
        ItemIn.model_validate({"item_id": "\u200b", "fields": {"title": "Up"}})


# -- monitor ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", *INVISIBLE])
def test_a_monitor_document_of_invisible_text_is_refused_as_an_empty_one(text: str) -> None:
    from tunelab.apps.monitor.documents import parse_document

    with pytest.raises(ValueError, match=r"^document 'd1': text is missing, empty or not a string$"):
        parse_document({"id": "d1", "time": "2026-03-02T09:30:00Z", "text": text})


@pytest.mark.parametrize("name", ["", *INVISIBLE])
def test_a_monitor_topic_named_by_invisible_characters_is_refused_as_an_empty_name(name: str) -> None:
    from tunelab.apps.monitor.config import _topics

    problems: list[str] = []
    topics = _topics(["earnings", name, {"name": name, "description": "mergers"}], problems)
    assert [t.name for t in topics] == ["earnings"]
    assert problems == [f"topics[{i}]: give a name (and optionally a description)" for i in (1, 2)]


# -- zero-shot --------------------------------------------------------------------------------------


@pytest.mark.parametrize("description", ["", *INVISIBLE])
def test_a_zeroshot_description_of_invisible_text_is_refused_as_an_empty_one(description: str) -> None:
    from tunelab.zeroshot.labels import parse_label_descriptions

    with pytest.raises(ConfigError, match=r"^labels\.yaml: label 'b': the description is empty; describe"):
        parse_label_descriptions({"a": "about a", "b": description}, "labels.yaml")
