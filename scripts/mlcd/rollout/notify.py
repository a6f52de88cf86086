"""Notifications: a rollout's state changes told to webhooks as they happen.

The controller calls one hook (`Controller.on_event`) at every state change it records;
`Notifier` turns the ones people care about into events (`KINDS`), keeps them as the
deploy's event log (its summary.md and the GitHub deployment status say the same) and
sends each to the configured webhooks in a body of their format: mlcd's JSON event, a Slack
message (`text` + blocks) or a Teams message (an Adaptive Card).

Sending never fails nor holds up a rollout: each webhook has a thread of its own that
posts in order with a short timeout and bounded retries (`mlcd.tools.webhook`); a webhook
that failed once gets one attempt per later event; `close()` waits at most one delivery's
worst case for what is still queued, and records whatever did not go out. The address of a
webhook is never written to the evidence nor the logs (`webhook.redacted`).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mlcd.config import WebhookSection
from mlcd.errors import UserInputError
from mlcd.evidence import utc_now
from mlcd.tools import webhook

# the controller's state changes that are told, and the event each one is
KINDS = {
    "rollout started": "started",
    "canary step": "step",
    "step passed": "step passed",
    "paused": "paused",
    "promoted": "promoted",
    "live": "promoted",
    "rolled back": "rolled back",
    "recovered": "recovered",
}
BY_HAND = ("rollback", "abort")  # commands whose "rolled back" is a rollback by hand
_COLOURS = {"promoted": "good", "rolled back": "attention", "rollback by hand": "warning"}
_ICONS = {
    "started": "🚀",
    "step": "➡️",
    "step passed": "✅",
    "paused": "⏸️",
    "promoted": "🎉",
    "rolled back": "⏪",
    "rollback by hand": "↩️",
    "recovered": "🩹",
}
# the judge's figures a message shows (mlcd.rollout.judge), after the two error rates
_SHOWN_METRICS = (
    "canary_requests",
    "canary_errors",
    "stable_requests",
    "stable_errors",
    "error_rate_increase_upper",
    "canary_error_rate_lower",
    "canary_p99_ms",
    "stable_p99_ms",
    "canary_p99_lower_ms",
    "prediction_psi",
)


def _figures(found: dict[str, Any]) -> dict[str, Any]:
    """The failing check's numbers: each arm's error rate, then the judge's own figures."""
    figures: dict[str, Any] = {}
    for arm in ("canary", "stable"):
        requests, errors = found.get(f"{arm}_requests"), found.get(f"{arm}_errors")
        if isinstance(requests, int) and isinstance(errors, int) and requests > 0:
            figures[f"{arm}_error_rate"] = round(errors / requests, 6)
    figures.update({k: found[k] for k in _SHOWN_METRICS if found.get(k) is not None})
    return figures


@dataclass(frozen=True)
class Webhook:
    """A configured webhook with its address resolved (never shown: see `shown`)."""

    url: str
    shown: str
    format: str
    events: frozenset[str] | None
    timeout: float
    retries: int

    def wants(self, kind: str) -> bool:
        return self.events is None or kind in self.events

    @property
    def worst_case(self) -> float:
        """The longest one delivery can take: every attempt timing out, and the pauses."""
        pauses = sum(webhook.RETRY_PAUSE * float(2**i) for i in range(self.retries))
        return self.timeout * (self.retries + 1) + pauses


def webhooks(sections: Sequence[WebhookSection], *, where: str) -> list[Webhook]:
    """The webhooks of the config, their addresses read (from the environment for `url-env`)."""
    found: list[Webhook] = []
    for index, section in enumerate(sections):
        url = section.url
        if section.url_env is not None:
            url = os.environ.get(section.url_env, "").strip()
            if not url:
                raise UserInputError(
                    f"{where}[{index}]: url-env {section.url_env} is not set",
                    hint=f"set the variable {section.url_env} to the webhook's address (in a "
                    "workflow: from a secret), or remove the webhook",
                )
            if not url.startswith(("http://", "https://")):
                raise UserInputError(
                    f"{where}[{index}]: {section.url_env} does not hold an http(s) address"
                )
        assert url is not None  # noqa: S101 - the section checks one of the two  # nosec B101
        found.append(
            Webhook(
                url=url,
                shown=f"{webhook.redacted(url)} ({section.format}"
                + (f", from ${section.url_env})" if section.url_env else ")"),
                format=section.format,
                events=frozenset(section.events) if section.events is not None else None,
                timeout=section.timeout,
                retries=section.retries,
            )
        )
    return found


