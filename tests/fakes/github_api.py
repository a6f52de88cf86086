"""A local fake of the GitHub REST API, strict where GitHub is strict.

It answers the endpoints mlcd uses (releases and release assets, deployments and their
statuses, issue comments) with payloads shaped like GitHub's, and checks what GitHub checks:
the `Authorization: Bearer|token …` header, the repository in the path, required fields
(422 `missing_field`, `already_exists`, `invalid`), and, on the separate uploads host that a
release's `upload_url` names, the asset's `name` and a `Content-Type` header.

Faults can be queued (`fail_next`): a 502 with GitHub's HTML error page, or a secondary rate
limit (403 with `retry-after` and GitHub's message), to prove that a client survives them.

`FakeGitHub.handle` is the whole logic; it runs behind real HTTP servers on 127.0.0.1 (port 0,
`serve()`), or in-process behind a `requests` transport adapter (`adapter()`) for unit tests.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;.*)?$")
_DEPLOYMENT_STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}
_DOCS = "https://docs.github.com/rest"
BAD_GATEWAY_HTML = (
    "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete "
    "response.\n</body></html>\n"
)
SECONDARY_RATE_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID."
)


@dataclass
class Recorded:
    """One request the fake received (the Authorization header is kept out)."""

    method: str
    host: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status,
        json.dumps(payload).encode(),
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


def _validation(resource: str, code: str, field_name: str, message: str = "") -> Response:
    error: dict[str, Any] = {"resource": resource, "code": code, "field": field_name}
    if message:
        error["message"] = message
    return _json(
        422,
        {
            "message": "Validation Failed",
            "errors": [error],
            "documentation_url": _DOCS,
            "status": "422",
        },
    )


def _valid_tag(tag: str) -> bool:
    """git check-ref-format's rules for a tag name, which GitHub enforces (422 otherwise)."""
    bad_chars = set(" ~^:?*[\\") | {chr(c) for c in range(32)} | {"\x7f"}
    return not (
        any(ch in bad_chars for ch in tag)
        or ".." in tag
        or "@{" in tag
        or "//" in tag
        or tag.startswith(("/", "-", "."))
        or tag.endswith(("/", ".", ".lock"))
        or "/." in tag
        or tag == "@"
    )


