"""Hostile model files, built by the tests themselves: joblib object arrays under every dtype spelling, a
joblib wrapper made through copyreg, and zip bombs for torch archives.

Every malicious file carries a payload that would create a marker file when loaded (``os.system("touch
...")``), so a test can prove nothing ran by asserting the marker does not exist.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import pickletools
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


class TouchPayload:
    """Unpickling this runs ``touch <target>``: the marker's existence is the proof that it ran."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.target}",))


@dataclasses.dataclass(frozen=True)
class Spelling:
    """How the array wrapper's dtype is written: the array joblib dumps, and the dtype reduce it records."""

    make_array: Callable[[Any], np.ndarray]  # payload -> an array holding it
    wrapper_dtype: tuple[Any, ...] | None  # (numpy.dtype, args, state) written instead of numpy's own reduce


def _objects(payload: Any) -> np.ndarray:
    return np.array([payload, 1], dtype=object)


def _record(dtype: Any, field: tuple[str, ...]) -> Callable[[Any], np.ndarray]:
    def make(payload: Any) -> np.ndarray:
        arr = np.zeros(1, dtype=dtype)
        target = arr
        for name in field[:-1]:
            target = target[name]
        target[field[-1]][0] = payload
        return arr

    return make


def _spelled(args0: Any, like: Any) -> tuple[Any, ...]:
    """numpy.dtype(args0, False, True) with the state numpy itself writes for the dtype ``like``."""
    return (np.dtype, (args0, False, True), np.dtype(like).__reduce__()[2])


