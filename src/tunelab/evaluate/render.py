"""A tiny report document model and its two renderings: Markdown and self-contained HTML.

The report is built once as sections of text, tables and images, then rendered twice, so the
Markdown and the HTML cannot drift apart. Markdown links images by relative path (it sits next
to ``plots/``); HTML embeds them as base64 ``data:`` URIs so the single file can be mailed or
attached to a ticket and still show everything.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

IMAGE_DIR = "plots"


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text (escaped by each renderer)."""

    text: str


@dataclass(frozen=True)
class Preformatted:
    """Lines shown as they are, in a fixed-width font (a command's output, e.g. the data summary)."""

    text: str


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells; columns listed in ``right`` are right-aligned (numbers)."""

    headers: list[str]
    rows: list[list[str]]
    right: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Image:
    """A PNG by file name inside ``plots/``."""

    file: str
    alt: str


Block = Text | Preformatted | Table | Image


@dataclass(frozen=True)
class Section:
    """A level-2 heading and its blocks."""

    title: str
    blocks: list[Block]


def to_markdown(title: str, sections: Sequence[Section]) -> str:
    """Render as GitHub-flavoured Markdown with images linked as ``plots/<file>``."""
    lines = [f"# {_md_escape(title)}", ""]
    for section in sections:
        lines += [f"## {_md_escape(section.title)}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines.append(_md_escape(block.text))
            elif isinstance(block, Preformatted):
                # CommonMark: a fence longer than any backtick run inside cannot be closed by the text.
                longest = max((len(run) for run in re.findall(r"`+", block.text)), default=0)
                fence = "`" * max(3, longest + 1)
                lines += [fence, block.text, fence]
            elif isinstance(block, Table):
                lines += _md_table(block)
            else:
                lines.append(f"![{_md_escape(block.alt)}]({IMAGE_DIR}/{block.file})")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def to_html(title: str, sections: Sequence[Section], images: Mapping[str, bytes]) -> str:
    """Render as one HTML page with inline CSS and every image embedded as a base64 data URI.

    Args:
        title: Page title and top heading.
        sections: The document.
        images: PNG bytes by file name; an ``Image`` whose file is missing here is left out
            rather than linked, since a link would break the self-contained promise.
    """
    body: list[str] = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<section>\n<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Text):
                body.append(f"<p>{html.escape(block.text)}</p>")
            elif isinstance(block, Preformatted):
                body.append(f"<pre>{html.escape(block.text)}</pre>")
            elif isinstance(block, Table):
                body.append(_html_table(block))
            elif block.file in images:
                data = base64.b64encode(images[block.file]).decode("ascii")
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
                    f"<figcaption>{html.escape(block.alt)}</figcaption></figure>"
                )
        body.append("</section>")
    return _HTML_PAGE.format(title=html.escape(title), css=_CSS, body="\n".join(body))


def _md_escape(text: str) -> str:
    """Escape what would break a table cell or turn into markup; keep ``_`` inside snake_case labels.

    A label ``~~legacy~~`` was shown struck through, ``__init__`` in bold, ``AT&amp;T`` as "AT&T",
    ``$x$`` as math on GitHub; an ESC in a text reached the terminal of whoever ran ``cat report.md``.
    """
    text = " ".join(str(text).split())  # a newline would end the table row
    # control characters as their escapes (\x1b), before the backslashes are doubled below
    from tunelab.data.scripts import escape_controls  # here: tunelab.data imports pandas

    text = escape_controls(text)
    for char in ("\\", "|", "*", "`", "[", "]", "<", ">", "~", "$"):
        text = text.replace(char, "\\" + char)
    text = _ENTITY.sub(r"\\&", text)  # "AT&amp;T" showed "AT&T"; a lone "&" (R&D) stays as written
    return _EDGE_UNDERSCORE.sub(r"\\_", text)


# what CommonMark reads as a character reference: &name; &#123; &#x1F;
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")


# an underscore that can open or close emphasis: not between two letters or digits (snake_case)
_EDGE_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")


def _md_table(table: Table) -> list[str]:
    align = ["---:" if i in table.right else "---" for i in range(len(table.headers))]
    rows = [table.headers, *table.rows]
    lines = ["| " + " | ".join(_md_escape(cell) for cell in row) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join(align) + " |")
    return lines


def _html_table(table: Table) -> str:
    def cells(row: Sequence[str], tag: str) -> str:
        return "".join(
            f'<{tag} class="num">{html.escape(cell)}</{tag}>'
            if i in table.right
            else f"<{tag}>{html.escape(cell)}</{tag}>"
            for i, cell in enumerate(row)
        )

    head = f"<thead><tr>{cells(table.headers, 'th')}</tr></thead>"
    rows = "\n".join(f"<tr>{cells(row, 'td')}</tr>" for row in table.rows)
    return f"<table>{head}\n<tbody>\n{rows}\n</tbody></table>"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 1100px; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .7rem; text-align: left; }
th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f8fa; padding: .6rem .8rem; overflow-x: auto; font-size: .85rem; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #59636e; font-size: .85rem; }
""".strip()

_HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
{body}
</body>
</html>
"""
