"""An in-memory deploy target, so the rollout controller's strategies run without Docker.

`FakeTarget` implements `mlcd.rollout.targets.base.Target` with nothing outside this process:

- **arms** are records of a "container" (running or stopped, an exit code, a process start
  time, logs) with the counters a model server exposes: inference requests and errors, a
  latency histogram on the server's own buckets (`mlcd.serve.metrics.LATENCY_BUCKETS`),
  predicted classes, and a ring of recent predictions. `reader(arm)` is a real `ArmReader`
  whose two HTTP reads are replaced by reads of those counters, so the judge gets windows made
  by the same code (`metrics.window`, restarts and counters going down included);
- **traffic** is simulated on a `FakeClock`: every virtual second `client_rps` client requests
  go through the router as it is configured (single, split by weight with a smooth weighted
  round robin, or mirrored to a shadow with the same request id), plus the synthetic load the
  controller asks for (`synthetic_load`); what each arm answers (errors, latency, the class it
  predicts) follows its version's `Behaviour`, a pure function of the request id, so two
  arms of equal behaviour agree request by request;
- the **router** keeps every configuration it was given (`routes`, `weights()`), the **state**
  is kept as the JSON the real targets write, and the **lock** names its holder;
- **faults** are scripted: `stop()` an arm (a crash), `when()` a condition holds do something
  (an error burst once the candidate has all the traffic), `crash_on()` a call (the deploying
  process dies there: a `Crash`, which no `except Exception` catches, and its lock is freed
  like the kernel frees a dead holder's flock); `new_process()` is the next command.

`controller_for()` is the one place the tests build a `Controller` around it.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from mlcd.config import EnvironmentSection
from mlcd.errors import GateFailed
from mlcd.rollout.controller import Controller, EnvSpec
from mlcd.rollout.metrics import ArmReader, MetricsError, Recent, Snapshot, parse_recent
from mlcd.rollout.state import Arm, EnvState
from mlcd.rollout.targets.base import Owner, Route, Target
from mlcd.serve.metrics import LATENCY_BUCKETS

RECENT_KEPT = 2000  # recent predictions an arm lists, like the server's ring
FIRST_PORT = 41000


class Crash(BaseException):
    """The deploying process dies here: nothing after it runs, no `finally` of the
    controller's saves the state (BaseException: no `except Exception` catches it)."""


class ClockRanOutError(AssertionError):
    """The virtual clock went past its limit: the controller would have waited forever."""


class FakeClock:
    """The controller's clock (`mlcd.rollout.controller.Clock`) in virtual time.

    `sleep` advances the time at once and tells the listeners (the fake target's traffic)
    how much passed; it raises `ClockRanOutError` past `limit` seconds so a controller that would
    never end fails its test instead of hanging it.
    """

    def __init__(self, *, epoch: float = 1_800_000_000.0, limit: float = 36_000.0) -> None:
        self.now = 0.0
        self.epoch = epoch
        self.limit = limit
        self.listeners: list[Callable[[float], None]] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.epoch + self.now

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self.now += seconds
        if self.now > self.limit:
            raise ClockRanOutError(f"virtual time passed {self.limit:g} s")
        for listener in list(self.listeners):
            listener(seconds)


@dataclass(frozen=True)
class Behaviour:
    """How a version's server answers: a share of 5xx errors, a latency (each request takes
    between half and one and a half times `latency_ms`), the share of class "1" among its
    predictions, and whether /readyz answers 200."""

    error_rate: float = 0.0
    latency_ms: float = 5.0
    positive: float = 0.4
    ready: bool = True


