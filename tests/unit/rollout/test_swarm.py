"""The swarm target's pure parts: names, the probe's ports and configuration, and the judge's
reading of an arm as the sum over its tasks (a task that restarts or vanishes is no error)."""

from __future__ import annotations

from typing import Any

import pytest

from mlcd.config import EnvironmentSection
from mlcd.rollout.judge import ArmWindow
from mlcd.rollout.metrics import MetricsError
from mlcd.rollout.targets import swarm
from mlcd.rollout.targets.swarm import (
    SwarmArmReader,
    add_windows,
    arm_ports,
    control_server,
    probe_config,
    service_name,
)

pytestmark = pytest.mark.unit


def test_service_names_are_dns_labels_of_at_most_63_characters() -> None:
    assert service_name("mlcd", "Proj", "staging", "1.2.0", "blue") == (
        "mlcd-proj-staging-1-2-0-blue"
    )
    long = service_name("mlcd", "p" * 80, "staging", "1.0.0", "green")
    assert len(long) == 63
    assert long != service_name("mlcd", "p" * 80, "staging", "1.0.1", "green")
    assert all(c.isalnum() or c == "-" for c in long)


def test_arm_ports_are_stable_and_distinct() -> None:
    names = [f"mlcd-p-e-0-{i}-0-blue" for i in range(40)]
    ports = arm_ports(names)
    assert len(set(ports.values())) == 40
    assert all(8100 <= p <= 8999 for p in ports.values())
    assert arm_ports(list(reversed(names))) == ports


def test_probe_forwards_to_tasks_by_address_and_to_each_arm_by_port() -> None:
    text = probe_config({"mlcd-p-e-1-0-0-blue": 8123}, 18099)
    assert "resolver 127.0.0.11" in text
    assert "proxy_pass http://$ip:8080$rest$is_args$args;" in text
    assert "proxy_pass http://$ip:18099$rest;" in text
    assert "listen 8123;" in text
    assert "set $mlcd_arm tasks.mlcd-p-e-1-0-0-blue;" in text
    assert text.count("{") == text.count("}")


def test_the_router_control_port_takes_only_a_put_of_the_routes() -> None:
    text = control_server(18099)
    assert "listen 18099;" in text
    assert "dav_methods PUT;" in text
    assert "limit_except PUT { deny all; }" in text


def test_swarm_keys_default_to_one_replica_and_the_router_on_managers() -> None:
    section = EnvironmentSection.model_validate(
        {"target": "swarm", "host": "ssh://root@10.0.0.5"}, strict=False
    )
    assert section.swarm.replicas == 1
    assert section.swarm.placement == []
    assert section.swarm.router_nodes == ["node.role==manager"]


def test_windows_of_tasks_add_up() -> None:
    one = ArmWindow(
        requests=10,
        errors=1,
        latencies_ms=(5.0,),
        latency_buckets=((0.1, 8), (1.0, 10)),
        classes={"a": 6, "b": 4},
        score_buckets=((0.5, 3),),
    )
    two = ArmWindow(
        requests=5,
        errors=0,
        latencies_ms=(7.0, 9.0),
        latency_buckets=((0.1, 5), (1.0, 5)),
        classes={"b": 5},
        score_buckets=((0.5, 1),),
    )
    total = add_windows([one, two])
    assert (total.requests, total.errors) == (15, 1)
    assert sorted(total.latencies_ms) == [5.0, 7.0, 9.0]
    assert total.latency_buckets == ((0.1, 13), (1.0, 15))
    assert total.classes == {"a": 6, "b": 9}
    assert total.score_buckets == ((0.5, 4),)


def _metrics(requests: int, errors: int, start: float) -> bytes:
    ok = requests - errors
    return (
        f'mlcd_requests_total{{route="/predict",status="200"}} {ok}\n'
        f'mlcd_requests_total{{route="/predict",status="500"}} {errors}\n'
        f"process_start_time_seconds {start}\n"
    ).encode()


class _Swarm:
    """The target as the reader sees it: tasks by name and the probe's port."""

    def __init__(self) -> None:
        self.listed: dict[str, str] = {}

    def tasks(self, service: str) -> dict[str, str]:
        assert service == "svc"
        return dict(self.listed)

    def probe_port(self) -> int:
        return 1


def _reader(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, bytes | None]
) -> tuple[SwarmArmReader, _Swarm]:
    target = _Swarm()

    def get(port: int, path: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
        ip = path.split("/")[2]
        body = answers.get(ip)
        if body is None:
            raise MetricsError(f"no answer from {ip}")
        if "recent-predictions" in path:
            return 200, b'{"predictions": []}'
        return 200, body

    monkeypatch.setattr(swarm, "http_get", get)
    reader = SwarmArmReader(target, "svc")  # type: ignore[arg-type]
    return reader, target


def test_the_reader_sums_tasks_and_a_restarted_or_new_task_counts_from_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: dict[str, Any] = {
        "10.0.0.2": _metrics(100, 1, 1000.0),
        "10.0.0.3": _metrics(50, 0, 1000.0),
    }
    reader, target = _reader(monkeypatch, answers)
    target.listed = {"svc.1.a": "10.0.0.2", "svc.2.b": "10.0.0.3"}
    reader.start()
    # task a served 20 more; task b restarted (new start time, counters from 0) and served 7
    # with 1 error; a new task c appeared and served 3
    answers["10.0.0.2"] = _metrics(120, 1, 1000.0)
    answers["10.0.0.3"] = _metrics(7, 1, 2000.0)
    answers["10.0.0.4"] = _metrics(3, 0, 2100.0)
    target.listed["svc.3.c"] = "10.0.0.4"
    window, _ = reader.interval()
    assert (window.requests, window.errors) == (30, 1)


def test_the_reader_skips_a_task_that_does_not_answer_and_fails_only_when_none_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: dict[str, Any] = {"10.0.0.2": _metrics(10, 0, 1.0), "10.0.0.3": _metrics(10, 0, 1.0)}
    reader, target = _reader(monkeypatch, answers)
    target.listed = {"svc.1.a": "10.0.0.2", "svc.2.b": "10.0.0.3"}
    reader.start()
    answers["10.0.0.2"] = _metrics(25, 0, 1.0)
    answers["10.0.0.3"] = None  # its node died
    window, _ = reader.interval()
    assert window.requests == 15
    assert len(reader.skipped) == 1
    assert "svc.2.b" in reader.skipped[0]
    answers["10.0.0.2"] = None
    with pytest.raises(MetricsError, match="no task of svc answered"):
        reader.interval()
