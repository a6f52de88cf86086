"""One command: mlcd's model server against in-process predict and its peers, with wrk.

    .venv/bin/python benchmarks/serve.py            # everything, ~6 minutes
    .venv/bin/python benchmarks/serve.py --quick    # 2 s runs, mlcd and FastAPI only

Models: the LogisticRegression pipeline (StandardScaler + LogisticRegression, the 30
breast-cancer features) and a 100-tree RandomForest, the same fitted objects for every
server (one skops file each); and `mixed`, a ColumnTransformer selecting columns by name
(numbers with gaps, categories with gaps, a TfidfVectorizer text column, a boolean:
tests/support/mixed.py), served by mlcd (records, DataFrame path) and by MLflow's
`dataframe_split` path only (the FastAPI and BentoML peers take arrays of floats); and by
mlcd's `/invocations` (server `mlcd-inv`) with the very `dataframe_split` bodies MLflow gets.
Servers: mlcd (`python -m mlcd.serve`, default workers: one
per core), a hand-written FastAPI endpoint on uvicorn with uvloop and httptools (one
worker, as people write it, and two workers), `mlflow models serve` and BentoML's
`bentoml serve` (one worker each). The peers are installed from PyPI into throwaway
virtualenvs under ~/.cache/mlcd/bench (not into mlcd's dependencies); when one cannot be
installed or started here, the table says so.

Load: wrk, one row and 100 rows a request, 1 and 16 connections, each request timed by
benchmarks/timed.lua itself (wrk's own latency figures add synthetic samples), with one
wrk thread per connection. `little` is requests/s x mean latency / connections: about 1
when the figures are consistent. Ratios are requests/s against the best peer of the same
run (FastAPI, MLflow, BentoML). The machine is shared: figures are as measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.support.mixed: the mixed-type project
LUA = HERE / "timed.lua"
CACHE = Path(os.environ.get("MLCD_BENCH_CACHE", Path.home() / ".cache" / "mlcd" / "bench"))
PINS = ["scikit-learn==1.9.1", "skops==0.16.0", "numpy==2.4.6", "scipy==1.17.1"]
PEER_PACKAGES = {
    "fastapi": ["fastapi", "uvicorn[standard]"],
    "mlflow": ["mlflow"],
    "bentoml": ["bentoml"],
}
PEERS = ("fastapi", "fastapi-2w", "mlflow", "bentoml")
MODELS = ("logreg", "forest", "mixed")
MODEL_PEERS = {"mixed": ("mlflow",)}  # servers that can take the model's input
BASELINE = HERE / "results" / "serve-2026-11-26.json"
BASELINE_SRC = Path()  # --baseline-src: the scripts/ folder of another mlcd checkout


# ----------------------------------------------------------------------------- models


def make_models(folder: Path) -> dict[str, Path]:
    data = load_breast_cancer(as_frame=True)
    x, y = data.data, data.target
    names = [str(c) for c in x.columns]
    models = {
        "logreg": Pipeline(
            [("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=1000))]
        ),
        "forest": RandomForestClassifier(n_estimators=100, random_state=0),
    }
    out = {}
    for key, model in models.items():
        model.fit(x.to_numpy(), y.to_numpy())
        target = folder / key
        target.mkdir(parents=True)
        sio.dump(model, target / "model.skops")
        meta = {
            "name": f"bench-{key}",
            "task": "classification",
            "target": "target",
            "features": [
                {
                    "name": n,
                    "dtype": "float64",
                    "min": float(x[n].min()),
                    "max": float(x[n].max()),
                    "categories": None,
                }
                for n in names
            ],
            "classes": [0, 1],
            "trusted_types": sio.get_untrusted_types(file=target / "model.skops"),
            "fingerprint": key,
        }
        (target / "model.json").write_text(json.dumps(meta), "utf-8")
        out[key] = target
    rows = x.to_numpy()
    (folder / "rows.json").write_text(json.dumps(rows[:100].tolist()), "utf-8")
    (folder / "columns.json").write_text(json.dumps(names), "utf-8")
    out["mixed"] = make_mixed(folder / "mixed")
    return out


def make_mixed(target: Path) -> Path:
    """The mixed-type pipeline, with model.json's schema as `mlcd train` writes it."""
    from mlcd import inputschema, typedrows
    from tests.support import mixed, mixed_train

    frame = mixed.frame(rows=1000)
    features = [c for c in frame.columns if c != "label"]
    model = mixed_train.build_model()
    x, y = frame[features], frame["label"]
    model.fit(x, y)
    target.mkdir(parents=True)
    sio.dump(model, target / "model.skops")
    schema, input_meta = inputschema.describe(model, x, x.tail(200), task="classification")
    meta = {
        "name": "bench-mixed",
        "task": "classification",
        "target": "label",
        "features": schema,
        "input": input_meta,
        "classes": [str(c) for c in model.classes_],
        "trusted_types": sio.get_untrusted_types(file=target / "model.skops"),
        "fingerprint": "mixed",
    }
    (target / "model.json").write_text(json.dumps(meta), "utf-8")
    records = typedrows.records_from_frame(x.head(100), schema)
    (target / "records.json").write_text(json.dumps(records), "utf-8")
    return target


