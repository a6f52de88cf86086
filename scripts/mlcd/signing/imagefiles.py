"""The model files an image serves, read from its layers in the registry, before any
container starts: `/opt/model/*` (model.skops, model.json) and `/opt/project/*` (the
project's shipped modules), by their path under /opt, with their sha256.

Layers are read from the top down (an upper layer's file hides a lower one's, a whiteout
`.wh.NAME` deletes it) to the layer that made /opt/project (the Dockerfile copies the
project and the model last), so the large dependency layers below are never downloaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import PurePosixPath

from mlcd.tools import registry as oci

ROOTS = ("opt/model/", "opt/project/")
_LAST = "opt/project"


def _manifest(name: str, digest: str) -> dict[str, object]:
    found = oci.get_manifest(name, digest)
    if found is None:
        raise oci.RegistryError(f"{name}@{digest} is not in the registry")
    data = json.loads(found[0])
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise oci.RegistryError(f"{name}@{digest} is not a single-platform image manifest")
    return data


def served_files(name: str, digest: str) -> dict[str, str]:
    """`model/model.skops` … `project/pkg/mod.py` → sha256 hex, as the image has them."""
    layers = _manifest(name, digest)["layers"]
    assert isinstance(layers, list)  # noqa: S101 - checked in _manifest  # nosec B101
    found: dict[str, str] = {}
    hidden: set[str] = set()
    for layer in reversed(layers):
        blob = oci.get_blob(name, str(layer["digest"]))
        reached = False
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as archive:
            for member in archive:
                path = member.name.lstrip("./").rstrip("/")
                if path == _LAST:
                    reached = True
                base = PurePosixPath(path)
                if base.name.startswith(".wh."):
                    hidden.add(str(base.parent / base.name[4:]))
                    continue
                if not any(path.startswith(r) for r in ROOTS) or path in found or path in hidden:
                    continue
                if any(path.startswith(h + "/") or path == h for h in hidden):
                    continue
                if member.isfile():
                    handle = archive.extractfile(member)
                    if handle is not None:
                        found[path] = hashlib.sha256(handle.read()).hexdigest()
                elif not member.isdir():
                    found[path] = f"not a regular file ({member.type!r})"
        if reached:
            break
    return {path.removeprefix("opt/"): digest for path, digest in sorted(found.items())}
