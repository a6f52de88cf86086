"""Metric parsing, the nginx configuration, the state file and the environment lock."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from mlcd.errors import GateFailed
from mlcd.rollout.metrics import (
    MetricsError,
    Recent,
    common_windows,
    is_inference_route,
    pair_predictions,
    parse_prometheus,
    parse_recent,
    snapshot,
    window,
)
from mlcd.rollout.router import Backend, RouterSpec, render, render_front, socket_path
from mlcd.rollout.state import Arm, EnvLock, EnvState, Rollout, StateStore, process_start
from mlcd.tools.nginx import split_config

METRICS = """
# HELP mlcd_requests_total requests
# TYPE mlcd_requests_total counter
mlcd_requests_total{route="/predict",status="200"} 95
mlcd_requests_total{route="/predict",status="500"} 5
mlcd_requests_total{route="/predict",status="400"} 3
mlcd_requests_total{route="/healthz",status="200"} 40
mlcd_requests_total{route="/v2/models/m/infer",status="503"} 2
mlcd_request_duration_seconds_bucket{route="/predict",le="0.01"} 90
mlcd_request_duration_seconds_bucket{route="/predict",le="+Inf"} 103
mlcd_request_duration_seconds_bucket{route="/metrics",le="+Inf"} 1000
mlcd_predictions_total{class="0"} 60
mlcd_predictions_total{class="1"} 35
mlcd_prediction_score_bucket{le="0.5"} 60
mlcd_prediction_score_bucket{le="+Inf"} 95
mlcd_model_info{name="m",version="v3"} 1
garbage line without value
"""


def test_snapshot_counts_inference_routes_only() -> None:
    snap = snapshot(parse_prometheus(METRICS))
    assert snap.requests == 105
    assert snap.errors == 7  # 5xx only; a client's 400 is not the model's error
    assert snap.latency_buckets == {0.01: 90, math.inf: 103}
    assert snap.classes == {"0": 60, "1": 35}
    assert snap.model_version == "v3"


def test_labels_with_escapes() -> None:
    [sample] = parse_prometheus('x{a="q\\"uote",b="2"} 1.5')
    assert sample.labels == {"a": 'q"uote', "b": "2"}
    assert sample.value == 1.5


@pytest.mark.parametrize(
    ("route", "inference"),
    [
        ("/predict", True),
        ("predict", True),
        ("/v2/models/x/infer", True),
        ("/healthz", False),
        ("/metrics", False),
        ("/v1/recent-predictions", False),
        ("/readyz", False),
    ],
)
def test_inference_routes(route: str, inference: bool) -> None:
    assert is_inference_route(route) is inference


def test_window_is_the_difference_and_a_reset_is_an_error() -> None:
    before = snapshot(parse_prometheus(METRICS))
    after = snapshot(parse_prometheus(METRICS.replace("} 95\n", "} 195\n", 1)))
    delta = window(before, after, [1.0, 2.0])
    assert delta.requests == 100
    assert delta.errors == 0
    assert delta.latencies_ms == (1.0, 2.0)
    with pytest.raises(MetricsError, match="restarted"):
        window(after, before)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("} 195\n", "} NaN\n", 1), "NaN or infinite"),
        (lambda t: t.replace("} 195\n", "} +Inf\n", 1), "NaN or infinite"),
        (lambda t: t + "process_start_time_seconds 1700000999\n", "process start time"),
        (lambda t: t.replace('le="0.01"} 90', 'le="0.01"} 80'), "latency buckets"),
        (lambda t: t.replace('class="1"} 35', 'class="1"} 30'), "class counts"),
        (lambda t: t.replace('le="+Inf"} 103', 'le="+Inf"} 80'), "not cumulative"),
    ],
)
def test_unusable_readings_are_metrics_errors(edit: Any, message: str) -> None:
    base = METRICS + "process_start_time_seconds 1700000000\n"
    before = snapshot(parse_prometheus(base))
    text = METRICS.replace("} 95\n", "} 195\n", 1)
    after_text = edit(text)
    if "process_start_time_seconds" not in after_text:
        after_text += "process_start_time_seconds 1700000000\n"
    with pytest.raises(MetricsError, match=message):
        window(before, snapshot(parse_prometheus(after_text)))


def test_a_restart_whose_counters_climbed_back_is_seen_by_its_start_time() -> None:
    before = snapshot(parse_prometheus(METRICS + "process_start_time_seconds 100\n"))
    bigger = METRICS.replace("} 95\n", "} 995\n", 1) + "process_start_time_seconds 160\n"
    with pytest.raises(MetricsError, match="restarted"):
        window(before, snapshot(parse_prometheus(bigger)))
    same = METRICS.replace("} 95\n", "} 995\n", 1) + "process_start_time_seconds 100\n"
    assert window(before, snapshot(parse_prometheus(same))).requests == 900


def test_recent_predictions_and_pairing() -> None:
    stable = parse_recent(
        {
            "predictions": [
                {
                    "request_id": "a",
                    "predictions": [1],
                    "status": 200,
                    "latency_ms": 2.0,
                    "time": "t",
                },
                {"request_id": "b", "predictions": [0], "status": 200, "latency_ms": 3.0},
                {"request_id": "c", "predictions": [], "status": 500, "latency_ms": 1.0},
                {"predictions": [1]},
            ]
        }
    )
    shadow = [Recent("a", (0,), 200, 5.0), Recent("b", (0,), 200, 4.0), Recent("c", (1,), 200, 1)]
    seen: set[str] = set()
    assert pair_predictions(stable, shadow, seen) == [(1, 0), (0, 0)]
    assert pair_predictions(stable, shadow, seen) == []  # each request pairs once
    with pytest.raises(MetricsError):
        parse_recent({"nope": 1})


def test_common_windows_compare_the_same_requests() -> None:
    stable = [Recent("a", (1,), 200, 2.0), Recent("x", (1,), 200, 2.0), Recent("b", (0,), 500, 3.0)]
    preview = [Recent("a", (0,), 200, 5.0), Recent("b", (0,), 200, 4.0)]
    used: set[str] = set()
    s, p = common_windows(stable, preview, used)
    assert (s.requests, s.errors, dict(s.classes)) == (2, 1, {"1": 1})
    assert (p.requests, p.errors, dict(p.classes)) == (2, 0, {"0": 2})
    assert used == {"a", "b"}


# ---------------------------------------------------------------------- router


def test_split_config(tmp_path: Path) -> None:
    text = render(
        RouterSpec(
            port=8081, mode="split", generation=3, primary=(Backend(1001, 90), Backend(1002, 10))
        ),
        tmp_path,
    )
    assert "listen 127.0.0.1:8081 backlog=4096;" in text
    assert "server 127.0.0.1:1001 weight=90" in text
    assert "server 127.0.0.1:1002 weight=10" in text
    assert "proxy_set_header X-Request-ID $mlcd_request_id;" in text
    assert '"" $request_id;' in text  # nginx's id when the client sent none
    assert "mirror" not in text
    assert '"generation": 3' in text
    assert f"pid {tmp_path.resolve()}/nginx.pid;" in text


def test_mirror_config_mirrors_inference_routes_only(tmp_path: Path) -> None:
    text = render(
        RouterSpec(port=8081, mode="mirror", primary=(Backend(1001),), shadow=Backend(1003)),
        tmp_path,
    )
    assert text.count("mirror /_mlcd/mirror;") == 2
    assert "location = /predict {" in text
    assert "location ~ ^/v2/models/[^/]+/infer$ {" in text
    root = text.split("location / {")[1]
    assert "mirror" not in root.split("}")[0]  # health, metrics… are not mirrored
    assert "proxy_pass http://mlcd_shadow$request_uri;" in text
    assert "internal;" in text
    assert "proxy_ignore_client_abort on;" in text  # the copy outlives the client


def test_the_router_is_a_static_client_side_and_reloaded_routes(tmp_path: Path) -> None:
    spec = RouterSpec(port=8081, mode="mirror", primary=(Backend(1001),), shadow=Backend(1003))
    routes, front = split_config(render(spec, tmp_path))
    assert front is not None
    sock = socket_path(tmp_path)
    assert f"listen unix:{sock};" in routes
    assert "127.0.0.1:8081" not in routes  # clients never connect to what reloads
    assert f"server unix:{sock} max_fails=0;" in front
    assert "keepalive 32" not in front  # one connection per request to the routes
    assert front == render_front(8081, tmp_path)  # independent of the routes
    # the client side: keep-alive, limits, timeouts, the server's header size, JSON errors
    for line in (
        "keepalive_timeout 65s;",
        "limit_conn mlcd_per_client 512;",
        "client_header_timeout 10s;",
        "client_body_timeout 10s;",
        "large_client_header_buffers 4 64k;",
        "worker_processes 2;",
    ):
        assert line in front, line
    for code in (400, 413, 414, 429, 494, 502, 503, 504):
        assert f"error_page {code} /_mlcd/error/{code};" in front
    assert 'return 400 \'{"error": "a request header is over' in front  # 494 shows as 400


def test_a_docker_hosts_router_shares_one_socket_and_listens_on_every_address() -> None:
    """The docker-host router's two containers: the socket is in their shared volume."""
    spec = RouterSpec(
        port=8081,
        mode="split",
        primary=(Backend(8080, 90, host="v1"), Backend(8080, 10, host="v2")),
        listen="0.0.0.0",
        socket="/mlcd/router/routes.sock",
    )
    routes, front = split_config(render(spec, Path("/mlcd/router")))
    assert front is not None
    assert "listen unix:/mlcd/router/routes.sock;" in routes
    assert ":8081" not in routes
    assert "server unix:/mlcd/router/routes.sock max_fails=0;" in front
    assert "listen 0.0.0.0:8081 backlog=4096;" in front
    assert "pid /mlcd/router/front/nginx.pid;" in front
    assert "server v2:8080 weight=10" in routes
    assert front == render_front(
        8081, Path("/mlcd/router"), listen="0.0.0.0", socket="/mlcd/router/routes.sock"
    )


