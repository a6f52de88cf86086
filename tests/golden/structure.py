"""An HTML page reduced to its structure: the tag tree with ids and classes, and the text
with every number replaced by `#`, so a golden file shows what the page says and how it is
built without depending on the run's figures, times or paths."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_NUMBER = re.compile(r"[-+]?\d+([.,:]\d+)*")
# drawing primitives: their coordinates say nothing about the page's structure
_SHAPES = frozenset({"rect", "line", "path", "circle", "polyline", "polygon", "ellipse"})


class _Outline(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.stack: list[str] = []
        self.skip = 0

    def _indent(self) -> str:
        return "  " * len(self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in _SHAPES:
            return
        label = tag
        if found.get("id"):
            label += f"#{found['id']}"
        if found.get("class"):
            label += "".join(f".{c}" for c in (found["class"] or "").split())
        for key in ("href", "aria-label", "alt", "role", "lang"):
            value = found.get(key)
            if value and not value.startswith("data:"):
                label += f" {key}={_NUMBER.sub('#', value)!r}"
        self.lines.append(self._indent() + label)
        if tag in ("style", "script"):
            self.skip += 1
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and tag not in _SHAPES and self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or tag in _SHAPES:
            return
        if tag in ("style", "script"):
            self.skip = max(0, self.skip - 1)
        while self.stack:
            if self.stack.pop() == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        text = " ".join(data.split())
        if text:
            self.lines.append(self._indent() + '"' + _NUMBER.sub("#", text) + '"')


def outline(page: str) -> str:
    """The structure of `page`, one node a line."""
    parser = _Outline()
    parser.feed(page)
    parser.close()
    return "\n".join(parser.lines) + "\n"
