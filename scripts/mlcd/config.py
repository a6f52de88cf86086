"""The `mlcd.yaml` schema (docs/configuration.md), its loader and its error reporting.

The schema is written once, as pydantic models; validation, the JSON Schema in
`schema/mlcd.schema.json` and the configuration reference in the docs all come from it.
Every problem in a file is reported at once, each with ``file:line:column`` and the key
path, and an unknown key suggests the closest known one.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from mlcd.errors import UserInputError

SCHEMA_VERSION = 1
DEFAULT_CONFIG = "mlcd.yaml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Turn ``30s``, ``2m``, ``500ms``, ``1h`` or a number of seconds into seconds."""
    if isinstance(value, bool):
        # pydantic turns only ValueError into a positioned validation error, not TypeError
        raise ValueError(  # noqa: TRY004
            "a duration is a number of seconds or a string like 30s, 2m, 500ms"
        )
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError("a duration is a number of seconds or a string like 30s, 2m, 500ms")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


# In the JSON Schema a duration is what a user may write: seconds, or a string with a unit.
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": _DURATION.pattern},
            ],
            "description": "seconds, or a number with a unit: 500ms, 30s, 2m, 1h",
        }
    ),
]


_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _trusted_type(value: str) -> str:
    """A `model.trusted-types` entry: a dotted `module.Name`, and never a dangerous one."""
    from mlcd.security import allowlist

    if not _TYPE_NAME.match(value):
        raise ValueError(f"`{value}` is not a dotted type name such as `package.module.Class`")
    if allowlist.is_dangerous(value):
        raise ValueError(
            f"`{value}` can run code of a model file's choosing when it is loaded; "
            "no configuration can trust it"
        )
    return value


def check_canary_steps(steps: list[int]) -> list[int]:
    """Canary weights rise strictly and end at 100 (the rollout walks them in order)."""
    if not steps:
        raise ValueError("give at least one step; the last must be 100")
    for before, after in itertools.pairwise(steps):
        if after <= before:
            raise ValueError(
                f"steps must rise strictly: {after} comes after {before} "
                f"(e.g. [10, 50, 100]), got {steps}"
            )
    if steps[-1] != 100:
        raise ValueError(f"the last step must be 100 (full traffic), got {steps}")
    return steps


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class Section(BaseModel):
    """Base of every section: keys are kebab-case in YAML, unknown keys are errors."""

    # strict: a number written as a string ("0.2") is a mistake, not something to coerce
    model_config = ConfigDict(
        extra="forbid", alias_generator=_kebab, populate_by_name=True, frozen=True, strict=True
    )


class ModelSection(Section):
    """What to train and on which data."""

    task: Literal["classification", "regression"] = Field(
        description="classification or regression"
    )
    entrypoint: str = Field(
        description="`path.py:function` or `package.module:function` returning an UNFITTED "
        "scikit-learn estimator or pipeline",
        pattern=r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_]*$",
    )
    data: str = Field(description="training data, CSV or Parquet, relative to the config file")
    target: str = Field(description="the target column")
    params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments passed to the entrypoint"
    )
    test_size: float = Field(0.2, gt=0, lt=1, description="share of rows held out for evaluation")
    seed: int = Field(42, description="seed of the split and of anything random in training")
    trusted_types: list[Annotated[str, AfterValidator(_trusted_type)]] = Field(
        default_factory=list,
        description="types from other packages the fitted model may hold, e.g. "
        "`imblearn.ensemble._forest.BalancedRandomForestClassifier` (scikit-learn's and "
        "the project's own classes are trusted without this); loaded with skops",
    )
    requirements: str | None = Field(
        None,
        description="a requirements file (relative to the config file) naming the packages "
        "the model needs at serving time, e.g. `imbalanced-learn==0.14.2`; `mlcd build` "
        "adds their wheels, pinned and hashed, to the image",
    )


class LintSection(Section):
    """ruff and bandit over the project's code."""

    paths: list[str] = Field(default_factory=lambda: ["."], description="paths to lint")
    bandit_severity: Literal["low", "medium", "high"] = Field(
        "medium", description="bandit findings at or above this severity fail the gate"
    )
    ruff_format: bool = Field(
        default=True, description="also require `ruff format --check` to pass"
    )


class TestSection(Section):
    """pytest with a coverage gate."""

    paths: list[str] = Field(default_factory=lambda: ["tests"], description="test paths")
    min_coverage: float = Field(80, ge=0, le=100, description="minimum line coverage, percent")
    coverage_source: list[str] | None = Field(
        None, description="what coverage measures; default: the entrypoint's folder"
    )
    install: Literal["auto", "requirements", "pyproject", "none"] = Field(
        "auto",
        description="the test dependencies `mlcd deps` installs: `requirements` (the "
        "`requirements*.txt` files next to the config and at the repository root, or "
        "test.requirements), `pyproject` (the dependencies of the `pyproject.toml` project "
        "and its `test`/`tests`/`testing`/`dev` extra, without building it), `none`, or "
        "`auto`: whichever of the two exists (exit 2 when both do: say which)",
    )
    requirements: list[str] | None = Field(
        None,
        description="requirements files for the tests (relative to the config file); "
        "default: every `requirements*.txt` next to the config and at the repository root, "
        "except model.requirements",
    )

    @model_validator(mode="after")
    def _requirements_with_install(self) -> TestSection:
        if self.requirements is not None and self.install in ("pyproject", "none"):
            raise ValueError(
                f"`requirements` names files for `install: requirements` (this one is "
                f"`{self.install}`)"
            )
        return self


