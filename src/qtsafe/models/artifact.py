"""Identify a model file by its bytes and describe it without executing anything in it.

The fleet names files ``{model}_v{ts}.pkl`` whatever they hold, so the extension proves nothing: two of
four models were PyTorch modules pickled into ``.pkl`` files that ``torch.load`` rejects with "Invalid
magic number; corrupt file?". Every format is recognised from its leading bytes and structure:

========================  =====================================================================
format                    recognised by
========================  =====================================================================
``torch-zip``             zip with ``<archive>/data.pkl`` (``torch.save`` since PyTorch 1.6)
``torchscript``           zip with ``<archive>/constants.pkl`` or ``<archive>/code/``
``torch-export``          zip with ``<archive>/archive_format`` = ``pt2`` (``torch.export.save``)
``torch-legacy``          pickle starting with torch's magic number (``torch.save`` before 1.6)
``pickle`` / ``joblib``   pickle opcodes (protocol 2-5, or 0-1 ending in STOP); joblib = array wrappers;
                          gzip / zlib / bz2 / xz / lzma compressed ones are decompressed first
``xgboost-json``          JSON object with ``learner`` and ``version``
``xgboost-ubj``           UBJSON object (``{`` then a length marker) with ``learner`` and ``version``
``lightgbm-text``         text starting ``tree`` / ``version=v..`` with ``end of trees``
``safetensors``           8-byte little-endian header length, then a JSON header
========================  =====================================================================

Pickles are only ever *read as opcodes* (:mod:`qtsafe.models.pickle_scan`); torch archives are
additionally opened with ``torch.load(weights_only=True)``, the one loader that refuses code.
"""

from __future__ import annotations

import bz2
import dataclasses
import enum
import io
import json
import lzma
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from qtsafe.errors import InputError
from qtsafe.fsio import sha256_file
from qtsafe.models import ubjson, ziplimits
from qtsafe.models.pickle_scan import (
    Call,
    GlobalRef,
    GlobalVerdict,
    PDict,
    Persistent,
    PickleScan,
    PickleScanError,
    classify_global,
    iter_calls,
    scan_pickle,
)

FAIL = "FAIL"
WARN = "WARN"

# Decompressing a joblib file must not fill the disk: a model bigger than this is refused.
MAX_DECOMPRESSED_BYTES = 4 << 30
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
TORCH_PICKLED_MESSAGE = "a PyTorch model pickled instead of saved with torch.save"


class LoadSafety(enum.StrEnum):
    """What it takes to load the artifact, from safest to refused."""

    NATIVE = "native"  # a data format parsed by the library; no code in the file can run
    WEIGHTS_ONLY = "weights-only"  # torch archive that torch.load(weights_only=True) accepts
    PROGRAM = "program"  # TorchScript / torch.export: a serialized graph, loaded without unpickling code
    PICKLE_ALLOWLISTED = "pickle-allowlisted"  # a pickle importing only data and known model classes
    UNSAFE = "unsafe"  # loading would run code qtsafe does not trust, or cannot load at all


@dataclasses.dataclass(frozen=True)
class Problem:
    """One finding about an artifact. FAIL makes it unusable; WARN is shown but does not block."""

    code: str
    severity: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclasses.dataclass(frozen=True)
class GlobalInfo:
    name: str
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict}


FORMAT_LABELS = {
    "xgboost-json": "XGBoost model (JSON)",
    "xgboost-ubj": "XGBoost model (UBJSON)",
    "lightgbm-text": "LightGBM model (text)",
    "safetensors": "safetensors tensor file",
    "torch-zip": "PyTorch torch.save archive (zip)",
    "torchscript": "TorchScript archive",
    "torch-export": "torch.export program (.pt2)",
    "torch-legacy": "PyTorch torch.save, legacy format",
    "pickle": "Python pickle",
    "joblib": "joblib pickle",
    "zip": "zip archive",
    "json": "JSON document",
    "empty": "empty file",
    "unknown": "unknown format",
}

# Libraries whose engine loaders qtsafe can name. Used for manifests and the gate.
LIBRARY_OF_FORMAT = {
    "xgboost-json": "xgboost",
    "xgboost-ubj": "xgboost",
    "lightgbm-text": "lightgbm",
    "torch-zip": "torch",
    "torchscript": "torch",
    "torch-export": "torch",
    "torch-legacy": "torch",
    "safetensors": "safetensors",
}


