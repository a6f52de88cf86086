"""Hostile and malformed model files: each one is a finding, none a traceback.

The samples are made here (the standard library writes the zips; the encryption flag, an
unknown compression method and damaged bytes are patched into the raw headers), so the
suite needs no third-party corpus. They mirror the kinds in picklescan's test corpus.
"""

from __future__ import annotations

import importlib
import io
import pickle
import posix
import random
import runpy
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from mlcd.security.modelscan import RULE_DANGEROUS, RULE_UNREADABLE, scan_model_file


class _Reduces:
    """Unpickling calls `func(*args)`; pickling only records the callable's name."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)


DANGEROUS = {
    "posix.system": _Reduces(posix.system, "touch /tmp/never"),
    "builtins.eval": _Reduces(eval, "1+1"),
    "runpy._run_code": _Reduces(runpy._run_code, "x=1", {}),
    "importlib.import_module": _Reduces(importlib.import_module, "os"),
}


def _torch_zip(path: Path, data_pkl: bytes, *, extra: dict[str, bytes] | None = None) -> None:
    """The layout torch.save writes: <name>/data.pkl, <name>/data/0 storages, version."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/data/0", struct.pack("<8f", *range(8)))
        archive.writestr("archive/version", b"3\n")
        for name, content in (extra or {}).items():
            archive.writestr(name, content)


