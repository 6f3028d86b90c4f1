"""Read zip archive members (torch .pth/.pt/.pt2) under a size cap: a zip bomb is a finding, not a MemoryError.

A torch archive's ``data.pkl`` is kilobytes and its tensors are stored uncompressed, yet nothing in the zip
format stops an 8 MB file from inflating to gigabytes. Every member is therefore capped twice: by the size
its header declares (checked before anything is read) and by the bytes it really inflates to (counted while
it is read in chunks, so a header that lies is stopped at the cap too). Nothing here is a setting: no
settings reach model inspection, so the caps are module constants.
"""

from __future__ import annotations

import tempfile
import zipfile
import zlib
from collections.abc import Callable
from typing import IO

__all__ = [
    "MAX_ARCHIVE_MEMBER_BYTES",
    "MAX_ARCHIVE_TOTAL_BYTES",
    "ArchiveLimitError",
    "check_declared_sizes",
    "check_inflated_sizes",
    "read_member",
    "spool_member",
]

# The biggest single member (one tensor's storage, or a data.pkl) qtsafe reads: 1 GiB is 268M float32
# parameters, far beyond the fleet's models, and bounded enough to inspect on a 2-core VPS.
MAX_ARCHIVE_MEMBER_BYTES = 1 << 30
# The sum of all members' declared sizes (torch.load(weights_only=True) holds them all in memory).
MAX_ARCHIVE_TOTAL_BYTES = 4 << 30
_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 64 << 20


class ArchiveLimitError(ValueError):
    """A member declares or inflates to more than the cap, or its data does not match its header."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code  # archive_member_too_large | corrupt


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


def check_declared_sizes(archive: zipfile.ZipFile) -> None:
    """Refuse before reading anything when a header declares more than a cap allows."""
    cap, total_cap = MAX_ARCHIVE_MEMBER_BYTES, MAX_ARCHIVE_TOTAL_BYTES
    total = 0
    for info in archive.infolist():
        if info.file_size > cap:
            raise ArchiveLimitError(
                f"archive member {info.filename} declares {_size(info.file_size)} uncompressed "
                f"({_size(info.compress_size)} in the file), over the {_size(cap)} cap per member: "
                "a zip bomb, or a model too big to inspect; refused without reading it",
                code="archive_member_too_large")
        total += info.file_size
    if total > total_cap:
        raise ArchiveLimitError(
            f"archive members declare {_size(total)} uncompressed in all, over the {_size(total_cap)} cap: "
            "a zip bomb, or a model too big to inspect; refused without reading it",
            code="archive_member_too_large")


def _stream(archive: zipfile.ZipFile, info: zipfile.ZipInfo, sink: Callable[[bytes], object]) -> int:
    cap = MAX_ARCHIVE_MEMBER_BYTES
    total = 0
    try:
        with archive.open(info) as member:
            while True:
                chunk = member.read(_CHUNK)  # a bounded inflate: never more than _CHUNK bytes at once
                if not chunk:
                    return total
                total += len(chunk)
                if total > cap:
                    raise ArchiveLimitError(
                        f"archive member {info.filename} inflates past the {_size(cap)} cap per member (its header "
                        f"declares {_size(info.file_size)}): a zip bomb; refused after reading {_size(cap)}",
                        code="archive_member_too_large")
                sink(chunk)
    except ArchiveLimitError:
        raise
    # RuntimeError includes NotImplementedError, what zipfile raises for a compression method it cannot inflate.
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, KeyError, RuntimeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:200]
        lying = " (its data does not match its header: a size that lies, or a damaged file)" if "CRC" in detail else ""
        raise ArchiveLimitError(f"corrupt archive member {info.filename}: {detail}{lying}", code="corrupt") from exc


def check_inflated_sizes(archive: zipfile.ZipFile) -> None:
    """Inflate every compressed member once, in chunks, discarding the bytes: torch's own loader reads them
    later and must not meet a member bigger than its header says. Stored (uncompressed) members cannot
    inflate and are not read."""
    for info in archive.infolist():
        if info.compress_type != zipfile.ZIP_STORED and not info.is_dir():
            _stream(archive, info, lambda _chunk: None)


def read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """A member's bytes in memory (small members: JSON, version strings), at most the cap."""
    parts: list[bytes] = []
    _stream(archive, _info(archive, name), parts.append)
    return b"".join(parts)


def spool_member(archive: zipfile.ZipFile, name: str) -> IO[bytes]:
    """A member's bytes in a seekable temporary file (in memory up to 64 MiB, then on disk), at most the cap.
    The caller closes it."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
    try:
        _stream(archive, _info(archive, name), spool.write)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool  # type: ignore[return-value]


def _info(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(name)
    except KeyError as exc:
        raise ArchiveLimitError(f"corrupt archive: member {name} is missing", code="corrupt") from exc
