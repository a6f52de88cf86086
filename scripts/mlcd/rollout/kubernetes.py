"""The Kubernetes target: the rollout as Argo Rollouts objects, applied with kubectl.

For `target: kubernetes` mlcd renders, for each deploy:
- a `Rollout` whose strategy is `canary` (one `setWeight` + `pause` per step, a background
  analysis from the first step) or `blueGreen` (a preview service, pre-promotion analysis,
  `scaleDownDelaySeconds`);
- an `AnalysisTemplate` whose Prometheus queries carry the absolute limits as fixed
  thresholds: error rate ≤ `max-error-rate`, p99 ≤ `max-p99-latency-ms`, and an inconclusive
  "too little traffic" metric below `min-requests`, with the environment's failure-,
  inconclusive- and consecutive-error-limits (a background analysis);
- an `AnalysisTemplate` `<name>-judge` whose one metric is a Job running mlcd's own judge
  (`python -m mlcd.rollout.watch`, i.e. `mlcd judge`) in the release's image against the
  cluster's Prometheus: the canary step (or the blue/green promotion) waits for it, so the
  step passes only when the judge shows the tolerances, as on the local target;
- the `Service`s the strategy names (stable + canary, or active + preview).
Every object is validated before it is written: the two Argo kinds against the JSON schemas
kept in `mlcd/data/schemas/`, and the built-in kinds by the tests with kubernetes-validate.
`mlcd.rollout.targets.kubernetes` applies them with kubectl and waits for the cluster's Argo
Rollouts controller, which moves the traffic and runs the analysis, to finish.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mlcd.config import AnalysisSection, BlueGreenSection, CanarySection, EnvironmentSection
from mlcd.errors import UserInputError
from mlcd.rollout.state import safe_name
from mlcd.rollout.watch import METRIC_NAMES

ARGO_API = "argoproj.io/v1alpha1"
SCHEMAS = {
    "Rollout": "rollout.schema.json",
    "AnalysisTemplate": "analysistemplate.schema.json",
    # the admission policy of signed releases (mlcd.signing.admission)
    "ClusterPolicy": "clusterpolicy.schema.json",
    "ClusterImagePolicy": "clusterimagepolicy.schema.json",
}
INFERENCE_ROUTES = "/predict|/v2/models/.+/infer"


def _duration(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def object_name(project: str, env: str) -> str:
    return safe_name(f"{project}-{env}").lower()[:50].strip("-.")


def labels_of(project: str, env: str) -> dict[str, str]:
    """The labels of every object of an environment (`mlcd down` deletes by them)."""
    return _labels(project, env)


def _labels(project: str, env: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": safe_name(project),
        "app.kubernetes.io/managed-by": "mlcd",
        "mlcd.dev/env": safe_name(env),
    }


def analysis_template(
    name: str, project: str, section: EnvironmentSection, interval: float, min_requests: int
) -> dict[str, Any]:
    a = section.analysis
    selector = (
        f'app_kubernetes_io_name="{safe_name(project)}",'
        'rollouts_pod_template_hash="{{args.canary-hash}}",'
        f'route=~"{INFERENCE_ROUTES}"'
    )
    window = _duration(max(interval, 30.0))
    limits = {
        "failureLimit": a.failure_limit,
        # no inconclusive-limit: a step's max-intervals is the limit, as on the local target
        "inconclusiveLimit": (
            a.max_intervals if a.inconclusive_limit is None else a.inconclusive_limit
        ),
        "consecutiveErrorLimit": a.consecutive_error_limit,
    }
    every = _duration(interval)
    requests = f"sum(increase(mlcd_requests_total{{{selector}}}[{window}]))"
    errors = (
        f'sum(rate(mlcd_requests_total{{{selector},status=~"5.."}}[{window}])) / '
        f"clamp_min(sum(rate(mlcd_requests_total{{{selector}}}[{window}])), 1e-9)"
    )
    p99 = (
        "histogram_quantile(0.99, sum by (le) (rate("
        f"mlcd_request_duration_seconds_bucket{{{selector}}}[{window}]))) * 1000"
    )
    address = section.kubernetes.prometheus

    def metric(metric_name: str, query: str, success: str, failure: str) -> dict[str, Any]:
        return {
            "name": metric_name,
            "interval": every,
            "successCondition": success,
            "failureCondition": failure,
            **limits,
            "provider": {"prometheus": {"address": address, "query": query}},
        }

    return {
        "apiVersion": ARGO_API,
        "kind": "AnalysisTemplate",
        "metadata": {
            "name": f"{name}-analysis",
            "namespace": section.kubernetes.namespace,
            "labels": _labels(project, "analysis"),
        },
        "spec": {
            "args": [{"name": "canary-hash"}],
            "metrics": [
                # neither condition holds below min-requests: the measurement is inconclusive
                metric(
                    "enough-requests",
                    requests,
                    f"len(result) > 0 && result[0] >= {min_requests}",
                    "false",
                ),
                # the absolute limits are the user's SLO: a metric only when one is set
                *(
                    [
                        metric(
                            "error-rate",
                            errors,
                            f"len(result) == 0 || isNaN(result[0]) || result[0] <= {err}",
                            f"len(result) > 0 && result[0] > {err}",
                        )
                    ]
                    if (err := a.max_error_rate) is not None
                    else []
                ),
                *(
                    [
                        metric(
                            "p99-latency-ms",
                            p99,
                            f"len(result) == 0 || isNaN(result[0]) || result[0] <= {slo}",
                            f"len(result) > 0 && result[0] > {slo}",
                        )
                    ]
                    if (slo := a.max_p99_latency_ms) is not None
                    else []
                ),
            ],
        },
    }


def _judge_analysis(a: AnalysisSection) -> dict[str, Any]:
    """environments.<env>.analysis as the judge's --analysis reads it."""
    return {
        "max-error-rate": a.max_error_rate,
        "max-p99-latency-ms": a.max_p99_latency_ms,
        "max-prediction-shift": a.max_prediction_shift,
        "max-latency-increase": a.max_latency_increase,
        "min-latency-increase-ms": a.min_latency_increase_ms,
        "latency-ok-ms": a.latency_ok_ms,
        "max-error-rate-increase": a.max_error_rate_increase,
        "quantiles": dict(a.quantiles),
        "alpha": a.alpha,
        "max-intervals": a.max_intervals,
        "failure-limit": a.failure_limit,
        "inconclusive-limit": a.inconclusive_limit,
        "consecutive-error-limit": a.consecutive_error_limit,
    }