def _patch_member(path: Path, member: str, *, flag: int = 0, method: int | None = None) -> None:
    """Set general-purpose flag bits and/or the compression method of one member, in both
    its local header and its central-directory entry, as a raw-header edit would."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    # local file header: signature, version(2), flags(2) at +6, method(2) at +8, name at +30
    # central directory: signature, made-by(2), version(2), flags(2) at +8, method at +10,
    #                    name at +46
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            start = at + 4
            if data[at + name_at : at + name_at + len(name)] != name:
                continue
            (bits,) = struct.unpack_from("<H", data, at + flags_at)
            struct.pack_into("<H", data, at + flags_at, bits | flag)
            if method is not None:
                struct.pack_into("<H", data, at + flags_at + 2, method)
    path.write_bytes(bytes(data))


def _named(findings: list[Any]) -> list[tuple[str, str]]:
    # protocols 0-2 write Python 2's module name for builtins
    return [(f.id, f.package.replace("__builtin__.", "builtins.")) for f in findings]


def _one(findings: list[Any], rule: str = RULE_UNREADABLE) -> Any:
    assert [f.id for f in findings] == [rule], [f.title for f in findings]
    assert findings[0].severity == "HIGH"
    assert findings[0].blocking
    return findings[0]


def test_encrypted_member_is_a_high_finding_naming_file_and_member(tmp_path: Path) -> None:
    path = tmp_path / "locked.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/config.pkl", pickle.dumps(OrderedDict(a=1), protocol=2))
    _patch_member(path, "model/config.pkl", flag=0x1)
    with zipfile.ZipFile(path) as archive, pytest.raises(RuntimeError, match="encrypted"):
        archive.read("model/config.pkl")  # what used to escape the scanner
    finding = _one(scan_model_file(path, shown="locked.zip"))
    assert "locked.zip!model/config.pkl" in finding.title
    assert "encrypted" in finding.title


def test_members_after_an_unreadable_one_are_still_read(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pt"
    _torch_zip(
        path,
        pickle.dumps(OrderedDict(w=1.0), protocol=2),
        extra={
            "archive/a.pkl": b"not read",
            "archive/z.pkl": pickle.dumps(DANGEROUS["posix.system"]),
        },
    )
    _patch_member(path, "archive/a.pkl", flag=0x1)
    found = scan_model_file(path, shown="mixed.pt")
    assert sorted((f.id, f.package) for f in found) == [
        (RULE_DANGEROUS, "posix.system"),
        (RULE_UNREADABLE, "mixed.pt"),
    ]


@pytest.mark.parametrize(("flag", "why"), [(0x20, "patched data"), (0x40, "strong encryption")])
def test_other_unreadable_flags(tmp_path: Path, flag: int, why: str) -> None:
    path = tmp_path / "flagged.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", pickle.dumps(DANGEROUS["builtins.eval"], protocol=2))
    _patch_member(path, "data.pkl", flag=flag)
    assert why in _one(scan_model_file(path, shown="flagged.zip")).title


def test_unknown_compression_method(tmp_path: Path) -> None:
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", pickle.dumps([1, 2], protocol=2))
    _patch_member(path, "data.pkl", method=99)
    finding = _one(scan_model_file(path, shown="odd.zip"))
    assert "odd.zip!data.pkl" in finding.title


def test_damaged_member_bytes_bad_crc(tmp_path: Path) -> None:
    path = tmp_path / "crc.zip"
    payload = pickle.dumps(list(range(50)), protocol=2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", payload)
    data = bytearray(path.read_bytes())
    at = data.find(payload) + len(payload) // 2
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    finding = _one(scan_model_file(path, shown="crc.zip"))
    assert "crc.zip!data.pkl" in finding.title
    assert "CRC" in finding.title


def test_nested_archive_is_not_passed_as_clean(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("data.pkl", pickle.dumps(DANGEROUS["posix.system"], protocol=2))
    path = tmp_path / "outer.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.bin", inner.getvalue())
    finding = _one(scan_model_file(path, shown="outer.zip"))
    assert "outer.zip!weights.bin" in finding.title
    assert "zip archive inside the archive" in finding.title


def test_over_size_member(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.pkl", pickle.dumps(b"\x00" * 5000, protocol=2))
    finding = _one(scan_model_file(path, shown="big.zip", max_member_bytes=1000))
    assert "over the 1000-byte limit" in finding.title
    assert scan_model_file(path, shown="big.zip") == []


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_zip(tmp_path: Path, cut: float) -> None:
    path = tmp_path / "cut.pt"
    _torch_zip(path, pickle.dumps(OrderedDict(w=1.0), protocol=2))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    _one(scan_model_file(path, shown="cut.pt"))


@pytest.mark.parametrize("name", sorted(DANGEROUS))
@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_dangerous_globals_every_protocol_plain_and_in_a_torch_zip(
    tmp_path: Path, name: str, protocol: int
) -> None:
    stream = pickle.dumps({"state": OrderedDict(w=1.0), "x": DANGEROUS[name]}, protocol=protocol)
    plain = tmp_path / "model.pkl"
    plain.write_bytes(stream)
    assert _named(scan_model_file(plain)) == [(RULE_DANGEROUS, name)]
    # inside a torch-style zip, under a member name that says nothing about pickles
    zipped = tmp_path / "model.pt"
    _torch_zip(zipped, pickle.dumps(OrderedDict(w=1.0), protocol=2), extra={"archive/x": stream})
    assert _named(scan_model_file(zipped)) == [(RULE_DANGEROUS, name)]


@pytest.mark.parametrize(
    "stream",
    [
        # module from a call result: builtins.str() + 'os' is unknowable without running it
        b"\x80\x04cbuiltins\nstr\n)R\x8c\x06system\x93)R.",
        # name built by a call (getattr result) and memoized, then used through BINGET
        b"\x80\x04\x8c\x02os\x94cbuiltins\ngetattr\n\x8c\x01x\x8c\x01y\x86R\x94h\x00h\x01\x93)R.",
    ],
)
def test_stack_global_with_computed_names_is_critical(tmp_path: Path, stream: bytes) -> None:
    path = tmp_path / "computed.pkl"
    path.write_bytes(stream)
    found = scan_model_file(path)
    assert RULE_DANGEROUS in {f.id for f in found}
    assert any("computes at load time" in f.title for f in found)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_every_truncation_of_a_malicious_pickle_is_a_finding(tmp_path: Path, protocol: int) -> None:
    stream = pickle.dumps([1.5, "x" * 20, DANGEROUS["posix.system"]], protocol=protocol)
    path = tmp_path / "cut.pkl"
    for end in range(1, len(stream)):
        path.write_bytes(stream[:end])
        found = scan_model_file(path)
        assert found, f"{end}/{len(stream)} bytes passed as clean"
        assert all(f.blocking for f in found)


def test_random_damage_never_raises(tmp_path: Path) -> None:
    """Byte flips anywhere in a torch-style zip: always a list of findings, never an
    exception (the seed is fixed, so a failure reproduces)."""
    clean = tmp_path / "clean.pt"
    _torch_zip(clean, pickle.dumps(OrderedDict(w=1.0, b=[1, 2, 3]), protocol=2))
    original = clean.read_bytes()
    rng = random.Random(15)
    damaged = tmp_path / "damaged.pt"
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        damaged.write_bytes(bytes(data))
        found = scan_model_file(damaged)
        assert isinstance(found, list)
        assert all(f.severity in ("HIGH", "CRITICAL") for f in found)


def test_benign_torch_style_zip_passes(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    _torch_zip(path, pickle.dumps(OrderedDict(w=1.0, layers=[1, 2]), protocol=2))
    assert scan_model_file(path) == []
