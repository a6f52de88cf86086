"""A mixed-type model in a real image: named columns, categories with gaps, free text.

One session builds the image of tests/support/mixed.py's project (train → build, whose
contract test sends the held-out rows as records, instances and v2 columns); the tests
then start that image themselves and talk to it over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from mlcd import typedrows
from mlcd.serve.client import Client
from mlcd.serve.model import load
from tests.integration.images import Built

REGISTRY = "127.0.0.1:5000"


@dataclass
class Served:
    client: Client
    model_name: str
    records: list[dict[str, Any]]
    expected: list[Any]
    features: list[dict[str, Any]]


@pytest.fixture(scope="module")
def served(built: Built) -> Iterator[Served]:
    image = built.result["details"]["image_id"]
    container = f"mlcd-test-mixed-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", container, "-p", "127.0.0.1::8080", image],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        port = int(
            subprocess.run(
                ["docker", "port", container, "8080/tcp"],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.split(":")[-1]
        )
        client = Client("127.0.0.1", port, timeout=30)
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/readyz").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the mixed-type image never became ready"
            time.sleep(0.3)
        train = built.out / "train"
        meta = json.loads((train / "model.json").read_text())
        frame = typedrows.holdout_frame(train / "holdout.csv", meta["features"], "label")
        model = load(train)
        expected = model.estimator.predict(frame[model.feature_names]).tolist()
        records = typedrows.records_from_frame(frame, meta["features"])
        yield Served(client, model.name, records, expected, meta["features"])
        client.close()
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def test_the_build_passes_its_contract_in_every_form_under_400_mb(built: Built) -> None:
    details = built.result["details"]
    assert built.result["status"] == "pass", built.result["reasons"]
    contract = details["contract"]
    assert contract["passed"] is True
    assert contract["rows"] == contract["agree"] == 80
    assert contract["forms"] == {"records": 80, "instances": 80, "v2 columns": 80}
    assert details["size_bytes"] < 400e6
    inspect = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", details["image_id"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(inspect.stdout) < 400e6
    pandas = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python",
            details["image_id"],
            "-c",
            "import pandas; print(pandas.__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert pandas.returncode == 0, pandas.stderr
    assert pandas.stdout.strip() == "3.1.1"


def test_both_bodies_and_v2_columns_answer_the_in_process_predictions(served: Served) -> None:
    names = [f["name"] for f in served.features]
    reply = served.client.post_json("/predict", {"records": served.records})
    assert reply.status == 200, reply.body
    assert reply.json()["predictions"] == served.expected
    reply = served.client.post_json(
        "/predict", {"instances": typedrows.instances(served.records, names)}
    )
    assert reply.json()["predictions"] == served.expected
    reply = served.client.post_json(
        f"/v2/models/{served.model_name}/infer",
        typedrows.v2_columns(served.records, served.features),
    )
    assert reply.status == 200, reply.body
    outputs = {o["name"]: o for o in reply.json()["outputs"]}
    assert outputs["predict"]["data"] == served.expected
    assert outputs["predict"]["datatype"] == "BYTES"


def test_what_the_model_takes_is_200_and_client_mistakes_are_named_422(served: Served) -> None:
    base = served.records[0]
    odd = dict(base, plan="enterprise", age=None, region=None, note="printer " * 30_000)
    reply = served.client.post_json("/predict", {"records": [odd]})
    assert reply.status == 200, reply.body
    metrics = served.client.get("/metrics").body.decode()
    assert 'mlcd_unknown_category_total{feature="plan"} 1' in metrics
    for column, value, words in [
        ("note", None, "cannot take one"),
        ("age", "forty", "expected a number, got text"),
        ("active", "yes", "expected true or false"),
    ]:
        reply = served.client.post_json(
            "/predict", {"records": [base, dict(base, **{column: value})]}
        )
        assert reply.status == 422, (column, reply.body)
        error = reply.json()["error"]
        assert f"row 1, feature `{column}`" in error
        assert words in error
    missing = {k: v for k, v in base.items() if k != "region"}
    reply = served.client.post_json("/predict", {"records": [missing]})
    assert reply.status == 422
    assert "missing feature(s): region" in reply.json()["error"]
    assert served.client.get("/readyz").status == 200  # still up
