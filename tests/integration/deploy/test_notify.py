"""Notifications: every rollout event reaches local webhook receivers (real HTTP servers on
127.0.0.1) in JSON, Slack and Teams bodies, while receivers that answer 500, never answer,
or refuse connections change nothing about the rollouts' outcomes.

One module-scoped scenario (kept lean: 1 s intervals, two small environments) runs every
event once; each test then checks one event's bodies.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlcd.ports import free_port
from mlcd.tools.nginx import Nginx
from tests.integration.deploy.conftest import Project, holdout_csv

SLOW_SECONDS = 3.0
HOOK_TIMEOUT = "500ms"


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002
        return  # /slow answers a client that gave up: a broken pipe, expected


class Receiver:
    """A webhook receiver: keeps every body by path; /500 answers 500, /slow hangs."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                data = json.loads(self.rfile.read(length))
                with receiver.lock:
                    receiver.bodies.setdefault(self.path, []).append(data)
                if self.path == "/slow":
                    time.sleep(SLOW_SECONDS)
                status = 500 if self.path == "/500" else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        self.port = free_port()
        self.server = _QuietServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def got(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies.get(path, []))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _canary(**over: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "strategy": "canary",
        "canary": {"steps": [50, 100], "interval": "1s", "min-requests": 100},
        "analysis": {"max-error-rate": 0.01, "max-p99-latency-ms": 2000, "inconclusive-limit": 10},
    }
    env.update(over)
    return env


@pytest.fixture(scope="module")
def scenario(
    standin_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    receiver = Receiver()
    refused = free_port()  # nothing listens there
    failing = [
        {"url": receiver.url("/500"), "timeout": HOOK_TIMEOUT, "retries": 1},
        {"url": receiver.url("/slow"), "timeout": HOOK_TIMEOUT, "retries": 1},
        {"url": f"http://127.0.0.1:{refused}/hook", "timeout": HOOK_TIMEOUT, "retries": 1},
    ]
    envs = {
        "staging": _canary() | {"load-test": {"rps": 150}, "notify": failing},
        "quiet": _canary(analysis={"max-p99-latency-ms": 2000, "inconclusive-limit": 1})
        | {"notify": [{"url": receiver.url("/quiet")}]},
    }
    root = tmp_path_factory.mktemp("notify")
    name = f"dt-{uuid.uuid4().hex[:8]}"
    project = Project(root=root / name, name=name, envs=envs)
    project.root.mkdir()
    project.ports = {env: free_port() for env in envs}
    project.write_config()
    project.config.write_text(
        project.config.read_text()
        + "notify:\n"
        + f"  - {{url: '{receiver.url('/json')}'}}\n"
        + f"  - {{url: '{receiver.url('/slack')}', format: slack}}\n"
        + "  - {url-env: MLCD_TEST_TEAMS_HOOK, format: teams}\n"
    )
    holdout_csv(project.out / "train" / "holdout.csv")
    base_env = project.env

    def env_with_secret() -> dict[str, str]:
        out = base_env()
        out["MLCD_TEST_TEAMS_HOOK"] = receiver.url("/teams-secret-path")
        return out

    project.env = env_with_secret  # type: ignore[method-assign]
    runs: dict[str, subprocess.CompletedProcess[str]] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        v1 = project.release(standin_images["clean"])
        v2 = project.release(standin_images["clean"])
        v3 = project.release(standin_images["fail5"])
        steps = [
            ("first", ("deploy", "staging", "--release", v1), "deploy-staging"),
            ("promoted", ("deploy", "staging", "--release", v2), "deploy-staging"),
            ("rolled back", ("deploy", "staging", "--release", v3), "deploy-staging"),
            ("rollback", ("rollback", "staging"), "rollback-staging"),
            ("quiet first", ("deploy", "quiet", "--release", v1), "deploy-quiet"),
            ("paused", ("deploy", "quiet", "--release", v2), "deploy-quiet"),
            ("abort", ("abort", "quiet"), "abort-quiet"),
        ]
        for label, argv, stage in steps:
            runs[label] = project.mlcd(*argv)
            results[label] = project.result(stage)
        yield {
            "receiver": receiver,
            "project": project,
            "runs": runs,
            "results": results,
            "versions": (v1, v2, v3),
            "refused": refused,
        }
    finally:
        receiver.close()
        for env in envs:
            Nginx(project.state / env / "nginx").stop()
        for container in project.containers():
            subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)


