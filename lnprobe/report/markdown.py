"""Reports as Markdown and a self-contained HTML page rendered from it (markdown-it-py, CommonMark with
tables): a table of contents from the `##` headings, PNG figures embedded where the Markdown places them
(so the page can be mailed or moved alone), and a provenance section with every field recorded."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = (
    "body{font-family:sans-serif;max-width:62em;margin:1.5em auto;padding:0 1em;line-height:1.45}"
    "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px}"
    "th{background:#eef}code{background:#f4f4f4;padding:0 3px}img{max-width:100%}"
    "nav{background:#f8f8f8;padding:0.5em 1em;border:1px solid #ddd}"
)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def provenance_lines(prov: dict) -> list[str]:
    """Markdown lines of every provenance field (versions one per package)."""
    lines = []
    for key, value in prov.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
            lines.append(f"- {key}: {shown or '-'}")
        else:
            lines.append(f"- {key}: `{value}`" if key == "git_sha" else f"- {key}: {value}")
    return lines


def render_html(markdown: str, base: Path, title: str) -> str:
    """`markdown` as a standalone HTML page; images with a relative path are read from `base` and
    embedded as data URIs, `##` headings get anchors and a table of contents."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    toc = []

    def anchor(match: re.Match) -> str:
        text = re.sub(r"<[^>]+>", "", match.group(1))
        toc.append((slug(text), text))
        return f"<h2 id='{slug(text)}'>{match.group(1)}</h2>"

    body = re.sub(r"<h2>(.*?)</h2>", anchor, body)
    body = re.sub(r'<img src="([^"]+)"', lambda m: f'<img src="{_embedded(m.group(1), base)}"', body)
    nav = "".join(f"<li><a href='#{s}'>{t}</a></li>" for s, t in toc)
    contents = f"<nav><strong>Contents</strong><ul>{nav}</ul></nav>" if toc else ""
    head = f"<head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head>"
    first = body.find("</h1>")
    body = body[: first + 5] + contents + body[first + 5 :] if first >= 0 else contents + body
    return f"<!doctype html><html>{head}<body>{body}</body></html>\n"


def _embedded(src: str, base: Path) -> str:
    path = base / html.unescape(src)
    if src.startswith(("data:", "http:", "https:")) or path.suffix != ".png" or not path.is_file():
        return src
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_pages(markdown: str, out: Path, title: str, stem: str = "report") -> tuple[Path, Path]:
    """OUT/report.md and OUT/report.html."""
    md, page = out / f"{stem}.md", out / f"{stem}.html"
    md.write_text(markdown)
    page.write_text(render_html(markdown, out, title))
    return md, page
