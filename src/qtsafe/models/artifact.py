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

This module only recognises and dispatches; each family is examined in its own module:
:mod:`~qtsafe.models.pickles` (pickles, joblib, compressed pickles), :mod:`~qtsafe.models.torch_archives`
(torch.save, TorchScript, torch.export) and :mod:`~qtsafe.models.native` (XGBoost, LightGBM, safetensors).
What a pickle may import is decided in :mod:`~qtsafe.models.pickle_policy`; the result is an
:class:`~qtsafe.models.inspection.Inspection`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from qtsafe.errors import InputError
from qtsafe.fsio import sha256_file
from qtsafe.models.inspection import LIBRARY_OF_FORMAT, Draft, Inspection
from qtsafe.models.native import (
    examine_json,
    examine_lightgbm,
    examine_safetensors,
    examine_ubj,
    looks_like_safetensors,
)
from qtsafe.models.pickle_scan import Call, GlobalRef, PDict, PickleScanError, scan_pickle
from qtsafe.models.pickles import examine_compressed, examine_pickle, judge_pickle
from qtsafe.models.torch_archives import TORCH_LEGACY_MAGIC, examine_torch_legacy, examine_zip
from qtsafe.status import Status


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
    draft = Draft()
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


def _examine(handle: IO[bytes], size: int, draft: Draft, *, load_torch: bool, path: Path) -> None:
    head = handle.read(64)
    handle.seek(0)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        examine_zip(handle, draft, load_torch=load_torch, path=path)
        return
    if head.startswith(TORCH_LEGACY_MAGIC):
        examine_torch_legacy(handle, size, draft, load_torch=load_torch, path=path)
        return
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        examine_pickle(handle, size, draft)
        return
    if head[:1] == b"{" and head[1:2] in (b"i", b"U", b"I", b"l", b"L", b"$", b"#"):
        examine_ubj(handle.read(), draft)
        return
    if looks_like_safetensors(head, size):
        examine_safetensors(handle, size, draft)
        return
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        examine_json(handle.read(), draft)
        return
    if head.startswith(b"tree\n") or head.startswith(b"tree\r\n"):
        examine_lightgbm(handle.read(), draft)
        return
    for name, matches in _COMPRESSORS:
        if matches(head):
            examine_compressed(handle, name, draft)
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
            judge_pickle(scan, size, draft)
            return
    draft.format = "unknown"
    draft.fail("unknown_format", f"unknown format: not a model file qtsafe recognises (starts with {head[:8]!r})")


def _ends_with_stop(handle: IO[bytes], size: int) -> bool:
    handle.seek(size - 1)
    last = handle.read(1)
    handle.seek(0)
    return last == b"."


# --- model inspect: several files, one verdict ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InspectResult:
    """``model inspect``: PASS when every file is usable, FAIL when any is not."""

    status: Status
    inspections: tuple[Inspection, ...]

    def summary(self) -> str:
        bad = [i for i in self.inspections if not i.usable]
        if len(self.inspections) == 1:
            only = self.inspections[0]
            return f"{'FAIL' if bad else 'PASS'}: {only.name}: {only.headline()}"
        if bad:
            return f"FAIL: {len(bad)} of {len(self.inspections)} files unusable: " + ", ".join(i.name for i in bad)
        return f"PASS: all {len(self.inspections)} files usable"

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": "model inspect",
            "status": self.status.value,
            "files": [i.to_dict() for i in self.inspections],
        }


def run_inspect(paths: Sequence[Path | str]) -> InspectResult:
    if not paths:
        raise InputError("no model files given")
    inspections = tuple(inspect_artifact(p) for p in paths)
    status = Status.PASS if all(i.usable for i in inspections) else Status.FAIL
    return InspectResult(status, inspections)