class Bound(Section):
    """A bound on a metric: `min`, `max` or both."""

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["min"]}, {"required": ["max"]}]}
    )

    min: float | None = Field(None, description="the metric must be at least this")
    max: float | None = Field(None, description="the metric must be at most this")

    @model_validator(mode="after")
    def _one_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("a bound needs `min`, `max` or both")
        return self


class SliceSection(Section):
    """A slice of the held-out rows: a feature's categories, or value bins."""

    feature: str = Field(description="the column that defines the slice")
    bins: list[float] | None = Field(
        None, description="bin edges for a numeric feature; absent: one slice per category"
    )
    thresholds: dict[str, Bound] = Field(
        default_factory=dict, description="bounds that every slice must meet"
    )
    min_rows: int = Field(10, ge=1, description="slices with fewer rows are reported, not gated")


class EvaluateSection(Section):
    """The evaluation gate."""

    thresholds: dict[str, Bound] = Field(
        default_factory=dict, description="bounds on held-out metrics, e.g. accuracy: {min: 0.9}"
    )
    compare_to: Literal["champion", "none"] = Field(
        "champion", description="compare with the model live in production (`champion`) or not"
    )
    max_regression: dict[str, float] = Field(
        default_factory=dict,
        description="how much worse than the champion each metric may be before the gate fails",
    )
    slices: list[SliceSection] = Field(default_factory=list, description="per-slice metrics")
    bootstrap_samples: int = Field(
        1000, ge=100, le=100000, description="paired bootstrap resamples for the intervals"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the intervals")


class ImageSection(Section):
    """The serving image."""

    name: str | None = Field(
        None, description="repository of the image; default 127.0.0.1:5000/<project>"
    )
    base: str = Field("python:3.11-slim", description="base image (a Python 3.11 Debian image)")


class ScanSection(Section):
    """Trivy and the model-artifact scanner, under one policy."""

    severity: Literal["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"] = Field(
        "HIGH", description="the lowest severity that fails the gate"
    )
    ignore_unfixed: bool = Field(default=True, description="ignore vulnerabilities with no fix yet")
    ignore_file: str = Field(".mlcd-ignore.yaml", description="suppressions with reason and expiry")
    db: str | None = Field(
        None, description="Trivy cache folder holding db/trivy.db, for offline scans"
    )
    vulnerability_db: Literal["required", "optional"] = Field(
        "required",
        description="`required`: no Trivy vulnerability database (and none downloadable) is "
        "exit 3; `optional`: the image's vulnerabilities are then not scanned, said loudly in "
        "the summary, while secrets, misconfigurations, the SBOM and model files still are",
    )


class RegistrySection(Section):
    """Where model versions, their evidence and aliases are kept."""

    backend: Literal["auto", "local", "github", "mlflow"] = Field(
        "auto",
        description="`local` folder, `github` (the repository's releases and deployments), "
        "`mlflow` (an MLflow tracking server's Model Registry), or `auto`: github inside GitHub "
        "Actions (GITHUB_ACTIONS=true with a GITHUB_TOKEN), local elsewhere",
    )
    tracking_uri: str = Field(
        "",
        description="the mlflow backend's tracking server, e.g. http://mlflow.internal:5000 "
        "(default: MLFLOW_TRACKING_URI; credentials from MLFLOW_TRACKING_USERNAME/PASSWORD or "
        "MLFLOW_TRACKING_TOKEN)",
    )
    model_name: str = Field(
        "", description="the mlflow backend's registered model (default: the project's name)"
    )
    path: str = Field(".mlcd-registry", description="the local backend's folder")
    github_latest: bool = Field(
        default=False,
        description="the GitHub release of a model version may become the repository's "
        "`Latest` release (default: never; the team's own software releases keep it)",
    )


class TrackingSection(Section):
    """Logging train and evaluate as runs of an MLflow tracking server."""

    uri: str = Field(
        "",
        description="the tracking server (default: registry.tracking-uri with the mlflow "
        "backend, else MLFLOW_TRACKING_URI; none: nothing is logged)",
    )
    experiment: str = Field("", description="the experiment's name (default: the project's name)")


class CanarySection(Section):
    """Canary steps."""

    steps: list[Annotated[int, Field(ge=0, le=100)]] = Field(
        default_factory=lambda: [10, 50, 100], description="traffic weights in percent"
    )
    interval: Duration = Field(30.0, description="analysis interval, e.g. 30s")
    min_requests: int = Field(
        200, ge=1, description="requests on the canary before a step can pass"
    )
    min_intervals: int = Field(
        2,
        ge=1,
        description="analysis intervals with canary traffic a step lasts at least before it "
        "can pass",
    )
    shadow_intervals: int = Field(
        0,
        ge=0,
        description="a shadow phase before the first step: the candidate gets a mirrored copy "
        "of all traffic (no user sees its answers) for up to this many intervals, ending "
        "early when the analysis passes; a failure there rolls back, and the first step "
        "starts with its evidence; 0: none",
    )

    @field_validator("steps")
    @classmethod
    def _steps_rise_to_100(cls, steps: list[int]) -> list[int]:
        return check_canary_steps(steps)


class BlueGreenSection(Section):
    """Blue/green switch."""

    preview_duration: Duration = Field(30.0, description="analysis of the preview before switching")
    scale_down_delay: Duration = Field(
        30.0, description="how long the old version stays up after the switch"
    )
    interval: Duration = Field(10.0, description="analysis interval of the preview")
    min_requests: int = Field(
        100, ge=1, description="requests on the preview before an interval can pass"
    )
    rps: float = Field(
        20, gt=0, description="synthetic preview traffic when the environment has no load-test"
    )


class ShadowSection(Section):
    """Shadow (mirrored) traffic."""

    duration: Duration = Field(60.0, description="how long to mirror before judging")
    interval: Duration = Field(10.0, description="analysis interval while mirroring")
    min_requests: int = Field(100, ge=1, description="paired requests before an interval can pass")
    promote: bool = Field(
        default=True, description="switch to the shadow when it passes (false: only judge it)"
    )
    max_disagreement: float = Field(
        0.05, ge=0, le=1, description="classification: largest share of differing predictions"
    )
    max_mean_abs_diff: float | None = Field(
        None, ge=0, description="regression: largest mean absolute prediction difference"
    )


_QUANTILE_KEY = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


def quantile_of(key: str) -> float:
    """`p50` → 0.5, `p99.9` → 0.999 (keys of `analysis.quantiles`)."""
    match = _QUANTILE_KEY.match(key)
    if not match or not 0 < float(match.group(1)) < 100:
        raise ValueError(f"`{key}` is not a quantile name like p50, p90, p99 or p99.9")
    return float(match.group(1)) / 100


class AnalysisSection(Section):
    """What the judge checks each interval (docs/deploy.md, "The judge")."""

    max_error_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="your SLO's error-rate limit: the canary fails when shown above it and "
        "stable is not (both above: paused, the environment's problem); default: none, errors "
        "are judged against stable only",
    )
    max_p99_latency_ms: float | None = Field(
        None,
        gt=0,
        description="your SLO's p99 latency limit (ms): the canary fails when shown above it "
        "and stable is not (both above: paused); default: none, latency is judged against "
        "stable only",
    )
    max_prediction_shift: float = Field(
        0.1,
        ge=0,
        description="largest PSI between canary and stable predictions beyond the shift "
        "evaluation measured between the candidate and the champion on the held-out rows; "
        "also the largest serving skew (canary live against its own held-out predictions)",
    )
    max_latency_increase: float = Field(
        0.2,
        ge=0,
        description="latency tolerance of the quantiles without their own: the canary may be "
        "this much slower",
    )
    min_latency_increase_ms: float = Field(
        1.0, ge=0, description="latency differences smaller than this (ms) never fail"
    )
    max_error_rate_increase: float = Field(
        0.01,
        ge=0,
        le=1,
        description="error-rate tolerance: a step passes only when the canary's error rate is "
        "shown at most this much above stable's",
    )
    max_error_rate_increase_relative: float | None = Field(
        None,
        ge=0,
        description="error-rate tolerance relative to stable's rate (0.5: half of stable's "
        "rate), used when larger than max-error-rate-increase; default: none",
    )
    expected_rps: float | None = Field(
        None,
        gt=0,
        description="requests per second the environment's clients send, for the rollout "
        "plan when there is no load-test (deploy also measures stable's rate)",
    )
    accept_slow_plan: bool = Field(
        default=False,
        description="deploy even when the plan says a step cannot decide within "
        "max-intervals (it would pause); `mlcd deploy --accept-plan` does the same",
    )
    quantiles: dict[str, float | None] = Field(
        default_factory=lambda: {"p50": None, "p99": 0.3},
        description="latency quantiles compared with stable, each with its tolerance (null: "
        "max-latency-increase)",
    )
    latency_ok_ms: float | None = Field(
        None,
        gt=0,
        description="a latency quantile shown at or below this (ms) passes whatever stable's "
        "is; default: a fifth of max-p99-latency-ms, else 10",
    )
    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="false-rollback rate of the whole analysis (every check that can fail)",
    )
    max_intervals: int = Field(
        30,
        ge=1,
        description="intervals a step may be extended while the tolerances are not yet shown; "
        "then the rollout pauses for a decision",
    )
    failure_limit: int = Field(0, ge=0, description="failed analyses tolerated (Argo Rollouts)")
    inconclusive_limit: int | None = Field(
        None,
        ge=0,
        description="inconclusive analyses before the rollout pauses; default: none, a step "
        "pauses after max-intervals",
    )
    consecutive_error_limit: int = Field(
        4, ge=0, description="metric-read errors in a row tolerated"
    )

    @field_validator("quantiles")
    @classmethod
    def _quantile_names(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        for key, tolerance in value.items():
            quantile_of(key)
            if tolerance is not None and tolerance < 0:
                raise ValueError(f"the tolerance of {key} must be at least 0, not {tolerance}")
        return value

    def quantile_tolerances(self) -> tuple[tuple[float, float | None], ...]:
        """(quantile, tolerance or None) pairs, lowest quantile first."""
        return tuple(sorted((quantile_of(k), v) for k, v in self.quantiles.items()))


class LoadTestSection(Section):
    """Synthetic traffic during analysis."""

    rps: float = Field(gt=0, description="requests per second of held-out rows")


DEFAULT_ROUTER_IMAGE = "nginx:1.27"


class KubernetesSection(Section):
    """The Kubernetes target (Argo Rollouts)."""

    context: str | None = Field(None, description="kubectl context")
    namespace: str = Field("default", description="namespace")
    replicas: int = Field(2, ge=1, description="pods of the model")
    prometheus: str = Field(
        "http://prometheus.monitoring:9090", description="Prometheus address for the analysis"
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list,
        description="Secrets the pods pull the image with, when the registry needs a login",
    )
    timeout: Duration = Field(
        1800.0, description="how long `mlcd deploy` waits for the Rollout to finish"
    )
    traffic_router: Literal["none", "nginx", "istio"] = Field(
        "none",
        description="the cluster's traffic router Argo Rollouts drives (`none`: replica "
        "counts; `nginx`: an ingress-nginx Ingress; `istio`: a VirtualService); `routing.header` "
        "needs one of the two",
    )
    traffic_object: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="the Ingress (nginx) or VirtualService (istio, with a route named "
        "`primary`) that sends traffic to the stable service; default <project>-<env>",
    )


