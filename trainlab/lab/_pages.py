"""The lab's other pages (lessons, runs & studies): one layout (``static/page.html``: the head, the header
with its navigation, the shared scripts) around each page's ``<main>`` (``static/<name>_main.html``)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

STATIC = Path(__file__).with_name("static")

__all__ = ["page_html"]


@cache
def page_html(name: str, title: str, script: str) -> str:
    """The whole HTML of page ``name``: the layout filled with its title, its main element and its script."""
    layout = (STATIC / "page.html").read_text(encoding="utf-8")
    layout = layout[layout.index("\n") + 1:]  # the layout's own comment line
    main = (STATIC / f"{name}_main.html").read_text(encoding="utf-8").rstrip("\n")
    return layout.replace("{title}", title).replace("{main}", main).replace("{script}", script)
