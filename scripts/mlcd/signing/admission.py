"""The cluster's side of signing: an admission policy for the project's images.

For `target: kubernetes` environments with signing on, the rendered objects include one
policy that refuses any pod of the project's image repository that is not signed by the
release key (`signing.admission`):
- `kyverno` — a Kyverno `ClusterPolicy` whose `verifyImages` rule checks cosign's `.sig`
  with the public key (no transparency log: the key method works offline) and the mlcd
  release statement in `.att` (verdict passed, scan passed), and pins tags to digests;
- `policy-controller` — a sigstore policy-controller `ClusterImagePolicy` with the key
  as its authority.
A keyless `signing.verify` (identity and issuer) becomes the policy's keyless attestor.
Both are validated against the JSON schemas in `mlcd/data/schemas/`, like the Rollout.
"""

from __future__ import annotations

from typing import Any

from mlcd.config import LoadedConfig, SigningSection
from mlcd.rollout.state import safe_name
from mlcd.signing import keys
from mlcd.signing.statement import MLCD


def _key_pem(loaded: LoadedConfig, section: SigningSection) -> str | None:
    if section.verify.key is None:
        return None
    return keys.public_pem(keys.public_key(loaded, section)).decode("ascii")


def _name(project: str) -> str:
    return safe_name(f"mlcd-{project}-signed").lower()[:63].strip("-.")


def kyverno(
    image_name: str, project: str, pem: str | None, section: SigningSection
) -> dict[str, Any]:
    if pem is not None:
        attestor: dict[str, Any] = {
            "keys": {"publicKeys": pem, "rekor": {"ignoreTlog": True}, "ctlog": {"ignoreSCT": True}}
        }
    else:
        attestor = {
            "keyless": {"subject": section.verify.identity, "issuer": section.verify.issuer}
        }
    attestors = [{"count": 1, "entries": [attestor]}]
    return {
        "apiVersion": "kyverno.io/v1",
        "kind": "ClusterPolicy",
        "metadata": {
            "name": _name(project),
            "labels": {"app.kubernetes.io/managed-by": "mlcd"},
            "annotations": {
                "policies.kyverno.io/title": f"Signed releases of {project}",
                "policies.kyverno.io/description": (
                    f"Pods may run {image_name} only by digest, signed by the release key, "
                    "with mlcd's release statement saying the verdict and the scan passed."
                ),
            },
        },
        "spec": {
            "validationFailureAction": "Enforce",
            "background": False,
            "webhookTimeoutSeconds": 30,
            "rules": [
                {
                    "name": "signed-release",
                    "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                    "verifyImages": [
                        {
                            "imageReferences": [f"{image_name}*"],
                            "mutateDigest": True,
                            "verifyDigest": True,
                            "required": True,
                            "attestors": attestors,
                            "attestations": [
                                {
                                    "type": MLCD,
                                    "attestors": attestors,
                                    "conditions": [
                                        {
                                            "all": [
                                                {
                                                    "key": "{{ verdict.passed }}",
                                                    "operator": "Equals",
                                                    "value": True,
                                                },
                                                {
                                                    "key": "{{ scan.status }}",
                                                    "operator": "Equals",
                                                    "value": "pass",
                                                },
                                            ]
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        },
    }


def policy_controller(
    image_name: str, project: str, pem: str | None, section: SigningSection
) -> dict[str, Any]:
    if pem is not None:
        authority: dict[str, Any] = {"name": "release-key", "key": {"data": pem}}
    else:
        authority = {
            "name": "release-identity",
            "keyless": {
                "identities": [
                    {"issuer": section.verify.issuer, "subject": section.verify.identity}
                ]
            },
        }
    return {
        "apiVersion": "policy.sigstore.dev/v1beta1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": _name(project), "labels": {"app.kubernetes.io/managed-by": "mlcd"}},
        "spec": {
            "images": [{"glob": f"{image_name}**"}],
            "mode": "enforce",
            "authorities": [authority],
        },
    }


def policy(loaded: LoadedConfig, image_name: str) -> dict[str, Any] | None:
    """The admission policy `signing.admission` asks for; None with signing off or `none`."""
    section = loaded.config.signing_on
    if section is None or section.admission == "none":
        return None
    pem = _key_pem(loaded, section)
    make = kyverno if section.admission == "kyverno" else policy_controller
    return make(image_name, loaded.config.project, pem, section)
