"""The GitHub registry backend: model versions are GitHub releases of the repository.

Layout on GitHub::

    release  <project>-v<N>                 one per version, created once (immutable)
      body   … <!-- mlcd-record {json} -->   version, metadata, metrics, verdict, digests
      asset  model.skops                     the model file (checked by sha256 on download)
      asset  <extra files>                   registered with the version
      asset  attachments.json                facts added later (replaced as a whole)

The champion is not stored: it is the version of the latest *successful* GitHub deployment to
`production` with task `deploy:model` (what `mlcd github deployment production` records), so
the Environments page and the registry can never disagree. Other aliases are not kept by this
backend. Configured like every GitHub call (GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlcd.contracts import MODEL_FILE
from mlcd.errors import GateFailed, UserInputError
from mlcd.modelio import file_sha256
from mlcd.registry.base import CHAMPION, ModelRegistry, ModelVersion, NewVersion
from mlcd.tools.github import DEPLOYMENT_TASK, GitHub, GitHubApiError, deployment_payload

ATTACHMENTS = "attachments.json"
PRODUCTION = "production"  # the default of registry.champion-environment
_RECORD = re.compile(r"<!-- mlcd-record (\{.*\}) -->", re.DOTALL)


class GitHubRegistry(ModelRegistry):
    """A registry in a repository's GitHub releases and deployments."""

    backend = "github"
    reserved_files = frozenset({MODEL_FILE, ATTACHMENTS})

    def __init__(
        self, gh: GitHub, project: str, *, production: str = PRODUCTION, latest: bool = False
    ) -> None:
        self.gh = gh
        self.project = project
        self.production = production
        self.make_latest = latest  # registry.github-latest: may a version's release be `Latest`
        self._tag = re.compile(rf"^{re.escape(project)}-v([1-9][0-9]*)$")
        # One command lists the repository's releases once and downloads each attachments
        # asset at most once (an asset that is replaced gets a new id); a write forgets both.
        self._listing: list[tuple[int, dict[str, Any]]] | None = None
        self._attachments: dict[int, dict[str, Any]] = {}

    @property
    def location(self) -> str:
        return f"GitHub releases of {self.gh.repository}"

    # ------------------------------------------------------------------ helpers

    def tag(self, version: str) -> str:
        if not re.fullmatch(r"v[1-9][0-9]*", version):
            raise UserInputError(f"`{version}` is not a model version (they look like v1, v2, …)")
        return f"{self.project}-{version}"

    def _releases(self) -> list[tuple[int, dict[str, Any]]]:
        if self._listing is None:
            found = []
            for release in self.gh.releases():
                match = self._tag.match(str(release.get("tag_name", "")))
                if match and not release.get("draft"):
                    found.append((int(match.group(1)), release))
            self._listing = sorted(found, key=lambda item: item[0])
        return self._listing

    def _forget(self) -> None:
        self._listing = None

    def _download(self, asset: Mapping[str, Any]) -> bytes:
        response = self.gh.request(
            "GET", str(asset["url"]), headers={"Accept": "application/octet-stream"}
        )
        return response.content

    def _asset(self, release: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        for asset in release.get("assets") or []:
            if asset.get("name") == name:
                return dict(asset)
        return None

    def _load(self, release: Mapping[str, Any]) -> ModelVersion:
        match = _RECORD.search(str(release.get("body") or ""))
        if match is None:
            raise UserInputError(
                f"model registry: release {release.get('tag_name')} of {self.gh.repository} "
                "has no mlcd record in its description",
                hint="it was not made by mlcd; delete it or give it another tag",
            )
        record = json.loads(match.group(1))
        attachments: dict[str, Any] = {}
        asset = self._asset(release, ATTACHMENTS)
        if asset is not None:
            asset_id = int(asset.get("id") or 0)
            if asset_id not in self._attachments:
                loaded = json.loads(self._download(asset) or b"{}")
                self._attachments[asset_id] = loaded if isinstance(loaded, dict) else {}
            attachments = dict(self._attachments[asset_id])
        return ModelVersion.from_record(record, attachments)

    def _release(self, version: str) -> dict[str, Any]:
        tag = self.tag(version)
        if self._listing is not None:
            for _, listed in self._listing:
                if listed.get("tag_name") == tag:
                    return listed
        release = self.gh.release_by_tag(tag)
        if release is None:
            known = ", ".join(f"v{n}" for n, _ in self._releases()[-10:]) or "none yet"
            raise UserInputError(
                f"model registry ({self.location}) has no version {version}",
                hint=f"versions there: {known}",
            )
        return release

    # ------------------------------------------------------------------ interface

    def _store(self, new: NewVersion) -> ModelVersion:
        number = max((n for n, _ in self._releases()), default=0) + 1
        for _attempt in range(5):
            version = f"v{number}"
            record = new.record(version, file_sha256(new.model_file))
            body = (
                f"Model **{self.project} {version}** (registered by mlcd).\n\n"
                f"<!-- mlcd-record {json.dumps(record, sort_keys=True, default=str)} -->\n"
            )
            try:
                release = self.gh.request(
                    "POST",
                    self.gh.repo_path("releases"),
                    json_body={
                        "tag_name": self.tag(version),
                        "name": f"{self.project} {version}",
                        "body": body,
                        "draft": False,
                        "prerelease": False,
                        "make_latest": "true" if self.make_latest else "false",
                    },
                ).json()
            except GitHubApiError as exc:
                if exc.status == 422:  # another run took this number
                    number += 1
                    continue
                raise
            self.gh.upload_asset(release, new.model_file, name=MODEL_FILE)
            for name, path in new.extra.items():
                self.gh.upload_asset(release, path, name=name)
            self._forget()
            return self.get(version)
        raise GateFailed(f"model registry: could not claim a version number at {self.location}")

    def get(self, version: str) -> ModelVersion:
        return self._load(self._release(version))

    def release_asset(self, version: str, name: str) -> bytes | None:
        """An asset of model version `version`'s GitHub release (e.g. a release's
        `evidence-<release>.tar.gz`), or None when it has none of that name."""
        asset = self._asset(self._release(version), name)
        return self._download(asset) if asset is not None else None

    def claim_release(self, version: str, *, commit: str) -> bool:
        """The git tag `<project>-v<version>` at `commit`, created through the API: GitHub
        refuses an existing ref, so two release jobs never take one version."""
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise UserInputError(
                f"cannot tag release {version}: `{commit}` is not a full commit SHA",
                hint="run in a git checkout (GitHub Actions sets GITHUB_SHA)",
            )
        return self.gh.create_tag(f"{self.project}-v{version}", commit)

    def versions(self) -> list[ModelVersion]:
        return [self._load(release) for _, release in self._releases()]

    def set_alias(self, name: str, version: str) -> None:
        if name != CHAMPION:
            raise UserInputError(
                f"the github registry backend keeps no alias `{name}`",
                hint="its only alias is `champion`: the version live in production",
            )
        self._release(version)  # the champion follows the production deployment itself

    def _successful(self, environment: str) -> list[dict[str, str]]:
        """Successful deployments of versions to `environment`, newest first."""
        found = []
        for deployment in self.gh.deployments(environment=environment, task=DEPLOYMENT_TASK):
            payload = deployment_payload(deployment)
            if payload.get("project") not in (None, self.project):
                continue
            states = [s.get("state") for s in self.gh.deployment_statuses(int(deployment["id"]))]
            if "success" in states and payload.get("version"):
                found.append(
                    {
                        "version": str(payload["version"]),
                        "at": str(deployment.get("created_at", "")),
                        "live": "yes" if states and states[0] == "success" else "no",
                    }
                )
        return found

    def aliases(self) -> dict[str, str]:
        live = [d for d in self._successful(self.production) if d["live"] == "yes"]
        return {CHAMPION: live[0]["version"]} if live else {}

    def alias_history(self, name: str) -> list[dict[str, str]]:
        if name != CHAMPION:
            return []
        return [
            {"version": d["version"], "at": d["at"]}
            for d in reversed(self._successful(self.production))
        ]

    def _write_attachments(self, version: str, change: Any) -> ModelVersion:
        release = self._release(version)
        current = self._load(release)
        attachments = dict(current.attachments)
        change(attachments)
        with tempfile.TemporaryDirectory(prefix="mlcd-attach-") as tmp:
            path = Path(tmp) / ATTACHMENTS
            path.write_text(json.dumps(attachments, indent=2, sort_keys=True, default=str))
            self.gh.upload_asset(release, path, name=ATTACHMENTS, content_type="application/json")
        self._forget()
        return self.get(version)

    def attach(self, version: str, key: str, value: Any) -> ModelVersion:
        def change(attachments: dict[str, Any]) -> None:
            if key in attachments and attachments[key] != value:
                raise UserInputError(
                    f"model registry: {version} already has {key} = {attachments[key]!r}; "
                    "an attachment is never changed"
                )
            attachments[key] = value

        return self._write_attachments(version, change)

    def append(self, version: str, key: str, item: Any) -> ModelVersion:
        def change(attachments: dict[str, Any]) -> None:
            existing = attachments.get(key, [])
            if not isinstance(existing, list):
                raise UserInputError(f"model registry: {version} {key} is not a list")
            attachments[key] = [*existing, item]

        return self._write_attachments(version, change)

    def model_file(self, version: str, workdir: Path) -> Path:
        release = self._release(version)
        record = self._load(release)
        asset = self._asset(release, MODEL_FILE)
        if asset is None:
            raise UserInputError(f"model registry: {version} has no {MODEL_FILE} asset")
        workdir.mkdir(parents=True, exist_ok=True)
        target = workdir / f"{self.project}-{version}-{MODEL_FILE}"
        target.write_bytes(self._download(asset))
        if file_sha256(target) != record.model_sha256:
            target.unlink()
            raise GateFailed(
                f"model registry: the {MODEL_FILE} of {version} downloaded from GitHub does not "
                "match its recorded sha256; it will not be loaded"
            )
        return target