@dataclass
class Event:
    """One state change, as every body is made from it."""

    kind: str
    project: str
    environment: str
    version: str
    summary: str
    detail: str
    time: str
    strategy: str = ""
    step: int | None = None
    weight: int | None = None
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    url: str = ""

    def as_json(self) -> dict[str, Any]:
        """The generic body: `{"source": "mlcd", "event": "promoted", "summary": …}`."""
        data = asdict(self)
        return {"source": "mlcd", "event": data.pop("kind"), **data}


def _summary(
    kind: str, project: str, env: str, *, version: str, detail: str, weight: Any, strategy: str
) -> str:
    who = f"{project} {version}".strip()
    if kind in ("step", "step passed"):
        # the controller's detail starts with the weight, which the line already says
        detail = detail.removeprefix(f"{weight}% of traffic").removeprefix(":").strip()
    texts = {
        "started": f"{who}: rollout to {env} started" + (f" ({strategy})" if strategy else ""),
        "step": f"{who} in {env}: canary at {weight}% of traffic",
        "step passed": f"{who} in {env}: canary step {weight}% passed",
        "paused": f"{who} in {env}: paused for a decision",
        "promoted": f"{who} is live in {env}",
        "rolled back": f"{who} rolled back in {env}",
        "rollback by hand": f"{who} rolled back by hand in {env}",
        "recovered": f"{env} recovered",
    }
    text = texts.get(kind, f"{who} in {env}: {kind}")
    return f"{text}: {detail}" if detail else text


def slack_body(event: Event) -> dict[str, Any]:
    """A Slack incoming-webhook message: the summary as `text`, details as blocks."""
    icon = _ICONS.get(event.kind, "")
    lines = [f"{icon} *{event.summary}*"]
    lines += [f"• {r}" for r in event.reasons[:4]]
    fields = [
        {"type": "mrkdwn", "text": f"*{name}*\n{value}"}
        for name, value in _facts(event)
        if value not in ("", None)
    ][:10]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    return {"text": f"{icon} {event.summary}"[:3000], "blocks": blocks}


