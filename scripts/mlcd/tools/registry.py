"""The OCI registry adapter: ask a registry over its HTTP API what a tag points at.

`tag_digest` asks only registries served over plain HTTP on this machine (127.0.0.1,
localhost), such as the local one; for any other registry it answers None (unknown), and
pushes rely on the registry's own tag-immutability settings. The manifest and blob calls
(signatures and attestations stored beside an image, in cosign's tag scheme) speak plain
HTTP to those hosts and HTTPS with the bearer-token handshake, using the credentials of
`docker login`, to any other.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import ssl
import urllib.parse
from pathlib import Path

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


# --------------------------------------------------------------------------------------
# Manifests and blobs (signatures and attestations beside an image, `mlcd.signing`)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_CHUNK = 1 << 20


class RegistryError(Exception):
    """A registry answered something other than what the API promises (kept apart from
    mlcd's exit-code errors: the caller says what it was doing)."""


def _credentials(host: str) -> str | None:
    """`user:password` (base64, as Docker stores it) of `docker login HOST`, if any."""
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(config.read_text("utf-8")).get("auths") or {}
    except (OSError, ValueError):
        return None
    entry = auths.get(host) or auths.get(f"https://{host}") or {}
    auth = entry.get("auth") if isinstance(entry, dict) else None
    return str(auth) if auth else None


class _Client:
    """The distribution API of one registry: plain HTTP for 127.0.0.1/localhost, HTTPS
    (with the bearer-token handshake and the credentials of `docker login`) otherwise."""

    def __init__(self, name: str, *, timeout: float = 30) -> None:
        host, _, repo = name.partition("/")
        if not repo:
            raise RegistryError(f"`{name}` names no registry host (HOST/REPOSITORY)")
        self.host, self.repo, self.timeout = host, repo, timeout
        self.local = host.split(":")[0] in _LOCAL_HOSTS
        self.token: str | None = None

    def _connection(self, netloc: str) -> http.client.HTTPConnection:
        hostname, _, port = netloc.partition(":")
        if self.local:
            return http.client.HTTPConnection(hostname, int(port or 80), timeout=self.timeout)
        return http.client.HTTPSConnection(
            hostname, int(port or 443), timeout=self.timeout, context=ssl.create_default_context()
        )

    def _authorize(self, challenge: str) -> None:
        if not challenge.lower().startswith("bearer "):
            raise RegistryError(f"{self.host} asks for an authentication mlcd does not speak")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = urllib.parse.urlsplit(fields.get("realm", ""))
        if realm.scheme != "https" or not realm.netloc:
            raise RegistryError(f"{self.host}: unusable token realm {fields.get('realm')!r}")
        query = urllib.parse.urlencode(
            {k: v for k, v in fields.items() if k in ("service", "scope")}
            | {"scope": f"repository:{self.repo}:pull,push"}
        )
        conn = http.client.HTTPSConnection(
            realm.netloc, timeout=self.timeout, context=ssl.create_default_context()
        )
        headers = {}
        basic = _credentials(self.host)
        if basic:
            headers["Authorization"] = f"Basic {basic}"
        try:
            conn.request("GET", f"{realm.path}?{query}", headers=headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RegistryError(f"{self.host}: no token ({response.status}); `docker login` first")
        data = json.loads(body)
        self.token = str(data.get("token") or data.get("access_token") or "")

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        netloc: str | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        for _attempt in range(2):
            sent = dict(headers or {})
            if self.token:
                sent["Authorization"] = f"Bearer {self.token}"
            conn = self._connection(netloc or self.host)
            try:
                conn.request(method, path, body=body, headers=sent)
                response = conn.getresponse()
                data = response.read()
            except OSError as exc:
                raise RegistryError(f"{self.host} did not answer ({exc})") from exc
            finally:
                conn.close()
            answer = {k.lower(): v for k, v in response.getheaders()}
            if response.status == 401 and self.token is None and not self.local:
                self._authorize(answer.get("www-authenticate", ""))
                continue
            return response.status, answer, data
        return response.status, answer, data


def get_manifest(name: str, reference: str) -> tuple[bytes, str] | None:
    """The manifest of `name` at a tag or digest and its media type; None if absent."""
    client = _Client(name)
    status, headers, body = client.request(
        "GET", f"/v2/{client.repo}/manifests/{reference}", headers={"Accept": _ACCEPT}
    )
    if status == 404:
        return None
    if status != 200:
        raise RegistryError(f"GET manifest {name}:{reference}: HTTP {status}")
    return body, headers.get("content-type", "")


def get_blob(name: str, digest: str, *, limit: int = 512 << 20) -> bytes:
    """A blob's bytes, checked against its digest (redirects to a storage URL followed)."""
    client = _Client(name)
    status, headers, body = client.request("GET", f"/v2/{client.repo}/blobs/{digest}")
    if status in (301, 302, 307) and headers.get("location"):
        target = urllib.parse.urlsplit(headers["location"])
        status, headers, body = client.request(
            "GET", target.path + (f"?{target.query}" if target.query else ""), netloc=target.netloc
        )
    if status != 200:
        raise RegistryError(f"GET blob {name}@{digest}: HTTP {status}")
    if len(body) > limit:
        raise RegistryError(f"blob {digest} is larger than {limit} bytes")
    if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        raise RegistryError(f"blob {digest} of {name} does not match its digest")
    return body


def put_blob(name: str, data: bytes) -> str:
    """Upload `data` as a blob (monolithic upload); returns its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client = _Client(name)
    status, _, _ = client.request("HEAD", f"/v2/{client.repo}/blobs/{digest}")
    if status == 200:
        return digest
    status, headers, _ = client.request("POST", f"/v2/{client.repo}/blobs/uploads/")
    if status != 202 or "location" not in headers:
        raise RegistryError(f"POST blob upload to {name}: HTTP {status}")
    target = urllib.parse.urlsplit(headers["location"])
    query = [*urllib.parse.parse_qsl(target.query), ("digest", digest)]
    status, _, _ = client.request(
        "PUT",
        f"{target.path}?{urllib.parse.urlencode(query)}",
        body=data,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        netloc=target.netloc or None,
    )
    if status != 201:
        raise RegistryError(f"PUT blob {digest} to {name}: HTTP {status}")
    return digest


def put_manifest(name: str, tag: str, manifest: bytes, media_type: str = OCI_MANIFEST) -> str:
    """Push a manifest under `tag`; returns its digest."""
    client = _Client(name)
    status, headers, _ = client.request(
        "PUT",
        f"/v2/{client.repo}/manifests/{tag}",
        body=manifest,
        headers={"Content-Type": media_type},
    )
    if status != 201:
        raise RegistryError(f"PUT manifest {name}:{tag}: HTTP {status}")
    return headers.get("docker-content-digest") or "sha256:" + hashlib.sha256(manifest).hexdigest()
