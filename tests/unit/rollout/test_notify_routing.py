"""Notifications (events, bodies, failing webhooks) and forced/sticky routing in the router."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from mlcd.config import Config, WebhookSection, load_config
from mlcd.errors import UserInputError
from mlcd.rollout import notify
from mlcd.rollout.notify import Notifier, webhooks
from mlcd.rollout.router import Backend, RouterSpec, Routing, render_routes
from mlcd.rollout.state import Arm
from mlcd.rollout.targets.base import Route, salted
from mlcd.tools import webhook
from mlcd.tools.webhook import Delivery

SECRET = "https://hooks.slack.com/services/T000/B000/SECRETTOKEN"  # noqa: S105 - a fake


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "mlcd.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            project: demo
            model: {task: classification, entrypoint: m.py:f, data: d.csv, target: y}
            """
        )
        + textwrap.dedent(extra),
        "utf-8",
    )
    return path


def test_notify_and_routing_keys_load_top_level_and_per_environment(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        """\
        notify:
          - {url: "http://127.0.0.1:9/hook", format: slack, events: [paused, rolled back]}
        environments:
          staging:
            routing: {header: X-Arm, sticky-key: X-User-Id}
            notify: [{url-env: MLCD_TEAMS_HOOK, format: teams, timeout: 2s, retries: 1}]
        """,
    )
    config = load_config(path).config
    assert config.notify[0].format == "slack"
    assert config.notify[0].events == ["paused", "rolled back"]
    staging = config.environments["staging"]
    assert staging.routing.header == "X-Arm"
    assert staging.routing.sticky_key == "X-User-Id"
    assert staging.notify[0].url_env == "MLCD_TEAMS_HOOK"
    assert staging.notify[0].timeout == 2.0
    default = Config.model_validate(
        {
            "version": 1,
            "project": "p",
            "model": {"task": "regression", "entrypoint": "a:b", "data": "d", "target": "y"},
        }
    )
    assert default.notify == []


def test_a_webhook_needs_exactly_one_address(tmp_path: Path) -> None:
    for hook in ("{format: json}", '{url: "http://127.0.0.1:9/", url-env: HOOK}'):
        path = _config(tmp_path, f"notify: [{hook}]\n")
        with pytest.raises(UserInputError) as raised:
            load_config(path)
        assert "exactly one of `url` and `url-env`" in str(raised.value.problems)


def test_url_env_is_read_from_the_environment_and_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    section = WebhookSection.model_validate({"url-env": "MLCD_TEST_HOOK", "format": "slack"})
    monkeypatch.delenv("MLCD_TEST_HOOK", raising=False)
    with pytest.raises(UserInputError, match="MLCD_TEST_HOOK is not set"):
        webhooks([section], where="notify")
    monkeypatch.setenv("MLCD_TEST_HOOK", SECRET)
    (hook,) = webhooks([section], where="notify")
    assert hook.url == SECRET
    assert "SECRETTOKEN" not in hook.shown
    assert hook.shown == "https://hooks.slack.com/… (slack, from $MLCD_TEST_HOOK)"