@dataclasses.dataclass(frozen=True)
class Inspection:
    """Everything qtsafe learned about one file without running it."""

    path: str
    size: int
    sha256: str
    format: str
    compression: str | None
    library: str | None
    library_version: str | None  # as recorded in the artifact, never guessed from the installed one
    n_features: int | None
    feature_names: tuple[str, ...] | None
    input_shape: tuple[int, ...] | None  # -1 = any (batch / symbolic dimension)
    tensors: tuple[TensorInfo, ...]
    globals: tuple[GlobalInfo, ...]
    load_safety: LoadSafety
    details: dict[str, Any]
    problems: tuple[Problem, ...]

    @property
    def format_label(self) -> str:
        label = FORMAT_LABELS.get(self.format, self.format)
        return f"{label}, {self.compression}-compressed" if self.compression else label

    @property
    def usable(self) -> bool:
        return not any(p.severity == FAIL for p in self.problems)

    @property
    def failures(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == FAIL)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == WARN)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def headline(self) -> str:
        """One line: the worst problem, or what the file is."""
        if self.failures:
            return self.failures[0].message
        feats = f", {self.n_features} features" if self.n_features is not None else ""
        return f"{self.format_label}{feats}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
            "format_label": self.format_label,
            "compression": self.compression,
            "library": self.library,
            "library_version": self.library_version,
            "n_features": self.n_features,
            "feature_names": list(self.feature_names) if self.feature_names is not None else None,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "tensors": [t.to_dict() for t in self.tensors],
            "globals": [g.to_dict() for g in self.globals],
            "load_safety": self.load_safety.value,
            "usable": self.usable,
            "details": self.details,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclasses.dataclass
class _Draft:
    """Mutable scratch space while one file is examined; frozen into an Inspection at the end."""

    format: str = "unknown"
    compression: str | None = None
    library: str | None = None
    library_version: str | None = None
    n_features: int | None = None
    feature_names: tuple[str, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    tensors: list[TensorInfo] = dataclasses.field(default_factory=list)
    globals: list[GlobalInfo] = dataclasses.field(default_factory=list)
    load_safety: LoadSafety = LoadSafety.UNSAFE
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    problems: list[Problem] = dataclasses.field(default_factory=list)

    def fail(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, FAIL, message))

    def warn(self, code: str, message: str) -> None:
        self.problems.append(Problem(code, WARN, message))


def check_model_path(path: Path | str) -> Path:
    """The path as a readable regular file, or an InputError naming what is wrong with it."""
    target = Path(path)
    if not target.exists():
        raise InputError(f"model file not found: {target}")
    if target.is_dir():
        raise InputError(f"{target} is a directory, not a model file")
    if not target.is_file():
        raise InputError(f"{target} is not a regular file")
    try:
        with open(target, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"cannot read {target}: {exc.strerror or exc}") from exc
    return target


def inspect_artifact(path: Path | str, *, load_torch: bool = True) -> Inspection:
    """Identify and describe one model file. Missing/unreadable paths raise InputError; anything
    wrong with the *content* (empty, truncated, unknown, unsafe) is reported as a FAIL problem.

    ``load_torch`` also opens torch archives with ``torch.load(weights_only=True)`` to prove the
    engine's safe loader accepts them (imports torch, so it is slower).
    """
    target = check_model_path(path)
    size = target.stat().st_size
    try:
        digest = sha256_file(target)
    except OSError as exc:
        raise InputError(f"cannot read {target}: {exc.strerror or exc}") from exc
    draft = _Draft()
    if size == 0:
        draft.format = "empty"
        draft.fail("empty_file", "empty file (0 bytes): the save was interrupted or never happened")
    else:
        with open(target, "rb") as handle:
            _examine(handle, size, draft, load_torch=load_torch, path=target)
    return Inspection(
        path=str(target),
        size=size,
        sha256=digest,
        format=draft.format,
        compression=draft.compression,
        library=draft.library or LIBRARY_OF_FORMAT.get(draft.format),
        library_version=draft.library_version,
        n_features=draft.n_features,
        feature_names=draft.feature_names,
        input_shape=draft.input_shape,
        tensors=tuple(draft.tensors),
        globals=tuple(draft.globals),
        load_safety=draft.load_safety,
        details=draft.details,
        problems=tuple(draft.problems),
    )


# --- dispatch ------------------------------------------------------------------------------------

_COMPRESSORS: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("gzip", lambda h: h.startswith(b"\x1f\x8b")),
    ("bz2", lambda h: h.startswith(b"BZh") and h[3:4].isdigit()),
    ("xz", lambda h: h.startswith(b"\xfd7zXZ\x00")),
    ("lz4", lambda h: h.startswith(b"\x04\x22\x4d\x18")),
    ("lzma", lambda h: h.startswith(b"\x5d\x00\x00")),
    # zlib: CMF 0x78 and a header checksum; joblib's default compressor.
    ("zlib", lambda h: len(h) >= 2 and h[0] == 0x78 and ((h[0] << 8) | h[1]) % 31 == 0),
)


