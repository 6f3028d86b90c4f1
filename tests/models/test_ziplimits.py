"""Every zip member is capped by its declared and its inflated size; a bomb fails one file, quickly."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest

from qtsafe.models import ziplimits
from qtsafe.models.artifact import inspect_artifact
from tests.models.hostile import deflate_zeros, torch_zip_bomb

CAP = 1 << 20  # tests shrink the cap so a bomb of twice the cap is built and refused in milliseconds


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(ziplimits, "MAX_ARCHIVE_MEMBER_BYTES", CAP)
    return CAP


def test_the_bomb_builder_really_inflates(tmp_path: Path) -> None:
    path = torch_zip_bomb(tmp_path / "b.pth", 3 * CAP + 5)
    with zipfile.ZipFile(path) as archive:
        assert len(archive.read("archive/data.pkl")) == 3 * CAP + 5  # the CRC is honest at this size
    assert len(deflate_zeros(64 << 20)) < 128 << 10


@pytest.mark.parametrize(("member", "declared", "code", "words"), [
    ("data.pkl", None, "archive_member_too_large", "declares 2 MiB uncompressed"),
    ("data/0", None, "archive_member_too_large", "declares 2 MiB uncompressed"),
    # A header that lies (1 KiB declared, 2 MiB inside): the reader stops at what was declared.
    ("data.pkl", 1024, "corrupt", "does not match its header"),
    ("data/0", 1024, "corrupt", "does not match its header"),
    # Declared just under the cap, twice the cap inside: still never more than the cap is inflated.
    ("data.pkl", CAP - 1, "corrupt", "does not match its header"),
])
def test_a_zip_bomb_member_is_one_clear_finding(tmp_path: Path, small_cap: int, member: str, declared: int | None,
                                                code: str, words: str) -> None:
    path = torch_zip_bomb(tmp_path / "tiny_v20260101_000000.pth", 2 * small_cap, declared=declared, member=member)
    inspection = inspect_artifact(path)
    assert not inspection.usable
    assert inspection.format == "torch-zip"
    assert [p.code for p in inspection.failures] == [code]
    assert f"archive/{member}" in inspection.headline() and words in inspection.headline()


def test_the_members_together_are_capped_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ziplimits, "MAX_ARCHIVE_TOTAL_BYTES", CAP)
    path = torch_zip_bomb(tmp_path / "t.pth", CAP // 2 + 1, member="data/0")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("archive/data/1", bytes(CAP // 2 + 1), compress_type=zipfile.ZIP_DEFLATED)
    inspection = inspect_artifact(path)
    assert [p.code for p in inspection.failures] == ["archive_member_too_large"]
    assert "in all" in inspection.headline()


class _EndlessMember(io.RawIOBase):
    """A member stream that ignores the header and never ends, as another zip reader might behave."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        buffer[:] = bytes(len(buffer))
        return len(buffer)


def test_the_cap_holds_even_if_the_reader_believes_no_header(tmp_path: Path, small_cap: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = torch_zip_bomb(tmp_path / "t.pth", 10)
    with zipfile.ZipFile(path) as archive:
        monkeypatch.setattr(archive, "open", lambda *_a, **_k: io.BufferedReader(_EndlessMember()))
        started = time.monotonic()
        with pytest.raises(ziplimits.ArchiveLimitError, match="inflates past the 1 MiB cap") as caught:
            ziplimits.read_member(archive, "archive/data.pkl")
        assert caught.value.code == "archive_member_too_large"
        assert time.monotonic() - started < 5


def test_a_healthy_torch_archive_is_untouched_by_the_caps(artifacts) -> None:  # noqa: ANN001 - fixture
    inspection = inspect_artifact(artifacts.torch_state_dict)
    assert inspection.usable, inspection.problems
    assert inspection.details.get("weights_only_load") == "ok"


def test_an_unsupported_compression_method_is_a_corrupt_member_not_a_traceback() -> None:
    """zipfile raises NotImplementedError for a method it cannot inflate (here 99, no such method): the reader
    names the member as corrupt, the same one-line refusal as any unreadable member."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", b"x" * 64)
    raw = bytearray(buffer.getvalue())
    raw[8:10] = (99).to_bytes(2, "little")  # the local header's compression method
    central = raw.index(b"PK\x01\x02")
    raw[central + 10:central + 12] = (99).to_bytes(2, "little")  # and the central directory's
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        with pytest.raises(NotImplementedError):
            archive.read("archive/data.pkl")  # what the bare library does
        with pytest.raises(ziplimits.ArchiveLimitError) as refused:
            ziplimits.read_member(archive, "archive/data.pkl")
    assert refused.value.code == "corrupt" and "archive/data.pkl" in str(refused.value)
