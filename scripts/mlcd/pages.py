"""The templates of mlcd's HTML pages (`data/templates/`), rendered with Jinja2.

Autoescape is on: a value is HTML-escaped unless the caller marks it `html(...)`, which is
done only for HTML that mlcd itself built from escaped parts (the charts, a table's cells).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from mlcd.evidence import STATUSES
from mlcd.presentation import STATUS_WORD

TEMPLATES = Path(__file__).parent / "data" / "templates"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.globals.update(statuses=STATUSES, status_word=STATUS_WORD)
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


@cache
def macros(name: str) -> Any:
    """A template's macros, to call from Python (each returns its HTML)."""
    return environment().get_template(name).module


def html(text: str) -> Markup:
    """HTML that mlcd built itself (its parts escaped): not escaped again."""
    # only HTML built by mlcd from escaped parts comes here
    return Markup(text)  # noqa: S704 # nosec B704


@cache
def static(name: str) -> str:
    """A file of `data/templates/` as it is (the page's CSS)."""
    return (TEMPLATES / name).read_text("utf-8")
