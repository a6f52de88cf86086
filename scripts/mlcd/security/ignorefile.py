"""The ignore file (`.mlcd-ignore.yaml`): suppressions that carry a reason and expire.

```yaml
ignores:
  - id: CVE-2024-12345          # the finding's ID (CVE, GHSA, secret rule, check, MLCD-…)
    package: openssl            # optional: package, callable or file; glob patterns work
    reason: not reachable: the server never opens TLS connections
    expires: 2025-12-31         # required: after this day the entry no longer suppresses
    owner: ml-platform          # optional
```

An entry without a reason or an expiry date is an input error (exit 2), reported with
its file and line; so is an unknown key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlcd.errors import UserInputError

_KEYS = ("id", "package", "reason", "expires", "owner")


@dataclass(frozen=True)
class IgnoreEntry:
    id: str
    reason: str
    expires: dt.date
    package: str | None = None
    owner: str | None = None
    file: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def expired(self, today: dt.date) -> bool:
        """Past its day: an entry still suppresses on the day it expires."""
        return today > self.expires

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "package": self.package,
            "reason": self.reason,
            "expires": self.expires.isoformat(),
            "owner": self.owner,
            "where": self.where,
        }


def _date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


_WHY = {
    "id": "which finding it suppresses",
    "reason": "why the finding is acceptable",
    "expires": "the date (YYYY-MM-DD) after which it stops suppressing",
}


def _compose(path: Path, name: str) -> yaml.Node | None:
    try:
        text = path.read_text("utf-8")
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read the ignore file {name}: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        raise UserInputError(
            f"{where}: invalid YAML in the ignore file: {getattr(exc, 'problem', exc)}"
        ) from exc


def _items(node: yaml.Node, name: str) -> list[yaml.Node]:
    """The entries' nodes: `ignores:` followed by a list, or a bare list."""
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if not isinstance(node, yaml.MappingNode):
        raise UserInputError(
            f"{name}:1: the ignore file must hold `ignores:` followed by a list of entries"
        )
    keys = {str(k.value): v for k, v in node.value}
    unknown = [k for k in keys if k != "ignores"]
    if unknown:
        raise UserInputError(
            f"{name}:{node.start_mark.line + 1}: unknown top-level key `{unknown[0]}` "
            "in the ignore file; it has one key, `ignores`, a list of entries"
        )
    seq = keys.get("ignores")
    if seq is None or (isinstance(seq, yaml.ScalarNode) and seq.value in ("", "null", "~")):
        return []
    if not isinstance(seq, yaml.SequenceNode):
        raise UserInputError(f"{name}:{seq.start_mark.line + 1}: `ignores` must be a list")
    return list(seq.value)


def _blank(value: object) -> bool:
    return value in (None, "") or (isinstance(value, str) and not value.strip())


def _entry(item: yaml.Node, index: int, name: str, problems: list[str]) -> IgnoreEntry | None:
    """One entry, or None with its problems added to `problems`."""
    line = item.start_mark.line + 1
    label = f"{name}:{line}: ignores[{index}]"
    if not isinstance(item, yaml.MappingNode):
        problems.append(f"{label}: an entry is a mapping with id, reason and expires")
        return None
    values: dict[str, Any] = {}
    for key_node, value_node in item.value:
        key = str(key_node.value)
        if key not in _KEYS:
            problems.append(
                f"{name}:{key_node.start_mark.line + 1}: ignores[{index}]: unknown key "
                f"`{key}` (known: {', '.join(_KEYS)})"
            )
            continue
        values[key] = yaml.safe_load(yaml.serialize(value_node))
    missing = [k for k in ("id", "reason", "expires") if _blank(values.get(k))]
    problems += [f"{label}: missing required `{key}` ({_WHY[key]})" for key in missing]
    if missing:
        return None
    expires = _date(values["expires"])
    if expires is None:
        problems.append(
            f"{label}: `expires` must be a date like 2025-12-31, got {values['expires']!r}"
        )
        return None
    package = values.get("package")
    owner = values.get("owner")
    return IgnoreEntry(
        id=str(values["id"]).strip(),
        reason=str(values["reason"]).strip(),
        expires=expires,
        package=str(package).strip() if package not in (None, "") else None,
        owner=str(owner).strip() if owner not in (None, "") else None,
        file=name,
        line=line,
    )


def load_ignore_file(path: Path, *, shown_as: str | None = None) -> list[IgnoreEntry]:
    """Read and check the ignore file; no file means no suppressions."""
    name = shown_as or str(path)
    if not path.is_file():
        return []
    node = _compose(path, name)
    if node is None:
        return []
    problems: list[str] = []
    found = [_entry(item, index, name, problems) for index, item in enumerate(_items(node, name))]
    if problems:
        raise UserInputError(
            f"the ignore file {name} has {len(problems)} problem{'s' * (len(problems) != 1)}",
            problems=problems,
            hint="every entry needs `id`, `reason` and `expires` (a date); "
            "`package` and `owner` are optional",
        )
    return [entry for entry in found if entry is not None]