def _uniform(request_id: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{salt}:{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class FakeArm:
    """One arm's "container": its state, its process's counters and its recent predictions."""

    arm: Arm
    started_at: float
    running: bool = True
    exit_code: int = 0
    restarts: int = 0
    requests: int = 0
    errors: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    classes: dict[str, int] = field(default_factory=dict)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_KEPT))
    logs: list[str] = field(default_factory=list)

    def new_process(self, now: float) -> None:
        """The server started again: fresh counters, a new process start time."""
        self.running, self.exit_code, self.started_at = True, 0, now
        self.requests = self.errors = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.classes = {}
        self.recent.clear()

    def serve(self, request_id: str, behaviour: Behaviour, now: float) -> int:
        """Answer one inference request; its HTTP status."""
        if not self.running:
            return 502
        latency = behaviour.latency_ms * (0.5 + _uniform(request_id, "latency"))
        self.requests += 1
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, latency / 1000)] += 1
        if _uniform(request_id, "error") < behaviour.error_rate:
            self.errors += 1
            status, predictions = 500, None
        else:
            label = "1" if _uniform(request_id, "class") < behaviour.positive else "0"
            self.classes[label] = self.classes.get(label, 0) + 1
            status, predictions = 200, [label]
        self.recent.append(
            {
                "request_id": request_id,
                "predictions": predictions,
                "status": status,
                "latency_ms": latency,
                "time": now,
            }
        )
        return status

    def snapshot(self) -> Snapshot:
        cumulative: dict[float, float] = {}
        total = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.latency_counts, strict=True):
            total += count
            cumulative[bound] = float(total)
        return Snapshot(
            requests=float(self.requests),
            errors=float(self.errors),
            latency_buckets=cumulative,
            classes={k: float(v) for k, v in self.classes.items()},
            model_version=self.arm.version,
            start_time=self.started_at,
        )


class FakeReader(ArmReader):
    """An `ArmReader` whose /metrics and /v1/recent-predictions are the fake arm's counters."""

    def __init__(self, target: FakeTarget, container: str) -> None:
        super().__init__(0)
        self.target = target
        self.container = container

    def _arm(self, path: str) -> FakeArm:
        found = self.target.arms.get(self.container)
        if found is None or not found.running:
            raise MetricsError(f"GET {self.container}{path}: connection refused")
        self.target.reads += 1
        return found

    def read_snapshot(self) -> Snapshot:
        return self._arm("/metrics").snapshot()

    def read_recent(self, limit: int | None = None) -> list[Recent]:
        found = self._arm("/v1/recent-predictions")
        wanted = self.recent_limit if limit is None else min(limit, self.recent_limit)
        return parse_recent({"predictions": list(found.recent)[-wanted:]})


