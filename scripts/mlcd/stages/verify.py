"""`mlcd verify RELEASE|IMAGE@DIGEST`: the signed chain of a release, for an auditor.

Prints commit → data → model → verdict → scan → image → environments, each link with what
was checked (`mlcd.signing.verify`), and exits 0 only when every link verifies: 1 when one
does not, 2 when the release is unknown or signing is off in mlcd.yaml.
"""

from __future__ import annotations

import argparse
import json

from mlcd import releases
from mlcd.context import Command, Context
from mlcd.errors import UserInputError
from mlcd.registry import digest_matches, open_registry
from mlcd.signing import verify as chain_of


def _release(ctx: Context, what: str) -> tuple[releases.Release, str | None]:
    registry = open_registry(ctx.loaded)
    if releases.SEMVER.match(what):
        return releases.get(registry, what), None
    if "@sha256:" not in what:
        raise UserInputError(
            f"`{what}` is neither a release version (1.2.3) nor an image by digest",
            hint="mlcd verify 0.1.4, or mlcd verify registry/name@sha256:…",
        )
    digest = what.partition("@")[2]
    found = releases.find_by_image(registry, digest)
    if found is None or not digest_matches(found.image, digest):
        raise UserInputError(
            f"no release of the model registry ({registry.location}) is the image {what}",
            hint="an image no release names was never released by mlcd",
        )
    return found, what


def _run(ctx: Context, args: argparse.Namespace) -> int:
    section = ctx.config.signing_on
    if section is None:
        raise UserInputError(
            f"{ctx.loaded.path}: signing is off, so there is no key to verify releases with",
            hint="add `signing: {verify: {key: signing.pub}}` (docs/signing.md)",
        )
    release, image = _release(ctx, args.release)
    registry = open_registry(ctx.loaded)
    chain = chain_of.verify_release(ctx.loaded, section, registry, release, image=image)
    if ctx.fmt == "json":
        print(json.dumps(chain.to_json(), indent=2, sort_keys=True), file=ctx.stream)
    else:
        print(f"release {release.version}: {chain.image}", file=ctx.stream)
        for link in chain_of.order(chain):
            print(f"  {link.line()}", file=ctx.stream)
        verdict = (
            "every link verifies" if chain.ok else f"{len(chain.failures)} link(s) do not verify"
        )
        print(f"{'✅' if chain.ok else '❌'} {verdict}", file=ctx.stream)
    return 0 if chain.ok else 1


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "release", metavar="RELEASE|IMAGE@DIGEST", help="a release version or a released image"
    )


COMMAND = Command(
    name="verify",
    help="check the signed chain of a release: commit → data → model → … → environments",
    description="Verify a release with the public key of signing.verify: the image's "
    "signature and statements (stored beside it in the registry), the evidence bundle, the "
    "verdict and scan in it, the model signature against the files the image serves, and "
    "that every environment it ran in recorded the signed digest. Exit 0 only when every "
    "link verifies.",
    example="mlcd verify 0.1.4\nmlcd verify 127.0.0.1:5000/breast-cancer@sha256:… --format json",
    add_arguments=_arguments,
    run=_run,
)
