"""The MLflow adapter: a tracking server's REST API (runs, Model Registry, artifacts).

Plain REST over `requests`, so that neither mlcd nor its serving image carries the ~850 MB
`mlflow` package: the server is the only MLflow a team needs. Configured the way MLflow's
own client is: the tracking URI (`registry.tracking-uri` / `tracking.uri`, else
`MLFLOW_TRACKING_URI`), `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD` (basic) or
`MLFLOW_TRACKING_TOKEN` (bearer), `MLFLOW_TRACKING_INSECURE_TLS=true` and
`MLFLOW_TRACKING_SERVER_CERT_PATH` for TLS. The credentials never appear in a message.

Artifacts go through the server (`mlflow server` proxies them by default: URIs
`mlflow-artifacts:/…`); a run whose artifact root is a local folder (`file:` or a path,
`--default-artifact-root DIR` on the same machine) is read and written there directly.
Connection errors and 5xx answers are retried with backoff; what cannot be reached is
exit 3, what the server refuses as wrong is exit 2.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

from mlcd.errors import EnvironmentMissing, MlcdError

ENV_URI = "MLFLOW_TRACKING_URI"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"


class MLflowApiError(MlcdError):
    """The tracking server refused a request (exit 2 for a wrong request, 3 otherwise)."""

    exit_code = 3
    label = "mlflow"

    def __init__(self, message: str, *, status: int, code: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code  # MLflow's error_code: RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST …
        if 400 <= status < 500 and status not in (401, 403):
            self.exit_code = 2
            self.label = "input error"


def tracking_uri(configured: str = "", env: Mapping[str, str] | None = None) -> str:
    """The configured URI, else MLFLOW_TRACKING_URI; empty when neither is set."""
    where = os.environ if env is None else env
    return (configured or where.get(ENV_URI, "")).strip().rstrip("/")


@dataclass
class MLflow:
    """One tracking server (an http(s) URI)."""

    uri: str
    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    verify: bool | str = True
    timeout: float = 30.0
    max_attempts: int = 5
    backoff: float = 0.5
    session: requests.Session = field(default_factory=requests.Session, repr=False)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        scheme = urlsplit(self.uri).scheme
        if scheme not in ("http", "https"):
            raise EnvironmentMissing(
                f"MLflow tracking URI {self.uri!r} is not an http(s) address of a tracking server",
                hint="set registry.tracking-uri (or MLFLOW_TRACKING_URI) to the address "
                "`mlflow server` listens on, e.g. http://127.0.0.1:5000; a `databricks` or "
                "file store needs the mlflow client, which mlcd does not use",
            )

    @classmethod
    def from_env(cls, uri: str, env: Mapping[str, str] | None = None) -> MLflow:
        where = os.environ if env is None else env
        verify: bool | str = True
        if where.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            verify = False
        elif where.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            verify = where["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        return cls(
            uri=uri,
            username=where.get("MLFLOW_TRACKING_USERNAME", ""),
            password=where.get("MLFLOW_TRACKING_PASSWORD", ""),
            token=where.get("MLFLOW_TRACKING_TOKEN", ""),
            verify=verify,
        )

    # ------------------------------------------------------------------ transport

    def _redact(self, text: str) -> str:
        for secret in (self.password, self.token):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "mlcd-mlflow-adapter"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        data: Any = None,
        ok_missing: bool = False,
        stream: bool = False,
    ) -> requests.Response | None:
        url = self.uri + path
        auth = (self.username, self.password) if self.username else None
        problem = ""
        for attempt in range(self.max_attempts):
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json_body,
                    params=params,
                    data=data,
                    headers=self._headers(),
                    auth=auth,
                    timeout=self.timeout,
                    verify=self.verify,
                    stream=stream,
                )
            except requests.RequestException as exc:
                problem = self._redact(f"{type(exc).__name__}: {exc}")[:300]
            else:
                if response.status_code < 300:
                    return response
                if response.status_code == 404 and ok_missing:
                    return None
                if response.status_code not in _RETRY_STATUSES:
                    raise self._error(method, path, response)
                problem = f"HTTP {response.status_code}"
            if attempt + 1 < self.max_attempts:
                self.sleep(self.backoff * (2**attempt))
        raise EnvironmentMissing(
            f"MLflow tracking server {self.uri}: {method} {_bare(path)} failed after "
            f"{self.max_attempts} attempts ({problem})",
            hint="check the server is up (GET /health answers OK) and the tracking URI",
        )

    def _error(self, method: str, path: str, response: requests.Response) -> MLflowApiError:
        code, detail = "", ""
        try:
            payload = response.json()
            if isinstance(payload, dict):
                code = str(payload.get("error_code", ""))
                detail = str(payload.get("message", ""))
        except ValueError:
            detail = response.text[:200]
        status = response.status_code
        hint = None
        if status in (401, 403):
            hint = (
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
                "MLFLOW_TRACKING_TOKEN) to an account that may write to the registry"
            )
        message = self._redact(
            f"MLflow {method} {_bare(path)} answered {status} {code}: {detail}".strip()
        )
        return MLflowApiError(message[:600], status=status, code=code, hint=hint)

    def call(
        self, method: str, endpoint: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One REST call to `/api/2.0/mlflow/<endpoint>`: a GET sends `body` as its query."""
        path = f"/api/2.0/mlflow/{endpoint}"
        if method == "GET":
            response = self._send("GET", path, params=body)
        else:
            response = self._send(method, path, json_body=body or {})
        if response is None:  # only with ok_missing, which is off here
            raise MLflowApiError(f"MLflow {endpoint}: no answer", status=404, code="")
        result = response.json() if response.content else {}
        return result if isinstance(result, dict) else {}

    def find(self, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """A GET that answers None for RESOURCE_DOES_NOT_EXIST."""
        try:
            return self.call("GET", endpoint, body)
        except MLflowApiError as exc:
            if exc.code == "RESOURCE_DOES_NOT_EXIST" or exc.status == 404:
                return None
            raise

    def ping(self) -> None:
        """Whether the server answers at all (exit 3 with the address when not)."""
        self._send("GET", "/health")

    # ------------------------------------------------------------------ experiments and runs

    def experiment_id(self, name: str) -> str:
        found = self.find("experiments/get-by-name", {"experiment_name": name})
        if found is not None:
            return str(found["experiment"]["experiment_id"])
        try:
            return str(self.call("POST", "experiments/create", {"name": name})["experiment_id"])
        except MLflowApiError as exc:
            if exc.code != "RESOURCE_ALREADY_EXISTS":
                raise
        return self.experiment_id(name)  # another writer created it first

    def create_experiment(self, name: str, tags: Mapping[str, str]) -> bool:
        """Create an experiment; False when one of that name exists (an atomic claim)."""
        try:
            self.call(
                "POST",
                "experiments/create",
                {"name": name, "tags": [{"key": k, "value": v} for k, v in tags.items()]},
            )
        except MLflowApiError as exc:
            if exc.code == "RESOURCE_ALREADY_EXISTS":
                return False
            raise
        return True

    def create_run(self, experiment_id: str, name: str, tags: Mapping[str, str]) -> dict[str, Any]:
        """A new run (its `info`: run_id, artifact_uri)."""
        run = self.call(
            "POST",
            "runs/create",
            {
                "experiment_id": experiment_id,
                "run_name": name,
                "start_time": int(time.time() * 1000),
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
        )["run"]
        return dict(run["info"])

    def log_batch(
        self,
        run_id: str,
        *,
        params: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Params, metrics and tags of a run, in batches of the sizes the API allows."""
        now = int(time.time() * 1000)
        p = [{"key": k, "value": str(v)[:6000]} for k, v in (params or {}).items()]
        m = [
            {"key": k, "value": float(v), "timestamp": now, "step": 0}
            for k, v in (metrics or {}).items()
        ]
        t = [{"key": k, "value": str(v)} for k, v in (tags or {}).items()]
        while p or m or t:
            self.call(
                "POST",
                "runs/log-batch",
                {"run_id": run_id, "params": p[:100], "metrics": m[:900], "tags": t[:100]},
            )
            p, m, t = p[100:], m[900:], t[100:]

    def log_dataset(
        self, run_id: str, *, name: str, digest: str, source: str, context: str
    ) -> None:
        """The run's dataset input (shown under the run's Datasets)."""
        dataset = {
            "name": name,
            "digest": digest[:36],
            "source_type": "local",
            "source": json_text({"uri": source}),
        }
        self.call(
            "POST",
            "runs/log-inputs",
            {
                "run_id": run_id,
                "datasets": [
                    {"dataset": dataset, "tags": [{"key": "mlflow.data.context", "value": context}]}
                ],
            },
        )

    def finish_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.call(
            "POST",
            "runs/update",
            {"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)},
        )

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The run's page in MLflow's UI."""
        return f"{self.uri}/#/experiments/{experiment_id}/runs/{run_id}"

    # ------------------------------------------------------------------ artifacts

    def _artifact_target(self, artifact_uri: str, rel: str) -> tuple[str, str]:
        """("http", server path) or ("file", local path) of an artifact."""
        parts = urlsplit(artifact_uri)
        rel = rel.strip("/")
        if parts.scheme == "mlflow-artifacts":
            base = unquote(parts.path).strip("/")
            return "http", _ARTIFACTS + quote(f"{base}/{rel}")
        if parts.scheme in ("", "file"):
            return "file", str(Path(unquote(parts.path)) / rel)
        raise EnvironmentMissing(
            f"MLflow artifact store {_bare(artifact_uri)!r} is not one mlcd can reach",
            hint="start the tracking server with artifact proxying (the default of "
            "`mlflow server`, or --serve-artifacts) so that artifacts go through it",
        )

    def upload(self, artifact_uri: str, rel: str, source: Path) -> None:
        kind, where = self._artifact_target(artifact_uri, rel)
        if kind == "file":
            Path(where).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, where)
            return
        with source.open("rb") as handle:
            self._send("PUT", where, data=handle)

    def download(self, artifact_uri: str, rel: str, target: Path) -> bool:
        """Copy an artifact to `target`; False when there is none of that name."""
        kind, where = self._artifact_target(artifact_uri, rel)
        if kind == "file":
            if not Path(where).is_file():
                return False
            shutil.copyfile(where, target)
            return True
        response = self._send("GET", where, ok_missing=True, stream=True)
        if response is None:
            return False
        with target.open("wb") as handle:
            for chunk in response.iter_content(1 << 16):
                handle.write(chunk)
        return True

    # ------------------------------------------------------------------ Model Registry

    def ensure_registered_model(self, name: str, description: str) -> None:
        try:
            self.call(
                "POST",
                "registered-models/create",
                {"name": name, "description": description},
            )
        except MLflowApiError as exc:
            if exc.code != "RESOURCE_ALREADY_EXISTS":
                raise

    def registered_model(self, name: str) -> dict[str, Any] | None:
        found = self.find("registered-models/get", {"name": name})
        return None if found is None else dict(found.get("registered_model") or {})

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        self.call("POST", "registered-models/set-tag", {"name": name, "key": key, "value": value})

    def create_version(
        self, name: str, *, source: str, run_id: str, tags: Mapping[str, str], description: str
    ) -> dict[str, Any]:
        """A new model version; the server numbers it (unique per model, in its database)."""
        body = {
            "name": name,
            "source": source,
            "run_id": run_id,
            "description": description,
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        }
        return dict(self.call("POST", "model-versions/create", body)["model_version"])

    def model_version(self, name: str, version: int) -> dict[str, Any] | None:
        found = self.find("model-versions/get", {"name": name, "version": str(version)})
        return None if found is None else dict(found.get("model_version") or {})

    def model_versions(self, name: str) -> Iterator[dict[str, Any]]:
        """Every version of a registered model (any order)."""
        page_token: str | None = None
        while True:
            query: dict[str, Any] = {"filter": f"name='{name}'", "max_results": 1000}
            if page_token:
                query["page_token"] = page_token
            page = self.call("GET", "model-versions/search", query)
            yield from page.get("model_versions") or []
            page_token = page.get("next_page_token") or None
            if not page_token:
                return

    def set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        self.call(
            "POST",
            "model-versions/set-tag",
            {"name": name, "version": str(version), "key": key, "value": value},
        )

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.call(
            "POST",
            "registered-models/alias",
            {"name": name, "alias": alias, "version": str(version)},
        )

    def version_by_alias(self, name: str, alias: str) -> dict[str, Any] | None:
        found = self.find("registered-models/alias", {"name": name, "alias": alias})
        return None if found is None else dict(found.get("model_version") or {})


def _bare(url: str) -> str:
    """A path or URI without its query (which may carry names, never wanted in messages)."""
    return url.split("?", maxsplit=1)[0]


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
