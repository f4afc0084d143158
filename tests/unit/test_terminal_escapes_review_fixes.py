"""Text a client of ``tunelab serve`` sent (a recommender item added over HTTP) is printed by the CLI
with its control characters escaped: raw, an ESC sequence set the operator's window title, cleared
the screen and a line break printed a forged ranked line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import pytest

from tunelab.cli import recommend_cmd
from tunelab.cli.output import printable

PAYLOAD = "\x1b]0;owned\x07\x1b[2J\x1b[H\x1b[41mFREE\x1b[0m\n  1. 9.999  fake-item  forged line"


def test_printable_escapes_what_a_terminal_would_act_on_and_keeps_the_rest() -> None:
    assert printable("café 日本 ok") == "café 日本 ok"
    assert printable("a\nb\x1b[2Jc\x07\u2028") == "a\\nb\\x1b[2Jc\\x07\\u2028"


@dataclass
class _Item:
    item_id: str
    text: str
    score: float = 0.5
    reasons: list[str] = field(default_factory=list)


@dataclass
class _Ranking:
    user_id: str
    items: list[_Item]
    fallback: bool = False
    fallback_reason: str = ""


class _Recommender:
    def rank(self, user: str, k: int, exclude_seen: bool) -> _Ranking:
        return _Ranking(user, [_Item("promo\x1b[31m", f"Title {PAYLOAD}. genres: space")])


def test_rank_prints_a_clients_item_on_one_line_with_its_escapes_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import tunelab.apps.recommend as recommend

    monkeypatch.setattr(recommend.Recommender, "load", staticmethod(lambda folder: _Recommender()))
    args = argparse.Namespace(folder="rec", user="u\x1b[0m", k=10, include_seen=False, json=False)
    assert recommend_cmd._rank(args) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert out.splitlines() == [
        "top 1 for user u\\x1b[0m:",
        "  1. 0.500  promo\\x1b[31m  " + recommend_cmd._short(f"Title {PAYLOAD}. genres: space"),
    ]
    assert recommend_cmd._short(f"Title {PAYLOAD}").startswith("Title \\x1b]0;owned\\x07\\x1b[2J")


@pytest.mark.parametrize(
    ("cell", "rendered"),
    [
        ("~~legacy~~", "<td>~~legacy~~</td>"),
        ("AT&amp;T <3", "<td>AT&amp;amp;T &lt;3</td>"),
        ("__init__", "<td>__init__</td>"),
        ("card_arrival", "<td>card_arrival</td>"),
        ("$x^2$", "<td>$x^2$</td>"),
        ("a\x1bb", "<td>a\\x1bb</td>"),
    ],
    ids=["strike", "entity", "dunder", "snake", "math", "esc"],
)
def test_a_report_md_table_cell_renders_as_the_text_it_holds(cell: str, rendered: str) -> None:
    """Rendered as GitHub renders Markdown (tables, strikethrough): the cell shows the text as written."""
    from markdown_it import MarkdownIt

    from tunelab.evaluate.render import Section, Table, to_markdown

    markdown = to_markdown("t", [Section("s", [Table(["Label"], [[cell]])])])
    assert "\x1b" not in markdown
    html = MarkdownIt("commonmark").enable("table").enable("strikethrough").render(markdown)
    assert rendered in html


ORDINARY = [
    "東京\u3000タワー",
    "Prix\u00a0: 10\u00a0€",
    "family 👨\u200d👩\u200d👧",
    "می\u200cخواهم",
    "shaking \U0001fae8",
]


@pytest.mark.parametrize(
    "text", ORDINARY, ids=["ideographic-space", "nbsp", "zwj-emoji", "zwnj-persian", "new-emoji"]
)
def test_ordinary_text_of_every_script_is_printed_and_rendered_as_it_is(text: str) -> None:
    """str.isprintable is false for every space but " ", for ZWJ/ZWNJ and for characters newer than
    Python's Unicode tables: escaping by it wrote \\u3000 into Japanese and \\u200d into emoji."""
    from tunelab.evaluate.render import _md_escape

    assert printable(text) == text == recommend_cmd._short(text)
    assert _md_escape(text) == " ".join(text.split())  # runs of spaces are one in a table cell


def test_bidi_overrides_are_escaped_as_they_reorder_what_is_shown() -> None:
    assert printable("invoice \u202egnp.exe") == "invoice \\u202egnp.exe"
