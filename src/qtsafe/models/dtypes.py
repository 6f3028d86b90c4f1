"""Resolve a pickled ``numpy.dtype`` into a real dtype from the pickle's literal values, without loading it.

joblib decides whether an array's bytes are raw data or an embedded pickle by ``dtype.hasobject`` on the
dtype it unpickled, so the scanner must decide on the same resolved dtype: never on the spelling of a type
code ('O8', 'O', 'object', the ``object`` type, ``'f8,O'``, a structured or subarray dtype with an object
field all mean "object"). Unpickling a dtype is ``numpy.dtype(code, align, copy)`` followed by
``__setstate__(state)``; that setstate trusts its input (a type-correct but inconsistent state crashes the
interpreter, and its flags alone decide ``hasobject``), so it is never called here. Instead the dtype is
rebuilt with numpy's public constructors from the literal code and state, and accepted only if numpy
would pickle that rebuilt dtype to exactly the same code and state. Anything else, including any value
that is not a literal (an import other than a builtin type, a call, a persistent id), is unresolvable:
the caller refuses the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qtsafe.models.pickle_scan import Call, GlobalRef, PDict

__all__ = ["DtypeUnresolved", "resolve_dtype"]

# Builtin types numpy accepts as a dtype spelling (np.dtype(object) is the object dtype).
_BUILTIN_TYPES: dict[str, type] = {
    "builtins.object": object, "__builtin__.object": object, "builtins.float": float, "builtins.int": int,
    "builtins.bool": bool, "builtins.complex": complex, "builtins.str": str, "builtins.bytes": bytes,
}
_DTYPE_CALLS = frozenset({"numpy.dtype"})
_LATIN1_BYTES = frozenset({"_codecs.encode", "codecs.encode"})
_MAX_DEPTH = 12
_ALIGNED_STRUCT = 0x80  # NPY_ALIGNED_STRUCT in the pickled flags


class DtypeUnresolved(ValueError):
    """The pickled dtype cannot be rebuilt from literal values exactly as numpy would unpickle it."""


def resolve_dtype(node: Any) -> np.dtype[Any]:
    """The dtype a ``numpy.dtype(...)`` placeholder (with its BUILD state) unpickles to, or DtypeUnresolved."""
    return _Resolver().dtype(node, 0)


class _Resolver:
    def __init__(self) -> None:
        self.done: dict[int, np.dtype[Any]] = {}  # shared nested dtypes are resolved once (memo DAGs)

    def dtype(self, node: Any, depth: int) -> np.dtype[Any]:
        if depth > _MAX_DEPTH:
            raise DtypeUnresolved("dtype nested too deeply")
        if isinstance(node, Call) and id(node) in self.done:
            return self.done[id(node)]
        if not (isinstance(node, Call) and isinstance(node.func, GlobalRef) and node.func.dotted in _DTYPE_CALLS
                and node.kind in ("REDUCE", "NEWOBJ")):
            raise DtypeUnresolved(f"the dtype is {_describe(node)}, not a numpy.dtype(...) call")
        if node.builds > 1 or node.listitems or node.dictitems:
            raise DtypeUnresolved("the dtype is modified after it is built")
        args = node.args
        if not (isinstance(args, tuple) and 1 <= len(args) <= 3):
            raise DtypeUnresolved("numpy.dtype(...) with unexpected arguments")
        if not all(isinstance(a, bool) for a in args[1:]):
            raise DtypeUnresolved("numpy.dtype(...) with non-boolean align/copy arguments")
        spelling = self.literal(args[0], depth + 1)
        align = bool(args[1]) if len(args) > 1 else False
        first = _construct(lambda: np.dtype(spelling, align=align), "its type code")
        resolved = first if node.state is None else self.with_state(first, self.literal(node.state, depth + 1))
        self.done[id(node)] = resolved
        return resolved

    def literal(self, value: Any, depth: int) -> Any:
        """A plain Python value for numpy: strings, numbers, containers, nested dtypes, builtin types."""
        if depth > _MAX_DEPTH:
            raise DtypeUnresolved("dtype nested too deeply")
        if value is None or isinstance(value, (str, bytes, bool, int, float)):
            return value
        if isinstance(value, tuple):
            return tuple(self.literal(v, depth + 1) for v in value)
        if isinstance(value, list):
            return [self.literal(v, depth + 1) for v in value]
        if isinstance(value, PDict):
            out: dict[Any, Any] = {}
            for key, item in value.items:
                if not isinstance(key, (str, int)):
                    raise DtypeUnresolved(f"a dtype dictionary key is {_describe(key)}")
                out[key] = self.literal(item, depth + 1)
            return out
        if isinstance(value, GlobalRef) and value.dotted in _BUILTIN_TYPES:
            return _BUILTIN_TYPES[value.dotted]
        if isinstance(value, Call) and isinstance(value.func, GlobalRef) and value.func.dotted in _LATIN1_BYTES:
            # Protocol 2 has no bytes opcode: bytes (a datetime unit) are pickled as _codecs.encode(text, 'latin1').
            args = value.args if isinstance(value.args, tuple) else ()
            if len(args) == 2 and isinstance(args[0], str) and args[1] == "latin1":
                return args[0].encode("latin1")
            raise DtypeUnresolved("an encoded byte string with unexpected arguments")
        if isinstance(value, Call):
            return self.dtype(value, depth + 1)
        raise DtypeUnresolved(f"the dtype holds {_describe(value)}")

    def with_state(self, first: np.dtype[Any], state: Any) -> np.dtype[Any]:
        if not (isinstance(state, tuple) and (len(state) == 8 and state[0] == 3 or len(state) == 9 and state[0] == 4)):
            raise DtypeUnresolved("the dtype's state is not numpy's version-3/4 layout")
        _version, order, sub, names, fields, elsize, _alignment, flags = state[:8]
        metadata = state[8] if len(state) == 9 else None
        if not (isinstance(flags, int) and isinstance(elsize, int) and order in ("<", ">", "|", "=")):
            raise DtypeUnresolved("the dtype's state has malformed byte order, size or flags")
        candidate = _construct(lambda: _rebuild(first, order, sub, names, fields, elsize, flags, metadata),
                               "its state")
        numpy_writes = candidate.__reduce__()
        written_code = numpy_writes[1][0]
        if not _equal(numpy_writes[2], state):
            raise DtypeUnresolved(f"its state does not match what numpy writes for {candidate}")
        same_code = _construct(lambda: np.dtype(written_code) == first, "its type code") or candidate == first
        if not same_code:
            raise DtypeUnresolved(f"its type code ({first}) does not match its state ({candidate})")
        return candidate


def _rebuild(first: np.dtype[Any], order: str, sub: Any, names: Any, fields: Any, elsize: int, flags: int,
             metadata: Any) -> np.dtype[Any]:
    """The dtype the state describes, built with public constructors only."""
    if sub is not None:
        if names is not None or fields is not None or not (isinstance(sub, tuple) and len(sub) == 2):
            raise DtypeUnresolved("malformed subarray state")
        base, shape = sub
        if not isinstance(base, np.dtype):
            raise DtypeUnresolved("a subarray whose base is not a dtype")
        built: np.dtype[Any] = np.dtype((base, shape))
    elif names is not None:
        if not (isinstance(names, tuple) and isinstance(fields, dict) and all(isinstance(n, str) for n in names)):
            raise DtypeUnresolved("malformed structured state")
        formats, offsets, titles = [], [], []
        for name in names:
            entry = fields.get(name)
            if not (isinstance(entry, tuple) and len(entry) in (2, 3) and isinstance(entry[0], np.dtype)
                    and isinstance(entry[1], int)):
                raise DtypeUnresolved(f"malformed field {name!r}")
            formats.append(entry[0])
            offsets.append(entry[1])
            titles.append(entry[2] if len(entry) == 3 else None)
        spec: Any = {"names": list(names), "formats": formats, "offsets": offsets, "titles": titles,
                     "itemsize": elsize}
        built = np.dtype(spec, align=bool(flags & _ALIGNED_STRUCT))
    else:
        if fields is not None:
            raise DtypeUnresolved("fields without names")
        built = first
        if isinstance(metadata, tuple) and built.kind in "mM":
            built = _datetime(built, metadata)
            metadata = metadata[0]
        if order == "<" and built.byteorder not in ("|", "<"):
            built = built.newbyteorder("<")
        elif order == ">" and built.byteorder not in ("|", ">"):
            built = built.newbyteorder(">")
    if isinstance(metadata, dict):
        built = np.dtype(built, metadata=metadata)
    elif metadata is not None:
        raise DtypeUnresolved("malformed dtype metadata")
    return built


def _datetime(first: np.dtype[Any], metadata: tuple[Any, ...]) -> np.dtype[Any]:
    unit = metadata[1] if len(metadata) == 2 else None
    if not (isinstance(unit, tuple) and len(unit) == 4 and isinstance(unit[0], bytes) and isinstance(unit[1], int)):
        raise DtypeUnresolved("malformed datetime unit")
    name = unit[0].decode("ascii", "strict")
    if not name.isalpha() or unit[1] < 1 or unit[2:] != (1, 1):
        raise DtypeUnresolved("malformed datetime unit")
    return np.dtype(f"{first.char}8[{unit[1] if unit[1] != 1 else ''}{name}]")


def _construct(build: Any, what: str) -> Any:
    try:
        return build()
    except DtypeUnresolved:
        raise
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, UnicodeError, AttributeError,
            RecursionError, MemoryError) as exc:
        raise DtypeUnresolved(f"numpy rejects {what}: {' '.join(str(exc).split())[:160]}") from exc


def _equal(written: Any, read: Any) -> bool:
    """numpy's own state and the file's state, compared by type as well as value (True is not 1 here)."""
    if isinstance(written, np.dtype) or isinstance(read, np.dtype):
        return isinstance(written, np.dtype) and isinstance(read, np.dtype) and _same_dtype(written, read)
    if type(written) is not type(read):
        return False
    if isinstance(written, tuple):
        return len(written) == len(read) and all(_equal(w, r) for w, r in zip(written, read, strict=True))
    if isinstance(written, dict):
        return written.keys() == read.keys() and all(_equal(written[k], read[k]) for k in written)
    return bool(written == read)


def _same_dtype(a: np.dtype[Any], b: np.dtype[Any]) -> bool:
    return bool(a == b) and a.hasobject == b.hasobject and a.itemsize == b.itemsize and a.flags == b.flags


def _describe(value: Any) -> str:
    if isinstance(value, Call):
        func = value.func.dotted if isinstance(value.func, GlobalRef) else "an object built earlier"
        return f"a call of {func}"
    if isinstance(value, GlobalRef):
        return f"the import {value.dotted}"
    return f"a {type(value).__name__}"
