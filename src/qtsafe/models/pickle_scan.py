"""Read a pickle as opcodes, never as code.

Unpickling runs whatever callables a pickle names (``os.system`` included), so qtsafe never calls
:func:`pickle.load` on an artifact. Instead this module walks the opcode stream with
:func:`pickletools.genops` (a parser, not an interpreter) and replays it on a stack of *inert*
placeholders: a ``GLOBAL`` becomes a :class:`GlobalRef`, a ``REDUCE`` becomes a :class:`Call` record
of what *would* have been called. Nothing is imported and nothing is called, so the tree that comes out
can be searched for tensor shapes and the imports a load would perform can be listed and judged (by
:mod:`qtsafe.models.pickle_policy`).

It also understands the one non-pickle wrinkle the fleet's files have: joblib writes numpy array
bytes straight into the stream after each ``NumpyArrayWrapper``. Whether those bytes are raw data (skipped)
or an embedded pickle (scanned too) is decided as joblib decides it: by ``hasobject`` of the dtype the
wrapper declares, resolved from literal values (:mod:`qtsafe.models.dtypes`); a dtype that cannot be
resolved makes the file unreadable, because skipping the wrong number of bytes would hide opcodes.
"""

from __future__ import annotations

import dataclasses
import io
import pickletools
from collections.abc import Iterator
from typing import IO, Any

__all__ = [
    "Call",
    "GlobalRef",
    "PickleScan",
    "PickleScanError",
    "Persistent",
    "iter_calls",
    "scan_pickle",
    "scan_pickle_bytes",
]