def _examine(handle: IO[bytes], size: int, draft: _Draft, *, load_torch: bool, path: Path) -> None:
    head = handle.read(64)
    handle.seek(0)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        _examine_zip(handle, draft, load_torch=load_torch, path=path)
        return
    if head.startswith(TORCH_LEGACY_MAGIC):
        _examine_torch_legacy(handle, size, draft, load_torch=load_torch, path=path)
        return
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        _examine_pickle(handle, size, draft)
        return
    if head[:1] == b"{" and head[1:2] in (b"i", b"U", b"I", b"l", b"L", b"$", b"#"):
        _examine_ubj(handle.read(), draft)
        return
    if _looks_like_safetensors(head, size):
        _examine_safetensors(handle, size, draft)
        return
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        _examine_json(handle.read(), draft)
        return
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        _examine_lightgbm(handle.read(), draft)
        return
    for name, matches in _COMPRESSORS:
        if matches(head):
            _examine_compressed(handle, name, draft)
            if draft.format != "unknown" or draft.problems:
                return
    if size <= 64 << 20 and _ends_with_stop(handle, size):
        # Protocol 0/1 pickles have no header; accept only if the whole file parses to a STOP.
        try:
            scan = scan_pickle(handle)
        except PickleScanError:
            scan = None
        # A bare scalar also parses ("GIF89a...." is a protocol-1 float): only a container or an object
        # counts, since that is what every model pickle holds.
        if scan is not None and scan.end == size and isinstance(scan.root, (Call, PDict, list, GlobalRef)):
            _judge_pickle(scan, size, draft)
            return
    draft.format = "unknown"
    draft.fail("unknown_format", f"unknown format: not a model file qtsafe recognises (starts with {head[:8]!r})")


def _ends_with_stop(handle: IO[bytes], size: int) -> bool:
    handle.seek(size - 1)
    last = handle.read(1)
    handle.seek(0)
    return last == b"."


# --- pickles ---------------------------------------------------------------------------------------


def _examine_pickle(handle: IO[bytes], size: int, draft: _Draft) -> None:
    draft.format = "pickle"
    try:
        scan = scan_pickle(handle)
    except PickleScanError as exc:
        _pickle_error(exc, draft, size)
        return
    _judge_pickle(scan, size, draft)


def _pickle_error(exc: PickleScanError, draft: _Draft, size: int) -> None:
    if exc.code:
        draft.fail(exc.code, f"unsafe {FORMAT_LABELS[draft.format].lower()}: {exc}: refused")
    elif exc.truncated:
        draft.fail("truncated", f"truncated {FORMAT_LABELS[draft.format].lower()}: the stream ends before "
                                f"its STOP opcode ({size} bytes); the save was cut off")
    else:
        draft.fail("corrupt", f"corrupt {FORMAT_LABELS[draft.format].lower()}: {exc}")


def _judge_pickle(scan: PickleScan, size: int, draft: _Draft) -> None:
    """Turn a plain pickle's imports into problems; the pickle itself is never loaded."""
    names = {ref.dotted for ref in scan.globals}
    if draft.format == "unknown":
        draft.format = "pickle"
    if "joblib.numpy_pickle.NumpyArrayWrapper" in names:
        draft.format = "joblib"
    draft.details["pickle_protocol"] = scan.protocol
    draft.details["opcodes"] = scan.opcodes
    verdicts = _record_globals(scan.globals, draft)
    if scan.end < size:
        draft.warn("trailing_bytes", f"{size - scan.end} bytes after the pickle's STOP opcode "
                                     "(ignored by pickle.load; not part of the model)")
    torch_refs = [r for r, v in verdicts if v is GlobalVerdict.TORCH or r.module.startswith("torch")]
    dangerous = [r for r, v in verdicts if v is GlobalVerdict.DANGEROUS]
    unknown = [r for r, v in verdicts if v is GlobalVerdict.UNKNOWN]
    if torch_refs:
        draft.library = "torch"
        modules = _torch_module_classes(scan.globals)
        root_class = _root_class(scan.root)
        if root_class and not root_class.startswith("torch._utils"):
            what = f"nn.Module {root_class}"
        elif modules:
            what = f"nn.Module {modules[0]}"
        else:
            what = "tensors"
        draft.fail("torch_pickled",
                   f"{TORCH_PICKLED_MESSAGE} ({what}): torch.load rejects it ('Invalid magic number; corrupt "
                   "file?') and pickle.load would run its code; re-save with "
                   "torch.save(model.state_dict(), path), TorchScript or torch.export")
        draft.tensors.extend(_tensors_from_tree(scan.root))
    if dangerous:
        listed = ", ".join(sorted({r.dotted for r in dangerous}))
        draft.fail("dangerous_globals", f"pickle would run code when loaded: it calls {listed}")
    if scan.dynamic_globals:
        draft.fail("dynamic_globals", f"pickle computes {scan.dynamic_globals} import name(s) at load time")
    if scan.indirect_calls:
        draft.fail("indirect_calls", f"pickle calls {scan.indirect_calls} object(s) that are not named imports "
                                     "(an object it built earlier): code nobody vetted would run on load")
    if unknown:
        listed = ", ".join(sorted({r.dotted for r in unknown})[:8])
        draft.fail("untrusted_globals", f"pickle imports code qtsafe does not trust: {listed}")
    if not (torch_refs or dangerous or unknown or scan.dynamic_globals or scan.indirect_calls):
        draft.load_safety = LoadSafety.PICKLE_ALLOWLISTED
        _embedded_boosters(scan, draft)
        draft.warn("pickle_format", "pickle: loading runs library code; prefer the native format "
                                    "(XGBoost save_model('.json'/.ubj), LightGBM save_model('.txt'))")
    else:
        draft.load_safety = LoadSafety.UNSAFE


