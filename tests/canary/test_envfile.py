from __future__ import annotations

import pytest

from qtsafe.canary import envfile
from qtsafe.errors import InputError

DATA = b"# comment\nA=1\nPATCHTST_SHADOW_ONLY=true\r\nB='x y'\n#PATCHTST_SHADOW_ONLY=old\nC=3"


def test_replace_keeps_every_other_byte_and_line_ending() -> None:
    new, old_line, new_line = envfile.replace_value(DATA, "PATCHTST_SHADOW_ONLY", "false")
    assert old_line == b"PATCHTST_SHADOW_ONLY=true\r\n"
    assert new_line == b"PATCHTST_SHADOW_ONLY=false\r\n"
    assert new == DATA.replace(b"PATCHTST_SHADOW_ONLY=true\r\n", b"PATCHTST_SHADOW_ONLY=false\r\n")


def test_last_line_without_newline() -> None:
    new, _, _ = envfile.replace_value(DATA, "C", "4")
    assert new.endswith(b"\nC=4") and new[:-1] == DATA[:-1]


def test_absent_key_is_refused() -> None:
    with pytest.raises(InputError, match="does not occur"):
        envfile.replace_value(DATA, "MISSING", "1")


def test_commented_key_does_not_count() -> None:
    with pytest.raises(InputError, match="does not occur"):
        envfile.replace_value(b"#X=1\n", "X", "2")


def test_duplicated_key_is_refused() -> None:
    with pytest.raises(InputError, match="occurs 2 times"):
        envfile.replace_value(b"X=1\nY=2\nX=3\n", "X", "2")


@pytest.mark.parametrize("data", [b" X=1\n", b"export X=1\n", b"X =1\n"])
def test_unusual_forms_are_refused(data: bytes) -> None:
    with pytest.raises(InputError, match="unusual form"):
        envfile.replace_value(data, "X", "2")


def test_prefix_keys_are_not_confused() -> None:
    new, _, _ = envfile.replace_value(b"XY=1\nX=2\n", "X", "3")
    assert new == b"XY=1\nX=3\n"


@pytest.mark.parametrize("key", ["", "1A", "A-B", "A=B", "A\nB", "A B"])
def test_bad_keys(key: str) -> None:
    with pytest.raises(InputError):
        envfile.check_key(key)


@pytest.mark.parametrize("value, written", [
    ("false", "false"), ("0.10", "0.10"), ("redis://h:1/0", "redis://h:1/0"), ("", ""),
    ('{"a":1}', "'{\"a\":1}'"), ("a b", "'a b'"),
])
def test_value_encoding(value: str, written: str) -> None:
    assert envfile.encode_value(value) == written


@pytest.mark.parametrize("value", ["a\nB=1", "a\rb", "a\x00", "it's", "back\\slash", "ünï"])
def test_unsafe_values_are_refused(value: str) -> None:
    with pytest.raises(InputError):
        envfile.encode_value(value)


def test_read_value() -> None:
    assert envfile.read_value(DATA, "B") == "x y"
    assert envfile.read_value(DATA, "PATCHTST_SHADOW_ONLY") == "true"
    assert envfile.read_value(DATA, "NOPE") is None
    assert envfile.read_value(b'W="{\\"a\\":1}"\n', "W") == '{"a":1}'


def test_replace_line_only_when_unchanged() -> None:
    new, old_line, new_line = envfile.replace_value(DATA, "A", "2")
    assert envfile.replace_line(new, "A", new_line, old_line) == DATA
    with pytest.raises(InputError, match="changed by someone else"):
        envfile.replace_line(new.replace(b"A=2", b"A=9"), "A", new_line, old_line)