def in_process(model_dir: Path, rows: Any, seconds: float) -> dict[str, float]:
    """The limit: predict_proba in a loop in this process, one thread (on the array, or
    on the DataFrame for the mixed model)."""
    model = sio.load(
        model_dir / "model.skops",
        trusted=json.loads((model_dir / "model.json").read_text())["trusted_types"],
    )
    calls, times = 0, []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        model.predict_proba(rows)
        times.append(time.perf_counter() - start)
        calls += 1
    lat = np.asarray(times) * 1000
    return {
        "rps": calls / sum(times),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "mean_ms": float(lat.mean()),
    }


# ----------------------------------------------------------------------------- peers

FASTAPI_APP = """
import json, os
import numpy as np
import skops.io as sio
from fastapi import FastAPI
from pydantic import BaseModel

folder = os.environ["BENCH_MODEL"]
model = sio.load(folder + "/model.skops",
                 trusted=json.load(open(folder + "/model.json"))["trusted_types"])
app = FastAPI()

class Request(BaseModel):
    instances: list[list[float]]

@app.post("/predict")
def predict(request: Request) -> dict:
    x = np.asarray(request.instances, dtype=float)
    return {"predictions": model.predict(x).tolist(),
            "probabilities": model.predict_proba(x).tolist()}
"""

BENTO_SERVICE = """
import json, os
import numpy as np
import bentoml
import skops.io as sio

@bentoml.service(workers=1)
class Bench:
    def __init__(self) -> None:
        folder = os.environ["BENCH_MODEL"]
        self.model = sio.load(folder + "/model.skops",
                              trusted=json.load(open(folder + "/model.json"))["trusted_types"])

    @bentoml.api
    def predict(self, instances: list[list[float]]) -> dict:
        x = np.asarray(instances, dtype=float)
        return {"predictions": self.model.predict(x).tolist(),
                "probabilities": self.model.predict_proba(x).tolist()}
"""

MLFLOW_SAVE = """
import json, sys
import skops.io as sio
import mlflow.sklearn
folder, out = sys.argv[1], sys.argv[2]
model = sio.load(folder + "/model.skops",
                 trusted=json.load(open(folder + "/model.json"))["trusted_types"])
mlflow.sklearn.save_model(model, out, serialization_format="cloudpickle")
"""