def test_only_inference_is_retried_across_arms_and_never_the_mirror(tmp_path: Path) -> None:
    spec = RouterSpec(port=8081, mode="mirror", primary=(Backend(1001),), shadow=Backend(1003))
    routes, _ = split_config(render(spec, tmp_path))
    blocks = {b.split("{", 1)[0].strip(): b for b in routes.split("    location ")[1:]}
    for where in ("= /predict", "~ ^/v2/models/[^/]+/infer$"):
        assert "proxy_next_upstream error timeout non_idempotent;" in blocks[where]
    assert "proxy_next_upstream off;" in blocks["= /_mlcd/mirror"]
    assert "non_idempotent" not in blocks["/"]
    assert routes.count("non_idempotent") == 2


def test_single_and_invalid_specs(tmp_path: Path) -> None:
    text = render(RouterSpec(port=9, mode="single", primary=(Backend(1001, 5),)), tmp_path)
    assert "server 127.0.0.1:1001 max_fails" in text  # no weight with one server
    with pytest.raises(ValueError, match="backend"):
        render(RouterSpec(port=9, mode="single", primary=()), tmp_path)
    with pytest.raises(ValueError, match="shadow"):
        render(RouterSpec(port=9, mode="mirror", primary=(Backend(1),)), tmp_path)