class Recorder:
    """Stands in for `webhook.post`: keeps the bodies; fails for addresses with `fail`."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], int]] = []
        self.lock = threading.Lock()

    def __call__(self, url: str, body: bytes, *, timeout: float, retries: int) -> Delivery:  # noqa: ARG002
        with self.lock:
            self.sent.append((url, json.loads(body), retries))
        if "fail" in url:
            return Delivery(
                ok=False, attempts=retries + 1, status=500, error="HTTP 500", seconds=0.01
            )
        return Delivery(ok=True, attempts=1, status=200, error="", seconds=0.01)


def _notifier(
    monkeypatch: pytest.MonkeyPatch, command: str = "deploy", fmt: str = "json"
) -> tuple[Notifier, Recorder]:
    recorder = Recorder()
    monkeypatch.setattr(webhook, "post", recorder)
    hooks = webhooks(
        [
            WebhookSection.model_validate({"url": "http://127.0.0.1:9/ok", "format": fmt}),
            WebhookSection.model_validate({"url": "http://127.0.0.1:9/fail", "retries": 2}),
        ],
        where="notify",
    )
    logged: list[str] = []
    notifier = Notifier(
        hooks, project="demo", env="staging", command=command, url="http://x", log=logged.append
    )
    return notifier, recorder


ANALYSIS = {
    "reasons": ["canary error rate 5.2% is above max-error-rate 1% (stable 0.4%)"],
    "metrics": {
        "canary_requests": 500,
        "canary_errors": 26,
        "stable_requests": 500,
        "stable_errors": 2,
        "error_rate_increase_upper": 0.07,
        "other": 1,
    },
}


def _rollout(notifier: Notifier) -> None:
    notifier("rollout started", "0.2.0", {"strategy": "canary", "image": "i", "analysis": {}})
    notifier("candidate ready", "0.2.0", {"detail": "c", "analysis": {}})
    notifier("canary step", "0.2.0", {"detail": "10% of traffic", "step": 0, "weight": 10})
    notifier("step passed", "0.2.0", {"detail": "10% of traffic: ok", "weight": 10})
    notifier("paused", "0.2.0", {"detail": "inconclusive after 30 intervals", "analysis": {}})
    notifier("rolled back", "0.2.0", {"detail": "analysis failed", "analysis": ANALYSIS})


def test_every_state_change_is_one_event_in_order_with_the_failing_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notifier, recorder = _notifier(monkeypatch)
    _rollout(notifier)
    notifier.close()
    kinds = [e.kind for e in notifier.events]
    assert kinds == ["started", "step", "step passed", "paused", "rolled back"]
    ok = [body for url, body, _ in recorder.sent if url.endswith("/ok")]
    assert [b["event"] for b in ok] == kinds
    back = ok[-1]
    assert back["source"] == "mlcd"
    assert back["environment"] == "staging"
    assert back["version"] == "0.2.0"
    assert back["strategy"] == "canary"
    assert back["reasons"] == ANALYSIS["reasons"]
    assert back["metrics"] == {
        "canary_error_rate": 0.052,
        "stable_error_rate": 0.004,
        "canary_requests": 500,
        "canary_errors": 26,
        "stable_requests": 500,
        "stable_errors": 2,
        "error_rate_increase_upper": 0.07,
    }
    assert back["summary"] == "demo 0.2.0 rolled back in staging: analysis failed"
    assert ok[1]["weight"] == 10
    assert ok[0]["summary"] == "demo 0.2.0: rollout to staging started (canary)"
    assert ok[1]["summary"] == "demo 0.2.0 in staging: canary at 10% of traffic"
    assert ok[2]["summary"] == "demo 0.2.0 in staging: canary step 10% passed: ok"


def test_a_failing_webhook_is_recorded_and_retried_fully_only_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notifier, recorder = _notifier(monkeypatch)
    _rollout(notifier)
    notifier.close()
    retries = [r for url, _, r in recorder.sent if url.endswith("/fail")]
    assert retries == [2, 0, 0, 0, 0]  # after one failed delivery: one attempt an event
    record = notifier.record()
    assert record["failed"] == 5
    assert all(d["delivered"] for d in record["deliveries"] if "/ok" not in d["webhook"]) is False
    assert not any("127.0.0.1:9/fail" in json.dumps(d) for d in record["deliveries"])
    assert len(record["events"]) == 5


def test_a_rollback_by_hand_is_its_own_event_without_stale_analysis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notifier, _ = _notifier(monkeypatch, command="rollback")
    notifier("rollback started", "0.1.0", {"detail": "from 0.2.0"})
    notifier("rolled back", "0.2.0", {"detail": "0.1.0 is live again", "analysis": ANALYSIS})
    notifier.close()
    (event,) = notifier.events
    assert event.kind == "rollback by hand"
    assert event.reasons == []
    assert event.summary == "demo 0.2.0 rolled back by hand in staging: 0.1.0 is live again"


def test_slack_and_teams_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    for fmt in ("slack", "teams"):
        notifier, recorder = _notifier(monkeypatch, fmt=fmt)
        notifier("paused", "0.2.0", {"detail": "waiting", "analysis": ANALYSIS})
        notifier.close()
        body = next(b for url, b, _ in recorder.sent if url.endswith("/ok"))
        if fmt == "slack":
            assert body["text"].endswith("demo 0.2.0 in staging: paused for a decision: waiting")
            assert body["blocks"][0]["type"] == "section"
            assert "canary error rate 5.2%" in body["blocks"][0]["text"]["text"]
        else:
            card = body["attachments"][0]
            assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
            texts = [b.get("text", "") for b in card["content"]["body"]]
            assert any("paused for a decision: waiting" in t for t in texts)
            facts = card["content"]["body"][-1]["facts"]
            assert {"title": "canary_error_rate", "value": "0.052"} in facts


def test_close_waits_at_most_one_delivery_worst_case(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()

    def stuck(url: str, body: bytes, *, timeout: float, retries: int) -> Delivery:
        gate.wait(5)
        return Delivery(ok=False, attempts=1, status=None, error="no answer", seconds=5.0)

    monkeypatch.setattr(webhook, "post", stuck)
    hooks = webhooks(
        [
            WebhookSection.model_validate(
                {"url": "http://127.0.0.1:9/", "timeout": 0.05, "retries": 0}
            )
        ],
        where="notify",
    )
    notifier = Notifier(hooks, project="demo", env="e")
    for _ in range(3):
        notifier("rollout started", "1", {})
    notifier.close()
    record = notifier.record()
    assert any("not sent" in d["error"] for d in record["deliveries"])
    gate.set()


def test_controller_events_map_to_kinds() -> None:
    assert notify.KINDS["live"] == "promoted"
    assert "router" not in notify.KINDS
    assert "candidate ready" not in notify.KINDS


# ---------------------------------------------------------------------------- routing


def _split(weight: int, routing: Routing) -> str:
    spec = RouterSpec(
        port=1,
        mode="split",
        primary=(Backend(1001, 100 - weight), Backend(1002, weight)),
        routing=routing,
    )
    return render_routes(spec, Path("/tmp/x"))


def test_sticky_buckets_give_the_canary_the_lowest_share_with_one_salt() -> None:
    routing = Routing("X-MLCD-Version", "X-User-Id").salted("0.2.0")
    at10, at50 = _split(10, routing), _split(50, routing)
    for text, share in ((at10, "10%"), (at50, "50%")):
        block = text.split("split_clients ", 1)[1].split("}", 1)[0]
        lines = [line.strip() for line in block.splitlines()[1:] if line.strip()]
        # the canary comes first: its range [0, share) only grows with the weight
        assert lines == [f"{share} mlcd_sticky_canary;", "* mlcd_sticky_stable;"]
    salt = at10.split('split_clients "', 1)[1].split('"', 1)[0]
    assert salt == at50.split('split_clients "', 1)[1].split('"', 1)[0]
    assert salt.startswith("$http_x_user_id/mlcd-")
    assert (
        salt
        != _split(10, Routing("X-MLCD-Version", "X-User-Id").salted("0.3.0"))
        .split('split_clients "', 1)[1]
        .split('"', 1)[0]
    )
    # the sticky arm falls back on the other one only as a backup
    assert "server 127.0.0.1:1001 backup;" in at10.split("upstream mlcd_sticky_canary", 1)[1]
    assert 'map $http_x_user_id $mlcd_sticky { default $mlcd_bucket; "" $mlcd_by_request; }' in at10


def test_a_sticky_split_copies_the_canarys_requests_to_stable() -> None:
    """Requests without the key go by the same split of their request id, so the router knows
    every request's arm; what the canary answers by key or request id is mirrored to stable
    (the like-for-like predictions), a tester's forced request is not."""
    text = _split(10, Routing("X-MLCD-Version", "X-User-Id").salted("0.2.0"))
    by_request = text.split('split_clients "$mlcd_request_id/mlcd-', 1)[1].split("}", 1)[0]
    assert "10% mlcd_sticky_canary;" in by_request
    assert "* mlcd_sticky_stable;" in by_request
    # the copy goes to stable only, and only for the canary's sticky or hashed requests
    assert "server 127.0.0.1:1001 max_fails=1" in text.split("upstream mlcd_shadow", 1)[1]
    assert "1002" not in text.split("upstream mlcd_shadow", 1)[1].split("}", 1)[0]
    for where in ("location = /predict {", "location ~ ^/v2/models/[^/]+/infer$ {"):
        block = text.split(where, 1)[1].split("}", 1)[0]
        assert "mirror /_mlcd/mirror;" in block
    mirror = text.split("location = /_mlcd/mirror {", 1)[1].split("    }", 1)[0]
    assert 'if ($mlcd_upstream != "mlcd_sticky_canary") { return 204; }' in mirror
    assert "proxy_pass http://mlcd_shadow$request_uri;" in mirror
    # without a sticky key nothing is copied in a split
    assert "mirror /_mlcd/mirror;" not in _split(10, Routing("X-MLCD-Version", None))