def _container_security() -> dict[str, Any]:
    """What every container of the rollout runs with (a new dict each time: YAML would
    write a shared one as an anchor and aliases)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _judge_job(project: str, image: str, command: list[str], deadline: int) -> dict[str, Any]:
    return {
        "backoffLimit": 0,
        "activeDeadlineSeconds": deadline,
        "template": {
            "metadata": {"labels": _labels(project, "judge")},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": True},
                "containers": [
                    {
                        "name": "judge",
                        "image": image,
                        "command": command,
                        "resources": _resources("50m", "128Mi", "512Mi"),
                        "securityContext": _container_security(),
                    }
                ],
            },
        },
    }


def _resources(cpu: str, memory: str, memory_limit: str) -> dict[str, Any]:
    """A container's resources as every container here has them: CPU and memory requested,
    memory limited."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}


def judge_template(
    name: str,
    project: str,
    section: EnvironmentSection,
    *,
    image: str,
    interval: float,
    min_requests: int,
    min_intervals: int,
) -> dict[str, Any]:
    """The AnalysisTemplate whose Job runs mlcd's judge for one step (docs/deploy.md)."""
    a = section.analysis
    k8s = section.kubernetes
    pods = f'app_kubernetes_io_name="{safe_name(project)}",rollouts_pod_template_hash='
    command = [
        "python",
        "-m",
        "mlcd.rollout.watch",
        "--prometheus",
        k8s.prometheus,
        "--canary",
        pods + '"{{args.canary-hash}}"',
        "--stable",
        pods + '"{{args.stable-hash}}"',
        "--interval",
        _duration(interval),
        "--min-requests",
        str(min_requests),
        "--min-intervals",
        str(min_intervals),
        "--max-intervals",
        str(a.max_intervals),
        "--analysis",
        json.dumps(_judge_analysis(a), sort_keys=True),
    ]
    deadline = round(interval * (a.max_intervals + 2) + 120)
    job = _judge_job(project, image, command, deadline)
    return {
        "apiVersion": ARGO_API,
        "kind": "AnalysisTemplate",
        "metadata": {
            "name": f"{name}-judge",
            "namespace": k8s.namespace,
            "labels": _labels(project, "analysis"),
            "annotations": {"mlcd.dev/reads": ",".join(METRIC_NAMES)},
        },
        "spec": {
            "args": [{"name": "canary-hash"}, {"name": "stable-hash"}],
            "metrics": [
                {"name": "mlcd-judge", "failureLimit": 0, "provider": {"job": {"spec": job}}}
            ],
        },
    }