def _subarray(base: Any, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """numpy's reduce of a subarray dtype, its base a fresh dtype instance (the array's own dtype('O') is the
    same singleton, and the pickle memo would otherwise make the subarray its own base)."""
    func, args, state = np.dtype((base, shape)).__reduce__()
    return (func, args, (state[0], state[1], (np.dtype(base, copy=True), shape), *state[3:]))


_OBJ_STATE = np.dtype(object).__reduce__()[2]
_OBJ_STATE_ELSIZE_8 = (*_OBJ_STATE[:5], 8, *_OBJ_STATE[6:])
_STRUCT = [("a", "f8"), ("b", "O")]

# Every spelling numpy accepts for a dtype that holds Python objects. joblib.load unpickles the array's
# bytes as a nested pickle for each of them (dtype.hasobject), so each must be scanned, or refused.
SPELLINGS: dict[str, Spelling] = {
    "O8 (numpy's own)": Spelling(_objects, None),
    "O": Spelling(_objects, (np.dtype, ("O", False, True), _OBJ_STATE)),
    "|O": Spelling(_objects, (np.dtype, ("|O", False, True), _OBJ_STATE)),
    "object (name)": Spelling(_objects, (np.dtype, ("object", False, True), _OBJ_STATE)),
    # The file: 'object' with an element size in its state, so the old scanner skipped the pickle.
    "object (name), elsize 8": Spelling(_objects, (np.dtype, ("object", False, True), _OBJ_STATE_ELSIZE_8)),
    "object (the type)": Spelling(_objects, (np.dtype, (object, False, True), _OBJ_STATE)),
    "object (the type), elsize 8": Spelling(_objects, (np.dtype, (object, False, True), _OBJ_STATE_ELSIZE_8)),
    "structured with an object field": Spelling(_record(_STRUCT, ("b",)), None),
    "structured, aligned": Spelling(_record(np.dtype([("a", "u1"), ("b", "O")], align=True), ("b",)), None),
    "structured, spelled 'f8,O'": Spelling(_record("f8,O", ("f1",)), _spelled("f8,O", "f8,O")),
    "structured, spelled as a list": Spelling(_record(_STRUCT, ("b",)), _spelled(_STRUCT, _STRUCT)),
    "structured, spelled as a dict": Spelling(
        _record(_STRUCT, ("b",)), _spelled({"names": ["a", "b"], "formats": ["f8", "O"]}, _STRUCT)),
    "nested structured": Spelling(_record([("a", [("x", "i4"), ("y", "O")])], ("a", "y")), None),
    "subarray ('O', (2,))": Spelling(_objects, _subarray("O", (2,))),
    "subarray of a record": Spelling(_record(_STRUCT, ("b",)), np.dtype((_STRUCT, (2,))).__reduce__()),
    # Not a spelling numpy writes: 'f8' whose pickled flags say "holds objects". numpy's setstate trusts the
    # flags, so joblib unpickles the bytes; the scanner cannot resolve it and refuses it.
    "float64 with object flags": Spelling(_objects, (np.dtype, ("f8", False, True), (3, "<", None, None, None,
                                                                                   -1, -1, 63))),
}


class _WrapperPickler(pickle.Pickler):
    """Pickles the wrapper state dict, writing the first dtype it meets (the wrapper's) in a chosen spelling."""

    def __init__(self, fp: Any, wrapper_dtype: tuple[Any, ...] | None) -> None:
        super().__init__(fp, protocol=2)
        self.wrapper_dtype = wrapper_dtype

    def reducer_override(self, obj: Any) -> Any:
        # Only the wrapper's own dtype: the dtypes nested in its state stay numpy's.
        if isinstance(obj, np.dtype) and self.wrapper_dtype is not None:
            spelled, self.wrapper_dtype = self.wrapper_dtype, None
            return spelled
        return NotImplemented


_OLD_ITEMSIZE = re.compile(r"^[<>|=]?([biufcmMOSUV])(\d{1,3})$")


def _old_scanner_itemsize(reduced: tuple[Any, ...]) -> int | None:
    """The element size the scanner used to guess from the spelling (None: it scanned the bytes as a pickle)."""
    code, state = reduced[1][0], reduced[2]
    if isinstance(code, str) and code.lstrip("<>|=").startswith("O"):
        return None
    if state[5] > 0:
        return int(state[5])
    match = _OLD_ITEMSIZE.match(code if isinstance(code, str) else "")
    return int(match.group(2)) if match else None


def _noop_opcodes(n: int) -> bytes:
    """n bytes of opcodes that leave the unpickler's stack as it was (n != 1): NONE+POP, BININT1+POP."""
    threes, rest = (1, n - 3) if n % 2 else (0, n)
    return b"K\x000" * threes + b"N0" * (rest // 2)


def write_object_array(path: Path, spelling: str, marker: Path) -> Path:
    """A joblib file (as joblib.dump writes it) whose one array holds a payload, its dtype in the given spelling.

    The array's declared shape is chosen so that a scanner guessing the element size from the spelling skips
    exactly the embedded pickle as "array bytes", as the file in the issue did; joblib ignores the shape of an
    object array (it unpickles whatever the embedded pickle holds)."""
    spec = SPELLINGS[spelling]
    array = spec.make_array(TouchPayload(marker))
    reduced = spec.wrapper_dtype or array.dtype.__reduce__()
    inner = pickle.dumps(array, protocol=2)
    guess = _old_scanner_itemsize(reduced)
    pad = 0
    shape: tuple[int, ...] = array.shape
    if guess:
        pad = (-len(inner)) % guess
        pad += guess if pad == 1 else 0
        shape = ((len(inner) + pad) // guess,)
    state = {"subclass": np.ndarray, "shape": shape, "order": "C", "dtype": array.dtype, "allow_mmap": False,
             "numpy_array_alignment_bytes": None}
    buffer = io.BytesIO()
    _WrapperPickler(buffer, reduced).dump(state)
    # NumpyArrayWrapper() by NEWOBJ, BUILD(state), the array's bytes (here: a pickle), STOP: joblib's layout.
    outer = (b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81" + buffer.getvalue()[2:-1] + b"b")
    path.write_bytes(outer + inner + _noop_opcodes(pad) + b".")
    return path


def write_reconstructed_wrapper(path: Path, marker: Path) -> Path:
    """A joblib wrapper made by copyreg._reconstructor (joblib still reads its array), whose raw uint8 bytes
    start a byte string that swallows the opcodes joblib runs after the array: a scanner that does not see
    the wrapper reads the payload as data."""
    payload = (b"cposix\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR0")  # os.system(...), result dropped
    n = 64
    raw = b"B" + struct.pack("<I", n - 5 + len(payload)) + b"\0" * (n - 5)
    state = {"subclass": np.ndarray, "shape": (n,), "order": "C", "dtype": np.dtype("u1"), "allow_mmap": False,
             "numpy_array_alignment_bytes": None}
    # copyreg._reconstructor(NumpyArrayWrapper, object, None), then BUILD(state), then the array bytes.
    body = (b"\x80\x02ccopyreg\n_reconstructor\ncjoblib.numpy_pickle\nNumpyArrayWrapper\ncbuiltins\nobject\nN\x87R"
            + pickletools.optimize(pickle.dumps(state, protocol=2))[2:-1] + b"b")
    path.write_bytes(body + raw + payload + b".")
    return path


# ---- zip bombs -------------------------------------------------------------------------------------

def deflate_zeros(size: int, *, segment: int = 1 << 20) -> bytes:
    """A raw deflate stream of ``size`` zero bytes built in microseconds: one fully flushed segment, repeated
    (a full flush resets the window, so identical segments concatenate into a valid stream)."""
    whole, rest = divmod(size, segment)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(segment)) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    end = tail.compress(bytes(rest)) + tail.flush(zlib.Z_FINISH)
    return block * whole + end


def write_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip written by hand: (name, stored bytes, method, declared uncompressed size, crc32) per member,
    so a header can declare any size."""
    out = bytearray()
    central = bytearray()
    for name, data, method, declared, crc in members:
        raw_name = name.encode()
        offset = len(out)
        # Past 4 GiB a size lives in a zip64 extra field and the header says 0xFFFFFFFF.
        extra = struct.pack("<HHQ", 1, 8, declared) if declared >= 0xFFFFFFFF else b""
        small = min(declared, 0xFFFFFFFF)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0x21, crc, len(data), small,
                           len(raw_name), len(extra)) + raw_name + extra + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0, 0x21, crc, len(data),
                               small, len(raw_name), len(extra), 0, 0, 0, 0, offset) + raw_name + extra
    start = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), start, 0)
    path.write_bytes(bytes(out))
    return path


def torch_zip_bomb(path: Path, inflated: int, *, declared: int | None = None, member: str = "data.pkl") -> Path:
    """A torch.save-shaped archive whose ``member`` inflates to ``inflated`` zero bytes; its headers declare
    ``declared`` bytes (default: the truth). A real small data.pkl keeps the archive recognisable."""
    small = pickle.dumps({}, protocol=2)
    bomb = deflate_zeros(inflated)
    members = [
        ("archive/data.pkl", small, 0, len(small), zlib.crc32(small)),
        ("archive/version", b"3\n", 0, 2, zlib.crc32(b"3\n")),
    ]
    # The CRC is honest up to 256 MiB; past that nobody reads to the end (the cap stops the reader first).
    crc = _zeros_crc(inflated) if inflated <= 256 << 20 else 0
    entry = (f"archive/{member}", bomb, 8, inflated if declared is None else declared, crc)
    if member == "data.pkl":
        members[0] = entry
    else:
        members.append(entry)
    return write_zip(path, members)


def _zeros_crc(size: int) -> int:
    crc, chunk = 0, bytes(1 << 20)
    while size > 0:
        crc = zlib.crc32(chunk[: min(size, len(chunk))], crc)
        size -= len(chunk)
    return crc