def test_forced_header_picks_an_arm_and_is_not_mirrored_again() -> None:
    text = _split(10, Routing("X-Arm", None))
    assert "map $http_x_arm $mlcd_upstream {" in text
    assert '"~*^canary$" mlcd_only_canary;' in text
    assert "default mlcd_primary;" in text
    assert "proxy_pass http://$mlcd_upstream;" in text
    assert "split_clients" not in text
    mirror = render_routes(
        RouterSpec(
            port=1,
            mode="mirror",
            primary=(Backend(1001),),
            shadow=Backend(1002),
            routing=Routing("X-MLCD-Version", "X-User-Id"),
        ),
        Path("/tmp/x"),
    )
    assert "if ($mlcd_forced) { return 204; }" in mirror
    assert "server 127.0.0.1:1002 max_fails=1" in mirror.split("upstream mlcd_only_canary", 1)[1]
    assert "split_clients" not in mirror  # everyone gets stable's answer while shadowing


def test_single_mode_and_no_routing_keep_the_plain_router() -> None:
    single = render_routes(RouterSpec(port=1, mode="single", primary=(Backend(1001),)), Path("/x"))
    assert "$mlcd_upstream" not in single
    plain = _split(10, Routing(None, None))
    assert "map $uri $mlcd_upstream { default mlcd_primary; }" in plain


