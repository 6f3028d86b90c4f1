"""Pickles and compressed pickles (joblib; gzip, zlib, bz2, xz, lzma): judged by the imports they name, never loaded."""

from __future__ import annotations

import bz2
import io
import json
import lzma
import tempfile
import zlib
from collections.abc import Callable, Iterable
from typing import IO, Any

from qtsafe.models import ubjson
from qtsafe.models.inspection import FORMAT_LABELS, Draft, GlobalInfo, LoadSafety, TensorInfo
from qtsafe.models.native import describe_lightgbm, describe_xgboost
from qtsafe.models.pickle_policy import GlobalVerdict, classify_global
from qtsafe.models.pickle_scan import (
    Call,
    GlobalRef,
    PDict,
    Persistent,
    PickleScan,
    PickleScanError,
    iter_calls,
    scan_pickle,
)

# Decompressing a joblib file must not fill the disk: a model bigger than this is refused.
MAX_DECOMPRESSED_BYTES = 4 << 30
TORCH_PICKLED_MESSAGE = "a PyTorch model pickled instead of saved with torch.save"


def examine_pickle(handle: IO[bytes], size: int, draft: Draft) -> None:
    draft.format = "pickle"
    try:
        scan = scan_pickle(handle)
    except PickleScanError as exc:
        _pickle_error(exc, draft, size)
        return
    judge_pickle(scan, size, draft)


def _pickle_error(exc: PickleScanError, draft: Draft, size: int) -> None:
    if exc.code:
        draft.fail(exc.code, f"unsafe {FORMAT_LABELS[draft.format].lower()}: {exc}: refused")
    elif exc.truncated:
        draft.fail("truncated", f"truncated {FORMAT_LABELS[draft.format].lower()}: the stream ends before "
                                f"its STOP opcode ({size} bytes); the save was cut off")
    else:
        draft.fail("corrupt", f"corrupt {FORMAT_LABELS[draft.format].lower()}: {exc}")


def judge_pickle(scan: PickleScan, size: int, draft: Draft) -> None:
    """Turn a plain pickle's imports into problems; the pickle itself is never loaded."""
    names = {ref.dotted for ref in scan.globals}
    if draft.format == "unknown":
        draft.format = "pickle"
    if "joblib.numpy_pickle.NumpyArrayWrapper" in names:
        draft.format = "joblib"
    draft.details["pickle_protocol"] = scan.protocol
    draft.details["opcodes"] = scan.opcodes
    verdicts = record_globals(scan.globals, draft)
    if scan.end < size:
        draft.warn("trailing_bytes", f"{size - scan.end} bytes after the pickle's STOP opcode "
                                     "(ignored by pickle.load; not part of the model)")
    torch_refs = [r for r, v in verdicts if v is GlobalVerdict.TORCH or r.module.startswith("torch")]
    dangerous = [r for r, v in verdicts if v is GlobalVerdict.DANGEROUS]
    unknown = [r for r, v in verdicts if v is GlobalVerdict.UNKNOWN]
    if torch_refs:
        draft.library = "torch"
        modules = torch_module_classes(scan.globals)
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
        draft.tensors.extend(tensors_from_tree(scan.root))
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


def record_globals(refs: Iterable[GlobalRef], draft: Draft) -> list[tuple[GlobalRef, GlobalVerdict]]:
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


def torch_module_classes(refs: Iterable[GlobalRef]) -> list[str]:
    return [r.dotted for r in refs if r.module.startswith("torch.nn.modules")]


def _embedded_boosters(scan: PickleScan, draft: Draft) -> None:
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
                    describe_xgboost(model, draft, embedded=True)
                return
        if func.dotted == "lightgbm.basic.Booster":
            text = next((v for k, v in state if k == "_handle" and isinstance(v, str)), None)
            if text:
                describe_lightgbm(text, draft, embedded=True)
                return


def _bytes_of(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Call) and isinstance(value.args, tuple) and value.args:
        inner = value.args[0]
        if isinstance(inner, (bytes, bytearray)):
            return bytes(inner)
    return None


def examine_compressed(handle: IO[bytes], name: str, draft: Draft) -> None:
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
        judge_pickle(scan, total, draft)


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


# --- tensors in a pickle tree ------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
_TENSOR_REBUILDERS = ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_tensor_v3")
_MODULE_CONTAINERS = ("_parameters", "_buffers", "_modules")


def tensors_from_tree(root: Any) -> list[TensorInfo]:
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

