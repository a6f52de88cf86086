"""The GitHub REST API adapter: releases and assets, deployments, PR comments.

Plain REST over `requests`, configured the way GitHub Actions configures a job:
`GITHUB_API_URL` (default https://api.github.com), `GITHUB_REPOSITORY` (owner/name) and a
token (`GITHUB_TOKEN`, or `MLCD_GITHUB_TOKEN` when set).

Requests that fail transiently are retried with exponential backoff: connection errors,
5xx answers, and GitHub's primary and secondary rate limits (403/429 with `retry-after`,
or with `x-ratelimit-remaining: 0`, which waits until `x-ratelimit-reset`). The token never
appears in a message, a log line or an exception: every text that leaves this module goes
through `redact`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from mlcd.errors import EnvironmentMissing, MlcdError, UserInputError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = "mlcd-github-adapter"
DEPLOYMENT_TASK = "deploy:model"
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
_TEMPLATE = re.compile(r"\{[^}]*\}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_AUTH_HINT = (
    "in GitHub Actions pass `${{ secrets.GITHUB_TOKEN }}` (or a token with the permissions "
    "named in docs/github.md) to the step as GITHUB_TOKEN; locally export GITHUB_TOKEN"
)


class GitHubApiError(MlcdError):
    """GitHub answered with an error that retrying cannot fix (exit 3 unless said otherwise)."""

    exit_code = 3
    label = "github"

    def __init__(self, message: str, *, status: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def _secret_variants(token: str) -> list[str]:
    return [token] if len(token) >= 4 else []


def deployment_payload(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A deployment's payload (GitHub returns it as an object or as JSON text)."""
    payload = deployment.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            payload = {}
    return payload if isinstance(payload, dict) else {}


