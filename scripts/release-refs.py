#!/usr/bin/env python3
"""Point mlcd's own action references at one ref: the release tag being cut.

The reusable workflow (.github/workflows/deliver.yml) runs in the caller's repository, so a
relative `uses: ./actions/lint` would look in the caller's checkout. It therefore names its
actions fully, `org/mlcd/actions/<name>@<ref>`, and this script rewrites every such `<ref>`
(in the workflow and in the actions) to the release tag before the tag is made, the way
slsa-github-generator does. With --check it changes nothing and fails when a reference
points elsewhere (CI runs it on main with --ref main and on tags with the tag).

    python scripts/release-refs.py --ref v1.4.0            # before tagging v1.4.0
    python scripts/release-refs.py --ref main --check      # CI on the default branch
    python scripts/release-refs.py --ref v1 --repo me/mlcd # a fork published as me/mlcd
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


DEFAULT_REPO = "org/mlcd"
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def kit_files(root: Path) -> list[Path]:
    """The files whose `uses:` lines must follow the release: the workflow and the actions."""
    files = sorted((root / ".github" / "workflows").glob("deliver.y*ml"))
    files += sorted((root / "actions").glob("*/action.y*ml"))
    return files


def _pattern(repo: str) -> re.Pattern[str]:
    return re.compile(
        r"(?P<head>^[ \t]*(?:-[ \t]+)?uses:[ \t]*['\"]?)(?P<repo>" + re.escape(repo) + r")"
        r"(?P<path>/(?:actions/[A-Za-z0-9._-]+|\.github/workflows/[A-Za-z0-9._-]+\.ya?ml))"
        r"@(?P<ref>[A-Za-z0-9._/-]+)",
        re.MULTILINE,
    )


def rewrite(text: str, *, repo: str, ref: str, new_repo: str | None = None) -> tuple[str, int]:
    """`text` with every kit reference at `ref` (and `new_repo`); how many were changed."""
    changed = 0

    def swap(match: re.Match[str]) -> str:
        nonlocal changed
        target_repo = new_repo or match.group("repo")
        if match.group("ref") != ref or target_repo != match.group("repo"):
            changed += 1
        return f"{match.group('head')}{target_repo}{match.group('path')}@{ref}"

    return _pattern(repo).sub(swap, text), changed


def references(text: str, *, repo: str) -> list[tuple[int, str, str]]:
    """(line, path, ref) of every kit reference in `text`."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        found += [(number, m.group("path"), m.group("ref")) for m in _pattern(repo).finditer(line)]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the tag (or branch) to point at, e.g. v1.4.0")
    parser.add_argument(
        "--repo", default=None, help=f"publish under this owner/name instead of {DEFAULT_REPO}"
    )
    parser.add_argument("--from-repo", default=DEFAULT_REPO, help="the owner/name now in the files")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on a mismatch")
    args = parser.parse_args(argv)
    if not _REF.match(args.ref):
        _err(f"release-refs: `{args.ref}` is not a git ref")
        return 2
    files = kit_files(args.root)
    if not files:
        _err(f"release-refs: no deliver.yml or actions/*/action.yml under {args.root}")
        return 2
    wanted_repo = args.repo or args.from_repo
    problems: list[str] = []
    total = 0
    for path in files:
        text = path.read_text("utf-8")
        rel = path.relative_to(args.root)
        if args.check:
            for line, sub, ref in references(text, repo=args.from_repo):
                if ref != args.ref or wanted_repo != args.from_repo:
                    problems.append(f"{rel}:{line}: {args.from_repo}{sub}@{ref} is not @{args.ref}")
            continue
        new_text, changed = rewrite(text, repo=args.from_repo, ref=args.ref, new_repo=args.repo)
        if changed:
            path.write_text(new_text, "utf-8")
            _out(f"{rel}: {changed} reference(s) now @{args.ref}")
        total += changed
    if args.check:
        for problem in problems:
            _err(problem)
        if problems:
            _err(
                f"release-refs: {len(problems)} reference(s) not at @{args.ref}; run "
                f"scripts/release-refs.py --ref {args.ref}"
            )
            return 1
        _out(f"release-refs: every kit reference in {len(files)} files is @{args.ref}")
        return 0
    _out(f"release-refs: {total} reference(s) rewritten in {len(files)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
