"""Torch files: torch.save zip and legacy archives, TorchScript and torch.export programs, read without running them."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from qtsafe.extras import require
from qtsafe.models import ziplimits
from qtsafe.models.inspection import Draft, LoadSafety, TensorInfo, draft_has_failure
from qtsafe.models.pickle_policy import GlobalVerdict
from qtsafe.models.pickle_scan import PickleScan, PickleScanError, scan_pickle
from qtsafe.models.pickles import record_globals, tensors_from_tree, torch_module_classes

TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


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


def examine_zip(handle: IO[bytes], draft: Draft, *, load_torch: bool, path: Path) -> None:
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


def _read_member(archive: zipfile.ZipFile, name: str, draft: Draft) -> bytes | None:
    try:
        return ziplimits.read_member(archive, name)
    except ziplimits.ArchiveLimitError as exc:
        draft.fail(exc.code, str(exc))
        return None


def _archive_pickle(archive: zipfile.ZipFile, prefix: str, draft: Draft, what: str) -> PickleScan | None:
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


def _examine_torch_zip(archive: zipfile.ZipFile, prefix: str, draft: Draft, *, load_torch: bool,
                       path: Path) -> None:
    draft.format = "torch-zip"
    draft.library = "torch"
    scan = _archive_pickle(archive, prefix, draft, "torch archive")
    if scan is None:
        return
    draft.details["archive"] = prefix
    _judge_torch_pickle(scan, draft, what="torch.save archive")
    if load_torch and not draft_has_failure(draft):
        _confirm_weights_only(path, draft)


def _judge_torch_pickle(scan: PickleScan, draft: Draft, *, what: str) -> None:
    """Inside a torch archive: tensors and containers are fine; a module or foreign class is not."""
    verdicts = record_globals(scan.globals, draft)
    draft.tensors.extend(tensors_from_tree(scan.root))
    modules = torch_module_classes(scan.globals)
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


def _confirm_weights_only(path: Path, draft: Draft) -> None:
    """The opcode scan says weights-only; let torch's own safe loader agree (and read real shapes)."""
    # lazy: torch takes seconds to import. Without it the file cannot be confirmed safe: refused (exit 2).
    torch = require("torch", "confirming a torch archive is weights-only")
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


def examine_torch_legacy(handle: IO[bytes], size: int, draft: Draft, *, load_torch: bool, path: Path) -> None:
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
    if load_torch and not draft_has_failure(draft):
        _confirm_weights_only(path, draft)


def _examine_torchscript(archive: zipfile.ZipFile, prefix: str, draft: Draft) -> None:
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
    draft.tensors.extend(tensors_from_tree(scan.root))


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


def _examine_torch_export(archive: zipfile.ZipFile, prefix: str, draft: Draft) -> None:
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
