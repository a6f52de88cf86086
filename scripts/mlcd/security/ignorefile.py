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


def load_ignore_file(path: Path, *, shown_as: str | None = None) -> list[IgnoreEntry]:
    """Read and check the ignore file; no file means no suppressions."""
    name = shown_as or str(path)
    if not path.is_file():
        return []
    try:
        text = path.read_text("utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read the ignore file {name}: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        raise UserInputError(
            f"{where}: invalid YAML in the ignore file: {getattr(exc, 'problem', exc)}"
        ) from exc
    if node is None:
        return []
    items: list[yaml.Node]
    if isinstance(node, yaml.MappingNode):
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
        items = list(seq.value)
    elif isinstance(node, yaml.SequenceNode):
        items = list(node.value)
    else:
        raise UserInputError(
            f"{name}:1: the ignore file must hold `ignores:` followed by a list of entries"
        )

    problems: list[str] = []
    entries: list[IgnoreEntry] = []
    for index, item in enumerate(items):
        line = item.start_mark.line + 1
        label = f"{name}:{line}: ignores[{index}]"
        if not isinstance(item, yaml.MappingNode):
            problems.append(f"{label}: an entry is a mapping with id, reason and expires")
            continue
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
        missing = [
            k
            for k in ("id", "reason", "expires")
            if values.get(k) in (None, "")
            or (isinstance(values.get(k), str) and not str(values.get(k)).strip())
        ]
        for key in missing:
            why = {
                "id": "which finding it suppresses",
                "reason": "why the finding is acceptable",
                "expires": "the date (YYYY-MM-DD) after which it stops suppressing",
            }[key]
            problems.append(f"{label}: missing required `{key}` ({why})")
        if missing:
            continue
        expires = _date(values["expires"])
        if expires is None:
            problems.append(
                f"{label}: `expires` must be a date like 2025-12-31, got {values['expires']!r}"
            )
            continue
        package = values.get("package")
        owner = values.get("owner")
        entries.append(
            IgnoreEntry(
                id=str(values["id"]).strip(),
                reason=str(values["reason"]).strip(),
                expires=expires,
                package=str(package).strip() if package not in (None, "") else None,
                owner=str(owner).strip() if owner not in (None, "") else None,
                file=name,
                line=line,
            )
        )
    if problems:
        raise UserInputError(
            f"the ignore file {name} has {len(problems)} problem{'s' * (len(problems) != 1)}",
            problems=problems,
            hint="every entry needs `id`, `reason` and `expires` (a date); "
            "`package` and `owner` are optional",
        )
    return entries
