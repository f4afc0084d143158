"""The recommender reads its files as the training reader does (``tunelab.data.readers``): a repeated
column name refused, a JSON array, a sniffed separator, stripped header names, a Parquet file's named
index, and row numbers that are the file's lines. Its own pandas calls read each of these otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from recommend_fixtures import config_dict, ratings_rows, write_world

from tunelab.apps.recommend import RecommendConfig, load_dataset
from tunelab.apps.recommend.config import ItemsConfig
from tunelab.apps.recommend.data import read_items
from tunelab.config import DataConfig
from tunelab.data.readers import read_table as training_read_table
from tunelab.errors import DataError


def _items(path: Path, fields: list[str]) -> list[list[str]]:
    items, _, _ = read_items(ItemsConfig(path=str(path), text_fields=fields))
    return items[["item_id", "text"]].values.tolist()


TWO = [["1", "Toy Story"], ["2", "Heat"]]


def test_a_repeated_column_name_is_refused(tmp_path: Path) -> None:
    """pandas renamed the second ``title`` to ``title.1``, and the first was used without a word."""
    path = tmp_path / "dup.csv"
    path.write_text("item_id,title,title\n1,Toy Story,Le Monde de Nemo\n2,Heat,Chaleur\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"dup\.csv: column name\(s\) 'title' appear more than once"
    ) as caught:
        _items(path, ["title"])
    assert "\n" not in str(caught.value) and "rename the columns" in str(caught.value)


def test_names_repeated_once_stripped_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("item_id,title, title \n1,Toy Story,Nemo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"column name\(s\) 'title' appear more than once"):
        _items(path, ["title"])


def test_row_numbers_are_the_line_a_record_starts_on(tmp_path: Path) -> None:
    """Quoted texts over several lines: the second item 1 is on file line 8, not the 5th record."""
    path = tmp_path / "multi.csv"
    path.write_text(
        'item_id,title,description\n1,Toy Story,"A cowboy doll\nis threatened\nby a new toy"\n'
        '2,Heat,"A heist\nthriller"\n3,Alien,Space\n1,Toy Story 2,Sequel\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"multi\.csv: item '1' appears twice \(row 2 and row 8\)"):
        _items(path, ["title", "description"])


def test_blank_lines_count_in_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("item_id,title\n\n1,Toy Story\n   \n2,\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"blank\.csv: row 5 \(item '2'\): empty text in title"):
        _items(path, ["title"])


def test_a_record_with_too_many_fields_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text('item_id,title\n1,"Toy\nStory"\n2,Heat,extra\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"ragged\.csv: not a readable CSV items file \(line 4 has 3 fields"):
        _items(path, ["title"])


def test_a_json_array_over_several_lines_is_read(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text(
        '[\n  {"item_id": 1, "title": "Toy Story"},\n  {"item_id": 2, "title": "Heat"}\n]\n', encoding="utf-8"
    )
    assert _items(path, ["title"]) == TWO


def test_a_json_array_on_one_line_is_read(tmp_path: Path) -> None:
    path = tmp_path / "items1.json"
    path.write_text(
        '[{"item_id": 1, "title": "Toy Story"}, {"item_id": 2, "title": "Heat"}]', encoding="utf-8"
    )
    assert _items(path, ["title"]) == TWO


def test_a_json_array_item_that_is_no_object_is_named(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text('[{"item_id": 1, "title": "Toy Story"}, 2]', encoding="utf-8")
    with pytest.raises(DataError, match=r"items\.json: item 2 of the JSON array is not a JSON object"):
        _items(path, ["title"])


def test_a_broken_json_array_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_text(
        '[\n  {"item_id": 1, "title": "A"},\n  {"item_id": 2 "title": "B"}\n]\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"items\.json: a JSON array that is not valid JSON on line 3"):
        _items(path, ["title"])


def test_a_semicolon_csv_is_read(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("item_id;title\n1;Toy Story\n2;Heat\n", encoding="utf-8")
    assert _items(path, ["title"]) == TWO


def test_header_names_are_stripped(tmp_path: Path) -> None:
    path = tmp_path / "space.csv"
    path.write_text("item_id, title\n1, Toy Story\n2, Heat\n", encoding="utf-8")
    assert _items(path, ["title"]) == TWO


def test_a_parquet_named_index_is_a_column(tmp_path: Path) -> None:
    path = tmp_path / "idx.parquet"
    frame = pd.DataFrame({"item_id": [7, 8], "title": ["Toy Story", "Heat"]}).set_index("item_id")
    frame.to_parquet(path)
    assert _items(path, ["title"]) == [["7", "Toy Story"], ["8", "Heat"]]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("items.json", '[\n  {"item_id": 1, "title": "Toy Story"},\n  {"item_id": 2, "title": "Heat"}\n]\n'),
        ("semi.csv", "item_id;title\n1;Toy Story\n2;Heat\n"),
        ("space.csv", "item_id, title\n1, Toy Story\n2, Heat\n"),
    ],
    ids=["json-array", "semicolon", "spaced-header"],
)
def test_the_training_reader_reads_the_same_columns(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert list(training_read_table(path, DataConfig()).columns) == ["item_id", "title"]
    assert _items(path, ["title"]) == TWO


def _world(tmp_path: Path, **sections: dict) -> RecommendConfig:
    return RecommendConfig.from_dict(config_dict(write_world(tmp_path), **sections))


def test_interactions_in_a_json_array_keep_their_types(tmp_path: Path) -> None:
    """Typed values stay typed: numbers are times and ratings, and ``true`` is refused as a time
    naming its item of the array."""
    rows = ratings_rows()
    path = tmp_path / "ratings.json"
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    cfg = _world(tmp_path, interactions={"path": str(path)})
    ds = load_dataset(cfg)
    assert len(ds.interactions) == len(rows)
    assert ds.interactions["time"].min() == min(r["ts"] for r in rows)
    rows[2]["ts"] = True
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    with pytest.raises(DataError, match=r"ratings\.json: item 3: ts True is not a time"):
        load_dataset(cfg)


def test_extra_text_rows_name_their_file_line(tmp_path: Path) -> None:
    """A semicolon tags file with a tag over two lines: the unknown item's first row is its line."""
    path = tmp_path / "tags.csv"
    path.write_text('movie;tag\nspa0;"two\nlines"\nZZZ1;b\n', encoding="utf-8")
    extra = {"name": "tags", "path": str(path), "id_column": "movie", "field": "tag"}
    counts = load_dataset(_world(tmp_path, items={"extra_text": [extra]})).report["extra_text"]["tags"]
    assert counts["unknown_items"]["examples"] == [{"item_id": "ZZZ1", "rows": 1, "first": "row 4"}]


def test_rows_one_field_longer_than_the_header_keep_their_columns(tmp_path: Path) -> None:
    """Every row ending in a separator (a spreadsheet's export) made pandas take the first column as
    the index: item ids became the titles, every column shifted one place, without a word."""
    path = tmp_path / "trailing.csv"
    path.write_text("item_id,title\n1,Toy Story,\n2,Heat,\n", encoding="utf-8")
    assert _items(path, ["title"]) == [["1", "Toy Story"], ["2", "Heat"]]
    filled = tmp_path / "filled.csv"
    filled.write_text("item_id,title\n1,Toy Story,x\n2,Heat,y\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"line 2 has 3 fields where the header has 2; quote a text that holds ','"
    ):
        read_items(ItemsConfig(path=str(filled), text_fields=["title"]))
