"""Signed releases end to end, with keys the tests make (docs/signing.md).

One example project is released with signing on and deployed to staging and production
(the module fixture `signed`); every tamper test then forges one thing an attacker with
push access to the image registry, or write access to the model registry, could change,
and checks that `mlcd deploy` refuses it with exit 1 before any container starts, while
the release already live keeps serving. The forgeries are made with the same primitives
the attacker would have (docker, the registry's HTTP API, the model registry's files);
the one made "with the right key" stands for a release job that signed whatever image it
was handed.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlcd import releases
from mlcd.ports import free_port
from mlcd.registry import DEPLOYMENTS, LocalRegistry
from mlcd.signing import dsse, store
from mlcd.signing import statement as statements
from mlcd.tools.nginx import Nginx

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "127.0.0.1:5000"


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _docker(*args: str) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, f"docker {' '.join(args[:3])}: {done.stderr[-800:]}"
    return done.stdout.strip()


@dataclass
class Signed:
    root: Path
    name: str  # project
    image_name: str
    key: ec.EllipticCurvePrivateKey
    other: ec.EllipticCurvePrivateKey
    env: dict[str, str]
    ports: dict[str, int]
    release: str  # the release live in staging and production
    image: str  # its name@sha256:…
    timings: dict[str, float]
    tampered: int = 0

    @property
    def config(self) -> Path:
        return self.root / "model" / "mlcd.yaml"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def registry(self) -> LocalRegistry:
        return LocalRegistry(self.root / "registry")

    def mlcd(self, *args: str, out: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "mlcd",
                *args,
                "--config",
                str(self.config),
                "--out",
                str(out or self.out),
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )

    def containers(self) -> list[str]:
        return sorted(
            _docker(
                "ps",
                "--all",
                "--format",
                "{{.Names}}",
                "--filter",
                f"label=mlcd.project={self.name}",
            ).split()
        )

    def served_version(self, env: str) -> str:
        """The release version the environment's router answers with."""
        return str(self.metadata(env)["version"])

    def metadata(self, env: str) -> dict[str, Any]:
        """GET /v1/metadata through the environment's router."""
        conn = http.client.HTTPConnection("127.0.0.1", self.ports[env], timeout=30)
        try:
            conn.request("GET", "/v1/metadata")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, body
        data: dict[str, Any] = json.loads(body)
        return data

    # ------------------------------------------------------------------ forgeries

    def variant(self, *, model_json: bytes | None = None) -> str:
        """A new image FROM the live release's (a label, or a changed model.json), pushed:
        its `name@sha256:…`."""
        self.tampered += 1
        context = self.root / f"tamper-{self.tampered}"
        context.mkdir()
        lines = [f"FROM {self.image}", f"LABEL io.mlcd.test.tamper={self.tampered}"]
        if model_json is not None:
            (context / "model.json").write_bytes(model_json)
            lines.append("COPY model.json /opt/model/model.json")
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        tag = f"{self.image_name}:tamper-{self.tampered}"
        _docker("build", "--network", "none", "--quiet", "-t", tag, str(context))
        _docker("push", "--quiet", tag)
        digests = json.loads(_docker("image", "inspect", "--format", "{{json .RepoDigests}}", tag))
        return next(d for d in digests if d.startswith(self.image_name + "@"))

    def live_statements(self) -> list[dict[str, Any]]:
        """The statements the real release signed (release/attestation.json)."""
        data = json.loads((self.out / "release" / "attestation.json").read_text())
        return [json.loads(base64.b64decode(e["payload"])) for e in data["attestations"]]

    def sign_image(
        self,
        image: str,
        *,
        key: ec.EllipticCurvePrivateKey,
        version: str,
        subject: str | None = None,
        statements_from: list[dict[str, Any]] | None = None,
    ) -> None:
        """`.sig` and `.att` for `image` with `key`: the live release's statements with the
        subject `subject` (default: the image) and the release version `version`."""
        name, _, digest = image.partition("@")
        store.push_signature(name, digest, key)
        algorithm, _, value = (subject or digest).partition(":")
        envelopes = []
        for original in statements_from or self.live_statements():
            data = json.loads(json.dumps(original))
            data["subject"] = [{"name": name, "digest": {algorithm: value}}]
            if data["predicateType"] == statements.MLCD:
                data["predicate"]["release"]["version"] = version
            payload = json.dumps(data, sort_keys=True).encode()
            envelopes.append((data["predicateType"], dsse.sign(key, payload)))
        store.push_attestations(name, digest, envelopes)

    def record(self, image: str, *, evidence: Path | None = None) -> str:
        """A release record for `image` beside the live one (same model version and, unless
        given, the same evidence): the next free version."""
        registry = self.registry
        live = releases.get(registry, self.release)
        version = releases.next_version(registry)
        evidence_path = Path(evidence or live.evidence)
        registry.append(
            live.model_version,
            releases.RELEASES,
            {
                **live.to_json(),
                "version": version,
                "image": image,
                "image_id": "sha256:" + uuid.uuid4().hex * 2,
                "evidence": str(evidence_path),
                "evidence_digest": "sha256:"
                + hashlib.sha256(evidence_path.read_bytes()).hexdigest(),
            },
        )
        return version

    def refused(self, env: str, version: str) -> str:
        """Deploy `version` to `env`: exit 1, nothing started, the live release serving.
        Returns what the deploy said."""
        before = self.containers()
        out = self.root / f"out-{version}"
        done = self.mlcd("deploy", env, "--release", version, out=out)
        assert done.returncode == 1, done.stdout + done.stderr
        result = json.loads((out / f"deploy-{env}-refused" / "result.json").read_text())
        assert result["details"]["outcome"] == "refused: signature", result
        assert self.containers() == before
        for live_env in ("staging", "production"):
            assert self.served_version(live_env) == self.release
        status = self.mlcd("status", env, "--format", "json", out=out)
        assert json.loads(status.stdout)["stable"]["version"] == self.release
        return done.stdout + "\n".join(result["reasons"])

    @property
    def live_model_version(self) -> str:
        return releases.get(self.registry, self.release).model_version


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    root = tmp_path_factory.mktemp("signing")
    shutil.copytree(ROOT / "model", root / "model", ignore=shutil.ignore_patterns(".mlcd*"))
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    keys = root / "keys"
    keys.mkdir()
    (keys / "signing.pub").write_bytes(_pem_public(key))
    name = f"sig-{uuid.uuid4().hex[:8]}"
    image_name = f"{REGISTRY}/mlcd-test-{name}"
    config = yaml.safe_load((root / "model" / "mlcd.yaml").read_text())
    config["project"] = name
    config["image"]["name"] = image_name
    config["evaluate"]["bootstrap-samples"] = 100
    config["signing"] = {"verify": {"key": str(keys / "signing.pub")}}
    config["environments"] = {
        "staging": {"strategy": "canary"},
        "production": {"strategy": "blue-green", "requires": ["staging"]},
    }
    (root / "model" / "mlcd.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    ports = {"staging": free_port(), "production": free_port()}
    env = {
        **os.environ,
        "MLCD_REGISTRY_PATH": str(root / "registry"),
        "MLCD_STATE_DIR": str(root / "state"),
        "MLCD_STAGING_PORT": str(ports["staging"]),
        "MLCD_PRODUCTION_PORT": str(ports["production"]),
        # the PEM text, as the `signing-key` secret reaches mlcd
        "MLCD_SIGNING_KEY": _pem_private(key).decode(),
    }
    project = Signed(root, name, image_name, key, other, env, ports, "", "", {})
    git = ["git", "-C", str(root / "model"), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "example"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    try:
        for stage in ("train", "evaluate", "build", "scan"):
            clock = time.monotonic()
            done = project.mlcd(stage)
            project.timings[stage] = time.monotonic() - clock
            assert done.returncode == 0, f"{stage}: {done.stdout}\n{done.stderr}"
        clock = time.monotonic()
        done = project.mlcd("release")
        project.timings["release"] = time.monotonic() - clock
        assert done.returncode == 0, done.stdout + done.stderr
        details = json.loads((project.out / "release" / "result.json").read_text())["details"]
        project.release, project.image = details["version"], details["image"]
        for env_name in ("staging", "production"):
            clock = time.monotonic()
            done = project.mlcd("deploy", env_name)
            project.timings[env_name] = time.monotonic() - clock
            assert done.returncode == 0, done.stdout + done.stderr
        yield project
    finally:
        for env_name in ("staging", "production"):
            Nginx(root / "state" / env_name / "nginx").stop()
        for container in project.containers():
            subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)
        tags = _docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", image_name).split()
        for tag in tags:  # only this module's own images
            subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


# ---------------------------------------------------------------------- the good path


def test_a_release_signs_model_and_image_and_its_deploys_verify_them(signed: Signed) -> None:
    result = json.loads((signed.out / "release" / "result.json").read_text())
    signing = result["details"]["signing"]
    assert signing["mode"] == "key"
    assert set(signing["model_files"]) == {"model/model.skops", "model/model.json"}
    # the started containers report the signed files' digests
    for env in ("staging", "production"):
        assert signed.metadata(env)["files"] == signing["model_files"]
    name, _, digest = signed.image.partition("@")
    for suffix in ("sig", "att"):
        assert _manifest(name, store.suffix_tag(digest, suffix)) is not None
    # the key never enters the run folder; the public key does
    secret = _pem_private(signed.key)
    body = secret.split(b"\n")[1]
    for path in signed.root.rglob("*"):
        if path.is_file() and "keys" not in path.parts:
            assert body not in path.read_bytes(), path
    assert (signed.out / "release" / "public.pem").read_bytes() == _pem_public(signed.key)
    for env in ("staging", "production"):
        deployed = json.loads((signed.out / f"deploy-{env}" / "result.json").read_text())
        assert deployed["details"]["signing"]["verified"] is True
        assert any("signed chain" in r for r in deployed["reasons"])
    verify = signed.mlcd("verify", signed.release)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for link in ("commit", "data", "model", "verdict", "scan", "image", "environments"):
        assert f"✓ {link}:" in verify.stdout, verify.stdout
    assert "ran in production, staging" in verify.stdout
    by_image = signed.mlcd("verify", signed.image, "--format", "json")
    assert by_image.returncode == 0
    assert json.loads(by_image.stdout)["verified"] is True
    verified = [
        json.loads((signed.out / f"deploy-{env}" / "result.json").read_text())["details"][
            "signing"
        ]["seconds"]
        for env in ("staging", "production")
    ]
    stored = {k: v for k, v in signing.items() if k.endswith("_bytes")}
    print(
        f"\nsigning {signing['seconds']} s; verifying (staging, production) {verified} s; "
        f"stages (s): {signed.timings}; stored bytes: {stored}"
    )


def test_model_signing_cli_accepts_the_signed_model_directory(signed: Signed) -> None:
    cli = Path(sys.executable).parent / "model_signing"
    folder = signed.out / "release" / "signed"
    argv = [
        str(cli),
        "verify",
        "key",
        str(folder),
        "--public_key",
        str(signed.root / "keys" / "signing.pub"),
        "--signature",
        str(signed.out / "release" / "model.sig"),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verification succeeded" in done.stdout + done.stderr
    copy = signed.root / "signed-copy"
    shutil.copytree(folder, copy)
    with (copy / "model" / "model.json").open("ab") as handle:
        handle.write(b" ")
    argv[3] = str(copy)
    changed = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert changed.returncode != 0
    assert "model/model.json" in changed.stdout + changed.stderr


def _manifest(name: str, tag: str) -> dict[str, Any] | None:
    host, _, repo = name.partition("/")
    conn = http.client.HTTPConnection(*host.split(":"), timeout=30)
    try:
        conn.request(
            "GET",
            f"/v2/{repo}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return json.loads(body) if response.status == 200 else None


def _blob(name: str, digest: str) -> bytes:
    host, _, repo = name.partition("/")
    conn = http.client.HTTPConnection(*host.split(":"), timeout=30)
    try:
        conn.request("GET", f"/v2/{repo}/blobs/{digest}")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200
    return body


# ---------------------------------------------------------------------- tamper cases


def test_a_model_file_changed_after_signing_is_refused(signed: Signed) -> None:
    meta = json.loads((signed.out / "release" / "signed" / "model" / "model.json").read_text())
    meta["name"] = "swapped"
    image = signed.variant(model_json=json.dumps(meta).encode())
    version = signed.record(image)
    signed.sign_image(image, key=signed.key, version=version)
    said = signed.refused("staging", version)
    assert "model/model.json" in said, said
    assert "is not the signed" in said, said
    audit = signed.mlcd("verify", version)
    assert audit.returncode == 1
    assert "✗ model:" in audit.stdout


def test_an_image_retagged_to_another_digest_is_refused(signed: Signed) -> None:
    image = signed.variant()
    # the release's own tag now points at another image, and a record names that digest
    retag = f"{signed.image_name}:{signed.release}"
    _docker("tag", f"{signed.image_name}:tamper-{signed.tampered}", retag)
    _docker("push", "--quiet", retag)
    version = signed.record(image)
    said = signed.refused("staging", version)
    assert "no signature is stored beside the image" in said, said


def test_a_signature_made_with_another_key_is_refused(signed: Signed) -> None:
    image = signed.variant()
    version = signed.record(image)
    signed.sign_image(image, key=signed.other, version=version)
    said = signed.refused("staging", version)
    assert "no image signature verifies with the configured public key" in said, said


def test_a_statement_for_another_digest_is_refused(signed: Signed) -> None:
    image = signed.variant()
    version = signed.record(image)
    live_digest = signed.image.partition("@")[2]
    signed.sign_image(image, key=signed.key, version=version, subject=live_digest)
    said = signed.refused("staging", version)
    assert f"not for {image.partition('@')[2]}" in said, said


def test_an_evidence_bundle_edited_after_release_is_refused(signed: Signed) -> None:
    live = releases.get(signed.registry, signed.release)
    edited = signed.root / "edited-evidence.tar.gz"
    with tarfile.open(live.evidence, "r:gz") as source, tarfile.open(edited, "w:gz") as target:
        for member in source.getmembers():
            handle = source.extractfile(member)
            data = handle.read() if handle is not None else b""
            if member.name == "evidence/scan/result.json":
                data = data.replace(b'"status": "pass"', b'"status": "pass" ')
            member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    image = signed.variant()
    version = signed.record(image, evidence=edited)
    signed.sign_image(image, key=signed.key, version=version)
    said = signed.refused("staging", version)
    assert "edited after release" in said, said


def test_a_release_that_skipped_requires_is_refused(signed: Signed) -> None:
    image = signed.variant()
    version = signed.record(image)
    signed.sign_image(image, key=signed.key, version=version)
    # a forged record: "this release was live and healthy in staging", naming the image
    # that really was (the live release's), not the signed digest of this one
    registry = signed.registry
    registry.append(
        signed.live_model_version,
        DEPLOYMENTS,
        {"env": "staging", "status": "healthy", "release": version, "image": signed.image},
    )
    said = signed.refused("production", version)
    assert "requires staging, which never ran the signed" in said, said


# ---------------------------------------------------------------------- without mlcd


def test_the_stored_statement_verifies_with_cryptography_alone(signed: Signed) -> None:
    """Reads the `.att` beside the image through the registry's HTTP API and checks each
    DSSE envelope with `cryptography` and the public key: no mlcd code."""
    public = serialization.load_pem_public_key((signed.root / "keys" / "signing.pub").read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    name, _, digest = signed.image.partition("@")
    manifest = _manifest(name, digest.replace(":", "-") + ".att")
    assert manifest is not None
    kinds = set()
    for layer in manifest["layers"]:
        assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
        envelope = json.loads(_blob(name, layer["digest"]))
        payload = base64.b64decode(envelope["payload"])
        kind = envelope["payloadType"].encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
        public.verify(  # raises InvalidSignature when it does not verify
            base64.b64decode(envelope["signatures"][0]["sig"]), pae, ec.ECDSA(hashes.SHA256())
        )
        data = json.loads(payload)
        assert data["_type"] == "https://in-toto.io/Statement/v1"
        assert data["subject"][0]["digest"]["sha256"] == digest.removeprefix("sha256:")
        kinds.add(data["predicateType"])
        if data["predicateType"] == "https://slsa.dev/provenance/v1":
            deps = data["predicate"]["buildDefinition"]["resolvedDependencies"]
            assert any("gitCommit" in d["digest"] for d in deps if "digest" in d)
    assert kinds == {"https://slsa.dev/provenance/v1", "https://mlcd.dev/release/v1"}
    # the cosign-style signature: its payload names the digest, its signature verifies
    sig = _manifest(name, digest.replace(":", "-") + ".sig")
    assert sig is not None
    [layer] = sig["layers"]
    payload = _blob(name, layer["digest"])
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == digest
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    public.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