class SwarmSection(Section):
    """The swarm target: releases as Docker Swarm services, the router as a service too."""

    replicas: int = Field(1, ge=1, le=100, description="tasks (containers) of each release")
    placement: list[str] = Field(
        default_factory=list,
        description="placement constraints of the releases' tasks, as `docker service create "
        "--constraint` takes them, e.g. `node.labels.tier==model`",
    )
    router_nodes: list[str] = Field(
        default_factory=lambda: ["node.role==manager"],
        min_length=1,
        description="placement constraints of the nodes the router runs on (one task per "
        "matching node, the environment's port published on each; all must hold), e.g. "
        "`node.labels.edge==true`",
    )


class RouterSection(Section):
    """The traffic router of a docker-host environment (nginx, as a container on the server)."""

    image: str = Field(
        DEFAULT_ROUTER_IMAGE,
        min_length=1,
        description="nginx image the server runs the router from (pulled by the server)",
    )


class WebhookSection(Section):
    """One webhook told about a rollout's state changes (docs/deploy.md, "Notifications")."""

    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="the webhook's address (written here only when it is not a secret)",
    )
    url_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="an environment variable that holds the address (a secret: it is never "
        "written to the evidence or the logs)",
    )
    format: Literal["json", "slack", "teams"] = Field(
        "json", description="the body: mlcd's JSON event, a Slack or a Teams message"
    )
    events: (
        list[
            Literal[
                "started",
                "step",
                "step passed",
                "paused",
                "promoted",
                "rolled back",
                "rollback by hand",
                "recovered",
            ]
        ]
        | None
    ) = Field(None, description="the events to send (default: all)")
    timeout: Duration = Field(5.0, description="seconds one attempt may take")
    retries: int = Field(2, ge=0, le=5, description="attempts after a failed one")

    @model_validator(mode="after")
    def _one_address(self) -> WebhookSection:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("a webhook needs exactly one of `url` and `url-env`")
        return self