class _Load:
    """Synthetic traffic while entered: to the router (arms None) or to each arm by id."""

    def __init__(
        self, target: FakeTarget, containers: list[str] | None, rps: float, prefix: str
    ) -> None:
        self.target = target
        self.containers = containers
        self.rps = rps
        self.prefix = prefix
        self.credit = 0.0
        self.sent = 0

    def __enter__(self) -> _Load:
        self.target.loads.append(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.target.loads.remove(self)

    def tick(self, seconds: float) -> None:
        self.credit += self.rps * seconds
        while self.credit >= 1:
            self.credit -= 1
            request_id = f"{self.prefix}-{self.sent}"
            self.sent += 1
            self.target.synthetic_sent += 1
            if self.containers is None:
                self.target.request(request_id, client=False)
            else:
                for name in self.containers:
                    self.target.serve_on(name, request_id)


@dataclass(frozen=True)
class RouteSeen:
    """One router configuration, by version: its mode, each primary's share of traffic in
    percent, and the version that gets the mirrored copy."""

    mode: str
    weights: Mapping[str, int]
    shadow: str | None = None


CrashRule = Callable[[str, Any], bool]


class FakeTarget(Target):
    """An environment that runs in this process's memory (see the module's docstring)."""

    kind = "fake"

    def __init__(
        self,
        project: str = "demo",
        env: str = "staging",
        *,
        clock: FakeClock | None = None,
        client_rps: float = 0.0,
    ) -> None:
        self.project = project
        self.env = env
        self.clock = clock or FakeClock()
        self.clock.listeners.append(self.tick)
        self.client_rps = client_rps
        self.behaviours: dict[str, Behaviour] = {}
        self.arms: dict[str, FakeArm] = {}
        self.removed: list[str] = []  # containers removed, in order
        self.started: list[str] = []  # containers created, in order
        self.routes: list[Route] = []  # every configuration the router was given
        self.router: Route | None = None
        self.router_up = False
        self.generation = 0
        self.state_json: str | None = None
        self.saves = 0
        self.me = Owner(pid=1000, start="1", host="fake-host")
        self.lock: tuple[Owner, str] | None = None
        self.lock_alive = False
        self.loads: list[_Load] = []
        self.client_sent = 0
        self.synthetic_sent = 0  # requests of the controller's synthetic load
        self.client_errors = 0  # client requests that got no answer or a 5xx
        self.reads = 0
        self.triggers: list[
            tuple[Callable[[FakeTarget], bool], Callable[[FakeTarget], object]]
        ] = []
        self.crash_rule: CrashRule | None = None
        self._credit = 0.0
        self._rr: dict[str, float] = {}
        self._ports = FIRST_PORT

    # ---------------------------------------------------------------- scripting

    def behave(self, version: str, **change: Any) -> Behaviour:
        """Set how `version`'s server answers from now on (unset fields keep their value)."""
        self.behaviours[version] = replace(self.behaviours.get(version, Behaviour()), **change)
        return self.behaviours[version]

    def behaviour(self, version: str) -> Behaviour:
        return self.behaviours.get(version, Behaviour())

    def when(
        self, condition: Callable[[FakeTarget], bool], action: Callable[[FakeTarget], object]
    ) -> None:
        """Do `action` once, at the first tick where `condition` holds."""
        self.triggers.append((condition, action))

    def crash_on(self, rule: CrashRule) -> None:
        """The deploying process dies (a `Crash`) at the first call where `rule(call, arg)`
        holds: ("start_arm", version) before the container exists, ("route", Route) once the
        router took the configuration (before the state records it)."""
        self.crash_rule = rule

    def _maybe_crash(self, call: str, arg: Any) -> None:
        if self.crash_rule is not None and self.crash_rule(call, arg):
            self.crash_rule = None
            self.crash(f"killed at {call}")

    def crash(self, where: str = "killed") -> None:
        """The deploying process dies now (from a `when` action: during a sleep)."""
        self.lock_alive = False  # the kernel drops a dead process's flock
        raise Crash(where)

    def new_process(self) -> Owner:
        """The next command runs in another process (after a crash, or later)."""
        self.me = Owner(pid=self.me.pid + 1, start=str(int(self.me.start) + 1), host="fake-host")
        return self.me

    def stop(self, version: str, *, exit_code: int = 137) -> FakeArm:
        """The container of `version` stops (a crash of the server)."""
        found = self.arm_of(version)
        found.running, found.exit_code = False, exit_code
        found.logs.append(f"killed (exit code {exit_code})")
        return found

    def restart(self, version: str) -> FakeArm:
        """The server of `version` restarts at once (its engine brought it back): fresh
        counters and a new process start time, never seen stopped."""
        found = self.arm_of(version)
        found.new_process(self.clock.time())
        found.restarts += 1
        found.logs.append("restarted")
        return found

    def arm_of(self, version: str) -> FakeArm:
        """The existing arm of `version` (the most recently started one)."""
        matches = [a for a in self.arms.values() if a.arm.version == version]
        if not matches:
            raise KeyError(f"no arm of {version}; arms: {sorted(self.arms)}")
        return matches[-1]

    def weights(self) -> list[RouteSeen]:
        """Every router configuration given, by version, in order."""
        out: list[RouteSeen] = []
        for route in self.routes:
            total = sum(weight for _, weight in route.primary) or 1
            shares = {arm.version: round(100 * weight / total) for arm, weight in route.primary}
            out.append(
                RouteSeen(route.mode, shares, route.shadow.version if route.shadow else None)
            )
        return out

    def stored_state(self) -> EnvState:
        """The state as it was last saved (what the next process would read)."""
        return self.load_state()

    # ---------------------------------------------------------------- traffic

    def tick(self, seconds: float) -> None:
        for trigger in list(self.triggers):
            condition, action = trigger
            if condition(self):
                self.triggers.remove(trigger)
                action(self)
        self._credit += self.client_rps * seconds
        while self._credit >= 1:
            self._credit -= 1
            self.request(f"client-{self.client_sent}", client=True)
            self.client_sent += 1
        for load in list(self.loads):
            load.tick(seconds)

    def request(self, request_id: str, *, client: bool) -> int:
        """One request through the router; the status the client gets."""
        route = self.router
        if route is None or not self.router_up or not route.primary:
            status = 502
        else:
            status = self.serve_on(self._pick(route), request_id)
            if route.shadow is not None:
                self.serve_on(route.shadow.container, request_id)
        if client and status >= 500:
            self.client_errors += 1
        return status

    def _pick(self, route: Route) -> str:
        """Smooth weighted round robin (nginx's): exact shares, deterministic."""
        total = sum(weight for _, weight in route.primary)
        best: str | None = None
        for arm, weight in route.primary:
            self._rr[arm.container] = self._rr.get(arm.container, 0.0) + weight
            if best is None or self._rr[arm.container] > self._rr[best]:
                best = arm.container
        assert best is not None
        self._rr[best] -= total
        return best

    def serve_on(self, container: str, request_id: str) -> int:
        found = self.arms.get(container)
        if found is None:
            return 502
        return found.serve(request_id, self.behaviour(found.arm.version), self.clock.time())

    # ---------------------------------------------------------------- where it answers

    @property
    def url(self) -> str:
        return "http://fake-router:8080"

    @property
    def router_address(self) -> tuple[str, int]:
        return ("fake-router", 8080)

    def describe(self) -> str:
        return "fake target, in memory"

    # ---------------------------------------------------------------- state and lock

    def load_state(self) -> EnvState:
        if self.state_json is None:
            return EnvState(env=self.env, project=self.project)
        return EnvState.from_json(json.loads(self.state_json))

    def save_state(self, state: EnvState) -> None:
        self.state_json = json.dumps(state.to_json())
        self.saves += 1

    @property
    def state_location(self) -> str:
        return f"memory:{self.project}/{self.env}/state.json"

    def acquire(self, command: str) -> None:
        if self.lock is not None and self.lock_alive and self.lock[0] != self.me:
            holder, what = self.lock
            raise GateFailed(
                f"environment `{self.env}` is locked by pid {holder.pid} on {holder.host} "
                f"(`{what}`): one rollout per environment at a time"
            )
        self.lock, self.lock_alive = (self.me, command), True

    def release(self) -> None:
        self.lock, self.lock_alive = None, False

    def holder(self) -> str | None:
        if self.lock is None or not self.lock_alive:
            return None
        holder, what = self.lock
        return f"pid {holder.pid} on {holder.host} (`{what}`)"

    def owner(self) -> Owner:
        return self.me

    # ---------------------------------------------------------------- arms

    def container_name(self, version: str, color: str) -> str:
        return f"fake-{self.project}-{self.env}-{version}-{color}"

    def start_arm(self, version: str, image: str, color: str) -> Arm:
        self._maybe_crash("start_arm", version)
        name = self.container_name(version, color)
        self._ports += 1
        arm = Arm(version=version, image=image, container=name, port=self._ports, color=color)
        self.arms[name] = FakeArm(arm, started_at=self.clock.time())
        self.arms[name].logs.append(f"serving {version} from {image}")
        self.started.append(name)
        return Arm(**vars(arm))

    def arm_state(self, arm: Arm) -> dict[str, object] | None:
        found = self.arms.get(arm.container)
        if found is None:
            return None
        return {
            "Running": found.running,
            "ExitCode": found.exit_code,
            "Status": "running" if found.running else "exited",
        }

    def restart_arm(self, arm: Arm) -> Arm:
        found = self.arms.get(arm.container)
        if found is None:
            raise GateFailed(f"cannot start {arm.container}: no such container")
        found.new_process(self.clock.time())
        found.restarts += 1
        found.logs.append("started again")
        return arm

    def arm_logs(self, arm: Arm, tail: int = 20) -> str:
        found = self.arms.get(arm.container)
        return "\n".join(found.logs[-tail:]) if found else ""

    def remove_arm(self, arm: Arm) -> None:
        if self.arms.pop(arm.container, None) is not None:
            self.removed.append(arm.container)

    def arm_port(self, arm: Arm) -> int:
        return arm.port

    def reader(self, arm: Arm) -> ArmReader:
        return FakeReader(self, arm.container)

    def readiness(self, arm: Arm) -> tuple[bool, str]:
        found = self.arms.get(arm.container)
        if found is None or not found.running:
            return False, f"GET {arm.container}/readyz: connection refused"
        if not self.behaviour(found.arm.version).ready:
            return False, "/readyz answered 503"
        return True, "/readyz answered 200"

    def synthetic_load(
        self,
        arms: Sequence[Arm] | None,
        rows: Sequence[dict[str, Any]],
        rps: float,
        *,
        id_prefix: str,
    ) -> AbstractContextManager[object]:
        if not rows:
            raise ValueError("no rows to send")
        containers = None if arms is None else [arm.container for arm in arms]
        return _Load(self, containers, rps, id_prefix)

    def arm_address(self, arm: Arm) -> str:
        return f"{arm.container}:{arm.port}"

    # ---------------------------------------------------------------- router

    def route(self, route: Route, generation: int) -> str:
        self.routes.append(route)
        self.router, self.router_up, self.generation = route, True, generation
        self._rr = {}
        self._maybe_crash("route", route)
        seen = self.weights()[-1]
        shares = ", ".join(f"{v} {w}%" for v, w in seen.weights.items())
        return f"{route.mode}: {shares}" + (f", mirrored to {seen.shadow}" if seen.shadow else "")

    def router_running(self) -> bool:
        return self.router is not None and self.router_up

    # ---------------------------------------------------------------- end

    def down(self) -> list[str]:
        """Remove everything this environment runs here; one line per thing removed."""
        lines = [f"removed arm {name}" for name in list(self.arms)]
        for name in list(self.arms):
            self.removed.append(name)
        self.arms.clear()
        if self.router is not None:
            lines.append("removed the router")
            self.router, self.router_up = None, False
        if self.state_json is not None:
            lines.append(f"removed the state {self.state_location}")
            self.state_json = None
        if self.lock is not None:
            lines.append("removed the lock")
            self.lock, self.lock_alive = None, False
        return lines


def section(**keys: Any) -> EnvironmentSection:
    """An environment section from the config's own (kebab-case) keys, validated."""
    return EnvironmentSection.model_validate(keys)


def controller_for(
    target: FakeTarget,
    env_section: EnvironmentSection,
    *,
    task: str = "classification",
    rows: list[dict[str, Any]] | None = None,
    said: list[str] | None = None,
) -> Controller:
    """THE one place a unit test builds a Controller around a FakeTarget (when the
    controller's construction changes, only this function changes)."""
    spec = EnvSpec(
        project=target.project, env=target.env, section=env_section, task=task, rows=rows or []
    )
    ctl = Controller(spec, target, said.append if said is not None else (lambda _m: None))
    ctl.clock = target.clock
    return ctl


@contextmanager
def holding(ctl: Controller, command: str) -> Iterator[Controller]:
    """Take the environment's lock and read its state, as the CLI does around a command; a
    `Crash` releases nothing (the target frees a dead holder's lock on its own)."""
    ctl.target.acquire(command)
    try:
        ctl.load()
        yield ctl
    except Crash:
        raise
    except BaseException:
        ctl.target.release()
        raise
    ctl.target.release()
