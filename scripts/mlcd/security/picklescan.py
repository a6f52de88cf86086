"""Reading a pickle stream opcode by opcode, without executing anything.

`pickle.load` imports and calls whatever the stream names. This module never does: it walks
the opcodes with `pickletools.genops` and keeps a symbolic stack (strings, numbers and
containers as values; imported callables and their results as placeholders), which is
enough to resolve `STACK_GLOBAL` (whose module and name may come from the memo) and to
follow joblib's format, where raw NumPy array bytes are written into the stream right
after the `BUILD` of a `NumpyArrayWrapper`.

The result is the list of globals the stream imports, each with its byte offset, or the
reason the stream could not be read (truncated, not a pickle, …).
"""

from __future__ import annotations

import math
import pickletools  # nosec B403
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

_CHUNK = 1 << 20
_SIMPLE_DTYPE = re.compile(r"^[<>|=]?[a-zA-Z]\d*$")
_WRAPPER = ("joblib.numpy_pickle", "NumpyArrayWrapper")


class Readable(Protocol):
    """What the walk needs from a stream: forward reads only (files, zip members, gzip)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readline(self, size: int = -1, /) -> bytes: ...


class PickleReadError(Exception):
    """The stream is not a complete, well-formed pickle."""


@dataclass(frozen=True)
class Imported:
    """A global the stream imports (`module.name`), or a dynamic one it cannot name."""

    module: str
    name: str
    offset: int
    dynamic: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class _Global:
    module: str
    name: str


@dataclass(eq=False)
class _Call:
    func: Any
    args: Any
    state: Any = None


@dataclass(eq=False)
class _Opaque:
    what: str


@dataclass(eq=False)
class _Dict:
    pairs: list[tuple[Any, Any]] = field(default_factory=list)

    def get(self, key: str) -> Any:
        for k, v in reversed(self.pairs):
            if isinstance(k, str) and k == key:
                return v
        return None

    def has(self, key: str) -> bool:
        return any(isinstance(k, str) and k == key for k, _ in self.pairs)


class _Mark:
    pass


_MARK = _Mark()

_CONSTANTS = {
    "INT",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG",
    "LONG1",
    "LONG4",
    "FLOAT",
    "BINFLOAT",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "BINBYTES",
    "SHORT_BINBYTES",
    "BINBYTES8",
    "BYTEARRAY8",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}


_SINGLETONS: dict[str, Any] = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_STACK_OPS = frozenset(
    {"PROTO", "FRAME", "READONLY_BUFFER", "MARK", "POP", "POP_MARK", "DUP"}
    | {"EMPTY_LIST", "EMPTY_TUPLE", "EMPTY_DICT", "EMPTY_SET"}
)
_CONTAINER_OPS = frozenset(
    {"APPEND", "APPENDS", "LIST", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "DICT"}
    | {"SETITEM", "SETITEMS", "ADDITEMS", "FROZENSET"}
)
_CALL_OPS = frozenset(
    {"GLOBAL", "INST", "STACK_GLOBAL", "OBJ", "NEWOBJ", "NEWOBJ_EX", "REDUCE", "BUILD"}
)
_MEMO_OPS = frozenset(
    {"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET"}
    | {"EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID", "NEXT_BUFFER"}
)


@dataclass
class PickleScan:
    """What a walk found."""

    imports: list[Imported] = field(default_factory=list)
    opcodes: int = 0
    arrays_skipped: int = 0


class _Machine:
    def __init__(self, stream: Readable, scan: PickleScan, base: int) -> None:
        self.stream = stream
        self.scan = scan
        self.base = base
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}

    # -- stack helpers ---------------------------------------------------------------
    def pop(self) -> Any:
        if not self.stack:
            raise PickleReadError("stack underflow")
        return self.stack.pop()

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def top(self) -> Any:
        if not self.stack:
            raise PickleReadError("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise PickleReadError("MARK expected")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def record(self, module: str, name: str, pos: int, *, dynamic: bool = False) -> _Global:
        self.scan.imports.append(Imported(module, name, self.base + pos, dynamic))
        return _Global(module, name)

    # -- the walk ------------------------------------------------------------------------
    def run(self) -> None:
        try:
            for opcode, arg, pos in pickletools.genops(self.stream):  # type: ignore[arg-type]
                self.scan.opcodes += 1
                pos_i = int(pos) if pos is not None else 0
                if opcode.name == "STOP":
                    return
                self.step(opcode.name, arg, pos_i)
        except PickleReadError:
            raise
        except (ValueError, KeyError, TypeError, IndexError, EOFError, OSError) as exc:
            raise PickleReadError(str(exc) or type(exc).__name__) from exc
        raise PickleReadError("the stream ended before its STOP opcode (truncated)")

    def step(self, name: str, arg: Any, pos: int) -> None:
        if name in _CONSTANTS:
            self.push(arg)
        elif name in _SINGLETONS:
            self.push(_SINGLETONS[name])
        elif name in _STACK_OPS:
            self.stack_op(name)
        elif name in _CONTAINER_OPS:
            self.container_op(name)
        elif name in _CALL_OPS:
            self.call_op(name, arg, pos)
        elif name in _MEMO_OPS:
            self.memo_op(name, arg, pos)
        else:
            raise PickleReadError(f"unsupported opcode {name}")

    def stack_op(self, name: str) -> None:
        """Marks, pops, duplicates and empty containers."""
        push = self.push
        if name == "MARK":
            self.metastack.append(self.stack)
            self.stack = []
        elif name == "POP":
            if self.stack:
                self.stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            push(self.top())
        elif name == "EMPTY_LIST":
            push([])
        elif name == "EMPTY_TUPLE":
            push(())
        elif name == "EMPTY_DICT":
            push(_Dict())
        elif name == "EMPTY_SET":
            push(_Opaque("set"))
        # PROTO, FRAME, READONLY_BUFFER change nothing the walk follows

    def container_op(self, name: str) -> None:
        """Lists, tuples, dicts and sets filled from the stack."""
        push = self.push
        if name == "APPEND":
            value = self.pop()
            target = self.top()
            if isinstance(target, list):
                target.append(value)
        elif name == "APPENDS":
            items = self.pop_mark()
            target = self.top()
            if isinstance(target, list):
                target.extend(items)
        elif name == "LIST":
            push(list(self.pop_mark()))
        elif name == "TUPLE":
            push(tuple(self.pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            if len(self.stack) < count:
                raise PickleReadError("stack underflow")
            items = self.stack[-count:]
            del self.stack[-count:]
            push(tuple(items))
        elif name == "DICT":
            items = self.pop_mark()
            push(_Dict(list(zip(items[::2], items[1::2], strict=False))))
        elif name == "SETITEM":
            value = self.pop()
            key = self.pop()
            target = self.top()
            if isinstance(target, _Dict):
                target.pairs.append((key, value))
        elif name == "SETITEMS":
            items = self.pop_mark()
            target = self.top()
            if isinstance(target, _Dict):
                target.pairs.extend(zip(items[::2], items[1::2], strict=False))
        elif name == "ADDITEMS":
            self.pop_mark()
        elif name == "FROZENSET":
            self.pop_mark()
            push(_Opaque("frozenset"))

    def call_op(self, name: str, arg: Any, pos: int) -> None:
        """Imports (recorded) and the calls and builds that use them."""
        push = self.push
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            glob = self.record(module, attr, pos)
            if name == "GLOBAL":
                push(glob)
            else:
                push(_Call(glob, tuple(self.pop_mark())))
        elif name == "STACK_GLOBAL":
            attr = self.pop()
            module = self.pop()
            if isinstance(module, str) and isinstance(attr, str):
                push(self.record(module, attr, pos))
            else:
                push(self.record(_text(module), _text(attr), pos, dynamic=True))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise PickleReadError("OBJ without a class")
            push(_Call(items[0], tuple(items[1:])))
        elif name in ("NEWOBJ", "NEWOBJ_EX", "REDUCE"):
            if name == "NEWOBJ_EX":
                self.pop()  # its kwargs
            args = self.pop()
            func = self.pop()
            push(_Call(func, args))
        elif name == "BUILD":
            state = self.pop()
            target = self.top()
            if isinstance(target, _Call):
                target.state = state
                self.after_build(target)

    def memo_op(self, name: str, arg: Any, pos: int) -> None:
        """The memo, extension codes, persistent ids and out-of-band buffers."""
        push = self.push
        if name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[int(arg)] = self.top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            key = int(arg)
            if key not in self.memo:
                raise PickleReadError(f"memo key {key} read before it was written")
            push(self.memo[key])
        elif name in ("EXT1", "EXT2", "EXT4"):
            push(self.record("copyreg", f"extension_registry[{arg}]", pos, dynamic=True))
        elif name == "PERSID":
            push(_Opaque("persistent"))
        elif name == "BINPERSID":
            self.pop()
            push(_Opaque("persistent"))
        elif name == "NEXT_BUFFER":
            push(_Opaque("buffer"))

    # -- joblib: skip the array bytes that follow a NumpyArrayWrapper ---------------------
    def after_build(self, obj: _Call) -> None:
        func = obj.func
        if not (isinstance(func, _Global) and (func.module, func.name) == _WRAPPER):
            return
        state = obj.state
        if not isinstance(state, _Dict):
            raise PickleReadError("joblib array wrapper without its state")
        shape = state.get("shape")
        if not isinstance(shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise PickleReadError("joblib array wrapper with an unreadable shape")
        itemsize, has_object = _dtype_info(state.get("dtype"))
        if has_object:
            # an object array is a nested, complete pickle stream: walk it too
            _Machine(self.stream, self.scan, 0).run()
        else:
            alignment = state.get("numpy_array_alignment_bytes")
            if state.has("numpy_array_alignment_bytes") and alignment is not None:
                pad = self.stream.read(1)
                if len(pad) != 1:
                    raise PickleReadError("truncated inside joblib array padding")
                self._skip(pad[0])
            self._skip(math.prod(shape) * itemsize)
        self.scan.arrays_skipped += 1

    def _skip(self, size: int) -> None:
        left = size
        while left > 0:
            got = self.stream.read(min(left, _CHUNK))
            if not got:
                raise PickleReadError(f"truncated inside joblib array data ({left} bytes short)")
            left -= len(got)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, _Global):
        return f"<result of {value.module}.{value.name}>"
    if isinstance(value, _Call):
        return "<computed>"
    return f"<{type(value).__name__}>"


def _dtype_info(dtype: Any) -> tuple[int, bool]:
    """Item size and object-ness of a pickled `numpy.dtype(...)`, without calling anything
    the file names: only a plain type string such as `<f8` or `U10` is turned into a dtype."""
    if not (
        isinstance(dtype, _Call)
        and isinstance(dtype.func, _Global)
        and dtype.func.module == "numpy"
        and dtype.func.name == "dtype"
        and isinstance(dtype.args, tuple)
        and dtype.args
        and isinstance(dtype.args[0], str)
        and _SIMPLE_DTYPE.match(dtype.args[0])
    ):
        raise PickleReadError("joblib array wrapper with an unreadable dtype")
    code = dtype.args[0]
    state = dtype.state
    elsize = state[5] if isinstance(state, tuple) and len(state) > 5 else -1
    import numpy as np  # only joblib files need it; keeps `mlcd` quick to start

    try:
        parsed = np.dtype(code)
    except TypeError as exc:
        raise PickleReadError(f"joblib array wrapper with unknown dtype {code!r}") from exc
    itemsize = elsize if isinstance(elsize, int) and elsize > 0 else parsed.itemsize
    return int(itemsize), bool(parsed.hasobject)


def walk(stream: Readable, *, max_streams: int = 64) -> PickleScan:
    """Walk every pickle in `stream` (one after the other, as repeated `load` calls would
    read them). Raises PickleReadError when the first one is not a readable pickle."""
    scan = PickleScan()
    _Machine(stream, scan, 0).run()
    for _ in range(max_streams - 1):
        head = stream.read(1)
        if not head:
            break
        if head != b"\x80":
            break  # trailing bytes that no load() would read as a pickle
        rest = _Prepend(head, stream)
        try:
            _Machine(rest, scan, 0).run()
        except PickleReadError:
            break
    return scan


def read_line(read: Callable[[int], bytes], size: int = -1) -> bytes:
    """A line (at most `size` bytes) of a stream that only reads forward, a byte at a time."""
    out = bytearray()
    while size < 0 or len(out) < size:
        char = read(1)
        if not char:
            break
        out += char
        if char == b"\n":
            break
    return bytes(out)


class _Prepend:
    """A read-only stream with some bytes put back in front."""

    def __init__(self, head: bytes, stream: Readable) -> None:
        self.head = head
        self.stream = stream
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        if self.head:
            if size < 0:
                data = self.head + self.stream.read()
                self.head = b""
            else:
                data = self.head[:size]
                self.head = self.head[size:]
                if len(data) < size:
                    data += self.stream.read(size - len(data))
        else:
            data = self.stream.read(size)
        self.pos += len(data)
        return data

    def readline(self, size: int = -1, /) -> bytes:
        return read_line(self.read, size)

    def tell(self) -> int:
        return self.pos