class RoutingSection(Section):
    """Who sees which version during a rollout (local and docker-host routers; Kubernetes
    with a traffic router: docs/deploy.md, "Who sees which version")."""

    header: str | None = Field(
        "X-MLCD-Version",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
        description="a request header whose value `canary` or `stable` sends the request to "
        "that arm (testers); null: no forced routing",
    )
    sticky_key: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$",
        description="a request header (a user id) that keeps each user on one arm: at most "
        "one move, stable → canary, as the steps grow, never back during the rollout; requests "
        "without it are split by weight",
    )


_SSH_URL = r"^ssh://([A-Za-z0-9._-]+@)?([A-Za-z0-9._-]+|\[[0-9a-fA-F:]+\])(:[0-9]{1,5})?/?$"


class EnvironmentSection(Section):
    """One environment a release is rolled out to."""

    strategy: Literal["canary", "blue-green", "shadow"] = Field(
        "canary", description="how a release is rolled out here"
    )
    requires: list[str] = Field(
        default_factory=list, description="environments a release must have passed first"
    )
    target: Literal["local", "docker-host", "swarm", "kubernetes"] = Field(
        "local",
        description="where it runs: `local` (this machine), `docker-host` (a server's Docker "
        "engine over SSH), `swarm` (a Docker Swarm, through a manager over SSH) or "
        "`kubernetes` (Argo Rollouts)",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="router port (127.0.0.1 locally, every address of a docker-host, every "
        "router node of a swarm); default: chosen per env",
    )
    host: str | None = Field(
        None,
        pattern=_SSH_URL,
        description="docker-host: the server, ssh://user@server[:port] (swarm: a manager)",
    )
    known_hosts: str | None = Field(
        None,
        description="docker-host, swarm: known_hosts file with the server's host key (else "
        "MLCD_DEPLOY_KNOWN_HOSTS holds its content); the key is always checked",
    )
    key_file: str | None = Field(
        None,
        description="docker-host, swarm: private SSH key file (else MLCD_DEPLOY_SSH_KEY holds the "
        "key, else the ssh-agent)",
    )
    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="the address clients use (a DNS name or proxy in front); default: "
        "http://<server>:<port>",
    )
    router: RouterSection = Field(default_factory=RouterSection)
    canary: CanarySection = Field(default_factory=CanarySection)
    blue_green: BlueGreenSection = Field(default_factory=BlueGreenSection)
    shadow: ShadowSection = Field(default_factory=ShadowSection)
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)
    load_test: LoadTestSection | None = Field(None, description="synthetic traffic, if any")
    kubernetes: KubernetesSection = Field(default_factory=KubernetesSection)
    swarm: SwarmSection = Field(default_factory=SwarmSection)
    routing: RoutingSection = Field(default_factory=RoutingSection)
    notify: list[WebhookSection] = Field(
        default_factory=list,
        description="webhooks told about this environment's rollouts (besides the top-level "
        "`notify:`)",
    )

    @model_validator(mode="after")
    def _target_keys(self) -> EnvironmentSection:
        over_ssh = self.target in ("docker-host", "swarm")
        if over_ssh and not self.host:
            raise ValueError(f"target {self.target} needs `host: ssh://user@server[:port]`")
        if not over_ssh and self.host:
            raise ValueError(
                f"`host` is for targets docker-host and swarm (this one is {self.target})"
            )
        return self


