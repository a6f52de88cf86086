"""benchmarks/drill.py's counting: what is handled, the figure line and the table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def drill() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "drill.py"
    spec = importlib.util.spec_from_file_location("drill_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_bad_http_input_is_handled_only_by_a_4xx_with_a_json_error(drill: ModuleType) -> None:
    handled = drill.http_handled
    assert handled(422, "application/json", b'{"error": "row 1: not a number"}')
    assert not handled(422, "application/json", b'{"detail": "x"}')  # no `error`
    assert not handled(400, "text/html", b"<html>400 Bad Request</html>")  # nginx's own page
    assert not handled(400, "application/json", b"not json")
    assert not handled(500, "application/json", b'{"error": "the model failed"}')
    assert not handled(200, "application/json", b'{"predictions": [1]}')  # a 2xx to garbage
    # a request a correct client may send is handled by the status it is due
    assert handled(200, "application/json", b"{}", want=200)
    assert not handled(415, "application/json", b'{"error": "gzip"}', want=200)
    assert handled(404, "application/json", b'{"error": "no version 999"}', want=404)
    assert not handled(400, "application/json", b'{"error": "x"}', want=404)


def test_a_bad_cli_input_is_handled_only_by_exit_2_naming_the_key(drill: ModuleType) -> None:
    handled = drill.cli_handled
    assert handled(2, "mlcd.yaml:7: canary.steps must rise", "steps")
    assert not handled(2, "something is wrong", "steps")  # does not say what
    assert not handled(1, "mlcd.yaml:7: steps", "steps")  # a gate's exit code
    assert not handled(3, "steps", "steps")
    assert not handled(2, "Traceback (most recent call last): steps", "steps")


def test_the_figure_line_and_the_table_count_each_kind(drill: ModuleType) -> None:
    tally = drill.Tally()
    tally.add("fault", "restart", "staging", ok=True)
    tally.add("fault", "restart", "production", ok=False, detail="not back in 60s")
    tally.add("fault", "pipelining", "50 requests", ok=True)
    for i in range(3):
        tally.add("input", "HTTP: shapes", f"body {i}", ok=i != 1, detail="HTTP 500")
    assert drill.figure_line(tally.cases) == (
        "faults: 3 injected, 2 survived with nothing lost; "
        "bad inputs: 3 sent, 2 answered with a 4xx or exit 2"
    )
    rows = drill.table(tally.cases)
    assert rows[2] == "| fault | restart | 2 | 1 | production: not back in 60s |"
    assert rows[3] == "| fault | pipelining | 1 | 1 | - |"
    assert rows[4] == "| input | HTTP: shapes | 3 | 2 | body 1: HTTP 500 |"