def _service(
    name: str, namespace: str, labels: dict[str, str], selector: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


_Strategy = tuple[dict[str, Any], list[str], dict[str, Any], dict[str, Any]]


def _refs(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rollout's references to its two AnalysisTemplates (thresholds, mlcd's judge)."""
    analysis_ref: dict[str, Any] = {
        "templates": [{"templateName": f"{name}-analysis"}],
        "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}],
    }
    judge_ref: dict[str, Any] = {
        "templates": [{"templateName": f"{name}-judge"}],
        "args": [
            {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}},
        ],
    }
    return analysis_ref, judge_ref


HEADER_ROUTE = "mlcd-header"


def traffic_routing(
    name: str, env: str, section: EnvironmentSection
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The canary's `trafficRouting` and the steps that go before the first weight: with
    `routing.header` and a traffic router, requests whose header says `canary` go to the
    canary (istio: a managed header route, `setHeaderRoute`; nginx: ingress-nginx's
    `canary-by-header`). A sticky key cannot be honoured here: Argo Rollouts' routers split
    traffic per request."""
    k8s = section.kubernetes
    routing = section.routing
    if routing.sticky_key:
        raise UserInputError(
            f"environments.{env}.routing.sticky-key: the kubernetes target cannot keep a user "
            "on one arm (Argo Rollouts' traffic routers split each request by weight)",
            hint=f"remove sticky-key from {env}, or use a local or docker-host environment",
        )
    if k8s.traffic_router == "none":
        return {}, []
    target = k8s.traffic_object or name
    if k8s.traffic_router == "nginx":
        nginx: dict[str, Any] = {"stableIngress": target}
        if routing.header:
            nginx["additionalIngressAnnotations"] = {
                "canary-by-header": routing.header,
                "canary-by-header-value": "canary",
            }
        return {"nginx": nginx}, []
    istio = {"virtualService": {"name": target, "routes": ["primary"]}}
    if not routing.header:
        return {"istio": istio}, []
    match = [{"headerName": routing.header, "headerValue": {"regex": "(?i)^canary$"}}]
    return (
        {"managedRoutes": [{"name": HEADER_ROUTE}], "istio": istio},
        [{"setHeaderRoute": {"name": HEADER_ROUTE, "match": match}}],
    )


def _canary(
    name: str, project: str, section: EnvironmentSection, image: str, env: str = ""
) -> _Strategy:
    """The canary strategy, its services and its two AnalysisTemplates."""
    analysis_ref, judge_ref = _refs(name)
    cfg = section.canary
    routing, first = traffic_routing(name, env, section)
    steps: list[dict[str, Any]] = list(first)
    for weight in cfg.steps:
        if weight >= 100:
            continue
        # the step lasts as long as mlcd's judge needs (min- to max-intervals)
        steps += [{"setWeight": weight}, {"analysis": judge_ref}]
    weighted = len(steps) > len(first)
    spec: dict[str, Any] = {
        "canary": {
            "stableService": f"{name}-stable",
            "canaryService": f"{name}-canary",
            # the background analysis starts with the first weight's judge step
            "analysis": {**analysis_ref, "startingStep": len(first) + 1 if weighted else 0},
            "steps": steps,
            **({"trafficRouting": routing} if routing else {}),
        }
    }
    template, judged = _templates(
        name, project, section, image, cfg, min_intervals=cfg.min_intervals
    )
    return spec, [f"{name}-stable", f"{name}-canary"], template, judged


def _templates(
    name: str,
    project: str,
    section: EnvironmentSection,
    image: str,
    cfg: CanarySection | BlueGreenSection,
    *,
    min_intervals: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The strategy's two analysis templates: the Prometheus one and the judge Job's."""
    template = analysis_template(name, project, section, cfg.interval, cfg.min_requests)
    judged = judge_template(
        name,
        project,
        section,
        image=image,
        interval=cfg.interval,
        min_requests=cfg.min_requests,
        min_intervals=min_intervals,
    )
    return template, judged


def _blue_green(name: str, project: str, section: EnvironmentSection, image: str) -> _Strategy:
    """The blue-green strategy (both analyses before promotion), services and templates."""
    analysis_ref, judge_ref = _refs(name)
    bg = section.blue_green
    spec: dict[str, Any] = {
        "blueGreen": {
            "activeService": f"{name}-active",
            "previewService": f"{name}-preview",
            "autoPromotionEnabled": True,
            "prePromotionAnalysis": {
                "templates": [*analysis_ref["templates"], *judge_ref["templates"]],
                "args": judge_ref["args"],
            },
            "scaleDownDelaySeconds": max(0, round(bg.scale_down_delay)),
        }
    }
    min_intervals = max(1, round(bg.preview_duration / max(bg.interval, 0.001)))
    template, judged = _templates(name, project, section, image, bg, min_intervals=min_intervals)
    return spec, [f"{name}-active", f"{name}-preview"], template, judged


def _model_container(image: str, version: str) -> dict[str, Any]:
    return {
        "name": "model",
        "image": image,
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [
            {"name": "MLCD_PORT", "value": "8080"},
            {"name": "MLCD_MODEL_VERSION", "value": version},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 10,
        },
        "resources": _resources("100m", "256Mi", "1Gi"),
        "securityContext": _container_security(),
    }


def _rollout(
    name: str,
    section: EnvironmentSection,
    labels: dict[str, str],
    selector: dict[str, str],
    *,
    version: str,
    image: str,
    strategy_spec: dict[str, Any],
) -> dict[str, Any]:
    k8s = section.kubernetes
    secrets = [{"name": n} for n in k8s.image_pull_secrets]
    return {
        "apiVersion": ARGO_API,
        "kind": "Rollout",
        "metadata": {
            "name": name,
            "namespace": k8s.namespace,
            "labels": {**labels, "mlcd.dev/version": safe_name(version)},
        },
        "spec": {
            "replicas": k8s.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": {**labels, "mlcd.dev/version": safe_name(version)},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "8080",
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    **({"imagePullSecrets": secrets} if secrets else {}),
                    "securityContext": {"runAsNonRoot": True},
                    "containers": [_model_container(image, version)],
                },
            },
            "strategy": strategy_spec,
        },
    }


def render(
    project: str,
    env: str,
    section: EnvironmentSection,
    *,
    version: str,
    image: str,
    strategy: str,
) -> list[dict[str, Any]]:
    """The objects of one rollout, in the order they are applied."""
    if strategy == "shadow":
        raise UserInputError(
            f"environments.{env}: the kubernetes target does canary and blue-green; shadow "
            "traffic needs a service mesh's mirroring, which mlcd does not configure",
            hint=f"use --strategy canary or blue-green for {env}, or a local environment",
        )
    k8s = section.kubernetes
    name = object_name(project, env)
    labels = _labels(project, env)
    selector = {
        "app.kubernetes.io/name": labels["app.kubernetes.io/name"],
        "mlcd.dev/env": labels["mlcd.dev/env"],
    }
    if strategy == "canary":
        strategy_spec, services, template, judged = _canary(name, project, section, image, env)
    else:
        strategy_spec, services, template, judged = _blue_green(name, project, section, image)
    rollout = _rollout(
        name,
        section,
        labels,
        selector,
        version=version,
        image=image,
        strategy_spec=strategy_spec,
    )
    svc = [_service(s, k8s.namespace, labels, selector) for s in services]
    return [*svc, template, judged, rollout]


def schema(kind: str) -> dict[str, Any]:
    text = resources.files("mlcd").joinpath("data", "schemas", SCHEMAS[kind]).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def validate_custom(obj: dict[str, Any]) -> list[str]:
    """Problems of an Argo Rollouts object (or the signing admission policy) against the
    project's schema (empty: valid)."""
    import jsonschema  # only the Kubernetes target needs it

    kind = str(obj.get("kind"))
    if kind not in SCHEMAS:
        return []
    validator = jsonschema.Draft202012Validator(schema(kind))
    return [
        f"{kind} {'.'.join(str(p) for p in err.absolute_path) or '(top)'}: {err.message}"
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    ]


def write(objects: list[dict[str, Any]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, obj in enumerate(objects):
        path = folder / f"{index:02d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False), "utf-8")
        paths.append(path)
    return paths