class SigningVerifySection(Section):
    """Who must have signed what a deploy starts: a public key, or a keyless identity."""

    key: str | None = Field(
        None,
        description="the public key (PEM file, relative to the config) that verifies the "
        "signatures of releases",
    )
    identity: str | None = Field(
        None,
        description="keyless (github.com only): the signer's certificate identity, e.g. "
        "https://github.com/OWNER/REPO/.github/workflows/ml.yml@refs/heads/main",
    )
    issuer: str | None = Field(
        None,
        description="keyless: the identity's OIDC issuer, e.g. "
        "https://token.actions.githubusercontent.com",
    )

    @model_validator(mode="after")
    def _one_way(self) -> SigningVerifySection:
        if self.key and (self.identity or self.issuer):
            raise ValueError("give either `key` or `identity` with `issuer`, not both")
        if not self.key and not (self.identity and self.issuer):
            raise ValueError("needs `key: PUBLIC.pem`, or `identity:` with `issuer:` (keyless)")
        return self


_SIGNING_ON = "signing-section"  # the tag of the mapping form (dropped from error paths)


def _signing_kind(value: Any) -> str:
    """`signing: off` (YAML reads it as false) or the mapping."""
    return "off" if value is False or value == "off" else _SIGNING_ON


class SigningSection(Section):
    """Signed releases: the model (OpenSSF model signing) and the image (an in-toto statement
    with SLSA provenance, cosign's tag scheme), verified by every deploy (docs/signing.md)."""

    key: str | None = Field(
        None,
        description="the private key (PEM file, relative to the config) that signs releases "
        "when MLCD_SIGNING_KEY is not set; keep it out of the repository",
    )
    verify: SigningVerifySection = Field(
        description="the public key or keyless identity every deploy and `mlcd verify` checks"
    )
    admission: Literal["kyverno", "policy-controller", "none"] = Field(
        "kyverno",
        description="the admission policy rendered for kubernetes environments: a Kyverno "
        "ClusterPolicy (verifyImages), a sigstore policy-controller ClusterImagePolicy, or none",
    )