def _record_globals(refs: Iterable[GlobalRef], draft: _Draft) -> list[tuple[GlobalRef, GlobalVerdict]]:
    out = []
    for ref in refs:
        verdict = classify_global(ref)
        out.append((ref, verdict))
        draft.globals.append(GlobalInfo(ref.dotted, verdict.value))
    return out


def _root_class(root: Any) -> str | None:
    """The class of the pickled top-level object (NEWOBJ / copyreg._reconstructor), if any."""
    if not isinstance(root, Call):
        return None
    func = root.func
    if isinstance(func, GlobalRef) and func.dotted in ("copyreg._reconstructor", "copy_reg._reconstructor"):
        args = root.args if isinstance(root.args, tuple) else ()
        func = args[0] if args else None
    return func.dotted if isinstance(func, GlobalRef) else None


def _torch_module_classes(refs: Iterable[GlobalRef]) -> list[str]:
    return [r.dotted for r in refs if r.module.startswith("torch.nn.modules")]


def _embedded_boosters(scan: PickleScan, draft: _Draft) -> None:
    """A pickled XGBoost/LightGBM booster carries its native model bytes: describe those."""
    for _path, call in iter_calls(scan.root):
        func = call.func
        if not isinstance(func, GlobalRef):
            continue
        state = call.state.items if isinstance(call.state, PDict) else []
        if func.dotted in ("xgboost.core.Booster",):
            raw = next((_bytes_of(v) for k, v in state if k == "handle"), None)
            if raw:
                try:
                    doc = ubjson.loads(raw) if raw[:1] == b"{" and raw[1:2] != b'"' else json.loads(raw)
                except (ubjson.UbjError, ValueError):
                    draft.warn("embedded_model", "pickled XGBoost booster: embedded model bytes unreadable")
                    return
                model = doc.get("Model", doc) if isinstance(doc, dict) else None
                if isinstance(model, dict):
                    _describe_xgboost(model, draft, embedded=True)
                return
        if func.dotted == "lightgbm.basic.Booster":
            text = next((v for k, v in state if k == "_handle" and isinstance(v, str)), None)
            if text:
                _describe_lightgbm(text, draft, embedded=True)
                return


def _bytes_of(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Call) and isinstance(value.args, tuple) and value.args:
        inner = value.args[0]
        if isinstance(inner, (bytes, bytearray)):
            return bytes(inner)
    return None


def _examine_compressed(handle: IO[bytes], name: str, draft: _Draft) -> None:
    """joblib.dump(compress=...) files are a compressed pickle stream: decompress, then scan."""
    handle.seek(0)
    if name == "lz4":
        draft.format = "unknown"
        draft.compression = "lz4"
        draft.fail("unknown_format", "lz4-compressed file: qtsafe cannot decompress lz4 to inspect it")
        return
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:
        try:
            total = _decompress_into(handle, spool, name)
        except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
            draft.format = "unknown"
            draft.compression = name
            truncated = isinstance(exc, EOFError) or "end of stream" in str(exc).lower() or "truncated" in str(exc)
            draft.fail("truncated" if truncated else "corrupt",
                       f"{'truncated' if truncated else 'corrupt'} {name}-compressed file: {exc}")
            return
        spool.seek(0)
        inner_head = spool.read(2)
        spool.seek(0)
        if not (inner_head[:1] == b"\x80" and len(inner_head) == 2 and 2 <= inner_head[1] <= 5):
            draft.format = "unknown"
            draft.compression = name
            draft.fail("unknown_format", f"{name}-compressed file that does not hold a pickle")
            return
        draft.format = "pickle"
        draft.compression = name
        draft.details["decompressed_size"] = total
        try:
            scan = scan_pickle(spool)  # type: ignore[arg-type]
        except PickleScanError as exc:
            _pickle_error(exc, draft, total)
            return
        _judge_pickle(scan, total, draft)


def _decompress_into(handle: IO[bytes], out: IO[bytes], name: str) -> int:
    total = 0

    def emit(chunk: bytes) -> None:
        nonlocal total
        total += len(chunk)
        if total > MAX_DECOMPRESSED_BYTES:
            raise ValueError(f"decompresses to more than {MAX_DECOMPRESSED_BYTES >> 30} GiB; refused")
        out.write(chunk)

    if name == "zlib":
        dec = zlib.decompressobj()
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            emit(dec.decompress(chunk, 0))
        emit(dec.flush())
        if not dec.eof:
            raise EOFError("zlib stream ends before its end marker")
        return total
    import gzip  # noqa: PLC0415 - rarely needed

    openers: dict[str, Callable[[IO[bytes]], Any]] = {
        "gzip": lambda f: gzip.GzipFile(fileobj=f), "bz2": bz2.BZ2File, "xz": lzma.LZMAFile, "lzma": lzma.LZMAFile,
    }
    with openers[name](handle) as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            emit(chunk)
    return total


# --- torch -----------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
_TENSOR_REBUILDERS = ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_tensor_v3")
_MODULE_CONTAINERS = ("_parameters", "_buffers", "_modules")


