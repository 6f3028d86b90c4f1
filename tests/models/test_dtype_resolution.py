"""Object arrays are decided as joblib decides them: by ``hasobject`` of the resolved dtype, never its spelling."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from picklescan.scanner import SafetyLevel
from picklescan.scanner import scan_pickle_bytes as picklescan_bytes

from qtsafe.models.artifact import inspect_artifact
from qtsafe.models.dtypes import DtypeUnresolved, resolve_dtype
from qtsafe.models.inspection import LoadSafety
from qtsafe.models.pickle_scan import Call, GlobalRef, scan_pickle_bytes
from tests.models.hostile import SPELLINGS, write_object_array, write_reconstructed_wrapper

BENIGN_DTYPES: list[Any] = [
    "f4", "f8", ">f8", "<i2", "u1", "i8", "b1", "c16", "f2", "U3", "S5", "V8", "M8[ns]", "m8[s]", "M8[5s]",
    [("a", "u1"), ("b", "<f4", (3,))], ("f8", (2, 3)), np.dtype([("a", "u1"), ("b", "f8")], align=True),
    np.dtype({"names": ["a"], "formats": ["f8"], "titles": ["T"]}), np.dtype("f8", metadata={"k": 1}),
    np.dtype({"names": ["a", "b"], "formats": ["f4", "f4"], "offsets": [0, 8], "itemsize": 16}),
]
OBJECT_DTYPES: list[Any] = [
    "O", object, [("a", "f8"), ("b", "O")], ("O", (2,)), [("a", [("x", "i4"), ("y", "O")])], "f8,O",
    np.dtype([("a", "O")], align=True), ([("a", "f8"), ("b", "O")], (2,)),
]


def _dtype_node(dtype: np.dtype[Any], protocol: int) -> Any:
    return scan_pickle_bytes(pickle.dumps(dtype, protocol=protocol)).root


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("spec", BENIGN_DTYPES + OBJECT_DTYPES, ids=repr)
def test_every_dtype_numpy_pickles_resolves_to_itself(spec: Any, protocol: int) -> None:
    expected = np.dtype(spec)
    resolved = resolve_dtype(_dtype_node(expected, protocol))
    assert resolved == expected
    assert resolved.hasobject == expected.hasobject
    assert resolved.itemsize == expected.itemsize


def _node(args: tuple[Any, ...], state: Any = None) -> Call:
    node = Call(GlobalRef("numpy", "dtype"), args, "REDUCE")
    if state is not None:
        node.state, node.builds = state, 1
    return node


@pytest.mark.parametrize(("why", "node"), [
    # numpy's setstate takes "holds objects" from these flags, so joblib would unpickle the bytes.
    ("float64 flagged as holding objects", _node(("f8", False, True), (3, "<", None, None, None, -1, -1, 63))),
    # ... and "plain data" from these: joblib would skip bytes the scanner would parse as a pickle.
    ("object dtype flagged as plain data", _node(("O8", False, True), (3, "|", None, None, None, -1, -1, 0))),
    ("object dtype with an element size", _node(("object", False, True), (3, "|", None, None, None, 8, -1, 63))),
    ("void with a subarray state of another size", _node(("f8", False, True),
                                                          (3, "<", (_node(("O8", False, True)), (2,)), None, None,
                                                           16, 8, 63))),
    ("legacy state layout", _node(("V16", False, True), (1, "|", None, ("a",), None, 16, 1))),
    ("a code that is a call", _node((Call(GlobalRef("numpy", "float64"), (), "REDUCE"), False, True))),
    ("a code that is an import", _node((GlobalRef("os", "system"), False, True))),
    ("non-boolean copy argument", _node(("f8", False, 1))),
    ("not numpy.dtype", Call(GlobalRef("numpy.dtypes", "ObjectDType"), (), "REDUCE")),
    ("not a call at all", "O8"),
    ("a code numpy rejects", _node(("Q99", False, True))),
])
def test_a_dtype_numpy_would_not_write_is_refused(why: str, node: Any) -> None:
    with pytest.raises(DtypeUnresolved):
        resolve_dtype(node)


def test_a_dtype_built_twice_is_refused() -> None:
    node = _node(("f8", False, True), (3, "<", None, None, None, -1, -1, 0))
    node.builds = 2
    with pytest.raises(DtypeUnresolved, match="modified"):
        resolve_dtype(node)


def test_a_dtype_that_contains_itself_is_refused_not_a_recursion_error() -> None:
    node = _node(("V16", False, True))
    node.state, node.builds = (3, "|", (node, (2,)), None, None, 16, 8, 63), 1
    with pytest.raises(DtypeUnresolved):
        resolve_dtype(node)


# ---- whole files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3)], ids=["raw", "zlib", "gzip"])
def test_numeric_arrays_of_every_kind_stay_usable(tmp_path: Path, compress: Any) -> None:
    arrays = {f"a{i}": np.zeros((3, 2), dtype=np.dtype(spec)) for i, spec in enumerate(BENIGN_DTYPES)}
    arrays["weights"] = np.arange(24, dtype=np.float32).reshape(4, 6)
    arrays["empty"] = np.zeros((0, 5))
    arrays["fortran"] = np.asfortranarray(np.ones((3, 4)))
    path = tmp_path / "arrays_v20260101_000000.pkl"
    joblib.dump(arrays, path, compress=compress)
    inspection = inspect_artifact(path)
    assert inspection.usable, inspection.problems
    assert inspection.format == "joblib"
    assert inspection.load_safety is LoadSafety.PICKLE_ALLOWLISTED
    assert joblib.load(path)["weights"].sum() == 276  # the file really is what joblib reads back


def test_a_harmless_object_array_is_scanned_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    joblib.dump({"names": np.array(["a", None, 3], dtype=object)}, path)
    with open(path, "rb") as handle:
        from qtsafe.models.pickle_scan import scan_pickle

        scan = scan_pickle(handle)
    assert scan.object_arrays == 1 and scan.raw_array_bytes == 0
    assert inspect_artifact(path).usable


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_every_object_spelling_is_refused_and_nothing_runs(tmp_path: Path, spelling: str) -> None:
    marker = tmp_path / "PWNED"
    path = write_object_array(tmp_path / "model.pkl", spelling, marker)
    inspection = inspect_artifact(path)
    assert not inspection.usable
    assert inspection.load_safety is LoadSafety.UNSAFE
    codes = {p.code for p in inspection.failures}
    assert codes & {"dangerous_globals", "unresolved_dtype"}, inspection.problems
    if "dangerous_globals" in codes:
        assert "posix.system" in inspection.headline()
    assert not marker.exists()


def test_a_wrapper_made_by_copyreg_is_still_a_wrapper(tmp_path: Path) -> None:
    # joblib checks isinstance(obj, NumpyArrayWrapper) after each BUILD: its array bytes are skipped by joblib,
    # so the payload hidden after them (inside what looks like a byte string) is what joblib runs next.
    marker = tmp_path / "PWNED"
    inspection = inspect_artifact(write_reconstructed_wrapper(tmp_path / "model.pkl", marker))
    assert not inspection.usable
    assert "posix.system" in inspection.headline()
    assert not marker.exists()


# ---- a second opinion: picklescan --------------------------------------------------------------------

def _picklescan(path: Path) -> tuple[int, set[str]]:
    result = picklescan_bytes(io.BytesIO(path.read_bytes()), str(path))
    return result.issues_count, {f"{g.module}.{g.name}" for g in result.globals if g.safety is SafetyLevel.Dangerous}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_picklescan_also_flags_the_object_array_fixtures(tmp_path: Path, spelling: str) -> None:
    # picklescan reads every opcode in the file in order and never skips array bytes, so the embedded pickle's
    # import of posix.system is in its list whatever the dtype's spelling: the fixture is malicious by a
    # maintained scanner's judgement too, not only by qtsafe's.
    path = write_object_array(tmp_path / "model.pkl", spelling, tmp_path / "PWNED")
    issues, dangerous = _picklescan(path)
    assert issues >= 1
    assert f"{os.system.__module__}.system" in dangerous


def test_picklescan_cannot_see_through_a_wrapper_desync(tmp_path: Path) -> None:
    # The copyreg-built wrapper hides its payload inside what a linear opcode reader takes for a byte string
    # (the bytes joblib skips as array data open a BINBYTES that swallows the opcodes joblib runs next).
    # picklescan reads linearly, so it reports no dangerous import: this is the case only a scanner that
    # follows joblib's array reads (qtsafe's) refuses. Asserted so a picklescan that learns it is noticed.
    path = write_reconstructed_wrapper(tmp_path / "model.pkl", tmp_path / "PWNED")
    issues, dangerous = _picklescan(path)
    assert (issues, dangerous) == (0, set())
    assert not inspect_artifact(path).usable