class FakeGitHub:
    """The fake's state and request handling (thread-safe)."""

    def __init__(
        self,
        *,
        repository: str = "acme/model",
        token: str = "ghs_fakeTokenValue1234567890abcdef",  # noqa: S107 - a test token
        api_base: str = "http://api.fake",
        uploads_base: str = "http://uploads.fake",
    ) -> None:
        self.repository = repository
        self.token = token
        # tokens that read but never write (a Dependabot or fork pull request's GITHUB_TOKEN):
        # GitHub answers their writes 403 "Resource not accessible by integration"
        self.read_only_tokens: set[str] = set()
        self.api_base = api_base.rstrip("/")
        self.uploads_base = uploads_base.rstrip("/")
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.releases: list[dict[str, Any]] = []
        self.asset_content: dict[int, bytes] = {}
        self.deployments: list[dict[str, Any]] = []
        self.statuses: dict[int, list[dict[str, Any]]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.faults: list[tuple[str, str, Response]] = []
        # git refs (refs/tags/<name> → commit): POST git/refs refuses an existing one (422)
        # and a release's tag is created with it, as GitHub does
        self.refs: dict[str, str] = {}
        self._next_id = 1000

    # ------------------------------------------------------------------ test helpers

    def fail_next(self, method: str, path_pattern: str, kind: str = "502") -> None:
        """Answer the next matching request with a fault: `502`, `secondary` or `primary`."""
        if kind == "502":
            fault = Response(502, BAD_GATEWAY_HTML.encode(), {"Content-Type": "text/html"})
        elif kind == "secondary":
            fault = _json(
                403,
                {"message": SECONDARY_RATE_LIMIT, "documentation_url": _DOCS},
                {"retry-after": "1"},
            )
        elif kind == "primary":
            fault = _json(
                403,
                {
                    "message": "API rate limit exceeded for installation.",
                    "documentation_url": _DOCS,
                },
                {
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-reset": "0",
                },
            )
        elif kind == "429":
            fault = _json(429, {"message": "Too Many Requests"}, {"retry-after": "2"})
        else:
            raise ValueError(kind)
        with self.lock:
            self.faults.append((method, path_pattern, fault))

    def seen(self, method: str, path_pattern: str) -> list[Recorded]:
        return [
            r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)
        ]

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _user(self) -> dict[str, Any]:
        """Who the token is: an Actions installation token (ghs_…) is github-actions[bot]
        (GET /user refuses it); any other token is a user, mlcd-ci."""
        if self.token.startswith("ghs_"):
            return {
                "login": "github-actions[bot]",
                "id": 41898282,
                "type": "Bot",
                "html_url": "https://github.com/apps/github-actions",
            }
        return {
            "login": "mlcd-ci",
            "id": 7,
            "type": "User",
            "html_url": "https://github.com/mlcd-ci",
        }

    def add_comment(self, number: int, body: str, *, login: str) -> dict[str, Any]:
        """A comment somebody else wrote on issue/PR `number` (a test's setup)."""
        with self.lock:
            comment_id = self._id()
            comment = {
                "id": comment_id,
                "body": body,
                "user": {"login": login, "id": comment_id, "type": "User"},
                "html_url": f"https://github.com/{self.repository}/pull/{number}"
                f"#issuecomment-{comment_id}",
                "created_at": _now(),
                "updated_at": _now(),
            }
            self.comments.setdefault(number, []).append(comment)
            return comment

    # ------------------------------------------------------------------ dispatch

    def handle(
        self, method: str, url: str, headers: dict[str, str], body: bytes, *, uploads: bool
    ) -> Response:
        parts = urlsplit(url)
        lower = {k.lower(): v for k, v in headers.items()}
        record = Recorded(
            method,
            "uploads" if uploads else "api",
            parts.path,
            parse_qs(parts.query),
            {k: v for k, v in lower.items() if k != "authorization"},
            body,
        )
        with self.lock:
            self.requests.append(record)
            response = self._dispatch(method, parts.path, record, lower, uploads=uploads)
            record.status = response.status
        return response

    def _dispatch(
        self, method: str, path: str, rec: Recorded, headers: dict[str, str], *, uploads: bool
    ) -> Response:
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        read_only = value in self.read_only_tokens
        if scheme.lower() not in ("bearer", "token") or (value != self.token and not read_only):
            return _json(
                401, {"message": "Bad credentials", "documentation_url": _DOCS, "status": "401"}
            )
        if read_only and method not in ("GET", "HEAD"):
            return _json(
                403,
                {
                    "message": "Resource not accessible by integration",
                    "documentation_url": _DOCS,
                    "status": "403",
                },
            )
        for index, (f_method, pattern, fault) in enumerate(self.faults):
            if f_method == method and re.fullmatch(pattern, path):
                del self.faults[index]
                return fault
        if path == "/user" and method == "GET":
            if self.token.startswith("ghs_"):
                return _json(
                    403,
                    {
                        "message": "Resource not accessible by integration",
                        "documentation_url": _DOCS,
                        "status": "403",
                    },
                )
            return _json(200, self._user())
        prefix = f"/repos/{self.repository}/"
        if not path.startswith(prefix):
            return _json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"})
        rest = path[len(prefix) :]
        if uploads:
            match = re.fullmatch(r"releases/(\d+)/assets", rest)
            if method == "POST" and match:
                return self._upload(int(match.group(1)), rec, headers)
            return _json(404, {"message": "Not Found", "status": "404"})
        routes: list[tuple[str, str, Any]] = [
            ("GET", r"releases", self._list_releases),
            ("POST", r"releases", self._create_release),
            ("GET", r"releases/tags/(.+)", self._release_by_tag),
            ("GET", r"releases/(\d+)", self._release_by_id),
            ("GET", r"releases/assets/(\d+)", self._get_asset),
            ("DELETE", r"releases/assets/(\d+)", self._delete_asset),
            ("GET", r"deployments", self._list_deployments),
            ("POST", r"deployments", self._create_deployment),
            ("GET", r"deployments/(\d+)/statuses", self._list_statuses),
            ("POST", r"deployments/(\d+)/statuses", self._create_status),
            ("GET", r"issues/(\d+)/comments", self._list_comments),
            ("POST", r"issues/(\d+)/comments", self._create_comment),
            ("PATCH", r"issues/comments/(\d+)", self._update_comment),
            ("POST", r"git/refs", self._create_ref),
            ("GET", r"git/ref/(tags/.+)", self._get_ref),
        ]
        for r_method, pattern, handler in routes:
            match = re.fullmatch(pattern, rest)
            if match and r_method == method:
                result: Response = handler(rec, headers, *match.groups())
                return result
        return _json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"})

    def _body(self, rec: Recorded, headers: dict[str, str]) -> dict[str, Any] | Response:
        if "json" not in headers.get("content-type", ""):
            return _json(415, {"message": "Unsupported Media Type: send application/json"})
        try:
            data = json.loads(rec.body or b"{}")
        except ValueError:
            return _json(400, {"message": "Problems parsing JSON", "status": "400"})
        if not isinstance(data, dict):
            return _json(400, {"message": "Problems parsing JSON", "status": "400"})
        return data

    def _page(self, rec: Recorded, items: list[dict[str, Any]]) -> Response:
        per_page = min(int(rec.query.get("per_page", ["30"])[0]), 100)
        page = int(rec.query.get("page", ["1"])[0])
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            query = {k: v[0] for k, v in rec.query.items()}
            query["page"] = str(page + 1)
            headers["Link"] = f'<{self.api_base}{rec.path}?{urlencode(query)}>; rel="next"'
        return _json(200, chunk, headers)

    # ------------------------------------------------------------------ releases

    def _release_urls(self, release_id: int, tag: str) -> dict[str, str]:
        api = f"{self.api_base}/repos/{self.repository}"
        return {
            "url": f"{api}/releases/{release_id}",
            "assets_url": f"{api}/releases/{release_id}/assets",
            "upload_url": f"{self.uploads_base}/repos/{self.repository}/releases/{release_id}"
            "/assets{?name,label}",
            "html_url": f"https://github.com/{self.repository}/releases/tag/{tag}",
            "tarball_url": f"{api}/tarball/{tag}",
            "zipball_url": f"{api}/zipball/{tag}",
        }

    def _list_releases(self, rec: Recorded, _h: dict[str, str]) -> Response:
        return self._page(rec, list(reversed(self.releases)))

    def _create_release(self, rec: Recorded, headers: dict[str, str]) -> Response:
        data = self._body(rec, headers)
        if isinstance(data, Response):
            return data
        tag = data.get("tag_name")
        if not tag or not isinstance(tag, str):
            return _validation("Release", "missing_field", "tag_name")
        if not _valid_tag(tag):
            return _validation("Release", "invalid", "tag_name", f"{tag} is not a valid tag")
        if any(r["tag_name"] == tag for r in self.releases):
            return _validation("Release", "already_exists", "tag_name")
        self.refs.setdefault(f"refs/tags/{tag}", str(data.get("target_commitish") or "0" * 40))
        for key in ("draft", "prerelease"):
            if key in data and not isinstance(data[key], bool):
                return _validation("Release", "invalid", key)
        if data.get("make_latest", "true") not in ("true", "false", "legacy"):
            return _validation("Release", "invalid", "make_latest")
        release_id = self._id()
        release = {
            "id": release_id,
            "node_id": f"RE_{release_id}",
            **self._release_urls(release_id, tag),
            "tag_name": tag,
            "target_commitish": data.get("target_commitish", "main"),
            "name": data.get("name") or tag,
            "body": data.get("body", ""),
            "draft": data.get("draft", False),
            "prerelease": data.get("prerelease", False),
            "created_at": _now(),
            "published_at": _now(),
            "author": self._user(),
            "assets": [],
        }
        self.releases.append(release)
        return _json(201, release, {"Location": release["url"]})

    def _create_ref(self, rec: Recorded, headers: dict[str, str]) -> Response:
        data = self._body(rec, headers)
        if isinstance(data, Response):
            return data
        ref, sha = data.get("ref"), data.get("sha")
        if not isinstance(ref, str) or not ref.startswith("refs/") or ref.count("/") < 2:
            return _json(422, {"message": "ref must start with 'refs/' and have two slashes"})
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
            return _json(422, {"message": "Object does not exist", "status": "422"})
        if ref.startswith("refs/tags/") and not _valid_tag(ref.removeprefix("refs/tags/")):
            return _json(422, {"message": f"{ref} is not a valid ref name.", "status": "422"})
        if ref in self.refs:
            return _json(
                422,
                {
                    "message": "Reference already exists",
                    "documentation_url": _DOCS,
                    "status": "422",
                },
            )
        self.refs[ref] = sha
        return _json(201, self._ref(ref))

    def _ref(self, ref: str) -> dict[str, Any]:
        return {
            "ref": ref,
            "url": f"{self.api_base}/repos/{self.repository}/git/{ref}",
            "object": {"type": "commit", "sha": self.refs[ref]},
        }

    def _get_ref(self, _rec: Recorded, _h: dict[str, str], ref: str) -> Response:
        if f"refs/{ref}" in self.refs:
            return _json(200, self._ref(f"refs/{ref}"))
        return _json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"})

    def _release_by_tag(self, _rec: Recorded, _h: dict[str, str], tag: str) -> Response:
        for release in self.releases:
            if release["tag_name"] == tag:
                return _json(200, release)
        return _json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"})

    def _release_by_id(self, _rec: Recorded, _h: dict[str, str], rid: str) -> Response:
        for release in self.releases:
            if release["id"] == int(rid):
                return _json(200, release)
        return _json(404, {"message": "Not Found", "status": "404"})

    def _upload(self, release_id: int, rec: Recorded, headers: dict[str, str]) -> Response:
        release = next((r for r in self.releases if r["id"] == release_id), None)
        if release is None:
            return _json(404, {"message": "Not Found", "status": "404"})
        name = rec.query.get("name", [""])[0]
        if not name:
            return _validation("ReleaseAsset", "missing_field", "name")
        content_type = headers.get("content-type", "")
        if not _MEDIA_TYPE.match(content_type):
            return _validation(
                "ReleaseAsset",
                "invalid",
                "content_type",
                "Content-Type header must be a valid media type",
            )
        if "content-length" in headers and int(headers["content-length"]) != len(rec.body):
            return _json(400, {"message": "Content-Length does not match the body"})
        if not rec.body:
            return _validation("ReleaseAsset", "invalid", "size", "the asset is empty")
        if any(a["name"] == name for a in release["assets"]):
            return _validation("ReleaseAsset", "already_exists", "name")
        asset_id = self._id()
        asset = {
            "id": asset_id,
            "node_id": f"RA_{asset_id}",
            "url": f"{self.api_base}/repos/{self.repository}/releases/assets/{asset_id}",
            "browser_download_url": f"https://github.com/{self.repository}/releases/download/"
            f"{release['tag_name']}/{name}",
            "name": name,
            "label": rec.query.get("label", [""])[0] or None,
            "state": "uploaded",
            "content_type": content_type,
            "size": len(rec.body),
            "download_count": 0,
            "created_at": _now(),
            "updated_at": _now(),
            "uploader": self._user(),
        }
        release["assets"].append(asset)
        self.asset_content[asset_id] = rec.body
        return _json(201, asset)

    def _find_asset(self, asset_id: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for release in self.releases:
            for asset in release["assets"]:
                if asset["id"] == asset_id:
                    return release, asset
        return None

    def _get_asset(self, _rec: Recorded, headers: dict[str, str], aid: str) -> Response:
        found = self._find_asset(int(aid))
        if found is None:
            return _json(404, {"message": "Not Found", "status": "404"})
        if headers.get("accept", "") == "application/octet-stream":
            return Response(
                200, self.asset_content[int(aid)], {"Content-Type": "application/octet-stream"}
            )
        return _json(200, found[1])

    def _delete_asset(self, _rec: Recorded, _h: dict[str, str], aid: str) -> Response:
        found = self._find_asset(int(aid))
        if found is None:
            return _json(404, {"message": "Not Found", "status": "404"})
        found[0]["assets"].remove(found[1])
        self.asset_content.pop(int(aid), None)
        return Response(204)

    # ------------------------------------------------------------------ deployments

    def _list_deployments(self, rec: Recorded, _h: dict[str, str]) -> Response:
        items = list(reversed(self.deployments))
        for key in ("environment", "task", "ref", "sha"):
            if key in rec.query:
                items = [d for d in items if d[key] == rec.query[key][0]]
        return self._page(rec, items)

    def _create_deployment(self, rec: Recorded, headers: dict[str, str]) -> Response:
        data = self._body(rec, headers)
        if isinstance(data, Response):
            return data
        if not data.get("ref"):
            return _validation("Deployment", "missing_field", "ref")
        payload = data.get("payload", {})
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError:
                return _validation("Deployment", "invalid", "payload")
        if not isinstance(payload, dict):
            return _validation("Deployment", "invalid", "payload")
        if data.get("required_contexts") not in (None, []):
            return _json(409, {"message": "Conflict: Commit status checks failed for main."})
        deployment_id = self._id()
        api = f"{self.api_base}/repos/{self.repository}/deployments/{deployment_id}"
        deployment = {
            "id": deployment_id,
            "node_id": f"DE_{deployment_id}",
            "url": api,
            "statuses_url": f"{api}/statuses",
            "repository_url": f"{self.api_base}/repos/{self.repository}",
            "sha": data["ref"] if re.fullmatch(r"[0-9a-f]{40}", data["ref"]) else "0" * 40,
            "ref": data["ref"],
            "task": data.get("task", "deploy"),
            "payload": payload,
            "original_environment": data.get("environment", "production"),
            "environment": data.get("environment", "production"),
            "description": data.get("description"),
            "creator": self._user(),
            "created_at": _now(),
            "updated_at": _now(),
            "transient_environment": bool(data.get("transient_environment", False)),
            "production_environment": bool(
                data.get("production_environment", data.get("environment") == "production")
            ),
        }
        self.deployments.append(deployment)
        self.statuses[deployment_id] = []
        return _json(201, deployment)

    def _list_statuses(self, rec: Recorded, _h: dict[str, str], did: str) -> Response:
        if int(did) not in self.statuses:
            return _json(404, {"message": "Not Found", "status": "404"})
        return self._page(rec, list(reversed(self.statuses[int(did)])))

    def _create_status(self, rec: Recorded, headers: dict[str, str], did: str) -> Response:
        deployment = next((d for d in self.deployments if d["id"] == int(did)), None)
        if deployment is None:
            return _json(404, {"message": "Not Found", "status": "404"})
        data = self._body(rec, headers)
        if isinstance(data, Response):
            return data
        state = data.get("state")
        if not state:
            return _validation("DeploymentStatus", "missing_field", "state")
        if state not in _DEPLOYMENT_STATES:
            return _validation("DeploymentStatus", "invalid", "state")
        status_id = self._id()
        status = {
            "id": status_id,
            "node_id": f"DES_{status_id}",
            "url": f"{deployment['url']}/statuses/{status_id}",
            "state": state,
            "creator": self._user(),
            "description": data.get("description", ""),
            "environment": data.get("environment", deployment["environment"]),
            "environment_url": data.get("environment_url", ""),
            "log_url": data.get("log_url", ""),
            "target_url": data.get("log_url", ""),
            "created_at": _now(),
            "updated_at": _now(),
            "deployment_url": deployment["url"],
            "repository_url": deployment["repository_url"],
        }
        if state == "success" and data.get("auto_inactive", True):
            # GitHub marks earlier successful non-transient deployments inactive.
            for other in self.deployments:
                if other["environment"] == deployment["environment"] and other is not deployment:
                    prior = self.statuses[other["id"]]
                    if prior and prior[-1]["state"] == "success":
                        prior.append({**prior[-1], "id": self._id(), "state": "inactive"})
        self.statuses[int(did)].append(status)
        return _json(201, status)

    # ------------------------------------------------------------------ comments

    def _list_comments(self, rec: Recorded, _h: dict[str, str], number: str) -> Response:
        return self._page(rec, self.comments.get(int(number), []))

    def _create_comment(self, rec: Recorded, headers: dict[str, str], number: str) -> Response:
        data = self._body(rec, headers)
        if isinstance(data, Response):
            return data
        body = data.get("body")
        if not body or not isinstance(body, str):
            return _validation("IssueComment", "missing_field", "body")
        if len(body) > 65536:
            return _validation("IssueComment", "invalid", "body", "body is too long")
        comment_id = self._id()
        comment = {
            "id": comment_id,
            "node_id": f"IC_{comment_id}",
            "url": f"{self.api_base}/repos/{self.repository}/issues/comments/{comment_id}",
            "html_url": f"https://github.com/{self.repository}/pull/{number}"
            f"#issuecomment-{comment_id}",
            "issue_url": f"{self.api_base}/repos/{self.repository}/issues/{number}",
            "body": body,
            "user": self._user(),
            "created_at": _now(),
            "updated_at": _now(),
            "author_association": "NONE",
        }
        self.comments.setdefault(int(number), []).append(comment)
        return _json(201, comment)

    def _update_comment(self, rec: Recorded, headers: dict[str, str], cid: str) -> Response:
        data = self._body(rec, headers)
        if isinstance(data, Response):
            return data
        body = data.get("body")
        if not body or not isinstance(body, str):
            return _validation("IssueComment", "missing_field", "body")
        for comments in self.comments.values():
            for comment in comments:
                if comment["id"] == int(cid):
                    comment["body"] = body
                    comment["updated_at"] = _now()
                    return _json(200, comment)
        return _json(404, {"message": "Not Found", "status": "404"})

    # ------------------------------------------------------------------ transports

    def adapter(self) -> FakeAdapter:
        return FakeAdapter(self)


class FakeAdapter(BaseAdapter):
    """A `requests` transport that answers from a FakeGitHub in-process (no socket)."""

    def __init__(self, fake: FakeGitHub) -> None:
        super().__init__()
        self.fake = fake

    def send(self, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = str(request.url)
        uploads = url.startswith(self.fake.uploads_base)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        answer = self.fake.handle(
            str(request.method), url, dict(request.headers), body, uploads=uploads
        )
        response = requests.Response()
        response.status_code = answer.status
        response._content = answer.body
        response.headers = CaseInsensitiveDict(answer.headers)
        response.url = url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        return None


def mounted_session(fake: FakeGitHub) -> requests.Session:
    """A session whose requests to the fake's hosts never leave the process."""
    session = requests.Session()
    session.mount(fake.api_base, fake.adapter())
    session.mount(fake.uploads_base, fake.adapter())
    return session


def _handler(fake: FakeGitHub, *, uploads: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = fake.handle(
                self.command, self.path, dict(self.headers.items()), body, uploads=uploads
            )
            self.send_response(answer.status)
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve  # noqa: N815 - http.server API

        def log_message(self, *_args: Any) -> None:
            return None

    return Handler


@contextmanager
def serve(**kwargs: Any) -> Iterator[FakeGitHub]:
    """Run the fake on two real HTTP servers on 127.0.0.1 (API and uploads), free ports."""
    api = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    uploads = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    fake = FakeGitHub(
        api_base=f"http://127.0.0.1:{api.server_address[1]}",
        uploads_base=f"http://127.0.0.1:{uploads.server_address[1]}",
        **kwargs,
    )
    api.RequestHandlerClass = _handler(fake, uploads=False)
    uploads.RequestHandlerClass = _handler(fake, uploads=True)
    threads = [
        threading.Thread(target=server.serve_forever, daemon=True) for server in (api, uploads)
    ]
    for thread in threads:
        thread.start()
    try:
        yield fake
    finally:
        for server in (api, uploads):
            server.shutdown()
            server.server_close()