def _tensors_from_tree(root: Any) -> list[TensorInfo]:
    """Tensor names/shapes/dtypes from an inert pickle tree (state_dict, nn.Module, TorchScript)."""
    out: list[TensorInfo] = []
    for path, call in iter_calls(root):
        func = call.func
        if not (isinstance(func, GlobalRef) and func.module == "torch._utils" and func.name in _TENSOR_REBUILDERS):
            continue
        args = call.args if isinstance(call.args, tuple) else ()
        if len(args) < 3 or not isinstance(args[2], tuple) or not all(isinstance(d, int) for d in args[2]):
            continue
        name = ".".join(p for p in path if p not in _MODULE_CONTAINERS) or "(unnamed)"
        out.append(TensorInfo(name, tuple(args[2]), _storage_dtype(args[0])))
    return out


def _storage_dtype(storage: Any) -> str | None:
    if isinstance(storage, Persistent) and isinstance(storage.pid, tuple) and len(storage.pid) >= 2:
        kind = storage.pid[1]
        if isinstance(kind, GlobalRef):
            return _STORAGE_DTYPES.get(kind.name)
    if isinstance(storage, Call) and isinstance(storage.func, GlobalRef) and storage.func.name == "_load_from_bytes":
        # A pickled tensor embeds a legacy torch.save of its storage: read its type the same way.
        raw = storage.args[0] if isinstance(storage.args, tuple) and storage.args else None
        if isinstance(raw, (bytes, bytearray)):
            stream = io.BytesIO(bytes(raw))
            try:
                for _ in range(3):  # magic, protocol, sys_info
                    scan_pickle(stream, stream.tell())
                body = scan_pickle(stream, stream.tell())
            except PickleScanError:
                return None
            if isinstance(body.root, Persistent):
                return _storage_dtype(body.root)
    return None


def _archive_prefix(names: list[str]) -> str | None:
    roots = {n.split("/", 1)[0] for n in names if "/" in n}
    return roots.pop() if len(roots) == 1 else None


def _zip_kind(prefix: str | None, members: set[str], names: list[str]) -> str:
    """Which archive this is, from its member names alone (nothing is read yet)."""
    if prefix and "archive_format" in members:
        return "torch-export"
    if prefix and ("constants.pkl" in members or any(m.startswith("code/") for m in members)):
        return "torchscript"
    if prefix and "data.pkl" in members:
        return "torch-zip"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _examine_zip(handle: IO[bytes], draft: _Draft, *, load_torch: bool, path: Path) -> None:
    draft.format = "zip"
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        draft.fail("truncated", f"truncated or corrupt zip archive ({exc}): the save was cut off")
        return
    with archive:
        names = archive.namelist()
        prefix = _archive_prefix(names)
        members = {n.split("/", 1)[1] for n in names if prefix and n.startswith(prefix + "/")}
        kind = _zip_kind(prefix, members, names)
        try:
            # Every member is capped by its declared and its inflated size before anything reads it.
            ziplimits.check_declared_sizes(archive)
            ziplimits.check_inflated_sizes(archive)
        except ziplimits.ArchiveLimitError as exc:
            draft.format = kind if kind != "npz" else "zip"
            if kind.startswith("torch"):
                draft.library = "torch"
            draft.fail(exc.code, str(exc))
            return
        if kind == "torch-export":
            _examine_torch_export(archive, prefix or "", draft)
        elif kind == "torchscript":
            _examine_torchscript(archive, prefix or "", draft)
        elif kind == "torch-zip":
            _examine_torch_zip(archive, prefix or "", draft, load_torch=load_torch, path=path)
        elif kind == "npz":
            draft.details["members"] = len(names)
            draft.fail("not_a_model", "numpy .npz archive: data, not a model")
        else:
            draft.details["members"] = len(names)
            draft.fail("unknown_format", "zip archive that is not a PyTorch / TorchScript / torch.export file")


def _read_member(archive: zipfile.ZipFile, name: str, draft: _Draft) -> bytes | None:
    try:
        return ziplimits.read_member(archive, name)
    except ziplimits.ArchiveLimitError as exc:
        draft.fail(exc.code, str(exc))
        return None


def _archive_pickle(archive: zipfile.ZipFile, prefix: str, draft: _Draft, what: str) -> PickleScan | None:
    """Scan an archive's data.pkl as opcodes; None (with the failure recorded) when missing or corrupt."""
    try:
        spool = ziplimits.spool_member(archive, f"{prefix}/data.pkl")
    except ziplimits.ArchiveLimitError as exc:
        draft.fail(exc.code, str(exc))
        return None
    with spool:
        try:
            return scan_pickle(spool)
        except PickleScanError as exc:
            draft.fail("corrupt", f"corrupt {what}: data.pkl is not a complete pickle ({exc})")
            return None


def _examine_torch_zip(archive: zipfile.ZipFile, prefix: str, draft: _Draft, *, load_torch: bool,
                       path: Path) -> None:
    draft.format = "torch-zip"
    draft.library = "torch"
    scan = _archive_pickle(archive, prefix, draft, "torch archive")
    if scan is None:
        return
    draft.details["archive"] = prefix
    _judge_torch_pickle(scan, draft, what="torch.save archive")
    if load_torch and not _draft_has_failure(draft):
        _confirm_weights_only(path, draft)