def teams_body(event: Event) -> dict[str, Any]:
    """A Teams message (incoming webhook or Workflows): one Adaptive Card."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"{_ICONS.get(event.kind, '')} {event.summary}",
            "wrap": True,
            "weight": "Bolder",
            "color": _COLOURS.get(event.kind, "default"),
        }
    ]
    body += [{"type": "TextBlock", "text": f"- {r}", "wrap": True} for r in event.reasons[:4]]
    facts = [{"title": name, "value": str(value)} for name, value in _facts(event) if value]
    if facts:
        body.append({"type": "FactSet", "facts": facts})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "summary": event.summary[:200],
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def _facts(event: Event) -> list[tuple[str, Any]]:
    facts: list[tuple[str, Any]] = [
        ("event", event.kind),
        ("environment", event.environment),
        ("version", event.version),
        ("strategy", event.strategy),
        ("weight", f"{event.weight}%" if event.weight is not None else ""),
        ("url", event.url),
    ]
    facts += [(k, _number(v)) for k, v in event.metrics.items()]
    return facts


def _number(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value


def body(event: Event, fmt: str) -> bytes:
    if fmt == "slack":
        data = slack_body(event)
    elif fmt == "teams":
        data = teams_body(event)
    else:
        data = event.as_json()
    return json.dumps(data, default=str).encode()


class _Sender:
    """One webhook's thread: posts its queue in order."""

    def __init__(self, hook: Webhook, record: Callable[[dict[str, Any]], None]) -> None:
        self.hook = hook
        self.record = record
        self.queue: queue.Queue[Event | None] = queue.Queue()
        self.failed_once = False
        self.thread = threading.Thread(target=self._loop, name="mlcd-notify", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            retries = 0 if self.failed_once else self.hook.retries
            got = webhook.post(
                self.hook.url,
                body(event, self.hook.format),
                timeout=self.hook.timeout,
                retries=retries,
            )
            self.failed_once = self.failed_once or not got.ok
            self.record(
                {
                    "webhook": self.hook.shown,
                    "event": event.kind,
                    "version": event.version,
                    "delivered": got.ok,
                    "attempts": got.attempts,
                    "status": got.status,
                    "error": got.error,
                    "seconds": round(got.seconds, 3),
                }
            )


class Notifier:
    """The controller's event hook: keeps the event log and sends it to the webhooks."""

    def __init__(
        self,
        hooks: Sequence[Webhook],
        *,
        project: str,
        env: str,
        command: str = "deploy",
        url: str = "",
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.hooks = list(hooks)
        self.project = project
        self.env = env
        self.command = command
        self.url = url
        self.log = log or (lambda _message: None)
        self.events: list[Event] = []
        self.deliveries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._logged = 0
        self._strategy = ""
        self._senders: list[_Sender] | None = None
        self._closed = False

    def _record(self, delivery: dict[str, Any]) -> None:
        with self._lock:
            self.deliveries.append(delivery)

    def __call__(self, name: str, version: str | None, detail: dict[str, Any]) -> None:
        """The controller's hook: `name` is the state change it recorded (KINDS)."""
        self._log_failures()
        kind = KINDS.get(name)
        if kind is None or self._closed:
            return
        if kind == "rolled back" and self.command in BY_HAND:
            kind = "rollback by hand"
        self._strategy = str(detail.get("strategy") or self._strategy)
        analysis = detail.get("analysis") or {}
        reasons: list[str] = []
        metrics: dict[str, Any] = {}
        if kind in ("step passed", "paused", "rolled back") and isinstance(analysis, dict):
            reasons = [str(r) for r in analysis.get("reasons", [])][:4]
            found = analysis.get("metrics") or {}
            metrics = _figures(found if isinstance(found, dict) else {})
        weight = detail.get("weight")
        text = str(detail.get("detail", ""))
        event = Event(
            kind=kind,
            project=self.project,
            environment=self.env,
            version=version or "",
            summary=_summary(
                kind,
                self.project,
                self.env,
                version=version or "",
                detail=text,
                weight=weight,
                strategy=self._strategy,
            ),
            detail=text,
            time=utc_now(),
            strategy=self._strategy,
            step=detail.get("step") if isinstance(detail.get("step"), int) else None,
            weight=weight if isinstance(weight, int) else None,
            reasons=reasons,
            metrics=metrics,
            url=self.url,
        )
        self.events.append(event)
        wanted = [h for h in self.hooks if h.wants(kind)]
        if not wanted:
            return
        if self._senders is None:
            self._senders = [_Sender(h, self._record) for h in self.hooks]
        for sender in self._senders:
            if sender.hook.wants(kind):
                sender.queue.put(event)

    def _log_failures(self) -> None:
        with self._lock:
            fresh = self.deliveries[self._logged :]
            self._logged = len(self.deliveries)
        for d in fresh:
            if not d["delivered"]:
                self.log(
                    f"webhook {d['webhook']}: {d['event']} not delivered ({d['error']}, "
                    f"{d['attempts']} attempt{'s' if d['attempts'] != 1 else ''}); the rollout "
                    "goes on"
                )

    def close(self) -> None:
        """Wait (at most one delivery's worst case) for what is queued; record the rest."""
        if self._closed:
            return
        self._closed = True
        senders = self._senders or []
        for sender in senders:
            sender.queue.put(None)
        budget = max((s.hook.worst_case for s in senders), default=0.0)
        deadline = time.monotonic() + budget
        for sender in senders:
            sender.thread.join(max(0.0, deadline - time.monotonic()))
        for sender in senders:
            if not sender.thread.is_alive():
                continue
            left: list[Event] = []
            while True:
                try:
                    item = sender.queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    left.append(item)
            for item in left:
                self._record(
                    {
                        "webhook": sender.hook.shown,
                        "event": item.kind,
                        "version": item.version,
                        "delivered": False,
                        "attempts": 0,
                        "status": None,
                        "error": "not sent: the command ended while earlier events were "
                        "still being retried",
                        "seconds": 0.0,
                    }
                )
        self._log_failures()

    def log_lines(self) -> list[str]:
        """The event log, one line an event (summary.md, the deployment status)."""
        return [f"{e.time} {_ICONS.get(e.kind, '')} {e.summary}".strip() for e in self.events]

    def record(self) -> dict[str, Any]:
        """What goes into the deploy's result: the events and every delivery (no address)."""
        with self._lock:
            deliveries = list(self.deliveries)
        return {
            "events": [
                {"event": e.kind, "time": e.time, "version": e.version, "summary": e.summary}
                for e in self.events
            ],
            "webhooks": [h.shown for h in self.hooks],
            "deliveries": deliveries,
            "failed": sum(1 for d in deliveries if not d["delivered"]),
        }
