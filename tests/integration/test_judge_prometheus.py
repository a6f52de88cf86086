"""`mlcd judge` (the Kubernetes analysis Job's loop) against a real Prometheus.

Two arms on 127.0.0.1 expose the model server's own metrics (rendered by
`mlcd.serve.metrics.Metrics`, fed with simulated requests: the stable at 0.5 % errors, the
canary at 5 %); Debian's Prometheus scrapes them every second with the labels a Kubernetes
pod carries (`app_kubernetes_io_name`, `rollouts_pod_template_hash`); the judge reads both
through Prometheus' HTTP API and must fail the canary on its error rate (exit 1).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlcd.ports import free_port
from mlcd.serve.metrics import SCORE_BUCKETS_PROBA, Layout, Metrics

ROOT = Path(__file__).resolve().parents[2]
ROUTES = ("/predict", "other")


class Arm:
    """A /metrics endpoint of the server's metrics, with simulated traffic."""

    def __init__(self, error_rate: float, seed: int) -> None:
        self.metrics = Metrics(
            Layout(ROUTES, [0, 1], SCORE_BUCKETS_PROBA), 1, name="m", version="v"
        )
        self.error_rate = error_rate
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        arm = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with arm.lock:
                    body = arm.metrics.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def traffic(self, n: int) -> None:
        with self.lock:
            for _ in range(n):
                failed = self.rng.random() < self.error_rate
                seconds = self.rng.lognormvariate(-5.0, 0.4)  # about 7 ms
                self.metrics.observe_request("/predict", 500 if failed else 200, seconds)
                if not failed:
                    label = int(self.rng.random() < 0.4)
                    self.metrics.observe_predictions([label], [0.3 + 0.4 * label])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Arm, Arm]]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is installed by scripts/setup/apt.sh"
    stable, canary = Arm(0.005, 1), Arm(0.05, 2)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    jobs = []
    for name, arm, pod_hash in (("stable", stable, "s1"), ("canary", canary, "c1")):
        jobs.append(
            {
                "job_name": name,
                "scrape_interval": "1s",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{arm.port}"],
                        "labels": {
                            "app_kubernetes_io_name": "m",
                            "rollouts_pod_template_hash": pod_hash,
                        },
                    }
                ],
            }
        )
    config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}))
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            stable.traffic(100)
            canary.traffic(100)
            time.sleep(0.5)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield f"http://127.0.0.1:{port}", stable, canary
    finally:
        stop.set()
        process.terminate()
        process.wait(timeout=30)
        stable.server.shutdown()
        canary.server.shutdown()


def test_the_judge_reads_prometheus_and_fails_a_bad_canary(
    prometheus: tuple[str, Arm, Arm],
) -> None:
    address, _stable, _canary = prometheus
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlcd.rollout.watch",
            "--prometheus",
            address,
            "--canary",
            'app_kubernetes_io_name="m",rollouts_pod_template_hash="c1"',
            "--stable",
            'app_kubernetes_io_name="m",rollouts_pod_template_hash="s1"',
            "--interval",
            "3s",
            "--min-requests",
            "200",
            "--min-intervals",
            "1",
            "--max-intervals",
            "20",
            "--analysis",
            json.dumps({"max-error-rate": 0.01, "max-p99-latency-ms": 500}),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PYTHONPATH": str(ROOT / "scripts"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    print(done.stdout[-3000:], done.stderr[-2000:])
    assert done.returncode == 1, done.stderr
    assert lines[-1]["result"] == "failed"
    judged = [line for line in lines if line.get("outcome") == "fail"]
    assert judged, lines
    assert "error rate" in judged[-1]["reasons"][0]
    metrics = judged[-1]["metrics"]
    assert metrics["canary_requests"] >= 200  # counters came through Prometheus
    assert metrics["stable_requests"] >= 200
    assert metrics["canary_p50_ms"] is not None  # the R40 histogram came through too
