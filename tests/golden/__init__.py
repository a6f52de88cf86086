"""Golden files: what mlcd writes for a fixed project and bundle, compared byte for byte.

`tests/golden/cases.py` produces every document (SARIF, findings.json, the stage summaries,
the model card, the run page's structure, the PR comment) from fixed inputs, in-process;
`tests/golden/normalise.py` strips what depends on the machine (times, durations, paths,
tool versions, digests). `make golden` rewrites `tests/golden/expected/`;
`tests/unit/test_golden.py` compares.
"""