@dataclass
class GitHub:
    """A client for one repository."""

    api_url: str
    repository: str
    token: str = field(repr=False)
    session: requests.Session = field(default_factory=requests.Session, repr=False)
    max_attempts: int = 5
    backoff: float = 1.0
    max_wait: float = 120.0
    timeout: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)
    log: Callable[[str], None] = field(default=lambda _m: None, repr=False)
    _login: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.api_url = self.api_url.rstrip("/")
        if not _REPOSITORY.match(self.repository):
            raise UserInputError(
                f"GITHUB_REPOSITORY is {self.repository!r}, expected owner/name",
                hint="set GITHUB_REPOSITORY=owner/name (GitHub Actions sets it for you)",
            )
        if not self.token:
            raise EnvironmentMissing("no GitHub token to call the GitHub API with", hint=_AUTH_HINT)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> GitHub:
        """A client configured like a GitHub Actions job (GITHUB_API_URL, GITHUB_REPOSITORY)."""
        source = os.environ if env is None else env
        token = source.get("MLCD_GITHUB_TOKEN") or source.get("GITHUB_TOKEN") or ""
        repository = source.get("GITHUB_REPOSITORY", "")
        if not repository:
            raise UserInputError(
                "GITHUB_REPOSITORY is not set: mlcd does not know which repository to talk to",
                hint="set GITHUB_REPOSITORY=owner/name (GitHub Actions sets it for you)",
            )
        api_url = source.get("GITHUB_API_URL") or DEFAULT_API_URL
        return cls(api_url=api_url, repository=repository, token=token, **kwargs)

    # ------------------------------------------------------------------ plumbing

    def redact(self, text: str) -> str:
        """`text` with the token (and anything that looks like a GitHub token) masked."""
        for secret in _secret_variants(self.token):
            text = text.replace(secret, "***")
        return re.sub(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})", "***", text)

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": USER_AGENT,
        }
        if extra:
            headers.update(extra)
        return headers

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.api_url}/{path_or_url.lstrip('/')}"

    def repo_path(self, suffix: str) -> str:
        return f"repos/{self.repository}/{suffix.lstrip('/')}"

    def _wait_for(self, response: requests.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying `response`, or None when it is final."""
        status = response.status_code
        if status in _RETRY_STATUSES:
            return float(self.backoff * (2**attempt))
        if status not in (403, 429):
            return None
        retry_after = response.headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                return 60.0
        if response.headers.get("x-ratelimit-remaining") == "0":
            reset = response.headers.get("x-ratelimit-reset")
            try:
                return max(0.0, float(reset or "0") - self.clock()) + 1.0
            except ValueError:
                return 60.0
        if status == 429 or "secondary rate limit" in response.text.lower():
            # GitHub: "wait for at least one minute before retrying", growing each time.
            return float(60.0 * (2**attempt))
        return None

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200, 201, 204),
    ) -> requests.Response:
        """One API call, retried while GitHub says to; raises a clear error otherwise."""
        url = self._url(path_or_url)
        where = f"{method} {urlsplit(url).path}"
        last_problem = ""
        for attempt in range(self.max_attempts):
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json_body,
                    data=data,
                    params=params,
                    headers=self._headers(headers),
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                last_problem = self.redact(f"{type(exc).__name__}: {exc}")
                wait = self.backoff * (2**attempt)
            else:
                if response.status_code in ok:
                    return response
                wait_or_none = self._wait_for(response, attempt)
                if wait_or_none is None:
                    raise self._error(where, response)
                wait = wait_or_none
                last_problem = f"HTTP {response.status_code}"
            if attempt + 1 >= self.max_attempts:
                break
            if wait > self.max_wait:
                raise GitHubApiError(
                    f"{where}: GitHub asks mlcd to wait {wait:.0f} s ({last_problem}), "
                    f"longer than the {self.max_wait:.0f} s it is willing to wait",
                    status=429,
                    hint="the API rate limit is exhausted; re-run the job later",
                )
            self.log(f"github: {where}: {last_problem}; retrying in {wait:.1f} s")
            self.sleep(wait)
        raise GitHubApiError(
            f"{where}: GitHub did not answer successfully after {self.max_attempts} attempts "
            f"(last: {last_problem})",
            status=503,
            hint=f"check {self.api_url} is reachable (GITHUB_API_URL) and retry",
        )

    def _error(self, where: str, response: requests.Response) -> GitHubApiError:
        status = response.status_code
        try:
            payload = response.json()
            detail = str(payload.get("message", "")) if isinstance(payload, dict) else ""
            errors = payload.get("errors") if isinstance(payload, dict) else None
            if errors:
                detail += f" {json.dumps(errors)[:300]}"
        except ValueError:
            detail = response.text[:200]
        detail = self.redact(detail.strip())
        message = f"{where}: GitHub answered {status}" + (f" ({detail})" if detail else "")
        if status == 401:
            return GitHubApiError(
                message, status=status, hint="the token is invalid or expired; " + _AUTH_HINT
            )
        if status == 403:
            return GitHubApiError(
                message,
                status=status,
                hint="the token lacks a permission: the caller workflow must grant "
                "contents: write (releases), deployments: write, pull-requests: write "
                "(PR comment); see docs/github.md",
            )
        if status == 404:
            return GitHubApiError(
                message,
                status=status,
                hint=f"check GITHUB_REPOSITORY ({self.repository}) and that the token can see it",
            )
        error = GitHubApiError(message, status=status)
        if status == 422:
            error.exit_code = 2
            error.label = "input error"
        return error

    def get_json(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        return self.request("GET", path, params=params).json()

    def paginate(
        self, path: str, params: Mapping[str, str | int] | None = None, *, limit: int = 1000
    ) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, following the `Link: rel="next"` header."""
        url: str | None = self._url(path)
        query: dict[str, str | int] | None = {"per_page": 100, **(params or {})}
        seen = 0
        while url is not None:
            response = self.request("GET", url, params=query)
            items = response.json()
            if not isinstance(items, list):
                raise GitHubApiError(f"GET {path}: expected a list from GitHub", status=500)
            for item in items:
                yield item
                seen += 1
                if seen >= limit:
                    return
            url = response.links.get("next", {}).get("url")
            query = None  # the next link carries the query

    # ------------------------------------------------------------------ releases

    def release_by_tag(self, tag: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.get_json(
                self.repo_path(f"releases/tags/{quote(tag, safe='')}")
            )
        except GitHubApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def releases(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self.paginate(self.repo_path("releases"), limit=limit))

    def create_release(
        self,
        tag: str,
        *,
        name: str,
        body: str,
        target_commitish: str | None = None,
        prerelease: bool = False,
        make_latest: bool = True,
    ) -> dict[str, Any]:
        """Create the release for `tag`, or return the existing one (idempotent on retry)."""
        existing = self.release_by_tag(tag)
        if existing is not None:
            return existing
        payload: dict[str, Any] = {
            "tag_name": tag,
            "name": name,
            "body": body,
            "draft": False,
            "prerelease": prerelease,
            "make_latest": "true" if make_latest else "false",
        }
        if target_commitish:
            payload["target_commitish"] = target_commitish
        try:
            created: dict[str, Any] = self.request(
                "POST", self.repo_path("releases"), json_body=payload
            ).json()
        except GitHubApiError as exc:
            # A retried POST whose first attempt went through: the tag now exists.
            again = self.release_by_tag(tag) if exc.status == 422 else None
            if again is None:
                raise
            return again
        return created

    def upload_asset(
        self,
        release: Mapping[str, Any],
        path: Path,
        *,
        name: str | None = None,
        content_type: str = "application/octet-stream",
        label: str | None = None,
    ) -> dict[str, Any]:
        """Upload a file to a release (replacing an asset of the same name)."""
        asset_name = name or path.name
        for asset in release.get("assets", []) or []:
            if asset.get("name") == asset_name:
                self.request("DELETE", self.repo_path(f"releases/assets/{asset['id']}"))
        upload_url = _TEMPLATE.sub("", str(release["upload_url"]))
        params: dict[str, str | int] = {"name": asset_name}
        if label:
            params["label"] = label
        data = path.read_bytes()
        result: dict[str, Any] = self.request(
            "POST",
            upload_url,
            data=data,
            params=params,
            headers={"Content-Type": content_type, "Content-Length": str(len(data))},
        ).json()
        return result

    # ------------------------------------------------------------------ deployments

    def create_deployment(
        self,
        *,
        ref: str,
        environment: str,
        description: str,
        payload: Mapping[str, Any],
        production: bool,
        task: str = DEPLOYMENT_TASK,
    ) -> dict[str, Any]:
        body = {
            "ref": ref,
            "task": task,
            "environment": environment,
            "description": description[:140],
            "payload": dict(payload),
            "auto_merge": False,
            "required_contexts": [],
            "production_environment": production,
            "transient_environment": False,
        }
        result: dict[str, Any] = self.request(
            "POST", self.repo_path("deployments"), json_body=body
        ).json()
        return result

    def create_deployment_status(
        self,
        deployment_id: int,
        *,
        state: str,
        description: str = "",
        environment_url: str | None = None,
        log_url: str | None = None,
    ) -> dict[str, Any]:
        # auto_inactive would mark every earlier successful deployment to the environment
        # inactive, another project's too (GitHub matches the environment name only); mlcd
        # marks its own project's previous one (github.publish.retire_previous)
        body: dict[str, Any] = {
            "state": state,
            "description": description[:140],
            "auto_inactive": False,
        }
        if environment_url:
            body["environment_url"] = environment_url
        if log_url:
            body["log_url"] = log_url
        result: dict[str, Any] = self.request(
            "POST", self.repo_path(f"deployments/{deployment_id}/statuses"), json_body=body
        ).json()
        return result

    def deployments(
        self, *, environment: str, task: str = DEPLOYMENT_TASK, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Deployments to `environment`, newest first."""
        return list(
            self.paginate(
                self.repo_path("deployments"),
                {"environment": environment, "task": task},
                limit=limit,
            )
        )

    def deployment_statuses(self, deployment_id: int) -> list[dict[str, Any]]:
        """Statuses of a deployment, newest first."""
        return list(self.paginate(self.repo_path(f"deployments/{deployment_id}/statuses")))

    # ------------------------------------------------------------------ PR comments

    def identity(self) -> str:
        """The login the token writes as. An Actions installation token (ghs_…, what
        GITHUB_TOKEN is) writes as github-actions[bot] and may not read /user; any other
        token is asked once (GET /user)."""
        if self._login is None:
            if self.token.startswith("ghs_"):
                self._login = "github-actions[bot]"
            else:
                self._login = str(self.get_json("/user").get("login") or "")
        return self._login

    def create_tag(self, tag: str, sha: str) -> bool:
        """Create `refs/tags/<tag>` at commit `sha`, atomically: True when this call made it,
        False when the tag exists already (another run took it; never moved)."""
        try:
            self.request(
                "POST",
                self.repo_path("git/refs"),
                json_body={"ref": f"refs/tags/{tag}", "sha": sha},
            )
        except GitHubApiError as exc:
            if exc.status == 422 and "already exists" in str(exc).lower():
                return False
            raise
        return True

    def upsert_comment(self, number: int, body: str, *, marker: str) -> tuple[dict[str, Any], bool]:
        """Update the comment holding `marker` that this token wrote on issue/PR `number`, or
        create it. A comment somebody else wrote is never touched, marker or not.

        Returns the comment and whether it was created.
        """
        if marker not in body:
            body = f"{marker}\n{body}"
        me = self.identity()
        for comment in self.paginate(self.repo_path(f"issues/{number}/comments")):
            author = str((comment.get("user") or {}).get("login", ""))
            if marker in str(comment.get("body", "")) and author == me:
                updated: dict[str, Any] = self.request(
                    "PATCH",
                    self.repo_path(f"issues/comments/{comment['id']}"),
                    json_body={"body": body},
                ).json()
                return updated, False
        created: dict[str, Any] = self.request(
            "POST", self.repo_path(f"issues/{number}/comments"), json_body={"body": body}
        ).json()
        return created, True
