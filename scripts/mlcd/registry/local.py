"""The local registry backend: a folder (default `.mlcd-registry/` beside mlcd.yaml).

Layout::

    <root>/versions/v1/record.json       immutable: version, metadata, metrics, verdict, digests
    <root>/versions/v1/model.skops       immutable (read-only), with any extra files
    <root>/versions/v1/attachments.json  facts added later (image digest, deployments)
    <root>/aliases.json                  {"champion": {"version": "v1", "at": …, "history": […]}}
    <root>/.lock                         serialises writers (several runs at once)

A version folder is created with `mkdir`, which fails if it exists, so two writers can
never produce the same version; files are written atomically and made read-only.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlcd.contracts import MODEL_FILE
from mlcd.errors import GateFailed, UserInputError
from mlcd.evidence import utc_now, write_json_atomic
from mlcd.modelio import file_sha256
from mlcd.registry.base import ModelRegistry, ModelVersion, NewVersion
from mlcd.rollout.state import process_start

_VERSION = re.compile(r"^v([1-9][0-9]*)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError(f"model registry: cannot read {path} ({exc})") from exc


class LocalRegistry(ModelRegistry):
    """A registry in a folder on this machine."""

    backend = "local"
    reserved_files = frozenset({"record.json", "attachments.json", MODEL_FILE})

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def claim_release(self, version: str, *, commit: str) -> bool:
        """`releases/<version>/claim.json`, created exclusively (O_EXCL): one taker only."""
        folder = self.root / "releases" / version
        with self._locked():
            folder.mkdir(parents=True, exist_ok=True)
            try:
                self._write_claim(folder, version, commit)
            except FileExistsError:
                return False
        return True

    def reclaim_release(self, version: str, *, commit: str) -> bool:
        """Rewrite `releases/<version>/claim.json` when the process that wrote it, on this
        host, is gone (pid and start time) and no release was recorded: an interrupted
        release. A claim from another host, or from a running process, is never taken."""
        folder = self.root / "releases" / version
        with self._locked():
            claim = _read_json(folder / "claim.json")
            if not isinstance(claim, dict) or (folder / "release.json").exists():
                return False
            if claim.get("host") != socket.gethostname():
                return False
            pid, start = int(claim.get("pid") or 0), str(claim.get("start") or "")
            if pid > 0 and process_start(pid) == start:
                return False  # still at work
            (folder / "claim.json").unlink()
            self._write_claim(folder, version, commit)
        return True

    @staticmethod
    def _write_claim(folder: Path, version: str, commit: str) -> None:
        fd = os.open(folder / "claim.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        me = os.getpid()
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "version": version,
                    "commit": commit,
                    "pid": me,
                    "start": process_start(me),
                    "host": socket.gethostname(),
                },
                handle,
            )

    # ------------------------------------------------------------------ helpers

    @property
    def _versions_dir(self) -> Path:
        return self.root / "versions"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            handle = (self.root / ".lock").open("a")
        except OSError as exc:
            raise UserInputError(
                f"model registry: cannot use the folder {self.root} ({exc.strerror})",
                hint="set registry.path in mlcd.yaml or MLCD_REGISTRY_PATH to a writable folder",
            ) from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _folder(self, version: str) -> Path:
        if not _VERSION.match(version):
            raise UserInputError(f"`{version}` is not a model version (they look like v1, v2, …)")
        folder = self._versions_dir / version
        if not (folder / "record.json").is_file():
            known = ", ".join(v.version for v in self.versions()[-10:]) or "none yet"
            raise UserInputError(
                f"model registry {self.root} has no version {version}",
                hint=f"versions there: {known}",
            )
        return folder

    def _load(self, folder: Path) -> ModelVersion:
        record = _read_json(folder / "record.json")
        if not isinstance(record, dict):
            raise UserInputError(f"model registry: {folder / 'record.json'} is not a record")
        attachments = _read_json(folder / "attachments.json") or {}
        return ModelVersion.from_record(record, attachments)

    def _numbers(self) -> list[int]:
        if not self._versions_dir.is_dir():
            return []
        numbers = []
        for child in self._versions_dir.iterdir():
            match = _VERSION.match(child.name)
            if match and (child / "record.json").is_file():
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    # ------------------------------------------------------------------ interface

    def _store(self, new: NewVersion) -> ModelVersion:
        with self._locked():
            self._versions_dir.mkdir(parents=True, exist_ok=True)
            number = (max(self._numbers(), default=0)) + 1
            while True:
                folder = self._versions_dir / f"v{number}"
                try:
                    folder.mkdir()
                    break
                except FileExistsError:  # a half-written version left by a crash
                    number += 1
            version = f"v{number}"
            shutil.copyfile(new.model_file, folder / MODEL_FILE)
            for name, path in new.extra.items():
                shutil.copyfile(path, folder / name)
            record = new.record(version, file_sha256(folder / MODEL_FILE))
            write_json_atomic(folder / "record.json", record)
            for name in [MODEL_FILE, *new.extra, "record.json"]:
                (folder / name).chmod(0o444)
            return self._load(folder)

    def get(self, version: str) -> ModelVersion:
        return self._load(self._folder(version))

    def versions(self) -> list[ModelVersion]:
        return [self._load(self._versions_dir / f"v{n}") for n in self._numbers()]

    def latest(self) -> ModelVersion | None:
        numbers = self._numbers()
        return self._load(self._versions_dir / f"v{numbers[-1]}") if numbers else None

    def _aliases_raw(self) -> dict[str, Any]:
        data = _read_json(self.root / "aliases.json")
        return data if isinstance(data, dict) else {}

    def set_alias(self, name: str, version: str) -> None:
        if not _NAME.match(name):
            raise UserInputError(f"model registry: `{name}` is not a valid alias name")
        with self._locked():
            self._folder(version)
            data = self._aliases_raw()
            entry = data.get(name) or {"history": []}
            now = utc_now()
            entry["history"] = [*entry.get("history", []), {"version": version, "at": now}]
            entry["version"], entry["at"] = version, now
            data[name] = entry
            write_json_atomic(self.root / "aliases.json", data)

    def aliases(self) -> dict[str, str]:
        return {str(k): str(v["version"]) for k, v in self._aliases_raw().items() if "version" in v}

    def alias_history(self, name: str) -> list[dict[str, str]]:
        entry = self._aliases_raw().get(name) or {}
        return [
            {"version": str(h["version"]), "at": str(h["at"])} for h in entry.get("history", [])
        ]

    def attach(self, version: str, key: str, value: Any) -> ModelVersion:
        with self._locked():
            folder = self._folder(version)
            path = folder / "attachments.json"
            data = _read_json(path) or {}
            value = json.loads(json.dumps(value, default=str))
            if key in data and data[key] != value:
                raise UserInputError(
                    f"model registry: version {version} already has {key} = {data[key]!r}; "
                    "a version's recorded facts are never overwritten",
                    hint="register a new version for a new model or image",
                )
            data[key] = value
            write_json_atomic(path, data)
            return self._load(folder)

    def append(self, version: str, key: str, item: Any) -> ModelVersion:
        with self._locked():
            folder = self._folder(version)
            path = folder / "attachments.json"
            data = _read_json(path) or {}
            current = data.get(key, [])
            if not isinstance(current, list):
                raise UserInputError(
                    f"model registry: {key} of version {version} is not a list; cannot append"
                )
            data[key] = [*current, json.loads(json.dumps(item, default=str))]
            write_json_atomic(path, data)
            return self._load(folder)

    def model_file(self, version: str, workdir: Path) -> Path:  # noqa: ARG002 - kept locally
        folder = self._folder(version)
        record = self._load(folder)
        path = folder / MODEL_FILE
        actual = file_sha256(path)
        if actual != record.model_sha256:
            raise GateFailed(
                f"model registry: the model file of {version} has changed since it was "
                f"registered (sha256 {actual[:12]}… ≠ {record.model_sha256[:12]}…)",
                hint=f"{path} was modified; restore it or register a new version",
            )
        return path

    def keep_evidence(self, release: str, tarball: Path) -> str:
        """A read-only copy in `releases/<release>/` beside the versions."""
        home = self.root / "releases" / release
        home.mkdir(parents=True, exist_ok=True)
        target = home / "evidence.tar.gz"
        target.unlink(missing_ok=True)  # read-only, left by an interrupted release (resumed)
        shutil.copyfile(tarball, target)
        target.chmod(0o444)
        return str(target)

    def record_release(self, release: str, record: dict[str, Any]) -> None:
        write_json_atomic(self.root / "releases" / release / "release.json", record)

    def version_file(self, version: str, name: str) -> Path:
        """A stored file of a version (model card, verdict, …) in this folder."""
        path = self._folder(version) / name
        if not path.is_file():
            raise UserInputError(f"model registry: version {version} has no file `{name}`")
        return path
