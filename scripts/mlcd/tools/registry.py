"""The OCI registry adapter: ask a registry over its HTTP API what a tag points at.

Only for registries served over plain HTTP on this machine (127.0.0.1, localhost), such
as the local one; for any other registry `tag_digest` answers None (unknown), and
pushes rely on the registry's own tag-immutability settings.
"""

from __future__ import annotations

import http.client

_LOCAL_HOSTS = ("127.0.0.1", "localhost")
_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def split_repository(name: str) -> tuple[str, str] | None:
    """`127.0.0.1:5000/team/model` -> ("127.0.0.1:5000", "team/model"), local hosts only."""
    host, _, repo = name.partition("/")
    if not repo or host.split(":")[0] not in _LOCAL_HOSTS:
        return None
    return host, repo


def tag_digest(name: str, tag: str, *, timeout: float = 10) -> str | None:
    """The manifest digest a tag points at in a local registry; None if absent or unknown."""
    parts = split_repository(name)
    if parts is None:
        return None
    host, repo = parts
    hostname, _, port = host.partition(":")
    conn = http.client.HTTPConnection(hostname, int(port or 80), timeout=timeout)
    try:
        conn.request("HEAD", f"/v2/{repo}/manifests/{tag}", headers={"Accept": _ACCEPT})
        response = conn.getresponse()
        response.read()
    except OSError:
        return None
    finally:
        conn.close()
    if response.status != 200:
        return None
    return response.getheader("Docker-Content-Digest")
