"""The opcode walk: lists every import a load would perform, and never performs one."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import io
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qtsafe.models.pickle_policy import GlobalVerdict, classify_global
from qtsafe.models.pickle_scan import GlobalRef, PickleScanError, scan_pickle, scan_pickle_bytes
from tests.models.conftest import Malicious


def _reference_globals(data: bytes) -> set[str]:
    """Every import a real load performs, recorded by pickle's own find_class. Only ever used on the
    benign values these tests build, so actually loading them is harmless."""
    seen: set[str] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            seen.add(f"{module}.{name}")
            return super().find_class(module, name)

    Recorder(io.BytesIO(data)).load()
    return seen


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_plain_data_lists_the_same_imports_as_pickletools(protocol: int) -> None:
    value = {
        "arr": np.arange(6, dtype=np.float32).reshape(2, 3),
        "od": collections.OrderedDict(a=1, b=[1.5, "x", None, True]),
        "when": dt.datetime(2026, 1, 10, 5, 47, tzinfo=dt.UTC),
        "set": {1, 2},
        "bytes": b"\x00\x01",
        "tuple": (1, (2, 3)),
    }
    data = pickle.dumps(value, protocol=protocol)
    scan = scan_pickle_bytes(data)
    assert {g.dotted for g in scan.globals} == _reference_globals(data)
    assert scan.end == len(data)


@pytest.mark.parametrize("rng", [np.random.RandomState(0), np.random.default_rng(0)],
                         ids=["RandomState", "Generator"])
def test_random_generators_are_data(rng: object) -> None:
    scan = scan_pickle_bytes(pickle.dumps({"random_state": rng}))
    verdicts = {g.dotted: classify_global(g) for g in scan.globals}
    assert set(verdicts.values()) == {GlobalVerdict.DATA}, verdicts


def test_root_structure_is_kept_as_inert_placeholders() -> None:
    data = pickle.dumps({"a": [1, 2, {"b": "c"}], "t": (1, 2)}, protocol=4)
    scan = scan_pickle_bytes(data)
    items = dict(scan.root.items)
    assert items["a"][0:2] == [1, 2]
    assert dict(items["a"][2].items) == {"b": "c"}
    assert items["t"] == (1, 2)


def test_malicious_pickle_is_listed_and_never_run(malicious: Malicious) -> None:
    with open(malicious.path, "rb") as handle:
        scan = scan_pickle(handle)
    names = {g.dotted for g in scan.globals}
    assert malicious.calls in names
    assert classify_global(GlobalRef(*malicious.calls.rsplit(".", 1))) is GlobalVerdict.DANGEROUS
    assert not malicious.canary.exists()


@pytest.mark.parametrize(
    ("dotted", "verdict"),
    [
        ("collections.OrderedDict", GlobalVerdict.DATA),
        ("numpy._core.multiarray._reconstruct", GlobalVerdict.DATA),
        ("numpy.dtypes.Float32DType", GlobalVerdict.DATA),
        ("xgboost.core.Booster", GlobalVerdict.MODEL_LIBRARY),
        ("sklearn.preprocessing._data.StandardScaler", GlobalVerdict.MODEL_LIBRARY),
        ("sklearn.utils.some_function", GlobalVerdict.UNKNOWN),
        ("torch._utils._rebuild_tensor_v2", GlobalVerdict.TORCH),
        ("torch.storage._load_from_bytes", GlobalVerdict.DANGEROUS),
        ("builtins.eval", GlobalVerdict.DANGEROUS),
        ("builtins.getattr", GlobalVerdict.DANGEROUS),
        ("posix.system", GlobalVerdict.DANGEROUS),
        ("subprocess.Popen", GlobalVerdict.DANGEROUS),
        ("numpy.distutils.exec_command.exec_command", GlobalVerdict.UNKNOWN),
        ("__main__.Net", GlobalVerdict.UNKNOWN),
    ],
)
def test_classification_is_an_allowlist(dotted: str, verdict: GlobalVerdict) -> None:
    module, name = dotted.rsplit(".", 1)
    assert classify_global(GlobalRef(module, name)) is verdict


def test_every_strict_prefix_is_truncated() -> None:
    data = pickle.dumps({"w": list(range(50)), "n": "x" * 40}, protocol=4)
    for cut in range(0, len(data) - 1, 7):
        with pytest.raises(PickleScanError) as info:
            scan_pickle_bytes(data[:cut])
        assert info.value.truncated, cut


def test_scan_starts_at_an_offset_for_concatenated_pickles() -> None:
    first, second = pickle.dumps(1, protocol=2), pickle.dumps({"k": collections.OrderedDict()}, protocol=2)
    stream = io.BytesIO(first + second)
    a = scan_pickle(stream, 0)
    b = scan_pickle(stream, a.end)
    assert a.root == 1
    assert {g.dotted for g in b.globals} == {"collections.OrderedDict"}
    assert b.end == len(first) + len(second)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_any_bytes_give_a_scan_or_a_scan_error(blob: bytes) -> None:
    with contextlib.suppress(PickleScanError):
        scan_pickle_bytes(b"\x80\x04" + blob)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
                    | st.binary(max_size=8),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children,
                                                                                      max_size=4),
                    max_leaves=20),
       st.integers(min_value=0, max_value=5))
def test_builtin_values_scan_completely_without_imports(value: object, protocol: int) -> None:
    data = pickle.dumps(value, protocol=protocol)
    scan = scan_pickle_bytes(data)
    assert scan.end == len(data)
    assert {g.dotted for g in scan.globals} == _reference_globals(data)