# ---------------------------------------------------------------------- state and lock


def test_state_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path, "staging", "p")
    state = store.load()
    assert state.stable is None
    arm = Arm("v1", "img@sha256:1", "c1", 1234, "blue")
    state.stable = arm
    state.rollout = Rollout(
        "v2",
        "img@sha256:2",
        "canary",
        "paused",
        candidate=Arm("v2", "i", "c2", 1, "green"),
        weight=10,
    )
    state.record("paused", "v2", detail="why")
    store.save(state)
    again = store.load()
    assert again.stable == arm
    assert again.rollout is not None
    assert again.rollout.candidate is not None
    assert again.rollout.candidate.container == "c2"
    assert again.history[-1]["event"] == "paused"
    assert EnvState.from_json(json.loads(store.path.read_text())).stable == arm


def test_lock_refuses_a_live_holder_and_names_it(tmp_path: Path) -> None:
    first = EnvLock(tmp_path, "staging")
    first.acquire("mlcd deploy staging")
    try:
        with pytest.raises(GateFailed, match=f"locked by pid {os.getpid()}"):
            EnvLock(tmp_path, "staging").acquire("mlcd deploy staging")
        holder = EnvLock(tmp_path, "staging").peek()
        assert holder is not None
        assert holder.command == "mlcd deploy staging"
    finally:
        first.release()
    assert EnvLock(tmp_path, "staging").peek() is None


def test_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    # a lock file written by a process that is gone (its flock died with it)
    (tmp_path / "lock").write_text(
        json.dumps(
            {"pid": 999999, "start": "1", "host": "h", "command": "mlcd deploy", "acquired": "t"}
        )
    )
    lock = EnvLock(tmp_path, "staging")
    lock.acquire("mlcd status staging")
    assert lock.previous is not None
    assert lock.previous.pid == 999999
    assert json.loads((tmp_path / "lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_process_start_identifies_this_process() -> None:
    assert process_start(os.getpid())
    assert process_start(2**22 + 12345) is None