def test_the_salt_is_the_candidates_version() -> None:
    stable = Arm("0.1.0", "i", "c1", 1001, "blue")
    cand = Arm("0.2.0", "i", "c2", 1002, "green")
    base = Routing("X-MLCD-Version", "K")
    at10 = salted(base, Route("split", ((stable, 90), (cand, 10))))
    at50 = salted(base, Route("split", ((stable, 50), (cand, 50))))
    assert at10 == at50 == base.salted("0.2.0")
    assert salted(base, Route("mirror", ((stable, 1),), cand)) == base.salted("0.2.0")


# ---------------------------------------------------------------------------- kubernetes


def _k8s_section(**over: Any) -> Any:
    from mlcd.config import EnvironmentSection

    return EnvironmentSection.model_validate({"target": "kubernetes", **over})


def _rollout_object(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Rollout")


def test_kubernetes_istio_renders_a_managed_header_route_before_the_first_weight() -> None:
    from mlcd.rollout.kubernetes import render, validate_custom

    section = _k8s_section(kubernetes={"traffic-router": "istio", "traffic-object": "bc-vs"})
    objects = render(
        "bc", "staging", section, version="0.2.0", image="i@sha256:1", strategy="canary"
    )
    canary = _rollout_object(objects)["spec"]["strategy"]["canary"]
    assert canary["trafficRouting"] == {
        "managedRoutes": [{"name": "mlcd-header"}],
        "istio": {"virtualService": {"name": "bc-vs", "routes": ["primary"]}},
    }
    first = canary["steps"][0]["setHeaderRoute"]
    assert first["name"] == "mlcd-header"
    assert first["match"] == [
        {"headerName": "X-MLCD-Version", "headerValue": {"regex": "(?i)^canary$"}}
    ]
    assert canary["steps"][1] == {"setWeight": 10}
    assert canary["analysis"]["startingStep"] == 2  # the first weight's judge step
    assert not [p for o in objects for p in validate_custom(o)]


def test_kubernetes_nginx_uses_canary_by_header_and_none_keeps_replicas() -> None:
    from mlcd.rollout.kubernetes import render

    section = _k8s_section(kubernetes={"traffic-router": "nginx"}, routing={"header": "X-Arm"})
    canary = _rollout_object(
        render("bc", "staging", section, version="0.2.0", image="i@sha256:1", strategy="canary")
    )["spec"]["strategy"]["canary"]
    assert canary["trafficRouting"]["nginx"] == {
        "stableIngress": "bc-staging",
        "additionalIngressAnnotations": {
            "canary-by-header": "X-Arm",
            "canary-by-header-value": "canary",
        },
    }
    assert canary["steps"][0] == {"setWeight": 10}
    assert canary["analysis"]["startingStep"] == 1
    plain = _rollout_object(
        render("bc", "staging", _k8s_section(), version="0.2.0", image="i", strategy="canary")
    )["spec"]["strategy"]["canary"]
    assert "trafficRouting" not in plain


def test_kubernetes_refuses_a_sticky_key() -> None:
    from mlcd.rollout.kubernetes import render

    section = _k8s_section(routing={"sticky-key": "X-User-Id"})
    with pytest.raises(UserInputError, match="sticky-key"):
        render("bc", "staging", section, version="0.2.0", image="i", strategy="canary")


# ---------------------------------------------------------------------------- the hook


class _StateOnly:
    """Just enough of a target for `Controller.save`."""

    def __init__(self) -> None:
        self.saved = 0

    def save_state(self, _state: Any) -> None:
        self.saved += 1


def test_the_controller_tells_its_hook_every_recorded_change_and_survives_it() -> None:
    from mlcd.config import EnvironmentSection
    from mlcd.rollout.controller import Controller, EnvSpec

    target = _StateOnly()
    said: list[str] = []
    ctl = Controller(
        EnvSpec("demo", "staging", EnvironmentSection()),
        target,  # type: ignore[arg-type]
        said.append,
    )
    heard: list[tuple[str, str | None, dict[str, Any]]] = []
    ctl.on_event = lambda event, version, detail: heard.append((event, version, detail))
    ctl.state.last_analysis = {"outcome": "fail", "reasons": ["r"]}
    ctl.save("rolled back", "0.2.0", detail="analysis failed")
    ctl.save()  # a plain save is no state change
    assert heard == [
        (
            "rolled back",
            "0.2.0",
            {"detail": "analysis failed", "analysis": {"outcome": "fail", "reasons": ["r"]}},
        )
    ]

    def broken(*_args: Any) -> None:
        raise RuntimeError("boom")

    ctl.on_event = broken
    ctl.save("promoted", "0.2.0", detail="all traffic")
    assert target.saved == 3
    assert said[-1] == "could not notify promoted: boom"
