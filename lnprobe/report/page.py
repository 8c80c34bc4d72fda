"""Interactive HTML figures (plotly) that open offline: every page of a results tree loads the one
plotly.min.js at the tree's root (`lnprobe.io.results_tree`; outside a tree, the page's own folder) by a
relative path, so a moved or copied tree still opens."""

from __future__ import annotations

import os
from pathlib import Path

from lnprobe.io import tree_root

PLOTLY_JS = "plotly.min.js"


def plotly_js(folder: str | Path) -> Path:
    """The plotly.min.js of the results tree holding `folder`, written there the first time."""
    js = tree_root(folder) / PLOTLY_JS
    if not js.is_file():
        from plotly.offline import get_plotlyjs

        js.parent.mkdir(parents=True, exist_ok=True)
        tmp = js.with_name(f".{PLOTLY_JS}.{os.getpid()}.tmp")
        tmp.write_text(get_plotlyjs(), encoding="utf-8")
        os.replace(tmp, js)  # whole or not at all
    return js


def write_page(page, html: str | Path) -> Path:
    """Write the plotly figure `page` to `html`, its script loaded from the tree's plotly.min.js."""
    html = Path(html)
    src = Path(os.path.relpath(plotly_js(html.parent), html.parent)).as_posix()
    page.write_html(html, include_plotlyjs=src)
    return html
