"""The report as a list of blocks, rendered to Markdown and to one HTML page that links its figures (not embedded)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import pandas as pd

from bioscale.formats import percent


@dataclass
class Heading:
    """A section title."""

    text: str
    level: int = 2


@dataclass
class Paragraph:
    """Text with **bold** and `code` marks."""

    text: str


@dataclass
class Bullets:
    """A bulleted list; items starting with two spaces are sub-items of the one before."""

    items: list[str]


@dataclass
class Table:
    """A table of already formatted cells."""

    frame: pd.DataFrame
    caption: str = ""


@dataclass
class FigureBlock:
    """A figure: its files on disk by format, relative to the report (both pages link them)."""

    caption: str
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class Contents:
    """A table of contents: the level-1 and level-2 headings that follow it, as links."""

    title: str = "Contents"


Block = Union[Heading, Paragraph, Bullets, Table, FigureBlock, Contents]


def anchor(text: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", text.lower().replace("`", ""))
    return text.strip().replace(" ", "-")


def _contents(blocks: Sequence[Block], start: int) -> list[tuple[int, str]]:
    return [(b.level, b.text) for b in blocks[start:] if isinstance(b, Heading) and b.level <= 2]


def pct(value: float | None, digits: int = 2) -> str:
    """An error fraction as a percentage without its sign ('1.23'), '–' when missing or not finite (the report's cells)."""
    return percent(value, digits, unit="", missing="–")


def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    """Render blocks as GitHub-flavoured Markdown."""
    parts = []
    for index, block in enumerate(blocks):
        if isinstance(block, Contents):
            parts.append(f"**{block.title}**: " + " · ".join(
                f"[{text}](#{anchor(text)})" if level == 2 else f"**[{text}](#{anchor(text)})**"
                for level, text in _contents(blocks, index + 1)))
        elif isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"  - {item.strip()}" if item.startswith("  ") else f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            frame = block.frame
            lines = ["| " + " | ".join(_md_cell(c) for c in frame.columns) + " |",
                     "|" + "|".join("---" for _ in frame.columns) + "|"]
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
            parts.append(("*" + block.caption + "*\n\n" if block.caption else "") + "\n".join(lines))
        elif isinstance(block, FigureBlock):
            main = block.files.get("png") or block.files.get("svg") or next(iter(block.files.values()), "")
            others = ", ".join(f"[{fmt}]({path})" for fmt, path in block.files.items() if path != main)
            parts.append(f"![{block.caption}]({main})\n\n*{block.caption}*" + (f" ({others})" if others else ""))
    return "\n\n".join(parts) + "\n"


def _inline_html(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", text)


def _html_list(items: Sequence[str]) -> str:
    parts, open_sub = ["<ul>"], False
    for item in items:
        sub = item.startswith("  ")
        if sub and not open_sub:
            parts[-1] = parts[-1].removesuffix("</li>") + "<ul>"
            open_sub = True
        elif not sub and open_sub:
            parts.append("</ul></li>")
            open_sub = False
        parts.append(f"<li>{_inline_html(item.strip())}</li>")
    if open_sub:
        parts.append("</ul></li>")
    return "".join(parts) + "</ul>"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
code { background: #f5f5f5; padding: 0 0.2em; }
nav { background: #f8f8f8; border: 1px solid #ddd; padding: 0.5em 1em; margin: 1em 0; }
nav ul { margin: 0.3em 0; padding-left: 1.2em; columns: 2; }
nav li.l1 { font-weight: bold; list-style: none; margin-left: -1.2em; }
em { color: #666; }
"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    """Render blocks as one HTML page; figures are linked files (relative to the page), headings have anchors."""
    body = []
    for index, block in enumerate(blocks):
        if isinstance(block, Contents):
            items = "".join(f'<li class="l{level}"><a href="#{anchor(text)}">{_inline_html(text)}</a></li>'
                            for level, text in _contents(blocks, index + 1))
            body.append(f'<nav><strong>{html.escape(block.title)}</strong><ul>{items}</ul></nav>')
        elif isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f'<h{level} id="{anchor(block.text)}">{_inline_html(block.text)}</h{level}>')
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append(_html_list(block.items))
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in block.frame.columns)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(str(v))}</td>" for v in row) + "</tr>"
                           for row in block.frame.itertuples(index=False))
            caption = f"<caption>{_inline_html(block.caption)}</caption>" if block.caption else ""
            body.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, FigureBlock):
            links = " ".join(f'<a href="{html.escape(p)}">{fmt}</a>' for fmt, p in block.files.items())
            main = block.files.get("png") or block.files.get("svg")
            image = (f'<a href="{html.escape(main)}"><img loading="lazy" alt="{html.escape(block.caption)}" '
                     f'src="{html.escape(main)}"></a>') if main else ""
            body.append(f"<figure>{image}<figcaption>{_inline_html(block.caption)}"
                        f"{' (files: ' + links + ')' if links else ''}</figcaption></figure>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(blocks: Sequence[Block], out: Path, title: str) -> Path:
    """Write out/report.md and out/report.html; returns report.md."""
    (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(to_html(blocks, title), encoding="utf-8")
    return out / "report.md"
