"""mlcd.signing without a registry: DSSE, the model-signing bundle, keys, the config's
`signing:` section, the cosign-style signature check and the admission policies."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlcd.config import load_config
from mlcd.errors import EnvironmentMissing, UserInputError
from mlcd.rollout import kubernetes
from mlcd.signing import admission, dsse, keys, modelsig, statement, store

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def other() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _project(tmp_path: Path, signing: Any) -> Path:
    data: dict[str, Any] = {
        "version": 1,
        "project": "p",
        "model": {"task": "classification", "entrypoint": "t.py:f", "data": "d.csv", "target": "y"},
    }
    if signing is not None:
        data["signing"] = signing
    path = tmp_path / "mlcd.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------------- DSSE


def test_an_envelope_opens_only_with_its_key_and_unchanged(
    key: ec.EllipticCurvePrivateKey, other: ec.EllipticCurvePrivateKey
) -> None:
    envelope = dsse.sign(key, b'{"a": 1}')
    assert dsse.open_envelope(key.public_key(), envelope) == b'{"a": 1}'
    with pytest.raises(dsse.EnvelopeError, match="configured public key"):
        dsse.open_envelope(other.public_key(), envelope)
    changed = {**envelope, "payload": base64.b64encode(b'{"a": 2}').decode()}
    with pytest.raises(dsse.EnvelopeError):
        dsse.open_envelope(key.public_key(), changed)
    with pytest.raises(dsse.EnvelopeError, match="payloadType"):
        dsse.open_envelope(key.public_key(), {**envelope, "payloadType": "text/plain"})


def test_pae_is_the_dsse_encoding() -> None:
    assert dsse.pae("t", b"ab") == b"DSSEv1 1 t 2 ab"


# ---------------------------------------------------------------------- model signature


def test_the_model_signature_round_trips_and_names_what_differs(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, other: ec.EllipticCurvePrivateKey
) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    (tmp_path / "model" / "model.skops").write_bytes(b"\x00" * 10)
    digests = modelsig.file_digests(tmp_path)
    bundle = modelsig.sign(key, "p", digests)
    assert bundle["mediaType"] == modelsig.BUNDLE_MEDIA_TYPE
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == keys.key_hint(key.public_key())
    assert modelsig.verify(key.public_key(), bundle) == digests
    with pytest.raises(modelsig.ModelSignatureError, match="another public key"):
        modelsig.verify(other.public_key(), bundle)
    changed = {**digests, "model/model.json": "0" * 64, "model/extra.py": "1" * 64}
    del changed["model/model.skops"]
    problems = modelsig.compare(digests, changed)
    assert any(p.startswith("model/model.json: sha256") for p in problems)
    assert "model/model.skops: signed but missing" in problems
    assert "model/extra.py: present but not signed" in problems
    assert modelsig.compare(digests, dict(digests)) == []


def test_a_statement_whose_files_do_not_hash_to_its_subject_is_refused(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    data = modelsig.statement("p", {"a": "0" * 64})
    data["subject"][0]["digest"]["sha256"] = "f" * 64
    bundle = modelsig.sign(key, "p", {"a": "0" * 64})
    bundle["dsseEnvelope"] = dsse.sign(key, json.dumps(data).encode())
    with pytest.raises(modelsig.ModelSignatureError, match="subject digest"):
        modelsig.verify(key.public_key(), bundle)


# ---------------------------------------------------------------------- keys and config


def test_the_signing_key_comes_from_the_environment_as_text_or_path(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_config(_project(tmp_path, {"verify": {"key": "k.pub"}, "key": "k.pem"}))
    section = loaded.config.signing_on
    assert section is not None
    monkeypatch.setenv(keys.SIGNING_KEY_ENV, _pem(key).decode())
    assert keys.public_pem(keys.private_key(loaded, section).public_key()) == keys.public_pem(
        key.public_key()
    )
    (tmp_path / "elsewhere.pem").write_bytes(_pem(key))
    monkeypatch.setenv(keys.SIGNING_KEY_ENV, str(tmp_path / "elsewhere.pem"))
    assert keys.private_key(loaded, section).private_numbers() == key.private_numbers()
    monkeypatch.delenv(keys.SIGNING_KEY_ENV)
    with pytest.raises(UserInputError, match=r"signing.key .*cannot read"):
        keys.private_key(loaded, section)
    (tmp_path / "k.pem").write_bytes(_pem(key))
    assert keys.private_key(loaded, section).private_numbers() == key.private_numbers()


def test_no_key_is_exit_3_and_a_wrong_curve_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_config(_project(tmp_path, {"verify": {"key": "k.pub"}}))
    section = loaded.config.signing_on
    assert section is not None
    monkeypatch.delenv(keys.SIGNING_KEY_ENV, raising=False)
    with pytest.raises(EnvironmentMissing, match="no signing key"):
        keys.private_key(loaded, section)
    monkeypatch.setenv(keys.SIGNING_KEY_ENV, _pem(ec.generate_private_key(ec.SECP256K1())).decode())
    with pytest.raises(UserInputError, match="P-256"):
        keys.private_key(loaded, section)
    monkeypatch.setenv(keys.SIGNING_KEY_ENV, "-----BEGIN PRIVATE KEY-----\nnot a key\n")
    with pytest.raises(UserInputError, match="not a PEM private key"):
        keys.private_key(loaded, section)


@pytest.mark.parametrize("text", ["off", "false", "'off'"])
def test_signing_off_is_explicit(tmp_path: Path, text: str) -> None:
    path = _project(tmp_path, None)
    path.write_text(path.read_text() + f"signing: {text}\n")
    config = load_config(path).config
    assert config.signing is not None
    assert config.signing_on is None
    assert load_config(_project(tmp_path, None)).config.signing is None


@pytest.mark.parametrize(
    ("verify", "message"),
    [
        ({"key": "k.pub", "identity": "i", "issuer": "j"}, "not both"),
        ({"identity": "i"}, "identity"),
        ({}, "needs `key"),
    ],
)
def test_signing_verify_needs_one_way(tmp_path: Path, verify: dict[str, str], message: str) -> None:
    with pytest.raises(UserInputError) as raised:
        load_config(_project(tmp_path, {"verify": verify}))
    [problem] = raised.value.problems
    assert "signing.verify: " in problem
    assert message in problem


# ---------------------------------------------------------------------- image signature


def test_the_cosign_signature_must_verify_and_name_the_digest(
    key: ec.EllipticCurvePrivateKey, other: ec.EllipticCurvePrivateKey
) -> None:
    payload = store.simple_signing("r/p", DIGEST)
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == DIGEST
    good = store.Stored([(payload, dsse.sign_bytes(key, payload))], [])
    assert store.verify_signature(good, key.public_key(), DIGEST)[0]
    assert not store.verify_signature(good, other.public_key(), DIGEST)[0]
    ok, why = store.verify_signature(good, key.public_key(), "sha256:" + "cd" * 32)
    assert not ok
    assert "names" in why
    assert (
        "no signature" in store.verify_signature(store.Stored([], []), key.public_key(), DIGEST)[1]
    )
    assert store.suffix_tag(DIGEST, "att") == "sha256-" + "ab" * 32 + ".att"


def test_statement_subjects() -> None:
    data = statement.release("r/p", DIGEST, {})
    assert statement.subject_digests(data) == [DIGEST]
    assert statement.subject_digests({"subject": "x"}) == []


# ---------------------------------------------------------------------- admission policy


@pytest.mark.parametrize("choice", ["kyverno", "policy-controller"])
@pytest.mark.parametrize("verify", ["key", "keyless"])
def test_the_admission_policy_is_valid_against_its_schema(
    tmp_path: Path, key: ec.EllipticCurvePrivateKey, choice: str, verify: str
) -> None:
    (tmp_path / "k.pub").write_bytes(keys.public_pem(key.public_key()))
    how = (
        {"key": "k.pub"}
        if verify == "key"
        else {
            "identity": "https://github.com/o/r/.github/workflows/ml.yml@refs/heads/main",
            "issuer": "https://token.actions.githubusercontent.com",
        }
    )
    loaded = load_config(_project(tmp_path, {"verify": how, "admission": choice}))
    policy = admission.policy(loaded, "ghcr.io/o/r")
    assert policy is not None
    assert kubernetes.validate_custom(policy) == []
    text = json.dumps(policy)
    if verify == "key":
        assert keys.public_pem(key.public_key()).decode() in json.loads(text).__repr__() or (
            "BEGIN PUBLIC KEY" in text
        )
    else:
        assert "token.actions.githubusercontent.com" in text
    if choice == "kyverno":
        rule = policy["spec"]["rules"][0]["verifyImages"][0]
        assert rule["imageReferences"] == ["ghcr.io/o/r*"]
        assert rule["attestations"][0]["type"] == statement.MLCD
        broken = json.loads(text)
        del broken["spec"]["rules"][0]["verifyImages"][0]["imageReferences"]
        assert kubernetes.validate_custom(broken)
    else:
        broken = json.loads(text)
        broken["spec"]["authorities"] = [{"name": "nothing"}]
        assert kubernetes.validate_custom(broken)


def test_no_policy_with_signing_off_or_admission_none(tmp_path: Path) -> None:
    assert admission.policy(load_config(_project(tmp_path, "off")), "r/p") is None
    (tmp_path / "k.pub").write_text("unused")
    none = load_config(_project(tmp_path, {"verify": {"key": "k.pub"}, "admission": "none"}))
    assert admission.policy(none, "r/p") is None


# ---------------------------------------------------------------------- GitHub release


def test_a_signed_release_attaches_its_statements_signature_and_key(tmp_path: Path) -> None:
    from mlcd.evidence import Bundle, StageResult
    from mlcd.github import publish

    bundle = Bundle(tmp_path / ".mlcd")
    folder = bundle.stage_dir("release")
    files = {
        "attestation": "attestation.json",
        "model_signature": "model.sig",
        "public_key": "public.pem",
        "evidence": "evidence.tar.gz",
    }
    for name in files.values():
        (folder / name).write_text("{}")
    result = StageResult(
        stage="release",
        status="pass",
        started="2026-01-01T00:00:00Z",
        duration_s=1.0,
        summary="0.1.0",
        artifacts={key: f"release/{name}" for key, name in files.items()},
        details={"version": "0.1.0", "image": "r/p@" + DIGEST},
    )
    bundle.write(result, "")
    facts = publish.release_facts(bundle, "p", by="test")
    names = {name for _, name in publish.release_assets(bundle, facts)}
    assert {"attestation.intoto.json", "model.sig", "signing.pub"} <= names
    (folder / "model.sig").unlink()
    names = {name for _, name in publish.release_assets(bundle, facts)}
    assert "model.sig" not in names