def _judge_torch_pickle(scan: PickleScan, draft: _Draft, *, what: str) -> None:
    """Inside a torch archive: tensors and containers are fine; a module or foreign class is not."""
    verdicts = _record_globals(scan.globals, draft)
    draft.tensors.extend(_tensors_from_tree(scan.root))
    modules = _torch_module_classes(scan.globals)
    foreign = sorted({r.dotted for r, v in verdicts
                      if v in (GlobalVerdict.UNKNOWN, GlobalVerdict.DANGEROUS, GlobalVerdict.MODEL_LIBRARY)})
    dangerous = sorted({r.dotted for r, v in verdicts if v is GlobalVerdict.DANGEROUS})
    if dangerous:
        draft.fail("dangerous_globals", f"{what} would run code when loaded: it calls {', '.join(dangerous)}")
    if modules or foreign:
        classes = ", ".join((modules + [f for f in foreign if f not in dangerous])[:4])
        draft.fail("torch_whole_module",
                   f"a whole nn.Module saved with torch.save ({classes}): loading needs the class code and "
                   "weights_only=False; save model.state_dict(), TorchScript or torch.export instead")
        draft.load_safety = LoadSafety.UNSAFE
        return
    if scan.dynamic_globals or scan.indirect_calls:
        draft.fail("dynamic_globals" if scan.dynamic_globals else "indirect_calls",
                   f"{what} computes import names or calls objects that are not named imports at load time")
        return
    draft.load_safety = LoadSafety.WEIGHTS_ONLY
    draft.details["content"] = "state_dict" if draft.tensors else "tensors"


def _confirm_weights_only(path: Path, draft: _Draft) -> None:
    """The opcode scan says weights-only; let torch's own safe loader agree (and read real shapes)."""
    import torch  # noqa: PLC0415 - lazy: torch takes seconds to import

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any refusal by the safe loader is a finding, not a crash
        message = " ".join(str(exc).split())[:300]
        draft.fail("weights_only_refused", f"torch.load(weights_only=True) refuses it: {message}")
        draft.load_safety = LoadSafety.UNSAFE
        return
    tensors = list(_walk_tensors(obj, torch))
    if tensors:
        draft.tensors[:] = tensors
    draft.details["weights_only_load"] = "ok"


def _walk_tensors(obj: Any, torch: Any, prefix: str = "") -> Iterable[TensorInfo]:
    if isinstance(obj, torch.Tensor):
        yield TensorInfo(prefix or "(tensor)", tuple(int(d) for d in obj.shape), str(obj.dtype).replace("torch.", ""))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _walk_tensors(value, torch, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _walk_tensors(value, torch, f"{prefix}.{i}" if prefix else str(i))


def _examine_torch_legacy(handle: IO[bytes], size: int, draft: _Draft, *, load_torch: bool, path: Path) -> None:
    draft.format = "torch-legacy"
    draft.library = "torch"
    try:
        magic = scan_pickle(handle, 0)
        protocol = scan_pickle(handle, magic.end)
        sys_info = scan_pickle(handle, protocol.end)
        body = scan_pickle(handle, sys_info.end)
        keys = scan_pickle(handle, body.end)
    except PickleScanError as exc:
        draft.fail("truncated" if exc.truncated else "corrupt",
                   f"{'truncated' if exc.truncated else 'corrupt'} legacy torch file: {exc}")
        return
    draft.details["serialization_protocol"] = protocol.root
    draft.details["storages"] = len(keys.root) if isinstance(keys.root, list) else None
    _judge_torch_pickle(body, draft, what="legacy torch.save file")
    if load_torch and not _draft_has_failure(draft):
        _confirm_weights_only(path, draft)


def _examine_torchscript(archive: zipfile.ZipFile, prefix: str, draft: _Draft) -> None:
    draft.format = "torchscript"
    draft.library = "torch"
    draft.load_safety = LoadSafety.PROGRAM
    names = archive.namelist()
    draft.details["archive"] = prefix
    draft.details["code_files"] = sum(1 for n in names if n.startswith(f"{prefix}/code/") and n.endswith(".py"))
    scan = _archive_pickle(archive, prefix, draft, "TorchScript archive")
    if scan is None:
        return
    # TorchScript's loader resolves classes in its own __torch__ namespace, never Python imports.
    draft.details["classes"] = sorted({r.dotted for r in scan.globals if r.module.startswith("__torch__")})[:20]
    draft.tensors.extend(_tensors_from_tree(scan.root))


_EXPORT_DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32",
                  8: "float64", 12: "bool", 13: "bfloat16"}


def _sizes(meta: Any) -> tuple[int, ...] | None:
    sizes = meta.get("sizes") if isinstance(meta, dict) else None
    if not isinstance(sizes, list):
        return None
    out = []
    for dim in sizes:
        value = dim.get("as_int") if isinstance(dim, dict) else None
        out.append(int(value) if isinstance(value, int) else -1)
    return tuple(out)


