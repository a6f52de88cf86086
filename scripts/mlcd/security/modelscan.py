"""The model-artifact scanner: what a model file would import when loaded, found without
loading it.

- skops files: `skops.io.get_untrusted_types(file=…)` lists the types the file needs
  without building any of them; each must be trusted by skops or on the loader's list
  (`trusted_types()`, the same list `mlcd.modelio` loads with).
- pickle and joblib files (also gzip/bz2/xz/zlib-compressed joblib, zip containers such
  as PyTorch checkpoints, and pickles hidden in zip members or NumPy object arrays): read
  opcode by opcode (`picklescan`), every imported global checked against `allowlist`.

A file that cannot be read, or ends early, is a finding, never a crash; so is a zip member
that is encrypted, damaged (CRC, headers), compressed by a method zipfile cannot read, an
archive or compressed stream itself (nested containers are not unpacked), or over
`MAX_MEMBER_BYTES`. Each such finding names the file and the member (`file!member`).
"""

from __future__ import annotations

import ast
import bz2
import contextlib
import gzip
import lzma
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from mlcd.modelio import TRUSTED_TYPES
from mlcd.security import allowlist
from mlcd.security.findings import Finding
from mlcd.security.picklescan import PickleReadError, Readable, read_line, walk

SOURCE = "mlcd-model-scan"
MODEL_SUFFIXES = (".skops", ".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".npy", ".bin")
RULE_DANGEROUS = "MLCD-MODEL-DANGEROUS-GLOBAL"
RULE_UNTRUSTED = "MLCD-MODEL-UNTRUSTED-GLOBAL"
RULE_UNTRUSTED_TYPE = "MLCD-MODEL-UNTRUSTED-TYPE"
RULE_UNREADABLE = "MLCD-MODEL-UNREADABLE"
RULES = {
    RULE_DANGEROUS: "a model file imports a callable that can run commands, open files or "
    "sockets, or evaluate code when the file is loaded",
    RULE_UNTRUSTED: "a pickle-based model file imports a callable that is not on the "
    "allow-list of data-only callables",
    RULE_UNTRUSTED_TYPE: "a skops model file needs a type that neither skops nor mlcd's "
    "loader trusts",
    RULE_UNREADABLE: "a model file could not be read to the end, so its safety is unknown",
}
_ZLIB_JOBLIB = b"ZF"  # joblib's own zlib container: b"ZF" + 19-byte length + zlib stream


def trusted_types() -> frozenset[str]:
    """The extra skops types the loader accepts: `mlcd.modelio.TRUSTED_TYPES`, one list."""
    return frozenset(TRUSTED_TYPES)


def _finding(rule: str, severity: str, title: str, shown: str, package: str = "") -> Finding:
    return Finding(
        kind="model",
        id=rule,
        severity=severity,
        title=title,
        target=f"model {shown}",
        source=SOURCE,
        package=package or shown,
        path=shown,
        blocking=True,
    )


def _global_findings(
    qualified: set[str], dynamic: set[str], shown: str, where: str
) -> list[Finding]:
    out = []
    for name in sorted(qualified):
        if allowlist.is_safe(name):
            continue
        label = allowlist.display_name(name)
        if allowlist.is_dangerous(name):
            out.append(
                _finding(
                    RULE_DANGEROUS,
                    "CRITICAL",
                    f"{where} imports {label}, which can run code of the file's choosing "
                    "when it is loaded",
                    shown,
                    name,
                )
            )
        else:
            out.append(
                _finding(
                    RULE_UNTRUSTED,
                    "HIGH",
                    f"{where} imports {label}, which is not on the allow-list of "
                    "data-only callables",
                    shown,
                    name,
                )
            )
    out.extend(
        _finding(
            RULE_DANGEROUS,
            "CRITICAL",
            f"{where} imports a global it computes at load time ({name}); no safe model does that",
            shown,
            name,
        )
        for name in sorted(dynamic)
    )
    return out


def _scan_pickle_stream(stream: Readable, shown: str, where: str) -> list[Finding]:
    try:
        result = walk(stream)
    except PickleReadError as exc:
        return [
            _finding(RULE_UNREADABLE, "HIGH", f"{where} is not a readable pickle: {exc}", shown)
        ]
    static = {i.qualified for i in result.imports if not i.dynamic}
    dynamic = {i.qualified for i in result.imports if i.dynamic}
    return _global_findings(static, dynamic, shown, where)


def _scan_npy(stream: Readable, shown: str, where: str) -> list[Finding]:
    """A .npy array: only an object array carries a pickle (after the header)."""
    magic = stream.read(8)
    if len(magic) < 8 or not magic.startswith(b"\x93NUMPY"):
        return [_finding(RULE_UNREADABLE, "HIGH", f"{where}: not a NumPy .npy file", shown)]
    major = magic[6]
    size_bytes = stream.read(2 if major == 1 else 4)
    if len(size_bytes) not in (2, 4):
        return [_finding(RULE_UNREADABLE, "HIGH", f"{where}: truncated .npy header", shown)]
    size = struct.unpack("<H" if major == 1 else "<I", size_bytes)[0]
    header = stream.read(size)
    try:
        meta = ast.literal_eval(header.decode("latin1"))
        descr = str(meta["descr"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        return [_finding(RULE_UNREADABLE, "HIGH", f"{where}: unreadable .npy header", shown)]
    if "O" not in descr:
        return []
    return _scan_pickle_stream(stream, shown, f"{where} (object array)")


def _is_pickle_start(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


# An archive or compressed stream inside a zip member: mlcd does not unpack nested
# containers, so their content is unknown (magic numbers long enough that raw tensor
# bytes practically never match them).
_NESTED_MAGIC = (
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
    (b"\x1f\x8b\x08", "a gzip stream"),
    (b"\xfd7zXZ\x00", "an xz stream"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
)
_NESTED_SUFFIXES = (".zip", ".npz", ".7z", ".rar", ".tar", ".tgz", ".gz", ".bz2", ".xz")
MAX_MEMBER_BYTES = 8 << 30
"""A zip member that says it unpacks to more than this is not read (a zip bomb, or a file
no scikit-learn model needs); it is reported as unreadable."""
_ENCRYPTED = 0x1


def _nested_kind(name: str, head: bytes) -> str:
    for magic, kind in _NESTED_MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "a bzip2 stream"
    if name.lower().endswith(_NESTED_SUFFIXES):
        return "an archive (by its name)"
    return ""


def _unreadable_member(shown: str, where: str, why: str) -> Finding:
    return _finding(RULE_UNREADABLE, "HIGH", f"{where}: {why}, so its content is unknown", shown)


def _scan_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str, where: str, max_bytes: int
) -> list[Finding]:
    if info.flag_bits & _ENCRYPTED:
        return [_unreadable_member(shown, where, "the member is encrypted")]
    if info.file_size > max_bytes:
        return [
            _unreadable_member(
                shown,
                where,
                f"the member unpacks to {info.file_size} bytes, over the {max_bytes}-byte limit",
            )
        ]
    with archive.open(info) as member:
        head = member.read(16)
    kind = _nested_kind(info.filename, head)
    if kind:
        return [_unreadable_member(shown, where, f"the member is {kind} inside the archive")]
    with archive.open(info) as member:
        if _is_pickle_start(head) or info.filename.endswith((".pkl", ".pickle")):
            return _scan_pickle_stream(member, shown, where)
        if head.startswith(b"\x93NUMPY"):
            return _scan_npy(member, shown, where)
        return _scan_if_pickle(member, shown, where)


def _scan_if_pickle(stream: Readable, shown: str, where: str) -> list[Finding]:
    """A member of no known kind (tensor storage, text, …) may still be a protocol 0/1
    pickle, which has no magic number: walk it, and report what it imports when it reads
    as a whole pickle. Bytes that are not a pickle are not a finding."""
    try:
        result = walk(stream)
    except PickleReadError:
        return []
    static = {i.qualified for i in result.imports if not i.dynamic}
    dynamic = {i.qualified for i in result.imports if i.dynamic}
    return _global_findings(static, dynamic, shown, where)


_MEMBER_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # a compression method zipfile cannot read
    RuntimeError,  # zipfile's "encrypted, password required" (flag set in the local header)
    OSError,
    EOFError,
    ValueError,
    struct.error,
    OverflowError,
    MemoryError,
)


def _scan_zip(path: Path, shown: str, *, max_bytes: int = MAX_MEMBER_BYTES) -> list[Finding]:
    """Every member of a zip container, each on its own: an unreadable member (encrypted,
    damaged, compressed in a way zipfile cannot read, nested, over-size) is a HIGH finding
    naming the file and the member, and the other members are still read."""
    findings: list[Finding] = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                where = f"{shown}!{info.filename}"
                try:
                    findings += _scan_member(archive, info, shown, where, max_bytes)
                except _MEMBER_ERRORS as exc:
                    findings.append(
                        _unreadable_member(shown, where, f"the member cannot be read ({exc})")
                    )
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error) as exc:
        findings.append(
            _finding(RULE_UNREADABLE, "HIGH", f"{shown}: damaged zip container ({exc})", shown)
        )
    return findings


def _scan_skops(
    path: Path, shown: str, max_bytes: int, trusted: Iterable[str] = ()
) -> list[Finding]:
    try:
        import skops.io as sio

        needed = sorted(sio.get_untrusted_types(file=path))
    except Exception as exc:  # noqa: BLE001 - skops raises many kinds on a damaged file
        return [
            _finding(
                RULE_UNREADABLE,
                "HIGH",
                f"{shown}: not a readable skops file ({type(exc).__name__}: {exc})",
                shown,
            )
        ]
    extra = trusted_types() | set(trusted)
    findings = []
    for name in needed:
        # a dangerous callable is a finding whatever a trusted list says
        if name in extra and not allowlist.is_dangerous(name):
            continue
        label = allowlist.display_name(name)
        dangerous = allowlist.is_dangerous(name)
        findings.append(
            _finding(
                RULE_DANGEROUS if dangerous else RULE_UNTRUSTED_TYPE,
                "CRITICAL" if dangerous else "HIGH",
                f"{shown} needs {label}, which "
                + (
                    "can run code of the file's choosing when it is loaded"
                    if dangerous
                    else "neither skops nor mlcd's loader trusts"
                ),
                shown,
                name,
            )
        )
    # a skops file holds JSON and .npy members; a pickle in it is never legitimate, and a
    # member skops did not need (encrypted, nested, damaged) is still unknown content
    findings += _scan_zip(path, shown, max_bytes=max_bytes)
    return findings


@contextlib.contextmanager
def _decompressed(path: Path, head: bytes) -> Iterator[Readable]:
    """The file's content as a stream, decompressing joblib's compressed formats."""
    if head.startswith(b"\x1f\x8b"):
        with gzip.open(path, "rb") as handle:
            yield handle
    elif head.startswith(b"BZh"):
        with bz2.open(path, "rb") as handle:
            yield handle
    elif head.startswith((b"\xfd7zXZ", b"]\x00\x00")):
        with lzma.open(path, "rb") as handle:
            yield handle
    elif head.startswith(_ZLIB_JOBLIB):
        with path.open("rb") as raw:
            raw.read(2 + 19)
            yield _ZlibStream(raw)
    elif head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        with path.open("rb") as raw:
            yield _ZlibStream(raw)
    else:
        with path.open("rb") as handle:
            yield handle


class _ZlibStream:
    """Forward-only reads of a zlib stream."""

    def __init__(self, raw: Readable) -> None:
        self.raw = raw
        self.inflater = zlib.decompressobj()
        self.buffer = b""

    def _fill(self, size: int) -> None:
        while size < 0 or len(self.buffer) < size:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                self.buffer += self.inflater.flush()
                return
            self.buffer += self.inflater.decompress(chunk)

    def read(self, size: int = -1, /) -> bytes:
        self._fill(size)
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def readline(self, size: int = -1, /) -> bytes:
        return read_line(self.read, size)


def scan_model_file(
    path: Path,
    *,
    shown: str | None = None,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    trusted: Iterable[str] = (),
) -> list[Finding]:
    """Every finding for one model file (empty: nothing it imports is a concern).

    Never raises for what the file holds: content the scanner cannot read to the end is a
    HIGH finding that names the file (and the archive member). `trusted`: skops types the
    project trusts besides mlcd's list (its own classes, its `model.trusted-types`); a
    dangerous callable is reported even when it is on it."""
    label = shown or str(path)
    try:
        return _scan_file(path, label, max_member_bytes, trusted)
    except RecursionError:
        return [_finding(RULE_UNREADABLE, "HIGH", f"{label}: nested too deeply to read", label)]
    except Exception as exc:  # noqa: BLE001 - hostile input must never crash the scan
        return [
            _finding(
                RULE_UNREADABLE,
                "HIGH",
                f"{label}: the scanner could not read it ({type(exc).__name__}: {exc})",
                label,
            )
        ]


def _scan_file(
    path: Path, label: str, max_bytes: int, trusted: Iterable[str] = ()
) -> list[Finding]:
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        return [_finding(RULE_UNREADABLE, "HIGH", f"{label}: cannot be read ({exc})", label)]
    if not head:
        return [_finding(RULE_UNREADABLE, "HIGH", f"{label}: the file is empty", label)]
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        if path.suffix == ".skops" or _has_member(path, "schema.json"):
            return _scan_skops(path, label, max_bytes, trusted)
        return _scan_zip(path, label, max_bytes=max_bytes)
    if head.startswith(b"\x93NUMPY"):
        with path.open("rb") as handle:
            return _scan_npy(handle, label, label)
    try:
        with _decompressed(path, head) as stream:
            return _scan_pickle_stream(stream, label, label)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        return [
            _finding(RULE_UNREADABLE, "HIGH", f"{label}: cannot be decompressed ({exc})", label)
        ]


def _has_member(path: Path, name: str) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return name in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, struct.error):
        return False