def _events(
    bodies: list[dict[str, Any]], version: str | None = None, env: str = "staging"
) -> list[str]:
    return [
        b["event"]
        for b in bodies
        if (version is None or b["version"] == version) and b["environment"] == env
    ]


def test_outcomes_are_those_of_the_rollouts_despite_failing_webhooks(
    scenario: dict[str, Any],
) -> None:
    runs = scenario["runs"]
    codes = {label: run.returncode for label, run in runs.items()}
    assert codes == {
        "first": 0,
        "promoted": 0,
        "rolled back": 1,
        "rollback": 0,
        "quiet first": 0,
        "paused": 1,
        "abort": 0,
    }, {k: r.stdout[-400:] + r.stderr[-800:] for k, r in runs.items()}
    outcomes = {k: r["details"]["outcome"] for k, r in scenario["results"].items()}
    assert outcomes["promoted"] == "promoted"
    assert outcomes["rolled back"] == "rolled back"
    assert outcomes["paused"] == "paused"
    # each failing receiver is recorded in the deploy's result, never with its address
    record = scenario["results"]["promoted"]["details"]["notifications"]
    failed = {d["webhook"].split(" ")[0] for d in record["deliveries"] if not d["delivered"]}
    port = scenario["receiver"].port
    assert failed == {f"http://127.0.0.1:{port}/…", f"http://127.0.0.1:{scenario['refused']}/…"}
    errors = {d["error"] for d in record["deliveries"] if not d["delivered"]}
    assert "answered HTTP 500" in errors
    assert "connection refused" in errors
    assert any(e.startswith(("no answer within 0.5 s", "not sent")) for e in errors)
    # the healthy receivers got every event: /json (one of three json webhooks there), Slack
    # and Teams
    json_ok = [
        d for d in record["deliveries"] if d["webhook"].endswith("(json)") and d["delivered"]
    ]
    assert len(json_ok) == len(record["events"]) == 4
    assert all(d["delivered"] for d in record["deliveries"] if "(slack" in d["webhook"])
    assert all(d["delivered"] for d in record["deliveries"] if "(teams" in d["webhook"])
    # the failures are logged, and no webhook address reaches the evidence or the logs
    assert "not delivered" in runs["promoted"].stderr
    project: Project = scenario["project"]
    texts = [r.stdout + r.stderr for r in runs.values()]
    texts += [
        p.read_text()
        for p in project.out.rglob("*")
        if p.is_file() and p.suffix in (".json", ".md")
    ]
    assert not any("/teams-secret-path" in t for t in texts)
    assert not any(f"{port}/500" in t or f"{port}/slow" in t for t in texts)


def test_started_and_step_events(scenario: dict[str, Any]) -> None:
    _, v2, _ = scenario["versions"]
    bodies = [
        b
        for b in scenario["receiver"].got("/json")
        if b["version"] == v2 and b["environment"] == "staging"
    ]
    assert _events(bodies)[:3] == ["started", "step", "step passed"]
    started, step, passed = bodies[:3]
    assert started["environment"] == "staging"
    assert started["strategy"] == "canary"
    assert started["summary"].endswith(f"{v2}: rollout to staging started (canary)")
    assert step["summary"].endswith(f"{v2} in staging: canary at 50% of traffic")
    assert step["weight"] == 50
    assert passed["weight"] == 50
    assert passed["metrics"]["canary_requests"] > 0