def peer_venv(name: str, log: list[str]) -> Path | None:
    """A virtualenv with the peer installed (made once, kept under ~/.cache/mlcd/bench)."""
    venv = CACHE / name
    marker = venv / ".mlcd-bench-ok"
    if marker.is_file():
        return venv
    print(f"  installing {name} into {venv} (from PyPI; once) …", flush=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *PINS,
            *PEER_PACKAGES[name],
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if line.strip()][-3:]
        log.append(f"{name}: could not be installed here: {' / '.join(tail)}")
        return None
    marker.write_text("ok")
    return venv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    path: str
    body: dict[str, Path] = field(default_factory=dict)
    logfile: Path | None = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def wait_up(run: Running, probe_body: Path, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    data = probe_body.read_bytes()
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", run.port), timeout=2) as sock:
                head = (
                    f"POST {run.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
                ).encode()
                sock.sendall(head + data)
                reply = sock.recv(64)
                if reply.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def start(  # noqa: PLR0917 - a benchmark helper
    name: str,
    model: str,
    model_dir: Path,
    work: Path,
    bodies: dict[str, dict[str, Path]],
    venvs: dict[str, Path],
) -> Running:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_MODEL": str(model_dir),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    peer = name.removesuffix("-2w")
    if peer in venvs:  # mlflow starts `uvicorn` from PATH
        env["PATH"] = f"{venvs[peer] / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    logfile = work / f"{name}-{model}.log"
    kind = "native"
    if name in ("mlcd", "mlcd-base", "mlcd-inv"):
        argv = [sys.executable, "-m", "mlcd.serve"]
        env |= {"MLCD_MODEL_DIR": str(model_dir), "MLCD_PORT": str(port)}
        if name == "mlcd-base":  # another checkout's mlcd (--baseline-src), same model
            env |= {"PYTHONPATH": str(BASELINE_SRC), "PYTHONDONTWRITEBYTECODE": "1"}
        path = "/predict"
        if name == "mlcd-inv":  # MLflow's protocol: the very bodies MLflow's server gets
            path, kind = "/invocations", "mlflow"
    elif name.startswith("fastapi"):
        (work / "fastapi_app.py").write_text(FASTAPI_APP, "utf-8")
        workers = "2" if name.endswith("2w") else "1"
        argv = [
            str(venvs["fastapi"] / "bin" / "uvicorn"),
            "fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            workers,
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        path = "/predict"
    elif name == "mlflow":
        saved = work / f"mlflow-{model}"
        if not saved.exists():
            (work / "mlflow_save.py").write_text(MLFLOW_SAVE, "utf-8")
            subprocess.run(
                [
                    str(venvs["mlflow"] / "bin" / "python"),
                    str(work / "mlflow_save.py"),
                    str(model_dir),
                    str(saved),
                ],
                check=False,
                capture_output=True,
                text=True,
                timeout=300,
            ).check_returncode()
        argv = [
            str(venvs["mlflow"] / "bin" / "mlflow"),
            "models",
            "serve",
            "-m",
            str(saved),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "--env-manager",
            "local",
            "-w",
            "1",
        ]
        path = "/invocations"
        kind = "mlflow"
    else:
        (work / "bento_service.py").write_text(BENTO_SERVICE, "utf-8")
        argv = [
            str(venvs["bentoml"] / "bin" / "bentoml"),
            "serve",
            "bento_service:Bench",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        path = "/predict"
    with logfile.open("wb") as log:
        proc = subprocess.Popen(
            argv, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Running(name, proc, port, path, bodies[kind], logfile)


def wrk(run: Running, body: Path, connections: int, seconds: float) -> dict[str, Any]:
    env = {**os.environ, "WRK_BODY_FILE": str(body), "WRK_PATH": run.path}
    argv = [
        "wrk",
        f"-t{connections}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{run.port}",
    ]
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("MLCD_RESULT "):
            raw = json.loads(line.removeprefix("MLCD_RESULT "))
            rps = raw["requests"] / raw["seconds"] if raw["seconds"] else 0.0
            return {
                "rps": rps,
                "p50_ms": raw["p50_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "mean_ms": raw["mean_us"] / 1000,
                "non200": raw["non200"],
                "errors": raw["errors"],
                "little": rps * raw["mean_us"] / 1e6 / connections,
            }
    return {"error": (done.stderr or done.stdout).strip()[-300:]}


# ----------------------------------------------------------------------------- main


def bodies_for_mixed(folder: Path) -> dict[str, dict[str, Path]]:
    """mlcd: {"records": [...]} (by name, null for a gap); MLflow: dataframe_split."""
    records = json.loads((folder / "records.json").read_text())
    columns = list(records[0])
    out: dict[str, dict[str, Path]] = {"native": {}, "mlflow": {}}
    for n in (1, 100):
        native = folder / f"native-{n}.json"
        native.write_text(json.dumps({"records": records[:n]}), "utf-8")
        mlflow = folder / f"mlflow-{n}.json"
        data = [[r[c] for c in columns] for r in records[:n]]
        mlflow.write_text(
            json.dumps({"dataframe_split": {"columns": columns, "data": data}}), "utf-8"
        )
        out["native"][str(n)] = native
        out["mlflow"][str(n)] = mlflow
    return out


def bodies_for(folder: Path) -> dict[str, dict[str, Path]]:
    rows = json.loads((folder / "rows.json").read_text())
    columns = json.loads((folder / "columns.json").read_text())
    out: dict[str, dict[str, Path]] = {"native": {}, "mlflow": {}}
    for n in (1, 100):
        native = folder / f"native-{n}.json"
        native.write_text(json.dumps({"instances": rows[:n]}), "utf-8")
        mlflow = folder / f"mlflow-{n}.json"
        mlflow.write_text(
            json.dumps({"dataframe_split": {"columns": columns, "data": rows[:n]}}), "utf-8"
        )
        out["native"][str(n)] = native
        out["mlflow"][str(n)] = mlflow
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="2 s runs; mlcd and FastAPI only")
    parser.add_argument("--servers", default=None, help="comma list (mlcd,fastapi,…)")
    parser.add_argument("--json", type=Path, default=None, help="write all figures here")
    parser.add_argument("--models", default=None, help="comma list (logreg,forest,mixed)")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also serve with the mlcd package under this folder (e.g. an export of main's "
        "scripts/), as server `mlcd-base`: this code against that one in the same run",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: sudo apt-get install wrk (scripts/setup/apt.sh has it)")
        return 3
    seconds = 2.0 if args.quick else args.duration
    servers = ["mlcd", "fastapi"] if args.quick else ["mlcd", "mlcd-inv", *PEERS]
    if args.servers:
        servers = args.servers.split(",")
    if args.baseline_src:
        global BASELINE_SRC  # noqa: PLW0603 - one setting of this one-shot script
        BASELINE_SRC = args.baseline_src.resolve()
        servers.insert(1, "mlcd-base")
    notes: list[str] = []
    venvs: dict[str, Path] = {}
    for peer in sorted({s.removesuffix("-2w") for s in servers if not s.startswith("mlcd")}):
        venv = peer_venv(peer, notes)
        if venv is not None:
            venvs[peer] = venv
    work = Path(tempfile.mkdtemp(prefix="mlcd-bench-"))
    results: dict[str, Any] = {
        "cells": [],
        "notes": notes,
        "duration_s": seconds,
        "cores": os.cpu_count(),
    }
    try:
        models = make_models(work)
        numeric_bodies = bodies_for(work)
        rows = np.asarray(json.loads((work / "rows.json").read_text()))
        for model, model_dir in models.items():
            if args.models and model not in args.models.split(","):
                continue
            bodies = bodies_for_mixed(model_dir) if model == "mixed" else numeric_bodies
            for n in (1, 100):
                if model == "mixed":
                    import pandas as pd

                    from tests.support import mixed

                    frame = mixed.frame(rows=1000).drop(columns="label").head(n)
                    limit = in_process(model_dir, pd.DataFrame(frame), min(seconds, 3.0))
                else:
                    limit = in_process(model_dir, rows[:n], min(seconds, 3.0))
                results["cells"].append(
                    {"model": model, "rows": n, "connections": 1, "server": "in-process", **limit}
                )
            for name in servers:
                own = name.startswith("mlcd")
                if not own and name.removesuffix("-2w") not in venvs:
                    continue
                if not own and name not in MODEL_PEERS.get(model, PEERS):
                    continue
                if name == "mlcd-base" and model == "mixed":
                    continue  # the baseline predates DataFrame models
                if name == "mlcd-inv" and model != "mixed":
                    continue  # /invocations is measured where MLflow's server is the peer
                try:
                    run = start(name, model, model_dir, work, bodies, venvs)
                except (subprocess.CalledProcessError, OSError) as exc:
                    notes.append(f"{name} ({model}) could not be prepared: {exc}")
                    continue
                try:
                    if not wait_up(run, run.body["1"]):
                        tail = run.logfile.read_text(errors="replace")[-400:] if run.logfile else ""
                        notes.append(f"{name} ({model}) did not start here: {tail.strip()!r}")
                        continue
                    for n in (1, 100):
                        wrk(run, run.body[str(n)], 16, 1.0)  # warm-up
                        for conns in (1, 16):
                            cell = wrk(run, run.body[str(n)], conns, seconds)
                            cell |= {
                                "model": model,
                                "rows": n,
                                "connections": conns,
                                "server": name,
                            }
                            results["cells"].append(cell)
                            print(
                                f"  {model:<7} {n:>3} rows {conns:>2} conns {name:<11} "
                                + (
                                    f"{cell['rps']:>8.0f} req/s  p99 {cell['p99_ms']:.1f} ms"
                                    if "rps" in cell
                                    else cell.get("error", "")
                                ),
                                flush=True,
                            )
                finally:
                    run.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), "utf-8")
    return 0


def report(results: dict[str, Any]) -> None:
    cells = results["cells"]
    print()
    print(
        f"cores: {results['cores']}, {results['duration_s']:.0f} s per run; ratio = req/s "
        "/ best peer's req/s in the same cell; little = req/s x mean latency / connections"
    )
    for model in MODELS:
        for n in (1, 100):
            for conns in (1, 16):
                group = [
                    c
                    for c in cells
                    if c["model"] == model
                    and c["rows"] == n
                    and (c["connections"] == conns or c["server"] == "in-process")
                    and "rps" in c
                ]
                peers = [c["rps"] for c in group if c["server"] in PEERS]
                best = max(peers) if peers else None
                print(
                    f"\n{model}, {n} row{'s' * (n > 1)} a request, {conns} connection"
                    f"{'s' * (conns > 1)}"
                )
                print(
                    f"  {'server':<12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs best peer':>14}"
                    f"{'little':>8}"
                )
                for c in group:
                    ratio = f"{c['rps'] / best:.2f}x" if best else "-"
                    little = f"{c['little']:.2f}" if "little" in c else "-"
                    print(
                        f"  {c['server']:<12}{c['rps']:>9.0f}{c['p50_ms']:>9.2f}"
                        f"{c['p99_ms']:>9.2f}{ratio:>14}{little:>8}"
                    )
    for line in acceptance(cells):
        print(line)
    for note in results["notes"]:
        print(f"note: {note}")


def _rps(cells: list[dict[str, Any]], model: str, rows: int, conns: int, server: str) -> float:
    for c in cells:
        if (c["model"], c["rows"], c["connections"], c["server"]) == (model, rows, conns, server):
            return float(c.get("rps") or 0.0)
    return 0.0


def acceptance(cells: list[dict[str, Any]]) -> list[str]:
    """The two figures issue 11 asks for: the example model's mlcd/FastAPI ratio against
    the baseline's (same cells), and mlcd/MLflow dataframe_split on the mixed model."""
    lines = ["", "acceptance:"]
    baseline = json.loads(BASELINE.read_text())["cells"] if BASELINE.is_file() else []
    for n in (1, 100):
        for conns in (1, 16):
            fast = _rps(cells, "logreg", n, conns, "fastapi")
            now = _rps(cells, "logreg", n, conns, "mlcd") / fast if fast else 0.0
            base_fast = _rps(baseline, "logreg", n, conns, "fastapi")
            then = _rps(baseline, "logreg", n, conns, "mlcd") / base_fast if base_fast else 0.0
            change = f"{now / then - 1:+.0%}" if then else "-"
            lines.append(
                f"  logreg {n:>3} rows {conns:>2} conns: mlcd/fastapi {now:.2f}x now, "
                f"{then:.2f}x in {BASELINE.name} ({change})"
            )
            base = _rps(cells, "logreg", n, conns, "mlcd-base")
            if base:
                mine = _rps(cells, "logreg", n, conns, "mlcd")
                lines.append(f"  {'':>28}mlcd/mlcd-base (same run) {mine / base:.2f}x")
    for n in (1, 100):
        for conns in (1, 16):
            flow = _rps(cells, "mixed", n, conns, "mlflow")
            ratio = _rps(cells, "mixed", n, conns, "mlcd") / flow if flow else 0.0
            lines.append(
                f"  mixed  {n:>3} rows {conns:>2} conns: mlcd/mlflow dataframe_split {ratio:.2f}x"
            )
            inv = _rps(cells, "mixed", n, conns, "mlcd-inv") / flow if flow else 0.0
            if inv:
                lines.append(f"  {'':>28}mlcd /invocations/mlflow, same body {inv:.2f}x")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