def _examine_torch_export(archive: zipfile.ZipFile, prefix: str, draft: _Draft) -> None:
    draft.format = "torch-export"
    draft.library = "torch"
    draft.load_safety = LoadSafety.PROGRAM
    fmt = _read_member(archive, f"{prefix}/archive_format", draft)
    if fmt is None:
        return
    if fmt.strip() != b"pt2":
        draft.fail("unknown_format", f"zip archive with archive_format {fmt[:20]!r}, not a torch.export program")
        return
    model_names = [n for n in archive.namelist() if n.startswith(f"{prefix}/models/") and n.endswith(".json")]
    if not model_names:
        draft.fail("corrupt", "torch.export archive without a serialized program (models/*.json)")
        return
    raw = _read_member(archive, model_names[0], draft)
    if raw is None:
        return
    try:
        program = json.loads(raw)
    except ValueError as exc:
        draft.fail("corrupt", f"torch.export program is not valid JSON: {exc}")
        return
    draft.library_version = program.get("torch_version") if isinstance(program.get("torch_version"), str) else None
    graph = program.get("graph_module", {}).get("graph", {})
    values = graph.get("tensor_values", {}) if isinstance(graph, dict) else {}
    specs = program.get("graph_module", {}).get("signature", {}).get("input_specs", [])
    inputs: list[tuple[str, tuple[int, ...] | None]] = []
    for spec in specs if isinstance(specs, list) else []:
        if not isinstance(spec, dict):
            continue
        if "parameter" in spec or "buffer" in spec:
            kind = "parameter" if "parameter" in spec else "buffer"
            entry = spec[kind]
            arg = entry.get("arg", {}).get("name")
            meta = values.get(arg, {})
            shape = _sizes(meta)
            if shape is not None:
                draft.tensors.append(TensorInfo(entry.get(f"{kind}_name", arg), shape,
                                                _EXPORT_DTYPES.get(meta.get("dtype"))))
        elif "user_input" in spec:
            arg = spec["user_input"].get("arg", {}).get("as_tensor", {}).get("name")
            inputs.append((arg, _sizes(values.get(arg, {}))))
    draft.details["inputs"] = [{"name": n, "shape": list(s) if s else None} for n, s in inputs]
    if len(inputs) == 1 and inputs[0][1]:
        shape = inputs[0][1]
        draft.input_shape = shape
        if shape and shape[-1] > 0:
            draft.n_features = shape[-1]
    config_name = f"{prefix}/data/weights/model_weights_config.json"
    if config_name in archive.namelist():
        raw_config = _read_member(archive, config_name, draft)
        try:
            config = json.loads(raw_config or b"{}").get("config", {})
        except (ValueError, AttributeError):
            config = {}
        pickled = sorted(k for k, v in config.items() if isinstance(v, dict) and v.get("use_pickle"))
        if pickled:
            draft.warn("pickled_weights", f"torch.export stores {len(pickled)} weight(s) as pickles: "
                                          f"{', '.join(pickled[:4])}")


# --- text and binary model formats ---------------------------------------------------------------


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 2 <= header_len < (1 << 31) and header_len >= 2


def _examine_safetensors(handle: IO[bytes], size: int, draft: _Draft) -> None:
    draft.format = "safetensors"
    draft.load_safety = LoadSafety.NATIVE
    (header_len,) = struct.unpack("<Q", handle.read(8))
    if 8 + header_len > size:
        draft.fail("truncated", f"truncated safetensors file: header says {header_len} bytes, file has {size - 8}")
        return
    try:
        header = json.loads(handle.read(header_len))
    except ValueError as exc:
        draft.fail("corrupt", f"corrupt safetensors header: {exc}")
        return
    if not isinstance(header, dict):
        draft.fail("corrupt", "corrupt safetensors header: not a JSON object")
        return
    meta = header.pop("__metadata__", None)
    if isinstance(meta, dict):
        draft.details["metadata"] = {str(k): str(v) for k, v in list(meta.items())[:20]}
    data_size = size - 8 - header_len
    end = 0
    for name, entry in header.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("shape"), list)
                and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2):
            draft.fail("corrupt", f"corrupt safetensors header: entry {name!r} lacks dtype/shape/data_offsets")
            return
        end = max(end, int(entry["data_offsets"][1]))
        draft.tensors.append(TensorInfo(name, tuple(int(d) for d in entry["shape"]), str(entry.get("dtype"))))
    if end > data_size:
        draft.fail("truncated", f"truncated safetensors file: tensors need {end} data bytes, file has {data_size}")


def _examine_ubj(data: bytes, draft: _Draft) -> None:
    draft.format = "xgboost-ubj"
    try:
        doc = ubjson.loads(data)
    except ubjson.UbjError as exc:
        if exc.truncated:
            draft.fail("truncated", f"truncated XGBoost UBJSON model: {exc}")
        else:
            draft.format = "unknown"
            draft.fail("unknown_format", f"unknown format: starts like UBJSON but is not ({exc})")
        return
    if not (isinstance(doc, dict) and isinstance(doc.get("learner"), dict)):
        draft.format = "unknown"
        draft.fail("unknown_format", "UBJSON document that is not an XGBoost model (no 'learner')")
        return
    _describe_xgboost(doc, draft)