def test_promoted_event(scenario: dict[str, Any]) -> None:
    v1, v2, _ = scenario["versions"]
    # the first release: nothing to compare with, live at once
    assert _events(scenario["receiver"].got("/json"), v1) == ["started", "promoted"]
    bodies = scenario["receiver"].got("/json")
    # promoted, then rolled back by hand later in the scenario
    assert _events(bodies, v2) == ["started", "step", "step passed", "promoted", "rollback by hand"]
    promoted = next(
        b
        for b in bodies
        if b["version"] == v2 and b["environment"] == "staging" and b["event"] == "promoted"
    )
    assert promoted["url"] == scenario["project"].url("staging")
    slack = [
        b for b in scenario["receiver"].got("/slack") if f"{v2} is live in staging" in b["text"]
    ]
    assert len(slack) == 1
    assert slack[0]["text"].startswith("🎉 ")
    assert slack[0]["blocks"][0]["text"]["type"] == "mrkdwn"


def test_rolled_back_event_names_the_failing_check_and_its_numbers(
    scenario: dict[str, Any],
) -> None:
    _, _, v3 = scenario["versions"]
    bodies = [
        b
        for b in scenario["receiver"].got("/json")
        if b["version"] == v3 and b["environment"] == "staging"
    ]
    assert _events(bodies)[0] == "started"
    back = bodies[-1]
    assert back["event"] == "rolled back"
    assert "analysis failed" in back["detail"]
    assert "error" in " ".join(back["reasons"]) + back["detail"]
    assert back["metrics"]["canary_error_rate"] > back["metrics"]["stable_error_rate"]
    teams = [b for b in scenario["receiver"].got("/teams-secret-path") if v3 in b["summary"]]
    card = teams[-1]["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    assert "rolled back in staging" in card["body"][0]["text"]
    facts = {f["title"]: f["value"] for f in card["body"][-1]["facts"]}
    assert float(facts["canary_error_rate"]) > 0


def test_paused_event_gives_the_reason(scenario: dict[str, Any]) -> None:
    _, v2, _ = scenario["versions"]
    quiet = scenario["receiver"].got("/quiet")
    paused = [b for b in quiet if b["event"] == "paused"]
    assert len(paused) == 1
    assert paused[0]["version"] == v2
    assert paused[0]["environment"] == "quiet"
    assert paused[0]["detail"]  # why it paused (too little traffic)
    assert "paused for a decision" in paused[0]["summary"]
    # the deploy's summary.md carries the same event log
    project: Project = scenario["project"]
    summary = (project.out / "deploy-quiet" / "summary.md").read_text()
    assert "#### Events" in summary
    assert paused[0]["summary"] in summary


def test_rollback_by_hand_events(scenario: dict[str, Any]) -> None:
    v1, v2, _ = scenario["versions"]
    by_hand = [
        b
        for b in scenario["receiver"].got("/json")
        if b["event"] == "rollback by hand" and b["environment"] == "staging"
    ]
    assert [b["version"] for b in by_hand] == [v2]  # `mlcd rollback staging`: v2 → v1
    assert f"{v1} is live again" in by_hand[0]["detail"]
    assert by_hand[0]["reasons"] == []
    aborted = [b for b in scenario["receiver"].got("/quiet") if b["event"] == "rollback by hand"]
    assert [b["version"] for b in aborted] == [v2]
    assert "aborted" in aborted[0]["detail"]


def test_event_filters_and_order(scenario: dict[str, Any]) -> None:
    # the staging-only webhooks never hear about quiet, and each receiver got events in order
    assert all(b["environment"] == "quiet" for b in scenario["receiver"].got("/quiet"))
    got = scenario["receiver"].got("/json")
    times = [b["time"] for b in got]
    assert times == sorted(times)
    assert {b["environment"] for b in got} == {"staging", "quiet"}
    assert Path(scenario["project"].config).is_file()
