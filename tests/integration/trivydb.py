"""A tiny Trivy vulnerability database, written from scratch for the tests.

Trivy cannot download its database here, so the tests make one: `db/trivy.db` is a BoltDB
file (bbolt's on-disk format, written below with every bucket on its own leaf page) and
`db/metadata.json` says which schema it follows and when it was made. Trivy checks both
meta pages' FNV-64a checksums, so they are computed here too.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Union

PAGE_SIZE = 4096
_MAGIC = 0xED0CDAED
_VERSION = 2
_BRANCH, _LEAF, _META, _FREELIST = 0x01, 0x02, 0x04, 0x10
_BUCKET_LEAF = 0x01
_PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
_LEAF_ELEM = struct.Struct("<IIII")  # flags, pos, ksize, vsize
_BUCKET_HEADER = struct.Struct("<QQ")  # root page id, sequence

# A bucket maps keys to values (bytes) or to nested buckets (dicts).
Tree = Mapping[str, Union[bytes, "Tree"]]


def _fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class _Writer:
    def __init__(self) -> None:
        self.pages: dict[int, bytes] = {}
        self.next_id = 3  # 0 and 1 are the meta pages, 2 the freelist

    def bucket(self, tree: Tree) -> int:
        """Write one bucket (children first) on a leaf page; return its page id."""
        items: list[tuple[bytes, bytes, int]] = []
        for key in sorted(tree, key=lambda k: k.encode()):
            value = tree[key]
            if isinstance(value, bytes):
                items.append((key.encode(), value, 0))
            else:
                root = self.bucket(value)
                items.append((key.encode(), _BUCKET_HEADER.pack(root, 0), _BUCKET_LEAF))
        body = bytearray()
        elems = bytearray()
        data_start = _LEAF_ELEM.size * len(items)
        for index, (key, value, flags) in enumerate(items):
            elem_at = index * _LEAF_ELEM.size
            pos = data_start + len(body) - elem_at
            elems += _LEAF_ELEM.pack(flags, pos, len(key), len(value))
            body += key + value
        content = bytes(elems) + bytes(body)
        n_pages = max(1, -(-(_PAGE_HEADER.size + len(content)) // PAGE_SIZE))
        page_id = self.next_id
        self.next_id += n_pages
        header = _PAGE_HEADER.pack(page_id, _LEAF, len(items), n_pages - 1)
        raw = header + content
        self.pages[page_id] = raw + b"\0" * (n_pages * PAGE_SIZE - len(raw))
        return page_id


def write_bolt(path: Path, tree: Tree) -> None:
    """Write `tree` (top-level keys are buckets) as a BoltDB file."""
    writer = _Writer()
    root = writer.bucket(tree)
    high_water = writer.next_id
    out = bytearray(high_water * PAGE_SIZE)
    for txid, page_id in ((1, 0), (2, 1)):
        meta = struct.pack(
            "<IIIIQQQQQ", _MAGIC, _VERSION, PAGE_SIZE, 0, root, 0, 2, high_water, txid
        )
        page = _PAGE_HEADER.pack(page_id, _META, 0, 0) + meta + struct.pack("<Q", _fnv64a(meta))
        out[page_id * PAGE_SIZE : page_id * PAGE_SIZE + len(page)] = page
    free = _PAGE_HEADER.pack(2, _FREELIST, 0, 0)
    out[2 * PAGE_SIZE : 2 * PAGE_SIZE + len(free)] = free
    for page_id, raw in writer.pages.items():
        out[page_id * PAGE_SIZE : page_id * PAGE_SIZE + len(raw)] = raw
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))


def _j(value: Any) -> bytes:
    return json.dumps(value).encode()


def make_trivy_db(
    cache_dir: Path,
    *,
    debian: Mapping[str, Mapping[str, Mapping[str, Any]]],
    pip: Mapping[str, Mapping[str, Mapping[str, Any]]],
    updated_at: datetime | None = None,
) -> Path:
    """A Trivy cache dir whose DB knows the given advisories.

    `debian`: source package -> advisory ID -> {"severity", "title", "fixed"}.
    `pip`: package -> advisory ID -> {"severity", "title", "vulnerable", "patched"}.
    """
    vulns: dict[str, bytes] = {}
    deb_bucket: dict[str, Tree] = {}
    for pkg, advisories in debian.items():
        deb_bucket[pkg] = {
            vid: _j({"FixedVersion": adv["fixed"]} if adv.get("fixed") else {})
            for vid, adv in advisories.items()
        }
        for vid, adv in advisories.items():
            vulns[vid] = _j(
                {
                    "Title": adv["title"],
                    "Description": adv["title"],
                    "Severity": adv["severity"],
                    "References": [],
                }
            )
    pip_bucket: dict[str, Tree] = {}
    for pkg, advisories in pip.items():
        pip_bucket[pkg] = {
            vid: _j(
                {"VulnerableVersions": adv["vulnerable"], "PatchedVersions": adv.get("patched", [])}
            )
            for vid, adv in advisories.items()
        }
        for vid, adv in advisories.items():
            vulns[vid] = _j(
                {
                    "Title": adv["title"],
                    "Description": adv["title"],
                    "Severity": adv["severity"],
                    "References": [],
                }
            )
    pip_name = "pip::GitHub Security Advisory pip"
    tree: dict[str, Tree] = {
        "data-source": {
            "debian 12": _j(
                {
                    "ID": "debian",
                    "Name": "Debian Security Tracker",
                    "URL": "https://salsa.debian.org/security-tracker-team/security-tracker",
                }
            ),
            pip_name: _j(
                {
                    "ID": "ghsa",
                    "Name": "GitHub Security Advisory pip",
                    "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip",
                }
            ),
        },
        "debian 12": deb_bucket,
        pip_name: pip_bucket,
        "vulnerability": vulns,
    }
    db_dir = cache_dir / "db"
    write_bolt(db_dir / "trivy.db", tree)
    when = updated_at or datetime.now(UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    (db_dir / "metadata.json").write_text(
        json.dumps(
            {
                "Version": 2,
                "NextUpdate": "2099-01-01T00:00:00Z",
                "UpdatedAt": stamp,
                "DownloadedAt": stamp,
            }
        ),
        "utf-8",
    )
    return cache_dir
