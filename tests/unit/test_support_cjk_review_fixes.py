"""Support bot review fixes for text other than English: Chinese and Japanese knowledge sections cut
into passages, a message that is not valid Unicode (a lone surrogate) in the API and the terminal
chat, Markdown headings ending in "#" ("C#") and wrapped Chinese lines, and slot names in any script.

The bots are the app's real ``Bot`` over the stand-ins of ``test_support_review_fixes3`` (an intent
model counting keywords in what the tiny fixture's tokenizer reads); no training, no embedding model.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from test_support_review_fixes3 import make_bot, tokenizer  # noqa: F401  (tokenizer: a fixture)

from tunelab.apps.support.answers import read_answers
from tunelab.apps.support.bot import Bot, check_messages
from tunelab.apps.support.knowledge import MAX_PASSAGE_WORDS, read_passages
from tunelab.cli.main import main
from tunelab.errors import ConfigError, DataError

NOT_UNICODE = "(a lone surrogate, or bytes in another encoding than UTF-8); fix the text"

# -- 1. Chinese and Japanese sections are cut at paragraphs ---------------------------------------


def markdown(tmp_path: Path, name: str, paragraphs: list[str]) -> list[tuple[str, str]]:
    """The (text, line) of each passage of one section holding ``paragraphs``."""
    path = tmp_path / name
    path.write_text("# Section\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
    return [(p.text, p.source.rsplit(":", 1)[1]) for p in read_passages(path)]


def test_a_long_chinese_section_is_cut_at_paragraphs_as_an_english_one_is(tmp_path: Path) -> None:
    """Words were counted at spaces: a Chinese paragraph was one word, so a section of any length was
    one passage, whose end the encoder (256 tokens at most) never read."""
    assert MAX_PASSAGE_WORDS == 200
    english = [f"part{i} " + " ".join(["word"] * 79) for i in range(1, 6)]  # 80 words each
    chinese = [f"第{i}段" + "中" * 77 for i in range(1, 6)]  # 第, the digit, 段 and 77: 80 words
    japanese = [f"第{i}節" + "カ" * 77 for i in range(1, 6)]  # kana count per character too
    for name, paras in (("en.md", english), ("zh.md", chinese), ("ja.md", japanese)):
        # 80 + 80 fit the 200, a third would not: two paragraphs a passage, starting on lines 3, 7, 11
        assert markdown(tmp_path, name, paras) == [
            (f"{paras[0]}\n\n{paras[1]}", "3"),
            (f"{paras[2]}\n\n{paras[3]}", "7"),
            (paras[4], "11"),
        ], name


def test_a_chinese_paragraph_over_the_limit_is_a_passage_of_its_own_as_an_english_one_is(
    tmp_path: Path,
) -> None:
    """A paragraph over the limit is a passage of its own, cut at the limit (it has no sentence end),
    its last piece joined by the next paragraph, a Chinese one as an English one. (Before, it stayed
    whole, and the encoder read its first 256 tokens only: see test_support_knowledge.py.)"""
    english = ["Short one.", " ".join(["long"] * 300), "Short two."]
    chinese = ["短的一段。", "长" * 300, "短的二段。"]
    pieces = {
        "en.md": (" ".join(["long"] * 200), " ".join(["long"] * 100)),
        "zh.md": ("长" * 200, "长" * 100),
    }
    for name, paras in (("en.md", english), ("zh.md", chinese)):
        first, rest = pieces[name]
        expected = [(paras[0], "3"), (first, "5"), (f"{rest}\n\n{paras[2]}", "5")]
        assert markdown(tmp_path, name, paras) == expected, name


# -- 2. a message that is not valid Unicode --------------------------------------------------------

FOOD = "intents:\n  food: The kitchen serves dinner from 6 pm.\n"


@pytest.fixture
def bot(tokenizer: Any, tmp_path: Path) -> Bot:  # noqa: F811  (the fixture imported above)
    return make_bot(tmp_path / "bot", tokenizer, weight=5.0, answers=FOOD)


def test_a_lone_surrogate_is_a_one_line_data_error_not_the_tokenizers_type_error(bot: Bot) -> None:
    """The tokenizer refused it with "TypeError: TextEncodeInput must be Union[...]"."""
    with pytest.raises(DataError) as caught:
        bot.reply("\udce4\udcbd")  # b"\xe4\xbd" read with surrogateescape, as a C locale reads stdin
    assert str(caught.value) == f"message 1: not valid Unicode at position 0 {NOT_UNICODE}"
    with pytest.raises(DataError) as caught:
        bot.reply_many(["pizza dinner", "soup \ud800 tonight"])
    assert str(caught.value) == f"message 2: not valid Unicode at position 5 {NOT_UNICODE}"
    # the previous message a follow-up is read with: an out-of-scope message is read joined to it
    with pytest.raises(DataError) as caught:
        bot.reply("what is your postal address", ["pizza dinner", "football \ud800"])
    assert str(caught.value) == (
        f"message 1's history: its last message not valid Unicode at position 9 {NOT_UNICODE}"
    )
    # a file's messages are named by their place (eval's conversations: "\ud800" is valid JSON)
    with pytest.raises(DataError) as caught:
        check_messages(["fine", "x\udc80"], places=["talks.jsonl: line 1", "talks.jsonl: line 2"])
    assert str(caught.value) == f"talks.jsonl: line 2: not valid Unicode at position 1 {NOT_UNICODE}"
    assert bot.reply("pizza dinner").reply == "The kitchen serves dinner from 6 pm."


@pytest.mark.parametrize("errors", ["surrogateescape", "strict"])
def test_the_chat_says_a_line_is_not_utf8_and_answers_the_next(
    bot: Bot, errors: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``printf '\\xe4\\xbd\\n...' | tunelab app support chat BOT`` ended with "error: unexpected
    TypeError" (a C locale's stdin decodes the bytes to lone surrogates) or "unexpected
    UnicodeDecodeError" (a strict UTF-8 locale's, which also dropped the lines read with it), rc 1,
    the conversation lost. Now the line is refused in one line and the chat goes on."""
    monkeypatch.setattr(Bot, "load", classmethod(lambda cls, folder: bot))
    stdin = io.TextIOWrapper(io.BytesIO(b"\xe4\xbd\npizza dinner\n/quit\n"), encoding="utf-8", errors=errors)
    monkeypatch.setattr(sys, "stdin", stdin)
    code = main(["app", "support", "chat", "bot"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    assert out.splitlines()[1:] == [
        "Type a message; /reset starts over, /quit leaves.",
        f"you> error: message 1: not valid Unicode at position 0 {NOT_UNICODE}",
        "you> bot> The kitchen serves dinner from 6 pm.",
        "     [answer · food 1.00]",
        "you> ",
    ]


# -- 3. Markdown: a title ending in "#", wrapped Chinese lines ------------------------------------


def test_a_heading_keeps_a_hash_that_is_part_of_its_title(tmp_path: Path) -> None:
    """Any trailing run of # was read as a closing sequence: "C#" became "C". As CommonMark has
    it, a closing run counts only after a space."""
    path = tmp_path / "faq.md"
    path.write_text(
        "# 如何使用 C#\n\nA.\n\n## F# \n\nB.\n\n### Closed ##  \n\nC.\n\n# Tabs #\t\n\nD.\n\n# a#b #\n\nE.\n",
        encoding="utf-8",
    )
    assert [(p.title, p.text) for p in read_passages(path)] == [
        ("如何使用 C#", "A."),
        ("F#", "B."),
        ("Closed", "C."),
        ("Tabs", "D."),
        ("a#b", "E."),
    ]


def test_a_wrapped_chinese_line_joins_the_next_without_a_space(tmp_path: Path) -> None:
    """Lines were joined with a space: "我们的营业时间是 周一至周五。" was served."""
    path = tmp_path / "faq.md"
    path.write_text(
        "# 营业时间\n\n我们的营业时间是\n周一至周五。\nCall us on\n0800 123.\n営業時間は\n  九時からです。\n",
        encoding="utf-8",
    )
    (passage,) = read_passages(path)
    assert passage.text == "我们的营业时间是周一至周五。 Call us on 0800 123. 営業時間は九時からです。"


# -- 4. slot names in any script -------------------------------------------------------------------

AMOUNT = r"""fallback: "请告诉我金额。"
slots:
  金额: '[¥￥]\s?\d+(?:\.\d{1,2})?'
intents:
  food: "晚餐 {金额} 已付款。"
"""


def test_a_slot_named_in_chinese_is_filled_from_the_message(bot: Bot, tmp_path: Path) -> None:
    """``[A-Za-z_]`` refused 金额 as "not letters"; str.format takes any Python identifier."""
    (tmp_path / "answers.yaml").write_text(AMOUNT, encoding="utf-8")
    bot.answers = read_answers(tmp_path / "answers.yaml")
    assert bot.answers.intents["food"].slots == ("金额",)
    reply = bot.reply("pizza dinner ¥88.50")
    assert (reply.kind, reply.reply) == ("answer", "晚餐 ¥88.50 已付款。")
    sent = json.loads(json.dumps(reply.to_dict()))  # as the service answers it
    assert sent["reply"] == "晚餐 ¥88.50 已付款。"
    missed = bot.reply("pizza dinner")
    assert missed.reply == "请告诉我金额。"
    assert missed.reason.endswith("; slot 金额 not in the message: fallback"), missed.reason


@pytest.mark.parametrize("name", ["9x", "金-额", "a b"])
def test_a_slot_name_that_is_no_identifier_is_still_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "answers.yaml"
    path.write_text(f"slots:\n  '{name}': 'a'\nintents:\n  a: x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_answers(path)
    assert str(caught.value) == (
        f"{path}: slots.{name}: slot names are letters (of any script), digits and _, not starting "
        "with a digit"
    )


@pytest.mark.parametrize(
    "text",
    [
        "我们的营业时间是",
        "iPhone, 很好",
        "my card, has not arrived",
        "我用iPhone, 很好。",
        "ＡＢＣ银行 2024年",
        "",
    ],
)
def test_the_knowledge_word_count_is_the_augmenters(text: str) -> None:
    # The apps count with tunelab.data.scripts (public to them); augmentation splits with its own
    # split_words: one rule of what a word is in both.
    from tunelab.data.augment import split_words
    from tunelab.data.scripts import count_words

    assert count_words(text) == len(split_words(text))