class PickleScanError(ValueError):
    """The byte stream is not a complete, well-formed pickle (truncated, garbage, or inconsistent)."""

    def __init__(self, message: str, *, truncated: bool = False, position: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.truncated = truncated
        self.position = position
        self.code = code  # a finding code more precise than "corrupt"/"truncated", when there is one


@dataclasses.dataclass(frozen=True)
class GlobalRef:
    """A module attribute the pickle would import (``GLOBAL``/``STACK_GLOBAL``/``INST``)."""

    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


class Call:
    """What unpickling *would* do: ``func(*args)``, then ``__setstate__(state)`` and item appends."""

    __slots__ = ("args", "builds", "dictitems", "func", "kind", "listitems", "state")

    def __init__(self, func: Any, args: Any, kind: str) -> None:
        self.func = func
        self.args = args
        self.kind = kind  # REDUCE, NEWOBJ, NEWOBJ_EX (args = (args, kwargs)), INST, OBJ
        self.state: Any = None
        self.builds = 0  # BUILD opcodes applied (each one a __setstate__ on load)
        self.listitems: list[Any] = []
        self.dictitems: list[tuple[Any, Any]] = []

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Call({self.func!r}, {self.args!r})"


@dataclasses.dataclass
class PDict:
    """A pickled dict kept as ordered pairs, because keys may be unhashable placeholders."""

    items: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Persistent:
    """A persistent id (torch uses these for tensor storages): data kept outside the pickle."""

    pid: Any


@dataclasses.dataclass(frozen=True)
class Dynamic:
    """A global whose name is computed at load time: always treated as dangerous."""

    detail: str


@dataclasses.dataclass(frozen=True)
class PickleScan:
    """What the opcode walk found in one pickle stream."""

    protocol: int | None
    globals: tuple[GlobalRef, ...]  # unique, in order of first appearance
    dynamic_globals: int  # STACK_GLOBAL/INST with computed names
    indirect_calls: int  # REDUCE/OBJ/NEWOBJ whose callable is not an import (e.g. an object made earlier)
    root: Any  # the inert value tree (Call/GlobalRef/PDict/Persistent/plain values)
    start: int
    end: int  # offset just after STOP
    opcodes: int
    raw_array_bytes: int  # joblib array payload skipped
    object_arrays: int  # joblib object arrays whose embedded pickle was scanned too
    extension_codes: tuple[int, ...]  # copyreg extension codes (EXT1/2/4): unknown imports


class _Machine:
    """The opcode replay. Every handler manipulates placeholders only."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.globals: dict[GlobalRef, None] = {}
        self.dynamic = 0
        self.indirect = 0
        self.protocol: int | None = None
        self.raw_bytes = 0
        self.object_arrays = 0
        self.ext_codes: list[int] = []

    # --- stack helpers -------------------------------------------------------------------------
    def pop(self) -> Any:
        if not self.stack:
            raise PickleScanError("malformed pickle: stack underflow")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        items = self.stack
        if not self.metastack:
            raise PickleScanError("malformed pickle: no MARK on the stack")
        self.stack = self.metastack.pop()
        return items

    def top(self) -> Any:
        if not self.stack:
            raise PickleScanError("malformed pickle: stack underflow")
        return self.stack[-1]

    def call(self, func: Any, args: Any, how: str) -> Call:
        # Only a named import can be judged by the allowlist; calling anything else (an object an earlier
        # call made, e.g. an instance of an allowed class) would run code nobody vetted. Counted, and refused.
        if not isinstance(func, GlobalRef):
            self.indirect += 1
        return Call(func, args, how)

    def add_global(self, module: Any, name: Any) -> Any:
        if isinstance(module, str) and isinstance(name, str):
            ref = GlobalRef(module, name)
            self.globals.setdefault(ref, None)
            return ref
        self.dynamic += 1
        return Dynamic(f"computed global {module!r}.{name!r}")

    # --- container mutation ------------------------------------------------------------------
    @staticmethod
    def set_items(target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if isinstance(target, PDict):
            target.items.extend(pairs)
        elif isinstance(target, Call):
            target.dictitems.extend(pairs)
        else:
            raise PickleScanError("malformed pickle: SETITEM on a non-dict")

    @staticmethod
    def append_items(target: Any, values: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(values)
        elif isinstance(target, Call):
            target.listitems.extend(values)
        elif isinstance(target, set):
            raise PickleScanError("malformed pickle: APPEND on a set")
        else:
            raise PickleScanError("malformed pickle: APPEND on a non-list")

    # --- joblib ----------------------------------------------------------------------------------
    def after_build(self, obj: Any) -> None:
        """joblib reads an array right after a NumpyArrayWrapper's BUILD: raw bytes, or a nested pickle."""
        if not _is_array_wrapper(obj):
            return
        from qtsafe.models.dtypes import DtypeUnresolved, resolve_dtype  # noqa: PLC0415 - imports this module

        state = _pdict_to_map(obj.state)
        shape = state.get("shape")
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise PickleScanError("joblib array wrapper without a readable shape")
        try:
            dtype = resolve_dtype(state.get("dtype"))
        except DtypeUnresolved as exc:
            # Skipping a guessed number of bytes could hide opcodes joblib would run: refuse instead.
            raise PickleScanError(f"joblib array with a dtype qtsafe cannot resolve without loading it ({exc})",
                                  code="unresolved_dtype") from exc
        if dtype.hasobject:
            # joblib unpickles object arrays (object fields, subarrays and nested records too) from a pickle
            # embedded right here: scan it as well, so its imports are listed and judged.
            inner = _run(self.stream, self.stream.tell())
            for ref in inner.globals:
                self.globals.setdefault(ref, None)
            self.dynamic += inner.dynamic_globals
            self.indirect += inner.indirect_calls
            self.object_arrays += 1
            return
        if dtype.itemsize <= 0:
            raise PickleScanError(f"joblib array with zero-size elements ({dtype})", code="unresolved_dtype")
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = self.stream.read(1)
            if len(pad) != 1:
                raise PickleScanError("pickle stream ends inside a joblib array", truncated=True)
            self.stream.seek(pad[0], io.SEEK_CUR)
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count * dtype.itemsize
        here = self.stream.tell()
        self.stream.seek(0, io.SEEK_END)
        end = self.stream.tell()
        if here + nbytes > end:
            raise PickleScanError("pickle stream ends inside a joblib array", truncated=True, position=end)
        self.stream.seek(here + nbytes)
        self.raw_bytes += nbytes


_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_INSTANCE_MAKERS = frozenset({"copyreg.__newobj__", "copyreg._reconstructor", "copy_reg._reconstructor"})


def _is_array_wrapper(obj: Any) -> bool:
    """joblib tests ``isinstance(obj, NumpyArrayWrapper)`` after every BUILD, however the instance was made:
    by the class itself, or by copyreg's ``__newobj__``/``_reconstructor`` given the class."""
    if not (isinstance(obj, Call) and isinstance(obj.func, GlobalRef)):
        return False
    if obj.func.dotted == _WRAPPER:
        return True
    args = obj.args if isinstance(obj.args, tuple) else ()
    return (obj.func.dotted in _INSTANCE_MAKERS and bool(args) and isinstance(args[0], GlobalRef)
            and args[0].dotted == _WRAPPER)


def _pdict_to_map(value: Any) -> dict[str, Any]:
    if isinstance(value, PDict):
        return {k: v for k, v in value.items if isinstance(k, str)}
    return {}


def _int_arg(arg: Any) -> int:
    if not isinstance(arg, int):
        raise PickleScanError(f"malformed pickle: expected an integer argument, got {arg!r}")
    return arg


_PUSH_ARG = frozenset(
    {
        "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
        "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE", "BINUNICODE",
        "SHORT_BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT",
    }
)


def _run(stream: IO[bytes], start: int) -> PickleScan:  # noqa: C901 - one dispatch table, kept flat
    stream.seek(start)
    m = _Machine(stream)
    count = 0
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            count += 1
            name = opcode.name
            if name in _PUSH_ARG:
                m.stack.append(arg)
            elif name == "PROTO":
                m.protocol = _int_arg(arg)
            elif name in ("FRAME", "NEXT_BUFFER", "READONLY_BUFFER"):
                if name == "NEXT_BUFFER":
                    m.stack.append(Persistent("out-of-band buffer"))
            elif name == "STOP":
                break
            elif name == "NONE":
                m.stack.append(None)
            elif name == "NEWTRUE":
                m.stack.append(True)
            elif name == "NEWFALSE":
                m.stack.append(False)
            elif name == "MARK":
                m.metastack.append(m.stack)
                m.stack = []
            elif name == "POP":
                # Like pickle's own load_pop: with nothing above the MARK, POP discards the MARK.
                if m.stack:
                    m.stack.pop()
                else:
                    m.pop_mark()
            elif name == "POP_MARK":
                m.pop_mark()
            elif name == "DUP":
                m.stack.append(m.top())
            elif name == "EMPTY_LIST":
                m.stack.append([])
            elif name == "EMPTY_TUPLE":
                m.stack.append(())
            elif name == "EMPTY_DICT":
                m.stack.append(PDict())
            elif name == "EMPTY_SET":
                m.stack.append(set())
            elif name == "LIST":
                marked = m.pop_mark()  # pop first: pop_mark rebinds m.stack
                m.stack.append(list(marked))
            elif name == "TUPLE":
                marked = m.pop_mark()
                m.stack.append(tuple(marked))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = [m.pop() for _ in range(n)][::-1]
                m.stack.append(tuple(items))
            elif name == "DICT":
                items = m.pop_mark()
                m.stack.append(PDict(list(zip(items[::2], items[1::2], strict=False))))
            elif name == "FROZENSET":
                marked = m.pop_mark()
                m.stack.append(("frozenset", tuple(marked)))
            elif name == "ADDITEMS":
                m.pop_mark()  # set members carry no structure we need; the target stays a set
                m.top()
            elif name == "APPEND":
                value = m.pop()
                m.append_items(m.top(), [value])
            elif name == "APPENDS":
                values = m.pop_mark()
                m.append_items(m.top(), values)
            elif name == "SETITEM":
                value = m.pop()
                key = m.pop()
                m.set_items(m.top(), [(key, value)])
            elif name == "SETITEMS":
                items = m.pop_mark()
                m.set_items(m.top(), list(zip(items[::2], items[1::2], strict=False)))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                m.memo[_int_arg(arg)] = m.top()
            elif name == "MEMOIZE":
                m.memo[len(m.memo)] = m.top()
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                key = _int_arg(arg)
                if key not in m.memo:
                    raise PickleScanError(f"malformed pickle: memo key {key} read before it was written")
                m.stack.append(m.memo[key])
            elif name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                m.stack.append(m.add_global(module, attr))
            elif name == "STACK_GLOBAL":
                attr = m.pop()
                module = m.pop()
                m.stack.append(m.add_global(module, attr))
            elif name == "INST":
                module, _, attr = str(arg).partition(" ")
                func = m.add_global(module, attr)
                marked = m.pop_mark()
                m.stack.append(Call(func, tuple(marked), "INST"))
            elif name == "OBJ":
                items = m.pop_mark()
                if not items:
                    raise PickleScanError("malformed pickle: OBJ without a class")
                m.stack.append(m.call(items[0], tuple(items[1:]), "OBJ"))
            elif name == "REDUCE":
                args = m.pop()
                func = m.pop()
                m.stack.append(m.call(func, args, "REDUCE"))
            elif name == "NEWOBJ":
                args = m.pop()
                cls = m.pop()
                m.stack.append(m.call(cls, args, "NEWOBJ"))
            elif name == "NEWOBJ_EX":
                kwargs = m.pop()
                args = m.pop()
                cls = m.pop()
                m.stack.append(m.call(cls, (args, kwargs), "NEWOBJ_EX"))
            elif name == "BUILD":
                state = m.pop()
                obj = m.top()
                if isinstance(obj, Call):
                    obj.state = state
                    obj.builds += 1
                m.after_build(obj)
            elif name in ("PERSID", "BINPERSID"):
                pid = arg if name == "PERSID" else m.pop()
                m.stack.append(Persistent(pid))
            elif name in ("EXT1", "EXT2", "EXT4"):
                m.ext_codes.append(_int_arg(arg))
                m.stack.append(Dynamic(f"extension code {arg}"))
                m.dynamic += 1
            else:
                raise PickleScanError(f"unsupported pickle opcode {name}")
        else:
            raise PickleScanError("pickle stream ends before STOP", truncated=True)
    except PickleScanError:
        raise
    except ValueError as exc:
        # pickletools raises ValueError both for "ran out of bytes" and for garbage opcodes.
        text = str(exc)
        truncated = "exhausted" in text or "not enough data" in text or "but only" in text
        raise PickleScanError(f"{'truncated' if truncated else 'corrupt'} pickle: {text}",
                              truncated=truncated) from exc
    except (IndexError, KeyError, TypeError, OverflowError, UnicodeDecodeError) as exc:
        raise PickleScanError(f"corrupt pickle: {type(exc).__name__}: {exc}") from exc
    root = m.stack[-1] if m.stack else None
    return PickleScan(
        protocol=m.protocol,
        globals=tuple(m.globals),
        dynamic_globals=m.dynamic,
        indirect_calls=m.indirect,
        root=root,
        start=start,
        end=stream.tell(),
        opcodes=count,
        raw_array_bytes=m.raw_bytes,
        object_arrays=m.object_arrays,
        extension_codes=tuple(m.ext_codes),
    )


def scan_pickle(stream: IO[bytes], start: int = 0) -> PickleScan:
    """Walk one pickle starting at ``start`` in a seekable binary stream, up to and including STOP."""
    return _run(stream, start)


def scan_pickle_bytes(data: bytes) -> PickleScan:
    """:func:`scan_pickle` over bytes in memory."""
    return _run(io.BytesIO(data), 0)


def iter_calls(root: Any, *, limit: int = 2_000_000) -> Iterator[tuple[tuple[str, ...], Call]]:
    """Every Call in the tree with the path of dict keys/attributes that leads to it (depth-first)."""
    seen: set[int] = set()
    stack: list[tuple[tuple[str, ...], Any]] = [((), root)]
    visited = 0
    while stack:
        path, node = stack.pop()
        visited += 1
        if visited > limit:  # pragma: no cover - a guard against adversarial memo cycles
            return
        if isinstance(node, (Call, PDict, list, tuple)):
            if id(node) in seen:
                continue
            seen.add(id(node))
        if isinstance(node, Call):
            yield path, node
            children: list[tuple[tuple[str, ...], Any]] = []
            children.append((path, node.args))
            children.append((path, node.state))
            children.extend((path + (str(k),), v) for k, v in node.dictitems if isinstance(k, str))
            children.extend((path, v) for v in node.listitems)
            stack.extend(reversed(children))
        elif isinstance(node, PDict):
            stack.extend(reversed([(path + (k,), v) if isinstance(k, str) else (path, v) for k, v in node.items]))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed([(path, v) for v in node]))