def _examine_json(data: bytes, draft: _Draft) -> None:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", None)
        truncated = isinstance(pos, int) and pos >= len(data.rstrip()) - 1
        draft.format = "json"
        if truncated and b'"learner"' in data[:4096]:
            draft.format = "xgboost-json"
            draft.fail("truncated", f"truncated XGBoost JSON model: the document ends early ({exc})")
        elif truncated:
            draft.fail("truncated", f"truncated JSON document: it ends early ({exc})")
        else:
            draft.format = "unknown"
            draft.fail("unknown_format", f"unknown format: not valid JSON ({exc})")
        return
    if isinstance(doc, dict) and isinstance(doc.get("learner"), dict):
        draft.format = "xgboost-json"
        _describe_xgboost(doc, draft)
        return
    draft.format = "json"
    hint = " (a qtsafe manifest)" if isinstance(doc, dict) and "qtsafe_manifest" in doc else ""
    draft.fail("not_a_model", f"JSON document that is not an XGBoost model{hint}")


def _describe_xgboost(doc: dict[str, Any], draft: _Draft, *, embedded: bool = False) -> None:
    learner = doc.get("learner", {})
    version = doc.get("version")
    if isinstance(version, list) and all(isinstance(v, int) for v in version):
        draft.library_version = ".".join(str(v) for v in version)
    draft.library = "xgboost"
    if not embedded:
        draft.load_safety = LoadSafety.NATIVE
    param = learner.get("learner_model_param", {}) if isinstance(learner, dict) else {}
    try:
        n_features = int(str(param.get("num_feature")))
    except ValueError:
        draft.fail("corrupt", "XGBoost model without a readable learner_model_param.num_feature")
        return
    draft.n_features = n_features
    draft.input_shape = (-1, n_features)
    names = learner.get("feature_names")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        if len(names) != n_features:
            draft.fail("corrupt", f"XGBoost model lists {len(names)} feature names but num_feature is {n_features}")
        draft.feature_names = tuple(names)
    else:
        draft.warn("no_feature_names",
                   f"XGBoost booster without feature names: it takes any {n_features} or fewer columns and "
                   "silently predicts on too few; only a manifest pins the feature order")
    objective = learner.get("objective", {})
    draft.details["objective"] = objective.get("name") if isinstance(objective, dict) else None
    for key in ("num_class", "num_target", "base_score"):
        if key in param:
            draft.details[key] = param[key]
    booster = learner.get("gradient_booster", {})
    trees = booster.get("model", {}).get("trees") if isinstance(booster, dict) else None
    if isinstance(trees, list):
        draft.details["trees"] = len(trees)
    if embedded:
        draft.details["embedded_model"] = "xgboost"


_LGB_HEADER = re.compile(r"^([a-z_]+)=(.*)$")


def _examine_lightgbm(data: bytes, draft: _Draft) -> None:
    draft.format = "lightgbm-text"
    draft.load_safety = LoadSafety.NATIVE
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        draft.fail("corrupt", f"corrupt LightGBM model: not UTF-8 text ({exc})")
        return
    _describe_lightgbm(text, draft)


def _describe_lightgbm(text: str, draft: _Draft, *, embedded: bool = False) -> None:
    draft.library = "lightgbm"
    header: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if not line.strip():
            break
        match = _LGB_HEADER.match(line.strip())
        if match:
            header[match.group(1)] = match.group(2)
    if "version" in header:
        draft.details["model_format_version"] = header["version"]
    if "end of trees" not in text:
        draft.fail("truncated", "truncated LightGBM model: no 'end of trees' marker (the save was cut off)")
    try:
        n_features = int(header["max_feature_idx"]) + 1
    except (KeyError, ValueError):
        draft.fail("corrupt", "LightGBM model without a readable max_feature_idx")
        return
    draft.n_features = n_features
    draft.input_shape = (-1, n_features)
    names = tuple(header.get("feature_names", "").split())
    if names:
        if len(names) != n_features:
            draft.fail("corrupt", f"LightGBM model lists {len(names)} feature names but max_feature_idx+1 is "
                                  f"{n_features}")
        draft.feature_names = names
        if all(re.fullmatch(rf"Column_{i}", n) for i, n in enumerate(names)):
            draft.warn("generic_feature_names", "LightGBM model trained without feature names (Column_0, ...): "
                                                "only a manifest pins the feature order")
    draft.details["objective"] = header.get("objective")
    draft.details["num_class"] = header.get("num_class")
    sizes = header.get("tree_sizes", "").split()
    declared = len(sizes)
    found = len(re.findall(r"^Tree=\d+", text, flags=re.MULTILINE))
    draft.details["trees"] = found
    if declared and found != declared and "end of trees" in text:
        draft.fail("corrupt", f"LightGBM model declares {declared} trees but holds {found}")
    if embedded:
        draft.details["embedded_model"] = "lightgbm"


def _draft_has_failure(draft: _Draft) -> bool:
    return any(p.severity == FAIL for p in draft.problems)
