"""The documents mlcd writes, against the golden files in tests/golden/expected/.

A mismatch prints a unified diff. When the change is intended, `make golden` rewrites the
files (it runs this test with MLCD_UPDATE_GOLDEN=1); commit them with the change.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from tests.golden import cases

EXPECTED = Path(__file__).resolve().parents[1] / "golden" / "expected"
HINT = "run `make golden` if the change is intended, and commit tests/golden/expected/"


def _diff(name: str, want: str, got: str) -> str:
    return "".join(
        difflib.unified_diff(
            want.splitlines(keepends=True),
            got.splitlines(keepends=True),
            fromfile=f"golden/{name}",
            tofile=f"now/{name}",
        )
    )


@pytest.mark.unit
def test_documents_match_the_golden_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = cases.produce(tmp_path, monkeypatch)
    if os.environ.get("MLCD_UPDATE_GOLDEN") == "1":
        cases.write(docs, EXPECTED)
        return
    golden = cases.read(EXPECTED)
    problems = [f"golden/{name}: no longer produced" for name in sorted(set(golden) - set(docs))]
    problems += [
        f"now/{name}: produced, but has no golden file" for name in sorted(set(docs) - set(golden))
    ]
    problems += [
        _diff(name, golden[name], docs[name])
        for name in sorted(set(golden) & set(docs))
        if golden[name] != docs[name]
    ]
    assert not problems, "\n".join(problems) + f"\n{HINT}"
