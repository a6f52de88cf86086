"""The fault drill: faults and bad inputs against a real install of the example project.

    python benchmarks/drill.py [--quick] [--out benchmarks/results/drill-<date>.txt]

It copies `model/` to a temporary folder (a project name and router ports of its own, a
shorter canary and blue/green so the drill takes minutes, not an hour), delivers it with
`mlcd run` as `make demo` does (MLCD_IMAGE=127.0.0.1:5000/<unique name>, the real engine,
registry, Trivy and nginx), releases a second and a third model, and then:

- injects faults — switches, rollbacks and a canary killed under load, a SIGKILLed deploy in
  blue/green's post-switch watch, a concurrent deploy, crashed and restarted model
  containers, a second checkout of the same project, read-only run folders, an interrupted
  release, slow-body and pipelined clients on the router, an encrypted zip member, a token
  in the model's params, a cached Trivy database; and (issue 22, on the local target and on
  the docker-host test host when scripts/setup/test-host.sh made one) deploys SIGKILLed at
  named step boundaries (MLCD_FAULT_KILL_AT), SIGTERMed mid-canary, stopped by `mlcd abort`,
  and a stable container killed mid-canary under load — and counts one *survived* when
  nothing was lost (0 client-visible errors, the environment back within 5 s with no mlcd
  command, the command refused before anything moved, state, containers and router agreeing
  after the next command, …);
- sends bad inputs — HTTP requests to the staging router (and, issue 22, to a model
  container directly: partial headers and bodies), `mlcd` commands on broken configurations
  and `--release` arguments — and counts one *handled* when the answer is a 4xx with a JSON `error`
  body (HTTP; or the status a correct client request is due), or exit 2 with a message
  naming the file, line or key (CLI).

It prints the figure line and a table of every case. Containers, routers, images and
mounts it made are removed at the end. Run it as root (bind mounts) after `make setup`.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import http.client
import json
import os
import queue
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REGISTRY = "127.0.0.1:5000"
TEST_HOST_ENV = Path("/var/lib/mlcd-testhost/env")  # scripts/setup/test-host.sh
ROUTER_IMAGE = f"{REGISTRY}/mlcd-router:nginx-bookworm"  # scripts/setup/router-image.sh
ATTACKER = "127.0.0.2"
BACK_WITHIN = 5.0  # seconds an environment may take to answer again after a restart
PREDICT = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
TOKEN = "ghp_" + "DrillT0kenAbCdEfGhIjKlMnOpQrStUvWxYz"  # invented, GitHub-token shaped


# --------------------------------------------------------------------------- results


@dataclass
class Case:
    """One injected fault or one bad input, and what came of it."""

    kind: str  # "fault" or "input"
    group: str  # the class of the case, for the table
    name: str
    ok: bool  # fault: survived with nothing lost; input: handled
    detail: str = ""


@dataclass
class Tally:
    cases: list[Case] = field(default_factory=list)

    def add(self, kind: str, group: str, name: str, ok: bool, detail: str = "") -> Case:
        case = Case(kind, group, name, ok, detail)
        self.cases.append(case)
        mark = "ok  " if ok else "FAIL"
        print(f"  [{mark}] {kind} {group}: {name} {('- ' + detail) if detail else ''}", flush=True)
        return case


def figure_line(cases: list[Case]) -> str:
    faults = [c for c in cases if c.kind == "fault"]
    inputs = [c for c in cases if c.kind == "input"]
    return (
        f"faults: {len(faults)} injected, {sum(c.ok for c in faults)} survived with nothing "
        f"lost; bad inputs: {len(inputs)} sent, {sum(c.ok for c in inputs)} answered with a "
        "4xx or exit 2"
    )


def table(cases: list[Case]) -> list[str]:
    """One row per (kind, group): how many cases, how many survived/handled, the failures."""
    rows: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        rows.setdefault((case.kind, case.group), []).append(case)
    lines = ["| kind | class | cases | survived / handled | not survived / not handled |"]
    lines.append("|---|---|---:|---:|---|")
    for (kind, group), members in rows.items():
        bad = "; ".join(f"{c.name}: {c.detail[:160]}" for c in members if not c.ok) or "-"
        good = sum(c.ok for c in members)
        lines.append(f"| {kind} | {group} | {len(members)} | {good} | {bad} |")
    return lines


def http_handled(status: int, content_type: str, body: bytes, want: int | None = None) -> bool:
    """A bad HTTP input is handled by a 4xx with a JSON body that has an `error`; a request
    a correct client may send (`want`) by exactly that status."""
    if want is not None and not 400 <= want < 500:
        return status == want
    if want is not None and status != want:
        return False
    if not 400 <= status < 500 or "json" not in content_type:
        return False
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and bool(parsed.get("error"))


def cli_handled(code: int, output: str, needle: str) -> bool:
    """A bad CLI input is handled by exit 2 with a message naming `needle` (the file, key or
    value at fault) and no traceback."""
    return code == 2 and "Traceback" not in output and needle.lower() in output.lower()


# --------------------------------------------------------------------------- plumbing


def sh(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@dataclass(frozen=True)
class Where:
    """An environment the issue-22 cases run against: its name, the router's address, and
    the engine its containers run on (None: this machine's)."""

    env: str
    host: str
    port: int
    docker: str | None


class Install:
    """A checkout of the example project in a folder of its own."""

    def __init__(self, home: Path, project: str, ports: dict[str, int], env: dict[str, str]):
        self.home = home
        self.dir = home / "model"
        self.project = project
        self.ports = ports
        self.env = env

    @property
    def config(self) -> Path:
        return self.dir / "mlcd.yaml"

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        full = {**os.environ, "NO_COLOR": "1", **self.env}
        for name, port in self.ports.items():
            full[f"MLCD_{name.upper()}_PORT"] = str(port)
        full.update(extra or {})
        return full

    def mlcd(
        self,
        *args: str,
        config: Path | None = None,
        extra: dict[str, str] | None = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        argv = [python(), "-m", "mlcd", *args]
        if "--config" not in args:
            argv += ["--config", str(config or self.config)]
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=self.environ(extra),
            timeout=timeout,
            check=False,
            cwd=self.dir,
        )

    def spawn(self, *args: str, extra: dict[str, str] | None = None) -> Spawned:
        argv = [python(), "-m", "mlcd", *args, "--config", str(self.config)]
        return Spawned(argv, self.environ(extra), self.dir)

    def out(self, name: str) -> Path:
        return self.home / name

    def state(self, env: str) -> dict[str, Any]:
        path = self.dir / ".mlcd-state" / env / "state.json"
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return data

    def checkout(self, env: str) -> str:
        """The id the local target gives this checkout's environment (its containers'
        `mlcd.checkout` label): a hash of the state folder's path."""
        folder = (self.dir / ".mlcd-state" / env).resolve()
        return hashlib.sha256(str(folder).encode()).hexdigest()[:6]

    def containers(self, env: str | None = None) -> list[str]:
        """This checkout's containers (another checkout of the project has other ids)."""
        mine = {self.checkout(e) for e in ([env] if env else list(self.ports))}
        listed = sh(
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=mlcd.project={self.project}",
            "--format",
            '{{.Names}} {{.Label "mlcd.checkout"}}',
        )
        return sorted(
            name
            for name, _, checkout in (line.partition(" ") for line in listed.splitlines())
            if checkout in mine
        )


class Spawned:
    """An mlcd command in the background whose progress lines (stderr) can be waited for."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path):
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.out: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_err, daemon=True).start()
        threading.Thread(target=self._read_out, daemon=True).start()

    def _read_err(self) -> None:
        for line in self.proc.stderr or ():
            self.lines.append(line)
            self._new.put(line)

    def _read_out(self) -> None:
        for line in self.proc.stdout or ():
            self.out.append(line)
            self._new.put(line)

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        for line in [*self.out, *self.lines]:
            if found := re.search(pattern, line):
                return found
        while time.monotonic() < deadline:
            try:
                line = self._new.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self._new.empty():
                    return None
                continue
            if found := re.search(pattern, line):
                return found
        return None

    def wait(self, timeout: float = 600) -> int:
        code = self.proc.wait(timeout)
        time.sleep(0.2)  # the reader threads drain
        return code

    def text(self) -> str:
        return "".join(self.out) + "".join(self.lines)


class Load:
    """Kept-alive clients posting held-out rows to a router; every non-200 or connection
    error is a client-visible error."""

    def __init__(self, port: int, body: bytes, threads: int = 4, host: str = "127.0.0.1"):
        self.port, self.body, self.threads, self.host = port, body, threads, host
        self.stop = threading.Event()
        self.seen: Counter[str] = Counter()
        self.workers: list[threading.Thread] = []

    def _client(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        headers = {"Content-Type": "application/json"}
        while not self.stop.is_set():
            try:
                conn.request("POST", "/predict", body=self.body, headers=headers)
                response = conn.getresponse()
                response.read()
                self.seen["200" if response.status == 200 else f"HTTP {response.status}"] += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                self.seen[f"error {type(exc).__name__}"] += 1
                conn.close()
                time.sleep(0.05)
            time.sleep(0.01)
        conn.close()

    def __enter__(self) -> Load:
        self.workers = [threading.Thread(target=self._client, daemon=True) for _ in range(4)]
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(20)

    @property
    def errors(self) -> dict[str, int]:
        return {k: v for k, v in self.seen.items() if k != "200"}

    def verdict(self) -> tuple[bool, str]:
        answered = self.seen["200"]
        return (
            answered > 0 and not self.errors,
            f"{answered} answered 200, errors {self.errors or 0}",
        )


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
) -> tuple[int, str, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection(host, port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        heads = {k.lower(): v for k, v in response.getheaders()}
        return response.status, response.getheader("Content-Type", ""), data, heads
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 10, host: str = "127.0.0.1") -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                    length = re.search(rb"(?i)content-length: *(\d+)", head)
                    if length and len(rest) >= int(length.group(1)):
                        break
    return b"".join(chunks)


def parse_raw(answer: bytes) -> tuple[int, str, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].split()
    status = int(first[1]) if len(first) > 1 and first[1].isdigit() else 0
    kind = re.search(rb"(?i)content-type: *([^\r\n]+)", head)
    return status, kind.group(1).decode() if kind else "", body


def answers(port: int) -> bool:
    try:
        status, _, _, _ = request(port, "GET", "/readyz")
    except (OSError, http.client.HTTPException):
        return False
    return status == 200


def predicts(port: int, body: bytes) -> bool:
    try:
        status, _, _, _ = request(
            port, "POST", "/predict", body, {"Content-Type": "application/json"}
        )
    except (OSError, http.client.HTTPException):
        return False
    return status == 200


# --------------------------------------------------------------------------- the drill


class Drill:
    def __init__(self, quick: bool, work: Path):
        self.quick = quick
        self.work = work
        self.tally = Tally()
        self.name = f"drill-{uuid.uuid4().hex[:8]}"
        self.image = f"{REGISTRY}/{self.name}"
        self.mounts: list[Path] = []
        self.registry = work / "registry"
        env = {"MLCD_IMAGE": self.image, "MLCD_REGISTRY_PATH": str(self.registry)}
        self.a = Install(work / "a", self.name, self.free_ports(), env)
        self.b = Install(work / "b", self.name, self.free_ports(), env)
        self.body = b""
        self.row: dict[str, Any] = {}
        self.model = ""
        self.features: list[str] = []
        self.remote_docker: str | None = None  # the test host's engine, once `remote` exists

    @staticmethod
    def free_ports() -> dict[str, int]:
        ports = {}
        for env in ("staging", "production"):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                ports[env] = int(sock.getsockname()[1])
        return ports

    def fault(self, group: str, name: str, ok: bool, detail: str = "") -> None:
        self.tally.add("fault", group, name, ok, detail)

    def input(self, group: str, name: str, ok: bool, detail: str = "") -> None:
        self.tally.add("input", group, name, ok, detail)

    # ------------------------------------------------------------------ setup

    def copy_project(self, install: Install, c: float = 1.0) -> None:
        if not install.dir.exists():
            shutil.copytree(ROOT / "model", install.dir, ignore=shutil.ignore_patterns(".mlcd*"))
        text = (ROOT / "model" / "mlcd.yaml").read_text("utf-8")
        text = text.replace("project: breast-cancer", f"project: {self.name}")
        text = text.replace("params: {C: 1.0}", f"params: {{C: {c}}}")
        # the drill tests delivery under faults, not the judge: a short canary and
        # blue/green, traffic enough to decide, generous bounds (as the zoo's configs)
        text = re.sub(
            r"    canary: \{[^}]*\}\n(?:.*\n)*?    load-test: \{[^}]*\}\n",
            "    canary: {steps: [50, 100], interval: 3s, min-requests: 60}\n"
            "    analysis: {max-error-rate: 0.05, max-p99-latency-ms: 5000,"
            " max-prediction-shift: 2.0, max-latency-increase: 3.0,"
            " min-latency-increase-ms: 100, inconclusive-limit: 30}\n"
            "    load-test: {rps: 60}\n",
            text,
        )
        # production's own analysis line (nested braces) gives way to the drill's below
        text = re.sub(r"(    requires: \[staging\]\n)    analysis: [^\n]*\n", r"\1", text)
        text = text.replace(
            "    strategy: blue-green\n",
            "    strategy: blue-green\n"
            "    blue-green: {preview-duration: 6s, interval: 3s, scale-down-delay: 12s,"
            " min-requests: 40, rps: 40}\n"
            "    analysis: {max-error-rate: 0.05, max-p99-latency-ms: 5000,"
            " max-prediction-shift: 2.0, max-latency-increase: 3.0,"
            " min-latency-increase-ms: 100, inconclusive-limit: 30}\n",
        )
        install.config.write_text(text, "utf-8")
        if not (install.home / ".git").exists():
            sh("git", "init", "-q", str(install.home))

    def setup(self) -> None:
        print(f"project {self.name} in {self.work}; routers {self.a.ports}", flush=True)
        self.copy_project(self.a)
        clock = time.monotonic()
        quick = ["--skip", "lint,test"] if self.quick else []
        done = self.a.mlcd("run", "--out", str(self.a.out("out1")), *quick, timeout=1800)
        print(f"mlcd run: exit {done.returncode} in {time.monotonic() - clock:.0f}s", flush=True)
        if done.returncode != 0:
            raise RuntimeError(f"mlcd run failed:\n{done.stdout}\n{done.stderr}")
        holdout = (self.a.out("out1") / "train" / "holdout.csv").read_text("utf-8").splitlines()
        header = holdout[0].split(",")
        values = holdout[1].split(",")
        model_json = json.loads((self.a.out("out1") / "train" / "model.json").read_text())
        self.features = [f["name"] for f in model_json["features"]]
        self.row = {
            name: float(value)
            for name, value in zip(header, values, strict=True)
            if name in self.features
        }
        self.body = json.dumps({"records": [self.row]}).encode()
        _, _, meta, _ = request(self.a.ports["staging"], "GET", "/v1/metadata")
        self.model = str(json.loads(meta).get("name", ""))

    def release(self) -> None:
        """A second model version (another C), built and scanned in its own run folder; its
        release is the interrupted-release fault (below). A copy of the folder before the
        release is kept for the --keep-going fault."""
        out = self.a.out("out2")
        self.copy_project(self.a, 0.5)
        done = self.a.mlcd(
            "run", "--out", str(out), "--only", "train,evaluate,build,scan", timeout=1800
        )
        if done.returncode != 0:
            raise RuntimeError(f"v2's run failed:\n{done.stdout}\n{done.stderr}")
        shutil.copytree(out, self.a.out("out2-unreleased"), symlinks=True)
        self.interrupted_release(out)
        if read_json(out / "release" / "result.json").get("status") != "pass":
            done = self.a.mlcd("release", "--out", str(out))
            if done.returncode != 0:
                raise RuntimeError(f"v2's release failed:\n{done.stdout}\n{done.stderr}")

    def live(self, install: Install, env: str) -> str:
        stable = install.state(env).get("stable") or {}
        return str(stable.get("version", ""))

    # ------------------------------------------------------------------ faults

    def deploy_under_load(self, group: str, name: str, env: str, *args: str, want: int = 0) -> None:
        port = self.a.ports[env]
        with Load(port, self.body) as load:
            time.sleep(1)
            done = self.a.mlcd(*args)
            time.sleep(1)
        ok, detail = load.verdict()
        good = ok and done.returncode == want
        if done.returncode != want:
            detail += f"; `mlcd {' '.join(args)}` exit {done.returncode}: {tail(done)}"
        self.fault(group, name, good, detail)

    def switches(self) -> None:
        out2 = str(self.a.out("out2"))
        group = "switch/rollback under load"
        self.deploy_under_load(
            group, "canary v2 to staging", "staging", "deploy", "staging", "--out", out2
        )
        self.deploy_under_load(group, "rollback staging", "staging", "rollback", "staging")
        self.deploy_under_load(
            group,
            "blue/green v2 to production",
            "production",
            "deploy",
            "production",
            "--out",
            out2,
        )
        self.deploy_under_load(group, "rollback production", "production", "rollback", "production")

    def canary_killed(self) -> None:
        """The candidate's container killed in the middle of the canary, under load: the
        deploy rolls back (exit 1) and no client request fails."""
        port = self.a.ports["staging"]
        before = self.live(self.a, "staging")
        with Load(port, self.body) as load:
            time.sleep(1)
            run = self.a.spawn("deploy", "staging", "--out", str(self.a.out("out2")))
            ready = run.wait_line(r"candidate ready \S+: (\S+) on", 180)
            stepped = run.wait_line(r"canary step \S+: 50%", 60)
            if ready and stepped:
                time.sleep(2)
                sh("docker", "kill", ready.group(1), check=False)
            code = run.wait(600)
            time.sleep(1)
        ok, detail = load.verdict()
        after = self.live(self.a, "staging")
        good = ok and code == 1 and after == before and ready is not None
        self.fault(
            "canary killed mid-request",
            "docker kill of the candidate at 50%",
            good,
            f"{detail}; deploy exit {code}; live {before} -> {after}",
        )

    def sigkill_in_watch(self) -> None:
        """`mlcd deploy production` SIGKILLed while blue/green watches the new version after
        the switch; the next `mlcd status` restores a consistent environment."""
        port = self.a.ports["production"]
        with Load(port, self.body) as load:
            time.sleep(1)
            run = self.a.spawn("deploy", "production", "--out", str(self.a.out("out2")))
            watching = run.wait_line(r"after switch", 240)
            killed_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            if watching:
                run.proc.send_signal(signal.SIGKILL)
            run.wait(60)
            time.sleep(1)
            status = self.a.mlcd("status", "production", "--format", "json")
            time.sleep(2)
        ok, detail = load.verdict()
        state = self.a.state("production")
        named = json.dumps(state)
        running = self.a.containers("production")
        orphans = [c for c in running if c not in named]
        events = [
            str(h.get("event")) for h in state.get("history", []) if h.get("time", "") >= killed_at
        ]
        good = (
            bool(watching)
            and ok
            and status.returncode == 0
            and state.get("rollout") is None
            and not orphans
            and predicts(port, self.body)
        )
        again = self.a.mlcd("rollback", "production")  # the lock is free again
        good = good and again.returncode == 0
        self.fault(
            "SIGKILL in post-switch watch",
            "mlcd deploy production killed -9 after the switch",
            good,
            f"{detail}; status exit {status.returncode}, events since the kill {events}, "
            f"rollout {state.get('rollout')}, containers the state does not name: "
            f"{orphans or 'none'}; rollback after: exit {again.returncode}",
        )

    def concurrent_deploy(self) -> None:
        out2 = self.a.out("out2")
        first = self.a.spawn("deploy", "staging", "--out", str(out2))
        started = first.wait_line(r"rollout started|candidate ready", 120)
        second = self.a.mlcd("deploy", "staging", "--out", str(out2))
        code = first.wait(600)
        result = json.loads((out2 / "deploy-staging" / "result.json").read_text("utf-8"))
        kept = result.get("status") == "pass" and code == 0
        good = (
            bool(started)
            and second.returncode == 1
            and "is locked by" in second.stdout + second.stderr
            and kept
        )
        self.fault(
            "concurrent deploy",
            "second mlcd deploy staging while one runs",
            good,
            f"second exit {second.returncode} ({tail(second)}); first exit {code}; "
            f"deploy-staging/result.json status {result.get('status')!r} (the first's)",
        )

    def restarts(self) -> None:
        """Model containers crash (SIGKILL of their process) or are restarted by the engine
        (`docker restart`, as an engine restart does): the environments must answer again
        within 5 s, with no mlcd command (restart policy, recorded host ports). The main
        engine itself is not restarted (other work runs on it)."""
        for env in ("staging", "production"):
            port = self.a.ports[env]
            for how in ("SIGKILL of the container's process", "docker restart"):
                names = [n for n in self.a.containers(env) if n.endswith(("-blue", "-green"))]
                running = [
                    n
                    for n in names
                    if sh("docker", "inspect", "-f", "{{.State.Running}}", n).strip() == "true"
                ]
                clock = time.monotonic()
                for name in running:
                    if how == "docker restart":
                        sh("docker", "restart", "-t", "2", name, check=False)
                    else:
                        pid = int(sh("docker", "inspect", "-f", "{{.State.Pid}}", name).strip())
                        os.kill(pid, signal.SIGKILL)
                if how == "docker restart":
                    clock = time.monotonic()  # `docker restart` returns once it started them
                took = None
                deadline = time.monotonic() + 60
                time.sleep(0.2)
                while time.monotonic() < deadline:
                    if predicts(port, self.body):
                        took = time.monotonic() - clock
                        break
                    time.sleep(0.1)
                ok = took is not None and took <= BACK_WITHIN
                self.fault(
                    "restart (restart policy)",
                    f"{env}: {how} ({len(running)} containers)",
                    ok,
                    f"answered again after {took:.1f}s" if took is not None else "not back in 60s",
                )

    def second_checkout(self) -> None:
        """A second checkout of the same project on this machine deploys staging (its own
        state folder and ports, the same model registry): the first's containers and
        routers are untouched and keep answering."""
        self.copy_project(self.b)
        mine = sorted(self.a.containers())
        version = self.live(self.a, "staging")
        with Load(self.a.ports["staging"], self.body) as load:
            done = self.b.mlcd(
                "deploy", "staging", "--out", str(self.b.out("out")), "--release", version
            )
            status = self.b.mlcd("status", "staging")
            theirs = self.b.containers("staging")
            still = sorted(set(self.a.containers()) & set(mine))
            back = self.a.mlcd("rollback", "staging")  # the first checkout acts again
        ok, detail = load.verdict()
        kept = sorted(set(self.b.containers()) & set(theirs))
        good = (
            ok
            and done.returncode == 0
            and back.returncode == 0
            and still == mine
            and bool(theirs)
            and kept == theirs
            and predicts(self.b.ports["staging"], self.body)
            and predicts(self.a.ports["production"], self.body)
        )
        self.fault(
            "two checkouts",
            "a second checkout deploys staging, then the first rolls its staging back",
            good,
            f"{detail}; second's deploy exit {done.returncode}, status exit "
            f"{status.returncode}; first's rollback exit {back.returncode}; first checkout's "
            f"containers kept {len(still)}/{len(mine)}, second's {len(kept)}/{len(theirs)}",
        )

    def mount_read_only(self, source: Path | None) -> Path:
        point = self.work / f"ro-{len(self.mounts)}"
        point.mkdir()
        if source is None:
            sh("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(point))
        else:
            sh("mount", "--bind", str(source), str(point))
            self.mounts.append(point)
            sh("mount", "-o", "remount,ro,bind", str(point))
            self.mounts.pop()
        self.mounts.append(point)
        return point

    def read_only(self) -> None:
        copy = self.work / "frozen-src"
        shutil.copytree(self.a.out("out2"), copy, symlinks=True)
        frozen = self.mount_read_only(copy)
        empty = self.mount_read_only(None)
        before_containers = sorted(self.a.containers())
        before_files = sorted(str(p.relative_to(frozen)) for p in frozen.rglob("*"))
        releases_before = sorted(p.name for p in (self.registry / "releases").glob("*"))
        for command, folder in (
            (["train"], empty),
            (["evaluate"], frozen),
            (["release"], frozen),
            (["report"], frozen),
            (["deploy", "staging"], frozen),
        ):
            done = self.a.mlcd(*command, "--out", str(folder))
            said = "cannot write the run folder" in done.stderr and "Traceback" not in done.stderr
            good = (
                done.returncode == 3
                and said
                and sorted(self.a.containers()) == before_containers
                and sorted(p.name for p in (self.registry / "releases").glob("*"))
                == releases_before
            )
            self.fault(
                "read-only run folder",
                f"mlcd {' '.join(command)}",
                good,
                f"exit {done.returncode}: {tail(done)}",
            )
        state = self.mount_read_only(None)
        done = self.a.mlcd(
            "deploy",
            "staging",
            "--out",
            str(self.work / "out-ro-state"),
            extra={"MLCD_STATE_DIR": str(state)},
        )
        said = (
            f"cannot write {state}" in done.stderr or "cannot write the state folder" in done.stderr
        )
        said = said and "Traceback" not in done.stderr
        self.fault(
            "read-only run folder",
            "mlcd deploy staging, state folder read-only",
            done.returncode == 3 and said and sorted(self.a.containers()) == before_containers,
            f"exit {done.returncode}: {tail(done)}",
        )
        after_files = sorted(str(p.relative_to(frozen)) for p in frozen.rglob("*"))
        if after_files != before_files:
            self.fault(
                "read-only run folder",
                "files of the frozen folder",
                ok=False,
                detail="the read-only folder's files changed",
            )

    def interrupted_release(self, out: Path) -> None:
        """`mlcd release` SIGKILLed after its push; the rerun takes the same version (no
        gap) and leaves no tag the model registry does not know."""
        # `mlcd run` shows each step of a stage (a standalone `mlcd release` prints nothing
        # until it ends): the kill comes once the push is done and the pull has begun
        run = self.a.spawn("run", "--only", "release", "--out", str(out))
        pushed = run.wait_line(r"docker pull", 300)
        if pushed:
            run.proc.send_signal(signal.SIGKILL)
        run.wait(60)
        claimed = re.search(r"docker push \S+:(\S+)", run.text())
        again = self.a.mlcd("release", "--out", str(out))
        version = ""
        with contextlib.suppress(OSError, ValueError, KeyError):
            version = json.loads((out / "release" / "result.json").read_text())["details"][
                "version"
            ]
        tags = tags_of(self.name)
        known = {
            p.name for p in (self.registry / "releases").iterdir() if (p / "release.json").exists()
        }
        orphans = sorted(set(tags) - known)
        want = claimed.group(1) if claimed else "?"
        good = bool(pushed) and again.returncode == 0 and version == want and not orphans
        self.fault(
            "interrupted release",
            "mlcd release killed -9 after the push, then run again",
            good,
            f"pushed {want}; rerun exit {again.returncode} released {version!r}; tags the model "
            f"registry does not know: {orphans or 'none'}",
        )

    def standalone_scan(self) -> None:
        done = self.a.mlcd("scan", "--out", str(self.a.out("out2")))
        self.fault(
            "standalone scan with MLCD_IMAGE",
            "mlcd scan --out <run folder>",
            done.returncode == 0,
            f"exit {done.returncode}: {tail(done)}",
        )

    def keep_going(self) -> None:
        """`mlcd run --keep-going` on a build whose scan fails (a cached Trivy DB with a
        CRITICAL, fixed CVE on openssl, which the base image has) and whose release is
        therefore refused: the deploy stages must not deploy an older release."""
        from tests.integration.trivydb import make_trivy_db

        cve = {
            "severity": "CRITICAL",
            "title": "drill: flaw in openssl",
            "fixed": "9.9.9-1~deb12u1",
        }
        cache = make_trivy_db(
            self.work / "trivy-cve", debian={"openssl": {"CVE-2099-0042": cve}}, pip={}
        )
        out = self.a.out("out4")
        shutil.copytree(self.a.out("out2-unreleased"), out, symlinks=True)
        shutil.rmtree(out / "scan", ignore_errors=True)
        envs = ("staging", "production")
        before = {
            env: (self.live(self.a, env), len(self.a.state(env).get("history", []))) for env in envs
        }
        done = self.a.mlcd(
            "run",
            "--out",
            str(out),
            "--keep-going",
            "--only",
            "scan,release,deploy-staging,deploy-production",
            extra={"MLCD_TRIVY_CACHE": str(cache)},
            timeout=1800,
        )
        after = {
            env: (self.live(self.a, env), len(self.a.state(env).get("history", []))) for env in envs
        }
        scan = read_json(out / "scan" / "result.json").get("status")
        release = read_json(out / "release" / "result.json").get("status")
        deploys = {
            env: read_json(out / f"deploy-{env}" / "result.json").get("summary", "") for env in envs
        }
        good = done.returncode == 1 and scan == "fail" and after == before
        self.fault(
            "--keep-going after failed scan/release",
            "mlcd run --keep-going, scan fails",
            good,
            f"exit {done.returncode}; scan {scan}, release {release}; (live, history) {before} -> "
            f"{after}; deploy summaries {deploys}",
        )

    def token_in_params(self) -> None:
        # a copy of the project of its own: the token must not reach the drill's own
        # project (its repository scan would rightly fail the later releases)
        proj = self.work / "token" / "model"
        shutil.copytree(self.a.dir, proj, ignore=shutil.ignore_patterns(".mlcd*"))
        config = proj / "mlcd.yaml"
        text = config.read_text("utf-8")
        text = re.sub(r"params: \{C: [0-9.]+\}", f'params: {{C: 1.0, api_token: "{TOKEN}"}}', text)
        config.write_text(text, "utf-8")
        out = self.work / "token" / "out"
        done = self.a.mlcd("train", "--out", str(out), config=config)
        written = "".join(p.read_text("utf-8", "replace") for p in out.rglob("*") if p.is_file())
        leaked = TOKEN in done.stdout + done.stderr + written
        self.fault(
            "token in model.params",
            "train fails on an unknown param holding a token",
            done.returncode != 0 and not leaked and "Traceback" not in done.stderr,
            f"exit {done.returncode}; token printed or written: {leaked}",
        )

    def trivy_cache(self) -> None:
        from tests.integration.trivydb import make_trivy_db

        cache = make_trivy_db(self.work / "trivy-cache", debian={}, pip={})
        proxy = Listener()
        url = f"http://127.0.0.1:{proxy.port}"
        proxies = dict.fromkeys(("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"), url)
        try:
            done = self.a.mlcd(
                "scan",
                "--out",
                str(self.a.out("out2")),
                extra={"MLCD_TRIVY_CACHE": str(cache), "NO_PROXY": "", "no_proxy": "", **proxies},
            )
        finally:
            proxy.close()
        self.fault(
            "scan with a cached Trivy DB",
            "no network request",
            done.returncode == 0
            and proxy.connections == 0
            and "NOT scanned" not in done.stdout + done.stderr,
            f"exit {done.returncode}; connections to the network: {proxy.connections}; "
            f"vulnerabilities scanned: {'NOT scanned' not in done.stdout + done.stderr}",
        )

    def encrypted_zip(self) -> None:
        import pickle  # the drill only writes this file; it is never loaded

        evil = self.work / "locked.pt"
        with zipfile.ZipFile(evil, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps({"coef": [1.0]}, protocol=2))
        data = bytearray(evil.read_bytes())
        for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = data.find(signature)
            data[at + flags_at] |= 0x1
        evil.write_bytes(bytes(data))
        out = self.work / "zip-scan"
        done = self.a.mlcd("scan", "--no-image", "--model", str(evil), "--out", str(out))
        findings = read_json(out / "scan" / "findings.json").get("findings", [])
        high = [
            f
            for f in findings
            if f.get("kind") == "model"
            and f.get("severity") == "HIGH"
            and "encrypted" in f.get("title", "")
        ]
        self.fault(
            "encrypted zip member",
            "mlcd scan --model locked.pt",
            done.returncode == 1 and bool(high) and "Traceback" not in done.stderr,
            f"exit {done.returncode}; HIGH findings naming it: {len(high)}",
        )

    def slow_bodies(self) -> None:
        port = self.a.ports["staging"]
        count = 500 if self.quick else 2100
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))
        head = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        slow: list[socket.socket] = []
        try:
            for _ in range(count):
                with contextlib.suppress(OSError):
                    sock = socket.create_connection(
                        ("127.0.0.1", port), timeout=5, source_address=(ATTACKER, 0)
                    )
                    sock.sendall(head)
                    slow.append(sock)
            clock = time.monotonic()
            statuses = Counter(
                request(port, "POST", "/predict", self.body, {"Content-Type": "application/json"})[
                    0
                ]
                for _ in range(20)
            )
            took = time.monotonic() - clock
        finally:
            for sock in slow:
                sock.close()
        self.fault(
            "router: slow bodies",
            f"{count} slow-body connections from {ATTACKER}",
            statuses == Counter({200: 20}) and took < 10,
            f"{len(slow)} opened; another client's 20 requests: {dict(statuses)} in {took:.2f}s",
        )

    def pipelined(self) -> None:
        port = self.a.ports["staging"]
        one = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(self.body)).encode() + b"\r\n\r\n" + self.body
        )
        count = 50
        data = b""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(one * count)
            deadline = time.monotonic() + 20
            while data.count(b"HTTP/1.1 200") < count and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        got = data.count(b"HTTP/1.1 200")
        self.fault("router: pipelining", "50 pipelined requests", got == count, f"{got} answered")

    # ------------------------------------------------------------------ bad HTTP inputs

    def http_inputs(self) -> None:
        port = self.a.ports["staging"]
        json_h = {"Content-Type": "application/json"}
        row = self.row
        first = self.features[0]
        n = len(self.features)
        values = [row[f] for f in self.features]

        def send(  # noqa: PLR0917
            group: str,
            name: str,
            method: str,
            path: str,
            body: bytes | None = None,
            headers: dict[str, str] | None = None,
            want: int | None = None,
            check: Callable[[bytes, dict[str, str]], bool] | None = None,
        ) -> None:
            try:
                status, kind, data, heads = request(port, method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                self.input(group, name, ok=False, detail=f"{type(exc).__name__}: {exc}")
                return
            ok = http_handled(status, kind, data, want)
            if ok and check is not None:
                ok = check(data, heads)
            self.input(group, name, ok, "" if ok else f"HTTP {status} {kind} {data[:120]!r}")

        def send_raw(group: str, name: str, data: bytes, want: int | None = None) -> None:
            try:
                status, kind, body = parse_raw(raw(port, data))
            except OSError as exc:
                self.input(group, name, ok=False, detail=f"{type(exc).__name__}: {exc}")
                return
            ok = http_handled(status, kind, body, want)
            self.input(group, name, ok, "" if ok else f"HTTP {status} {kind} {body[:120]!r}")

        g = "HTTP: malformed JSON"
        for i, body in enumerate(
            [
                b"{",
                b'{"records": [',
                b"nul",
                b'{"records": [{"a": 1}]} trailing',
                b"{'records': []}",
                b'{"records": [{' + first.encode() + b": 1}]}",
                b"\xff\xfe\x00garbage",
                b"",
                b'{"records": [1,]}',
                b'\xef\xbb\xbf{"instances": [[1]]',
                b"[[[[[[[[[[",
                b'{"instances": [[1, 2, 3]]' + b"}" * 5,
            ]
        ):
            send(g, f"body {i}: {body[:24]!r}", "POST", "/predict", body, json_h)

        g = "HTTP: wrong shapes"
        for name, payload in [
            ("a list", []),
            ("a number", 1),
            ("a string", "x"),
            ("null", None),
            ("true", True),
            ("empty object", {}),
            ("unknown key", {"rows": [values]}),
            ("records not a list", {"records": {"a": 1}}),
            ("records of numbers", {"records": [1, 2]}),
            ("records of lists", {"records": [values]}),
            ("an empty record", {"records": [{}]}),
            (
                "a record missing a feature",
                {"records": [{k: v for k, v in row.items() if k != first}]},
            ),
            ("a record with an unknown column", {"records": [{**row, "bogus column": 1.0}]}),
            ("instances too short", {"instances": [values[:-1]]}),
            ("instances too long", {"instances": [[*values, 1.0]]}),
            ("instances flat", {"instances": values}),
            ("instances a string", {"instances": "x"}),
            ("instances ragged", {"instances": [values, values[:3]]}),
            ("instances nested deeper", {"instances": [[values]]}),
            ("both records and instances", {"records": [row], "instances": [values]}),
            ("inputs a string", {"inputs": "x"}),
        ]:
            send(g, name, "POST", "/predict", json.dumps(payload).encode(), json_h)

        g = "HTTP: wrong types and numbers"
        for name, value in [
            ("a string", "ten"),
            ("a numeric string", "12"),
            ("a list", [1.0]),
            ("an object", {"v": 1}),
            ("true", True),
            ("null", None),
        ]:
            send(
                g,
                f"feature as {name}",
                "POST",
                "/predict",
                json.dumps({"records": [{**row, first: value}]}).encode(),
                json_h,
            )
        text = json.dumps({"instances": [values]})
        head = f"[{values[0]!r}" if not text.startswith('{"instances": [[') else ""
        del head
        for name, literal in [
            ("NaN", "NaN"),
            ("Infinity", "Infinity"),
            ("-Infinity", "-Infinity"),
            ("1e400", "1e400"),
            ("-1e999", "-1e999"),
            ("10**400", "1" + "0" * 400),
        ]:
            payload = (
                '{"instances": [[' + literal + ", " + ", ".join(repr(v) for v in values[1:]) + "]]}"
            )
            send(g, f"number {name}", "POST", "/predict", payload.encode(), json_h)

        g = "HTTP: sizes and encodings"
        send_raw(
            g,
            "Content-Length 9 MB",
            PREDICT + b"Content-Length: 9000000\r\n\r\n{}",
        )
        big = b'{"instances": [' + b"[0.0]," * 300_000 + b"]}"
        send(g, "1.8 MB of rows", "POST", "/predict", big, json_h)
        chunked = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += (
            b"".join(b"%x\r\n%s\r\n" % (65536, b" " * 65536) for _ in range(140)) + b"0\r\n\r\n"
        )
        send_raw(g, "9 MB chunked", chunked)
        send_raw(
            g,
            "Expect: 100-continue, 9 MB",
            PREDICT + b"Expect: 100-continue\r\nContent-Length: 9999999\r\n\r\n",
        )
        send_raw(
            g,
            "Content-Length not a number",
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n{}",
        )
        send_raw(
            g,
            "two Content-Lengths",
            PREDICT + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        )
        send(
            g,
            "gzip that is not gzip",
            "POST",
            "/predict",
            b"not gzip at all",
            {**json_h, "Content-Encoding": "gzip"},
        )
        send(
            g,
            "Content-Encoding br",
            "POST",
            "/predict",
            self.body,
            {**json_h, "Content-Encoding": "br"},
        )
        bomb = gzip.compress(b'{"instances": [' + b" " * 50_000_000 + b"]}")
        send(
            g,
            "gzip bomb (50 MB inflated)",
            "POST",
            "/predict",
            bomb,
            {**json_h, "Content-Encoding": "gzip"},
        )
        send(
            g,
            "gzip of garbage JSON",
            "POST",
            "/predict",
            gzip.compress(b"{nope"),
            {**json_h, "Content-Encoding": "gzip"},
        )

        g = "HTTP: content types"
        for kind, body in [
            ("application/xml", b"<records><r>1</r></records>"),
            ("text/plain", b"hello"),
            ("multipart/form-data; boundary=x", b"--x\r\n\r\nhi\r\n--x--"),
            ("application/x-www-form-urlencoded", b"records=1"),
            ("application/octet-stream", b"\x00\x01\x02"),
            ("text/csv", b"a,b\n1,2\n"),
        ]:
            send(g, kind, "POST", "/predict", body, {"Content-Type": kind})

        g = "HTTP: routes and methods"
        for method, path in [
            ("GET", "/nope"),
            ("GET", "/predict"),
            ("PUT", "/predict"),
            ("DELETE", "/predict"),
            ("PATCH", "/predict"),
            ("POST", "/healthz"),
            ("POST", "/metrics"),
            ("DELETE", "/v1/metadata"),
            ("GET", "/v2/models/no-such-model"),
            ("GET", "/v2/models/no-such-model/ready"),
            ("POST", "/v2/models/no-such-model/infer"),
            ("GET", f"/v2/models/{self.model}/infer"),
            ("GET", f"/v2/models/{self.model}/explain"),
            ("GET", "/v1/recent-predictions?limit=abc"),
            ("GET", "/v1/recent-predictions?limit=-1"),
            ("GET", "/../../etc/passwd"),
            ("GET", "/v2/models/" + "x" * 3000),
            ("POST", "/predict/../metrics"),
        ]:
            send(
                g,
                f"{method} {path[:48]}",
                method,
                path,
                self.body if method != "GET" else None,
                json_h,
            )

        g = "HTTP: v2 tensors"
        infer = f"/v2/models/{self.model}/infer"
        good_input = {"name": "input-0", "shape": [1, n], "datatype": "FP64", "data": values}
        for name, payload in [
            ("no inputs", {}),
            ("inputs empty", {"inputs": []}),
            ("inputs an object", {"inputs": {"x": 1}}),
            ("shape does not fit the data", {"inputs": [{**good_input, "shape": [2, n]}]}),
            ("negative shape", {"inputs": [{**good_input, "shape": [-1, n]}]}),
            ("shape a string", {"inputs": [{**good_input, "shape": "1x30"}]}),
            ("datatype BYTES for numbers", {"inputs": [{**good_input, "datatype": "BYTES"}]}),
            ("datatype unknown", {"inputs": [{**good_input, "datatype": "FP128"}]}),
            ("datatype BOOL", {"inputs": [{**good_input, "datatype": "BOOL", "data": [True] * n}]}),
            (
                "INT8 out of range",
                {"inputs": [{**good_input, "datatype": "INT8", "data": [300] * n}]},
            ),
            ("data strings", {"inputs": [{**good_input, "data": ["a"] * n}]}),
            ("data missing", {"inputs": [{k: v for k, v in good_input.items() if k != "data"}]}),
            ("unknown input name", {"inputs": [{**good_input, "name": "nope"}]}),
            (
                "wrong feature count",
                {"inputs": [{**good_input, "shape": [1, n - 1], "data": values[:-1]}]},
            ),
            ("an unknown output", {"inputs": [good_input], "outputs": [{"name": "nope"}]}),
            ("id a number", {"id": 5, "inputs": [good_input]}),
            ("parameters a list", {"inputs": [good_input], "parameters": [1]}),
            ("NaN in data", None),
        ]:
            body = (
                json.dumps(payload).encode()
                if payload is not None
                else (
                    json.dumps({"inputs": [{**good_input, "data": [0.0] * n}]})
                    .replace("0.0", "NaN", 1)
                    .encode()
                )
            )
            send(g, name, "POST", infer, body, json_h)
        header = json.dumps(
            {
                "inputs": [
                    {
                        **{k: v for k, v in good_input.items() if k != "data"},
                        "parameters": {"binary_data_size": 8 * n},
                    }
                ]
            }
        ).encode()
        blob = struct.pack(f"<{n}d", *values)
        send(
            g,
            "binary: Inference-Header-Content-Length past the body",
            "POST",
            infer,
            header + blob,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(header) + len(blob) + 10),
            },
        )
        send(
            g,
            "binary: Inference-Header-Content-Length not a number",
            "POST",
            infer,
            header + blob,
            {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "abc"},
        )
        send(
            g,
            "binary: binary_data_size past the body",
            "POST",
            infer,
            header + blob[:-8],
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(header)),
            },
        )

        g = "HTTP: OIP clients' wire format (due status)"
        send(
            g,
            "binary data extension",
            "POST",
            infer,
            header + blob,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(header)),
            },
            want=200,
        )
        send(
            g,
            "Content-Encoding: gzip",
            "POST",
            "/predict",
            gzip.compress(self.body),
            {**json_h, "Content-Encoding": "gzip"},
            want=200,
        )
        send(
            g,
            "v2 infer gzip",
            "POST",
            infer,
            gzip.compress(json.dumps({"inputs": [good_input]}).encode()),
            {**json_h, "Content-Encoding": "gzip"},
            want=200,
        )
        send(
            g,
            "versions/999/ready is 404",
            "GET",
            f"/v2/models/{self.model}/versions/999/ready",
            want=404,
        )
        send(
            g,
            "versions/999/infer is 404",
            "POST",
            f"/v2/models/{self.model}/versions/999/infer",
            json.dumps({"inputs": [good_input]}).encode(),
            json_h,
            want=404,
        )
        quoted = "".join(f"%{b:02X}" for b in self.model.encode())
        send(g, "percent-encoded model name", "GET", f"/v2/models/{quoted}/ready", want=200)
        send(g, "GET /v2/ with a slash", "GET", "/v2/", want=200)
        send(
            g,
            '"id": "" echoed',
            "POST",
            infer,
            json.dumps({"id": "", "inputs": [good_input]}).encode(),
            json_h,
            want=200,
            check=lambda data, _: json.loads(data).get("id") == "",
        )

        g = "HTTP: router limits and framing"
        predict = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        send_raw(
            g,
            "request line of 70 KB (414)",
            b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        send_raw(
            g,
            "a header of 70 KB",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n",
        )
        send_raw(g, "TLS bytes on the HTTP port", b"\x16\x03\x01 not http\r\n\r\n")
        send_raw(g, "GARBAGE request line", b"GARBAGE\r\n\r\n")
        send_raw(g, "HTTP/2.0 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        send_raw(g, "no Host header, HTTP/1.1", b"GET /healthz HTTP/1.1\r\n\r\n")
        send_raw(g, "413 through the router", predict + b"Content-Length: 9000000\r\n\r\n{}")
        send(
            g,
            "a 12 KB header is taken (the server allows 64 KiB)",
            "GET",
            "/healthz",
            headers={"X-Big": "b" * 12_000},
            want=200,
        )
        send(
            g,
            "a 60 KB header is taken",
            "GET",
            "/healthz",
            headers={"X-Big": "b" * 60_000},
            want=200,
        )
        send(
            g,
            "X-Request-ID of 10 KB",
            "POST",
            "/predict",
            self.body,
            {**json_h, "X-Request-ID": "r" * 10_000},
            want=200,
        )

    # ------------------------------------------------------------------ bad CLI inputs

    def cli_inputs(self) -> None:
        self.copy_project(self.a)
        base = self.a.config.read_text("utf-8")
        folder = self.work / "configs"
        folder.mkdir(exist_ok=True)

        def project(tag: str, text: str, files: dict[str, bytes] | None = None) -> Path:
            proj = folder / tag
            shutil.copytree(self.a.dir, proj, ignore=shutil.ignore_patterns(".mlcd*"))
            for name, content in (files or {}).items():
                (proj / name).write_bytes(content)
            (proj / "mlcd.yaml").write_text(text, "utf-8")
            return proj / "mlcd.yaml"

        def sub(old: str, new: str) -> str:
            if old not in base:
                raise RuntimeError(f"the example's mlcd.yaml has no {old!r}")
            return base.replace(old, new, 1)

        staging = "    strategy: canary\n"
        production = "    strategy: blue-green\n"
        cases: list[tuple[str, str, str, dict[str, bytes] | None]] = [
            (
                "canary steps [50, 10, 100]",
                sub("steps: [50, 100]", "steps: [50, 10, 100]"),
                "steps",
                None,
            ),
            (
                "two environments on one port",
                sub(staging, staging + "    port: 18555\n").replace(
                    production, production + "    port: 18555\n"
                ),
                "port",
                None,
            ),
            ('test-size: "0.2"', sub("test-size: 0.2", 'test-size: "0.2"'), "test-size", None),
            ("min-requests: 0", sub("min-requests: 60", "min-requests: 0"), "min-requests", None),
            (
                "a metric that does not exist",
                sub("accuracy: {min: 0.92}", "bogus_metric: {min: 0.92}"),
                "bogus_metric",
                None,
            ),
            (
                "a regression metric on a classifier",
                sub("accuracy: {min: 0.92}", "r2: {min: 0.5}"),
                "r2",
                None,
            ),
            (
                "a missing target column",
                sub("target: diagnosis", "target: nosuchcolumn"),
                "nosuchcolumn",
                None,
            ),
            (
                "a missing data file",
                sub("data: data/train.csv", "data: data/missing.csv"),
                "missing.csv",
                None,
            ),
            (
                "a missing entrypoint function",
                sub("train.py:build_model", "train.py:no_such_function"),
                "no_such_function",
                None,
            ),
            (
                "a missing entrypoint file",
                sub("train.py:build_model", "nofile.py:build_model"),
                "nofile.py",
                None,
            ),
            (
                "a missing lint path",
                sub("paths: [train.py, data, tests]", "paths: [train.py, nolintpath]"),
                "nolintpath",
                None,
            ),
            (
                "a missing test path",
                sub("test: {paths: [tests]", "test: {paths: [notestpath]"),
                "notestpath",
                None,
            ),
            (
                "a parameter of the wrong type",
                sub("params: {C: 1.0}", 'params: {C: "strong"}'),
                "C",
                None,
            ),
            (
                "an unknown parameter",
                sub("params: {C: 1.0}", "params: {C: 1.0, bogus_param: 3}"),
                "bogus_param",
                None,
            ),
            ("params a list", sub("params: {C: 1.0}", "params: [1, 2]"), "params", None),
            ("an unknown top-level key", base + "modle: {}\n", "modle", None),
            ("an unknown model key", sub("  seed: 42\n", "  seed: 42\n  taks: x\n"), "taks", None),
            ("version: 2", sub("version: 1", "version: 2"), "version", None),
            ("task: clustering", sub("task: classification", "task: clustering"), "task", None),
            ('seed: "x"', sub("seed: 42", 'seed: "x"'), "seed", None),
            ("test-size: 1.5", sub("test-size: 0.2", "test-size: 1.5"), "test-size", None),
            ("test-size: 0", sub("test-size: 0.2", "test-size: 0"), "test-size", None),
            ("an unclosed bracket", sub("params: {C: 1.0}", "params: {C: 1.0"), "mlcd.yaml", None),
            (
                "a tab for indentation",
                sub("  task: classification", "\ttask: classification"),
                "mlcd.yaml",
                None,
            ),
            ("an empty file", "", "mlcd.yaml", None),
            ("a list at the top", "- a\n- b\n", "mlcd.yaml", None),
            ("project empty", sub(f"project: {self.name}", 'project: ""'), "project", None),
            (
                "project with spaces",
                sub(f"project: {self.name}", 'project: "Bad Name!"'),
                "project",
                None,
            ),
            ("strategy: rainbow", sub(staging, "    strategy: rainbow\n"), "strategy", None),
            (
                'interval: "ten seconds"',
                sub("interval: 3s, min-requests", 'interval: "ten seconds", min-requests'),
                "interval",
                None,
            ),
            (
                "interval: -5s",
                sub("interval: 3s, min-requests", "interval: -5s, min-requests"),
                "interval",
                None,
            ),
            ("canary steps []", sub("steps: [50, 100]", "steps: []"), "steps", None),
            (
                "canary steps not ending at 100",
                sub("steps: [50, 100]", "steps: [10, 50]"),
                "steps",
                None,
            ),
            ("canary step 150", sub("steps: [50, 100]", "steps: [50, 150]"), "steps", None),
            (
                "max-error-rate: 2",
                sub("max-error-rate: 0.05", "max-error-rate: 2"),
                "max-error-rate",
                None,
            ),
            (
                "max-error-rate: -0.1",
                sub("max-error-rate: 0.05", "max-error-rate: -0.1"),
                "max-error-rate",
                None,
            ),
            ("load-test rps: 0", sub("load-test: {rps: 60}", "load-test: {rps: 0}"), "rps", None),
            (
                "requires an unknown environment",
                sub("requires: [staging]", "requires: [nowhere]"),
                "nowhere",
                None,
            ),
            (
                "requires itself",
                sub("requires: [staging]", "requires: [production]"),
                "production",
                None,
            ),
            ("target: mars", sub(staging, staging + "    target: mars\n"), "target", None),
            (
                "docker-host without host",
                sub(staging, staging + "    target: docker-host\n"),
                "host",
                None,
            ),
            ("port: 70000", sub(staging, staging + "    port: 70000\n"), "port", None),
            ('port: "abc"', sub(staging, staging + '    port: "abc"\n'), "port", None),
            (
                "max-regression of an unknown metric",
                sub("max-regression: {roc_auc: 0.01}", "max-regression: {bogus_m: 0.01}"),
                "bogus_m",
                None,
            ),
            ("scan severity EXTREME", sub("severity: HIGH", "severity: EXTREME"), "severity", None),
            (
                "vulnerability-db: maybe",
                sub("vulnerability-db: optional}", "vulnerability-db: maybe}"),
                "vulnerability-db",
                None,
            ),
            (
                "min-coverage: 150",
                sub("min-coverage: 80", "min-coverage: 150"),
                "min-coverage",
                None,
            ),
            (
                "bandit-severity: extreme",
                sub("bandit-severity: medium", "bandit-severity: extreme"),
                "bandit-severity",
                None,
            ),
            (
                "image name with spaces",
                sub("image: {name: 127.0.0.1:5000/breast-cancer", 'image: {name: "Bad Image Name"'),
                "image",
                None,
            ),
            (
                "environments a list",
                base.split("environments:")[0] + "environments: [staging]\n",
                "environments",
                None,
            ),
            (
                "blue-green preview-duration: -1s",
                sub("preview-duration: 6s", "preview-duration: -1s"),
                "preview-duration",
                None,
            ),
            ("registry backend s3", base + "registry: {backend: s3}\n", "backend", None),
            ("an empty data file", base, "train.csv", {"data/train.csv": b""}),
            ("a data file with only its header", base, "train.csv", {"data/train.csv": None}),  # type: ignore[dict-item]
            (
                "a binary data file",
                base,
                "train.csv",
                {"data/train.csv": b"\x00\xff\x00\xfe" * 100},
            ),
            (
                "an entrypoint with a syntax error",
                base,
                "train.py",
                {"train.py": b"def build_model(:\n"},
            ),
        ]
        header_only = (self.a.dir / "data" / "train.csv").read_bytes().split(b"\n", 1)[0] + b"\n"
        jobs: list[tuple[str, Path, str]] = []
        for i, (name, text, needle, files) in enumerate(cases):
            given = {k: (header_only if v is None else v) for k, v in (files or {}).items()}
            jobs.append((name, project(f"c{i}", text, given), needle))

        def validate(
            job: tuple[str, Path, str],
        ) -> tuple[str, str, subprocess.CompletedProcess[str]]:
            name, config, needle = job
            # the image name in the config counts only when MLCD_IMAGE is not set
            extra = {"MLCD_IMAGE": ""} if name.startswith("image name") else None
            return (
                name,
                needle,
                self.a.mlcd("validate", "--config", str(config), extra=extra, timeout=300),
            )

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            for name, needle, done in pool.map(validate, jobs):
                out = done.stdout + done.stderr
                self.input(
                    "CLI: mlcd validate on a broken mlcd.yaml",
                    name,
                    cli_handled(done.returncode, out, needle),
                    f"exit {done.returncode}: {tail(done)}",
                )

        g = "CLI: commands and arguments"
        out1 = str(self.a.out("out1"))
        missing = str(self.work / "nowhere" / "mlcd.yaml")
        for name, args, needle, extra in [
            ("--config that does not exist", ["validate", "--config", missing], "nowhere", None),
            ("--config a folder", ["validate", "--config", str(self.work)], str(self.work), None),
            (
                "deploy an unknown environment",
                ["deploy", "nowhere", "--out", out1],
                "nowhere",
                None,
            ),
            (
                "deploy --release that does not exist",
                ["deploy", "staging", "--release", "9.9.9", "--out", out1],
                "9.9.9",
                None,
            ),
            (
                "deploy --strategy rainbow",
                ["deploy", "staging", "--strategy", "rainbow", "--out", out1],
                "rainbow",
                None,
            ),
            ("status of an unknown environment", ["status", "nowhere"], "nowhere", None),
            ("rollback an unknown environment", ["rollback", "nowhere"], "nowhere", None),
            ("an unknown command", ["frobnicate"], "frobnicate", None),
            (
                "deploy --release not a version",
                ["deploy", "staging", "--release", "one", "--out", out1],
                "`one`",
                None,
            ),
            (
                "evaluate with no train results",
                ["evaluate", "--out", str(self.work / "empty-run")],
                "train",
                None,
            ),
            (
                "scan --model that does not exist",
                [
                    "scan",
                    "--no-image",
                    "--model",
                    str(self.work / "no.skops"),
                    "--out",
                    str(self.work / "s"),
                ],
                "no.skops",
                None,
            ),
            (
                "MLCD_STAGING_PORT=abc",
                ["deploy", "staging", "--out", out1],
                "MLCD_STAGING_PORT",
                {"MLCD_STAGING_PORT": "abc"},
            ),
            ("MLCD_IMAGE with spaces", ["validate"], "MLCD_IMAGE", {"MLCD_IMAGE": "not an image"}),
            ("status --format yaml", ["status", "staging", "--format", "yaml"], "yaml", None),
        ]:
            done = self.a.mlcd(*args, extra=extra)
            self.input(
                g,
                name,
                cli_handled(done.returncode, done.stdout + done.stderr, needle),
                f"exit {done.returncode}: {tail(done)}",
            )

    # ------------------------------------------------------------------ issue 22

    def where_local(self) -> Where:
        return Where("staging", "127.0.0.1", self.a.ports["staging"], None)

    def add_remote(self) -> Where | None:
        """An environment `remote` on the docker-host test host (scripts/setup/test-host.sh),
        added to the config for the faults-and-refusals cases; None without a test host."""
        if not TEST_HOST_ENV.is_file():
            print("   no test host (scripts/setup/test-host.sh): docker-host cases skipped")
            return None
        host = dict(
            line.split("=", 1) for line in TEST_HOST_ENV.read_text().splitlines() if "=" in line
        )
        with socket.socket() as sock:  # a port number free here is very likely free there
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        text = self.a.config.read_text("utf-8")
        text += (
            "  remote:\n"
            "    target: docker-host\n"
            f"    host: {host['MLCD_TEST_HOST']}\n"
            f"    known-hosts: {host['MLCD_TEST_HOST_KNOWN_HOSTS']}\n"
            f"    key-file: {host['MLCD_TEST_HOST_KEY']}\n"
            f"    port: {port}\n"
            f"    router: {{image: {ROUTER_IMAGE}}}\n"
            "    strategy: canary\n"
            "    canary: {steps: [50, 100], interval: 3s, min-requests: 60}\n"
            "    analysis: {max-error-rate: 0.05, max-p99-latency-ms: 5000,"
            " max-prediction-shift: 2.0, max-latency-increase: 3.0,"
            " min-latency-increase-ms: 100, inconclusive-limit: 30}\n"
            "    load-test: {rps: 60}\n"
        )
        self.a.config.write_text(text, "utf-8")
        self.remote_docker = host["MLCD_TEST_HOST_DOCKER"]
        return Where("remote", host["MLCD_TEST_HOST_ADDR"], port, host["MLCD_TEST_HOST_DOCKER"])

    def faults_and_refusals_remote(self) -> None:
        where = self.add_remote()
        if where is None:
            raise RuntimeError("no test host: run scripts/setup/test-host.sh, or --local-only")
        self.faults_and_refusals(where)

    def env_containers(self, where: Where) -> list[str]:
        if where.docker is None:
            return self.a.containers(where.env)
        listed = subprocess.run(
            ["docker", "ps", "-a", "--format", "{{.Names}}",
             "--filter", f"label=mlcd.project={self.name}",
             "--filter", f"label=mlcd.env={where.env}", "--filter", "label=mlcd.version"],
            capture_output=True, text=True, check=False, timeout=120,
            env={**os.environ, "DOCKER_HOST": where.docker},
        )  # fmt: skip
        return sorted(listed.stdout.split())  # release containers (the router's have no version)

    def env_docker(self, where: Where, *args: str) -> None:
        env = {**os.environ, **({"DOCKER_HOST": where.docker} if where.docker else {})}
        subprocess.run(["docker", *args], capture_output=True, check=False, timeout=120, env=env)

    def agree(self, where: Where, version: str | None = None) -> tuple[bool, str]:
        """State, containers and router agree: no rollout, stable (`version`) serving every
        request, no container the state does not name."""
        status = self.a.mlcd("status", where.env, "--format", "json")
        if status.returncode != 0:
            return False, f"status exit {status.returncode}: {tail(status)}"
        data = json.loads(status.stdout)
        stable = data.get("stable") or {}
        named = json.dumps({k: data.get(k) for k in ("stable", "retired", "previous")})
        containers = self.env_containers(where)
        orphans = [c for c in containers if c not in named]
        served: Counter[Any] = Counter()
        for _ in range(10):
            try:
                code, _, body, _ = request(
                    where.port, "POST", "/predict", self.body,
                    {"Content-Type": "application/json"}, host=where.host,
                )  # fmt: skip
                served[json.loads(body).get("model_version") if code == 200 else code] += 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                served[type(exc).__name__] += 1
        want = version or stable.get("version")
        ok = (
            data.get("rollout") is None
            and stable.get("version") == want
            and not orphans
            and served == Counter({want: 10})
        )
        return ok, (
            f"notes {data.get('notes')}; live {stable.get('version')}; rollout "
            f"{data.get('rollout') and data['rollout'].get('phase')}; containers not in the "
            f"state: {orphans or 'none'}; 10 requests answered by {dict(served)}"
        )

    def faults_and_refusals(self, where: Where) -> None:
        """Issue 22's faults and inputs against one environment (`where`): the record kept by
        refused commands, an interrupted deploy's own record, recovery after a SIGKILL at
        the step boundaries, a dead stable, abort during a deploy, empty and model-version
        `--release`, strict numeric parameters, HTTP/1.0 without Host, and the server's own
        timeouts behind no router (local only: the container's port is reachable here)."""
        env, tag = where.env, f"[{where.env}]"
        out1, out2 = self.a.out("out1"), self.a.out("out2")
        group = "faults and refusals (issue 22)"
        if where.docker is not None:  # the remote environment's first release
            first = self.a.mlcd("deploy", env, "--out", str(out1))
            if first.returncode != 0:
                raise RuntimeError(f"first deploy to {env}: {tail(first)}")
        shown = self.a.mlcd("status", env, "--format", "json")
        v1 = str((json.loads(shown.stdout).get("stable") or {}).get("version", ""))
        record = out1 / f"deploy-{env}" / "result.json"
        kept = record.read_bytes() if record.is_file() else b""
        # bad arguments: refused, the environment's record kept
        for arg, needle in (("9.9.9", "9.9.9"), ("", "--release"), ("  ", "--release")):
            done = self.a.mlcd("deploy", env, "--out", str(out1), "--release", arg)
            same = record.is_file() and record.read_bytes() == kept
            self.input(
                "CLI: deploy arguments (issue 22)",
                f"{tag} deploy --release {arg!r}",
                cli_handled(done.returncode, done.stdout + done.stderr, needle) and same,
                f"exit {done.returncode}: {tail(done)}; deploy-{env}/result.json "
                f"{'kept' if same else 'OVERWRITTEN'}",
            )
        from mlcd import releases
        from mlcd.registry import LocalRegistry

        known = releases.all_releases(LocalRegistry(self.registry))
        model_version = next((r.model_version for r in known if r.version == v1), "v1")
        done = self.a.mlcd("deploy", env, "--out", str(out1), "--release", model_version)
        result = read_json(record)
        version = (result.get("details") or {}).get("version")
        self.input(
            "CLI: deploy arguments (issue 22)",
            f"{tag} deploy --release {model_version} (a model version)",
            done.returncode == 0 and version == v1,
            f"exit {done.returncode}: {tail(done)}; deployed release {version} (live: {v1})",
        )
        kept = record.read_bytes() if record.is_file() else b""
        # a deploy killed at the step boundaries: the next command finds all agreeing
        for point in ("before-create", "after-create", "after-route"):
            killed = self.a.mlcd(
                "deploy", env, "--out", str(out2), extra={"MLCD_FAULT_KILL_AT": point}
            )
            ok, detail = self.agree(where, v1)
            self.fault(
                group,
                f"{tag} deploy SIGKILLed at {point}",
                killed.returncode == -9 and ok,
                f"deploy exit {killed.returncode}; after `mlcd status`: {detail}",
            )
        # SIGTERM mid-canary: rolled back, and its own `interrupted` record
        run = self.a.spawn("deploy", env, "--out", str(out2))
        stepped = run.wait_line(r"canary step \S+: 50%", 240)
        if stepped:
            run.proc.send_signal(signal.SIGTERM)
        code = run.wait(300)
        result = read_json(out2 / f"deploy-{env}" / "result.json")
        details = result.get("details") or {}
        ok, detail = self.agree(where, v1)
        self.fault(
            group,
            f"{tag} deploy SIGTERMed mid-canary",
            bool(stepped)
            and code == 130
            and details.get("outcome") == "interrupted"
            and "removed" in str(result.get("summary"))
            and ok,
            f"exit {code}; its record: {details.get('outcome')}: {result.get('summary')}; {detail}",
        )
        # abort while a deploy runs: the deploy is stopped and undoes its rollout
        run = self.a.spawn("deploy", env, "--out", str(out2))
        stepped = run.wait_line(r"canary step \S+: 50%", 240)
        abort = self.a.mlcd("abort", env, "--out", str(out2))
        code = run.wait(300)
        result = read_json(out2 / f"deploy-{env}" / "result.json")
        ok, detail = self.agree(where, v1)
        self.fault(
            group,
            f"{tag} mlcd abort during a running deploy",
            bool(stepped)
            and abort.returncode == 0
            and code == 130
            and (result.get("details") or {}).get("outcome") == "interrupted"
            and ok,
            f"abort exit {abort.returncode}: {tail(abort)}; deploy exit {code}; {detail}",
        )
        # stable's container killed mid-canary, under load: restarted, traffic held on it
        stable = (
            json.loads(self.a.mlcd("status", env, "--format", "json").stdout).get("stable") or {}
        ).get("container", "")
        with Load(where.port, self.body, host=where.host) as load:
            time.sleep(1)
            run = self.a.spawn("deploy", env, "--out", str(out2))
            stepped = run.wait_line(r"canary step \S+: 50%", 240)
            killed_at = time.monotonic()
            if stepped:
                self.env_docker(where, "kill", stable)
            noticed = run.wait_line(r"stable is down", 60)
            took = time.monotonic() - killed_at
            code = run.wait(300)
            time.sleep(1)
        load_ok, load_detail = load.verdict()
        result = read_json(out2 / f"deploy-{env}" / "result.json")
        ok, detail = self.agree(where, v1)
        self.fault(
            group,
            f"{tag} stable killed mid-canary",
            bool(stepped)
            and bool(noticed)
            and took <= 3 + 3
            and code == 1
            and "stable is down" in str(result.get("summary"))
            and ok,
            f"noticed {took:.1f}s after the kill (interval 3s); deploy exit {code}: "
            f"{result.get('summary')}; clients: {load_detail} ({'no' if load_ok else 'some'} "
            f"errors while stable restarted); {detail}",
        )
        self.a.mlcd("status", env)  # restores the environment whatever came before
        # HTTP: strict numbers, HTTP/1.0 without Host
        for query in (
            "since=nan",
            "since=inf",
            "since=-inf",
            "since=1e999",
            "limit=1_0",
            "limit=-1",
            "limit=%205",
            "since=0x10",
        ):
            try:
                status, kind, body, _ = request(
                    where.port, "GET", f"/v1/recent-predictions?{query}", host=where.host
                )
            except (OSError, http.client.HTTPException) as exc:
                status, kind, body = 0, "", str(exc).encode()
            self.input(
                "HTTP: numeric query parameters (issue 22)",
                f"{tag} GET /v1/recent-predictions?{query}",
                http_handled(status, kind, body),
                f"{status} {body[:100]!r}",
            )
        post10 = (
            b"POST /predict HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(self.body)).encode()
            + b"\r\n\r\n"
            + self.body
        )
        for name, data, want in (
            ("HTTP/1.0 POST without Host", post10, 200),
            ("HTTP/2.0 request line", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ):
            status, kind, body = parse_raw(raw(where.port, data, host=where.host))
            self.input(
                "HTTP: the router's own answers (issue 22)",
                f"{tag} {name}",
                http_handled(status, kind, body, want) and "json" in kind,
                f"{status} {kind} {body[:100]!r}",
            )
        if where.docker is not None:
            return  # the containers' ports are on the host's bridge, not reachable from here
        # the server behind no router: its container's port, directly
        port = int((self.a.state(env).get("stable") or {}).get("port") or 0)
        for name, data in (
            ("partial header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: "),
            ("partial body", PREDICT + b'Content-Length: 100\r\n\r\n{"records": [{'),
            ("Content-Length over the body", PREDICT + b"Content-Length: 5000\r\n\r\n{}"),
        ):
            clock = time.monotonic()
            answer = raw(port, data, timeout=30)
            took = time.monotonic() - clock
            status, kind, body = parse_raw(answer)
            self.input(
                "HTTP: the server behind no router (issue 22)",
                f"container: {name}",
                status == 408 and http_handled(status, kind, body) and took < 25,
                f"{status} {body[:80]!r} after {took:.1f}s",
            )

    # ------------------------------------------------------------------ cleanup

    def cleanup(self) -> None:
        if self.remote_docker is not None:
            remote = {**os.environ, "DOCKER_HOST": self.remote_docker}

            def there(*args: str) -> str:
                return subprocess.run(
                    ["docker", *args], capture_output=True, text=True, check=False,
                    timeout=120, env=remote,
                ).stdout  # fmt: skip

            ids = there("ps", "-aq", "--filter", f"label=mlcd.project={self.name}").split()
            if ids:
                there("rm", "-f", *ids)
            there("volume", "rm", "-f", f"mlcd-{self.name}-remote-state")
            there("network", "rm", f"mlcd-{self.name}-remote")
            images = there("images", "-q", self.image).split()
            if images:
                there("rmi", "-f", *images)
        for point in reversed(self.mounts):
            subprocess.run(["umount", str(point)], check=False, capture_output=True)
        for install in (self.a, self.b):
            with contextlib.suppress(Exception):
                names = install.containers()
                if names:
                    sh("docker", "rm", "-f", *names, check=False)
            for pidfile in install.dir.glob(".mlcd-state/**/nginx.pid"):
                with contextlib.suppress(OSError, ValueError):
                    pid = int(pidfile.read_text().strip())
                    if b"nginx" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGQUIT)
        with contextlib.suppress(Exception):
            tags = sh(
                "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", self.image
            ).split()
            if tags:
                sh("docker", "rmi", "-f", *tags, check=False)


class Listener:
    """A TCP listener that counts connections (a proxy nothing should reach)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def tags_of(name: str) -> list[str]:
    conn = http.client.HTTPConnection(REGISTRY, timeout=10)
    try:
        conn.request("GET", f"/v2/{name}/tags/list")
        data = json.loads(conn.getresponse().read() or b"{}")
    finally:
        conn.close()
    return list(data.get("tags") or [])


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def tail(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return " / ".join(lines[-2:])[:300]


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    clock = time.monotonic()
    print(f"== {what}", flush=True)
    yield
    print(f"   {what}: {time.monotonic() - clock:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="500 slow-body connections, not 2,100; the install skips lint and test",
    )
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--local-only",
        action="store_true",
        help="leave out the docker-host cases (they need scripts/setup/test-host.sh)",
    )
    parser.add_argument(
        "--only",
        metavar="WORDS",
        help="run only the steps whose title contains one of these comma-separated words "
        "(the install and v2's release always run), e.g. --only 'issue 22'",
    )
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    clock = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mlcd-drill-"))
    drill = Drill(args.quick, work)
    crashed = ""
    broken: list[str] = []
    try:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("install: mlcd run on the example", drill.setup),
            ("release v2 (interrupted after the push)", drill.release),
            ("bad HTTP inputs", drill.http_inputs),
            (
                "router: slow bodies, pipelining",
                lambda: (drill.slow_bodies(), drill.pipelined())[0],
            ),
            ("switches and rollbacks under load", drill.switches),
            ("canary killed mid-request", drill.canary_killed),
            ("SIGKILL in the post-switch watch", drill.sigkill_in_watch),
            ("concurrent deploy", drill.concurrent_deploy),
            ("restarts", drill.restarts),
            ("second checkout", drill.second_checkout),
            ("read-only run folders", drill.read_only),
            (
                "standalone scan, cached Trivy DB, encrypted zip",
                lambda: (drill.standalone_scan(), drill.trivy_cache(), drill.encrypted_zip())[0],
            ),
            ("token in params", drill.token_in_params),
            ("--keep-going after failed scan", drill.keep_going),
            ("bad CLI inputs", drill.cli_inputs),
            (
                "faults and refusals (issue 22): local target",
                lambda: drill.faults_and_refusals(drill.where_local()),
            ),
        ]
        if not args.local_only:
            steps.append(
                (
                    "faults and refusals (issue 22): docker-host target",
                    drill.faults_and_refusals_remote,
                )
            )
        if args.only:
            wanted = [w.strip() for w in args.only.split(",")]
            steps = steps[:2] + [s for s in steps[2:] if any(w in s[0] for w in wanted)]
        for index, (what, step) in enumerate(steps):
            with timed(what):
                try:
                    step()
                except Exception as exc:
                    if index < 2:  # the install and v2: nothing else can run without them
                        raise
                    broken.append(f"{what}: {type(exc).__name__}: {exc}")
                    print(f"   the drill's own step broke: {broken[-1]}", flush=True)
    except Exception as exc:  # the report says where the drill itself broke
        crashed = f"{type(exc).__name__}: {exc}"
        print(f"drill stopped: {crashed}", flush=True)
    finally:
        drill.cleanup()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    took = time.monotonic() - clock
    cases = drill.tally.cases
    report = [
        (
            f"# mlcd fault drill, {started:%Y-%m-%d %H:%M} UTC, "
            f"`python benchmarks/drill.py{' --quick' if args.quick else ''}`, {took / 60:.1f} min"
        ),
        f"# load average at the end: {os.getloadavg()[0]:.1f}",
        "",
        figure_line(cases),
        "",
        *table(cases),
        "",
        "## every case",
        *(
            f"- [{'ok' if c.ok else 'FAIL'}] {c.kind} / {c.group} / {c.name}: {c.detail}"
            for c in cases
        ),
    ]
    if broken:
        report += ["", "the drill's own steps that broke (not counted):", *broken]
    if crashed:
        report += ["", f"DRILL STOPPED EARLY: {crashed}"]
    text = "\n".join(report) + "\n"
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, "utf-8")
    return 1 if crashed or broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