class Config(Section):
    """The whole `mlcd.yaml`."""

    version: Literal[1] = Field(description="schema version; 1")
    project: str = Field(
        description="name used for images, releases and environments",
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
    )
    model: ModelSection
    lint: LintSection = Field(default_factory=LintSection)
    test: TestSection = Field(default_factory=TestSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    image: ImageSection = Field(default_factory=ImageSection)
    scan: ScanSection = Field(default_factory=ScanSection)
    registry: RegistrySection = Field(default_factory=RegistrySection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    environments: dict[str, EnvironmentSection] = Field(
        default_factory=dict, description="where releases are rolled out, by name"
    )
    signing: (
        Annotated[
            Annotated[SigningSection, Tag(_SIGNING_ON)]
            | Annotated[Literal[False, "off"], Tag("off")],
            Discriminator(_signing_kind),
        ]
        | None
    ) = Field(
        None,
        description="`off` (releases unsigned, said in every summary), or how releases are "
        "signed and verified; absent is off",
    )

    @property
    def signing_on(self) -> SigningSection | None:
        """The signing section when signing is on; None for `signing: off` or no section."""
        return self.signing if isinstance(self.signing, SigningSection) else None

    notify: list[WebhookSection] = Field(
        default_factory=list,
        description="webhooks told about every environment's rollouts (started, step passed, "
        "paused, promoted, rolled back)",
    )

    @property
    def image_name(self) -> str:
        """MLCD_IMAGE (the workflow's `image` input), else image.name, else a local default;
        lower-cased, as image repositories are (`ghcr.io/${{ github.repository }}` may not be)."""
        override = os.environ.get("MLCD_IMAGE")
        return (override or self.image.name or f"127.0.0.1:5000/{self.project}").lower()


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with where it came from."""

    config: Config
    path: Path
    sha256: str

    @property
    def root(self) -> Path:
        """The project folder: paths in the config are relative to it."""
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        return (self.root / relative).resolve()


def on_local_target(loaded: LoadedConfig) -> LoadedConfig:
    """The config with every environment on the `local` target (`mlcd run --target
    local`): what a docker-host or kubernetes environment would run, on this machine's
    Docker engine, with the same strategies, steps and analysis. The file is unchanged."""
    local = {
        name: env.model_copy(
            update={
                "target": "local",
                "host": None,
                "known_hosts": None,
                "key_file": None,
                "url": None,
            }
        )
        for name, env in loaded.config.environments.items()
    }
    config = loaded.config.model_copy(update={"environments": local})
    return dataclasses.replace(loaded, config=config)


# --------------------------------------------------------------------------------------
# Loading with positions


@dataclass(frozen=True)
class _Pos:
    line: int
    column: int


class _Positions:
    """Positions of keys and values in a YAML document, by key path."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.keys: dict[tuple[str | int, ...], _Pos] = {}
        self.values: dict[tuple[str | int, ...], _Pos] = {}
        # (key path, where it is repeated, where it first was): YAML would keep the last.
        self.duplicates: list[tuple[tuple[str | int, ...], _Pos, _Pos]] = []
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: tuple[str | int, ...]) -> None:
        self.values[path] = _Pos(node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = str(key_node.value)
                pos = _Pos(key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if (*path, key) in self.keys:
                    self.duplicates.append(((*path, key), pos, self.keys[(*path, key)]))
                self.keys[(*path, key)] = pos  # the last one wins, as in the loaded data
                self._walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def find(self, path: tuple[str | int, ...], *, key: bool) -> _Pos:
        """The closest known position: the key itself, or its nearest ancestor."""
        for cut in range(len(path), -1, -1):
            prefix = path[:cut]
            table = self.keys if key or cut < len(path) else self.values
            if prefix in table:
                return table[prefix]
            if prefix in self.keys:
                return self.keys[prefix]
        return _Pos(1, 1)


def where(loaded: LoadedConfig, path: tuple[str | int, ...]) -> str:
    """`file:line:column: dotted.key` of a key in a loaded config (for errors found later,
    by a stage, about what the config asks)."""
    try:
        node = yaml.compose(loaded.path.read_text("utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        node = None
    pos = _Positions(node).find(path, key=True)
    return f"{loaded.path}:{pos.line}:{pos.column}: {_dotted(path)}"


class KeyLocator:
    """`file:line:column: key.path` for a key of a loaded config file, for checks made
    after loading (the files and code the config names: `mlcd.preflight`)."""

    def __init__(self, file: Path) -> None:
        self.file = file
        try:
            node = yaml.compose(file.read_text("utf-8"), Loader=yaml.SafeLoader)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            node = None
        self.positions = _Positions(node)

    def where(self, loc: tuple[str | int, ...], *, key: bool = False) -> str:
        """The key (`key=True`) or its value's position, then the dotted key path."""
        pos = self.positions.find(loc, key=key)
        return f"{self.file}:{pos.line}:{pos.column}: {_dotted(loc)}"


def _field_type(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional and Annotated to reach the type that matters."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _model_at(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The section model found at a key path (for 'did you mean' suggestions)."""
    current: Any = Config
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            current = _field_type(current, str(part))
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
        if current is None:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _known_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _describe(error: Any, positions: _Positions, file: Path) -> tuple[int, int, str]:
    loc = tuple(part for part in error["loc"] if part != _SIGNING_ON)
    kind = error["type"]
    if kind == "extra_forbidden":
        pos = positions.find(loc, key=True)
        parent = _model_at(loc[:-1])
        key = str(loc[-1])
        message = f"unknown key `{key}`"
        if parent is not None:
            close = difflib.get_close_matches(key, _known_keys(parent), n=1, cutoff=0.5)
            if close:
                message += f" (did you mean `{close[0]}`?)"
            else:
                message += f"; known keys: {', '.join(_known_keys(parent))}"
    elif kind == "missing":
        pos = positions.find(loc, key=True)
        message = f"missing required key `{loc[-1]}`"
        loc_text = _dotted(loc)
        return pos.line, pos.column, f"{file}:{pos.line}:{pos.column}: {loc_text}: {message}"
    else:
        pos = positions.find(loc, key=False)
        got = error.get("input")
        if kind in _TYPE_WORDS:
            message = f"expected {_TYPE_WORDS[kind]}, got {json.dumps(got, default=str)}"
        elif kind == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            message = f"got {json.dumps(got, default=str)}, expected one of {expected}"
            if loc == ("version",):
                message = (
                    f"unknown schema version {json.dumps(got, default=str)}; "
                    f"this mlcd reads version {SCHEMA_VERSION}"
                )
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
    return pos.line, pos.column, f"{file}:{pos.line}:{pos.column}: {_dotted(loc)}: {message}"


_KEY_LINE = re.compile(r"^(\s*)(?:-\s+)?([A-Za-z0-9_.-]+)\s*:")


def _path_near(text: str, line: int) -> str | None:
    """The key path around a line, from indentation (for YAML that does not parse)."""
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines()[:line]:
        match = _KEY_LINE.match(raw)
        if match is None:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
    return ".".join(key for _, key in stack) or None


def _yaml_error(file: Path, text: str, exc: yaml.YAMLError) -> UserInputError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if mark is None:
        return UserInputError(f"{file}: invalid YAML: {problem}")
    line, column = mark.line + 1, mark.column + 1
    near = _path_near(text, line)
    message = f"{file}:{line}:{column}: "
    if near:
        message += f"{near}: "
    message += "invalid YAML: "
    if context:
        message += context
        if context_mark is not None:
            message += f" (from line {context_mark.line + 1}, column {context_mark.column + 1})"
        message += ", "
    message += problem
    return UserInputError(
        message, hint="check the indentation, quotes and brackets at that line and just above"
    )


def _reference_problems(
    data: dict[str, Any], positions: _Positions, file: Path
) -> list[tuple[int, int, str]]:
    """Checks across sections: every environment that `requires` names exists, no cycles."""
    envs = data.get("environments")
    if not isinstance(envs, dict):
        return []
    problems: list[tuple[int, int, str]] = []
    graph: dict[str, list[str]] = {}
    for name, env in envs.items():
        requires = env.get("requires") if isinstance(env, dict) else None
        if not isinstance(requires, list):
            continue
        graph[str(name)] = [str(r) for r in requires]
        for index, req in enumerate(requires):
            loc: tuple[str | int, ...] = ("environments", str(name), "requires", index)
            pos = positions.find(loc, key=False)
            where = f"{file}:{pos.line}:{pos.column}: {_dotted(loc)}"
            if req == name:
                text = f"{where}: environment `{name}` cannot require itself"
            elif req not in envs:
                known = ", ".join(f"`{e}`" for e in envs) or "none"
                text = f"{where}: names unknown environment `{req}` (known: {known})"
            else:
                continue
            problems.append((pos.line, pos.column, text))
    cycle = _find_cycle(graph)
    if cycle:
        pos = positions.find(("environments", cycle[0], "requires"), key=True)
        text = (
            f"{file}:{pos.line}:{pos.column}: environments.{cycle[0]}.requires: "
            f"the requirements form a cycle ({' → '.join(cycle)})"
        )
        problems.append((pos.line, pos.column, text))
    return problems


# The router port an environment gets when its `port:` is not set (mlcd deploy's rule:
# staging 8081, production 8082, then 8083, 8084, … in the order the file lists the others).
DEFAULT_ROUTER_PORTS = {"staging": 8081, "production": 8082}
OTHER_ROUTER_PORTS_FROM = 8083


def _positioned(
    file: Path, positions: _Positions, loc: tuple[str | int, ...], message: str, *, key: bool
) -> tuple[int, int, str]:
    """A problem as load_config sorts and prints them: `file:line:column: key.path: …`."""
    pos = positions.find(loc, key=key)
    return pos.line, pos.column, f"{file}:{pos.line}:{pos.column}: {_dotted(loc)}: {message}"


def _port_problems(
    data: dict[str, Any], positions: _Positions, file: Path
) -> list[tuple[int, int, str]]:
    """Two local environments on one host cannot share a router port: the second deploy
    would find the port taken. Environments on Kubernetes have no router port."""
    envs = data.get("environments")
    if not isinstance(envs, dict):
        return []
    others = [str(n) for n in envs if str(n) not in DEFAULT_ROUTER_PORTS]
    taken: dict[tuple[str, int], tuple[str, bool]] = {}
    problems: list[tuple[int, int, str]] = []
    for name, env in envs.items():
        env_map = env if isinstance(env, dict) else {}
        if env_map.get("target", "local") == "kubernetes":
            continue
        explicit = env_map.get("port")
        if isinstance(explicit, int) and not isinstance(explicit, bool):
            port = explicit
        elif explicit is None:
            name_s = str(name)
            port = DEFAULT_ROUTER_PORTS.get(name_s) or OTHER_ROUTER_PORTS_FROM + others.index(
                name_s
            )
        else:
            continue  # a wrong type is reported by the schema
        host = str(env_map.get("host") or "127.0.0.1")
        first = taken.get((host, port))
        if first is None:
            taken[(host, port)] = (str(name), explicit is not None)
            continue
        loc: tuple[str | int, ...] = (
            ("environments", str(name), "port")
            if explicit is not None
            else ("environments", str(name))
        )
        how = "set" if explicit is not None else "its default"
        other, other_explicit = first
        other_how = "set" if other_explicit else "its default"
        message = (
            f"router port {port} ({how}) is already environment `{other}`'s ({other_how}); "
            "give each environment its own `port`"
        )
        problems.append(_positioned(file, positions, loc, message, key=explicit is None))
    return problems


def _metric_problems(
    data: dict[str, Any], positions: _Positions, file: Path
) -> list[tuple[int, int, str]]:
    """Every metric named in `evaluate` exists for the model's task."""
    model = data.get("model")
    task = model.get("task") if isinstance(model, dict) else None
    evaluate = data.get("evaluate")
    if task not in ("classification", "regression") or not isinstance(evaluate, dict):
        return []
    from mlcd import metrics  # numpy: only for configs that name metrics

    known = metrics.names(str(task))
    named: list[tuple[str | int, ...]] = []
    for section in ("thresholds", "max-regression"):
        table = evaluate.get(section)
        if isinstance(table, dict):
            named += [("evaluate", section, str(k)) for k in table]
    slices = evaluate.get("slices")
    if isinstance(slices, list):
        for index, item in enumerate(slices):
            table = item.get("thresholds") if isinstance(item, dict) else None
            if isinstance(table, dict):
                named += [("evaluate", "slices", index, "thresholds", str(k)) for k in table]
    problems: list[tuple[int, int, str]] = []
    for loc in named:
        metric = str(loc[-1])
        if metric in known:
            continue
        close = difflib.get_close_matches(metric, known, n=1, cutoff=0.5)
        other = "regression" if task == "classification" else "classification"
        if metric in metrics.names(other):
            why = f"`{metric}` is a {other} metric; this model's task is {task}"
        else:
            why = f"unknown metric `{metric}`" + (f" (did you mean `{close[0]}`?)" if close else "")
        message = f"{why}; the {task} metrics are {', '.join(known)}"
        problems.append(_positioned(file, positions, loc, message, key=True))
    table = evaluate.get("max-regression")
    if isinstance(table, dict):
        for key, value in table.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                loc = ("evaluate", "max-regression", str(key))
                message = f"{value} is negative; a regression tolerance is 0 or more"
                problems.append(_positioned(file, positions, loc, message, key=False))
    return problems


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle in `requires` (as a path that ends where it starts), or None."""
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> list[str] | None:
        if node in trail:
            return [*trail[trail.index(node) :], node]
        if node in done:
            return None
        for nxt in graph.get(node, []):
            if nxt != node:  # a self-reference is reported on its own
                found = visit(nxt, [*trail, node])
                if found:
                    return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a config file; raise UserInputError listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserInputError(
            f"config file {file} not found",
            hint="run from the project folder or pass --config PATH",
        ) from exc
    except IsADirectoryError as exc:
        raise UserInputError(
            f"config path {file} is a folder", hint=f"pass the file: --config {file}/mlcd.yaml"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read config file {file}: {exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(file, text, exc) from exc
    if data is None:
        raise UserInputError(
            f"{file}:1:1: the config file is empty",
            hint="start from the example in the docs (docs/configuration.md)",
        )
    if not isinstance(data, dict):
        raise UserInputError(f"{file}:1:1: the config must be a mapping of keys to values")
    positions = _Positions(node)
    described: list[tuple[int, int, str]] = []
    for loc, pos, first in positions.duplicates:
        described.append(
            (
                pos.line,
                pos.column,
                (
                    f"{file}:{pos.line}:{pos.column}: {_dotted(loc)}: duplicate key "
                    f"`{loc[-1]}` (first at line {first.line}); remove one"
                ),
            )
        )
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        described.extend(_describe(e, positions, file) for e in exc.errors())
    described += _reference_problems(data, positions, file)
    described += _port_problems(data, positions, file)
    described += _metric_problems(data, positions, file)
    problems = [text for _, _, text in sorted(described)]
    if problems or config is None:
        count = len(problems)
        raise UserInputError(
            f"{file}: {count} problem{'s' if count != 1 else ''} in the config",
            problems=problems,
        )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LoadedConfig(config=config, path=file.resolve(), sha256=digest)


def _factory_defaults(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """pydantic leaves out defaults made by a factory; add the plain ones (lists, mappings)
    so that editors and the docs show them. Whole sections stay without one."""
    seen: set[type[BaseModel]] = set()

    def visit(current: type[BaseModel], node: dict[str, Any]) -> None:
        if current in seen:
            return
        seen.add(current)
        properties = node.get("properties", {})
        for name, info in current.model_fields.items():
            prop = properties.get(info.alias or name)
            if prop is None:
                continue
            if info.default_factory is not None and "default" not in prop:
                value = info.default_factory()  # type: ignore[call-arg]
                if isinstance(value, list | dict):
                    prop["default"] = value
            for arg in _models_in(info.annotation):
                visit(arg, schema["$defs"].get(arg.__name__, {}))

    visit(model, schema)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation refers to (through Optional, list, dict, …)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def json_schema() -> dict[str, Any]:
    """The JSON Schema of `mlcd.yaml`, generated from the models above."""
    schema = Config.model_json_schema(by_alias=True, mode="validation")
    _factory_defaults(Config, schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/org/mlcd/schema/mlcd.schema.json"
    schema["title"] = "mlcd.yaml"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
