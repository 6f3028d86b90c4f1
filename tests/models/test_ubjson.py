"""The UBJSON reader agrees with XGBoost's own JSON dump of the same booster."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtsafe.models import ubjson
from tests.models.conftest import Artifacts


@pytest.mark.parametrize("named", [True, False])
def test_ubj_header_equals_the_json_header(artifacts: Artifacts, named: bool) -> None:
    ubj = artifacts.xgb_ubj if named else artifacts.xgb_unnamed_ubj
    js = artifacts.xgb_json if named else artifacts.xgb_unnamed_json
    from_ubj = ubjson.loads(ubj.read_bytes())
    from_json = json.loads(js.read_text())
    assert from_ubj["version"] == from_json["version"]
    for key in ("learner_model_param", "feature_names", "feature_types", "objective"):
        assert from_ubj["learner"][key] == from_json["learner"][key], key
    trees_ubj = from_ubj["learner"]["gradient_booster"]["model"]["trees"]
    trees_json = from_json["learner"]["gradient_booster"]["model"]["trees"]
    assert len(trees_ubj) == len(trees_json)
    # Big typed arrays are measured, not decoded: the count must still be right.
    assert trees_ubj[0]["split_conditions"].count == len(trees_json[0]["split_conditions"])


def test_truncated_ubj_is_reported_as_truncated(artifacts: Artifacts) -> None:
    raw = artifacts.xgb_ubj.read_bytes()
    for cut in (1, 10, len(raw) // 2, len(raw) - 1):
        with pytest.raises(ubjson.UbjError) as info:
            ubjson.loads(raw[:cut])
        assert info.value.truncated, cut


def test_scalars_strings_and_containers() -> None:
    def s(text: str) -> bytes:
        raw = text.encode()
        return b"U" + bytes([len(raw)]) + raw

    doc = (b"{" + s("a") + b"i\x05" + s("b") + b"D" + struct.pack(">d", 1.5) + s("c") + b"S" + s("hi")
           + s("d") + b"[TFZ]" + s("e") + b"[#U\x02i\x01i\x02" + s("f") + b"[$l#U\x02" + b"\x00" * 8 + b"}")
    value = ubjson.loads(doc)
    assert value["a"] == 5 and value["b"] == 1.5 and value["c"] == "hi"
    assert value["d"] == [True, False, None]
    assert value["e"] == [1, 2]
    assert value["f"] == ubjson.SkippedArray("l", 2)


def test_trailing_bytes_are_an_error() -> None:
    with pytest.raises(ubjson.UbjError):
        ubjson.loads(b"Z" + b"Z")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_decode_or_raise_ubj_error(blob: bytes) -> None:
    with contextlib.suppress(ubjson.UbjError):
        ubjson.loads(b"{" + blob)
