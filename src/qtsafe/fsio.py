"""Every file write goes through here: atomic replace for whole files, a locked fsynced appender for JSONL."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from qtsafe.errors import WriteError


def fsync_dir(directory: Path) -> None:
    """Make a rename or removal in ``directory`` durable (the directory entry itself is flushed)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def probe_writable(directory: Path) -> str | None:
    """None if we can create files in ``directory`` (or its nearest existing ancestor), else the reason.

    A real probe (create and delete a temp file), not ``os.access``: root passes ``access`` checks even on
    a read-only filesystem, and a path component that is a file must be caught too.
    """
    target = directory
    while not target.exists():
        if target.parent == target:
            break
        target = target.parent
    if not target.is_dir():
        return f"{target} is not a directory"
    try:
        fd, name = tempfile.mkstemp(prefix=".qtsafe-probe.", dir=target)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return f"cannot create a file in {target}: {exc.strerror or exc}"
    return None


@contextlib.contextmanager
def atomic_writer(path: Path | str, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary handle whose contents replace ``path`` atomically when the block succeeds.

    Temp file in the same directory, fsync, ``os.replace``, fsync the directory. On any failure the
    temp file is removed and the previous file is left exactly as it was.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create directory {target.parent}: {exc.strerror or exc}") from exc
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp_name, mode)
        elif target.exists():
            os.chmod(tmp_name, target.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
        tmp_name = None
        fsync_dir(target.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def atomic_write_bytes(path: Path | str, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of either."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)
    return Path(path)


def _write_temp(directory: Path, target: Path, data: bytes) -> str:
    """A fsynced, 0o644 temp file for ``target`` in ``directory`` (created exclusively by mkstemp)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, 0o644)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return name


def _link_aside(path: Path) -> str:
    """Hard-link ``path`` to a fresh hidden name beside it; link() refuses an existing name, so no race."""
    for _ in range(100):
        name = str(path.with_name(f".{path.name}.{secrets.token_hex(6)}.old"))
        try:
            os.link(path, name)
            return name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free name for a backup link", str(path))


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create directory {directory}: {exc.strerror or exc}") from exc


def atomic_write_pair(first: Path, first_data: bytes, second: Path, second_data: bytes) -> None:
    """Replace two files in one directory as a pair: both new, or both as they were.

    Both temp files are written and fsynced before either is renamed; if the second rename fails, the
    first file is put back as it was (kept through a hard link), so a report never has half a twin.
    """
    directory = first.parent
    if second.parent != directory:
        raise ValueError("atomic_write_pair needs both files in one directory")
    _make_dir(directory)
    temps: dict[Path, str] = {}
    keep: str | None = None
    current = first  # the file being written when an error strikes: what the message names
    try:
        for target, data in ((first, first_data), (second, second_data)):
            current = target
            temps[target] = _write_temp(directory, target, data)
        current = first
        if first.is_file():
            keep = _link_aside(first)
        os.replace(temps[first], first)
        del temps[first]
        current = second
        try:
            os.replace(temps[second], second)
            del temps[second]
        except OSError:
            if keep is not None:
                os.replace(keep, first)
                keep = None
            else:
                os.unlink(first)
            raise
        fsync_dir(directory)
    except OSError as exc:
        raise WriteError(f"cannot write {current}: {exc.strerror or exc}") from exc
    finally:
        for name in [*temps.values(), keep or ""]:
            if name:
                with contextlib.suppress(OSError):
                    os.unlink(name)


def write_new_pair(directory: Path, stem_for: Callable[[str], str], build: Callable[[Path, Path], tuple[bytes, bytes]],
                   *, first_ext: str = ".json", second_ext: str = ".md") -> tuple[Path, Path]:
    """Create a new pair ``<stem><first_ext>`` + ``<stem><second_ext>`` that replaces nothing (see write_new_set)."""

    def build_set(paths: dict[str, Path]) -> dict[str, bytes]:
        first, second = build(paths[first_ext], paths[second_ext])
        return {first_ext: first, second_ext: second}

    paths = write_new_set(directory, stem_for, build_set, (first_ext, second_ext))
    return paths[first_ext], paths[second_ext]


def write_new_set(directory: Path, stem_for: Callable[[str], str],
                  build: Callable[[dict[str, Path]], dict[str, bytes]], exts: tuple[str, ...]) -> dict[str, Path]:
    """Create new files ``<stem><ext>`` that replace nothing; returns the paths written, by extension.

    ``stem_for("")`` is the preferred stem; when any name of the set is taken (another run in the same second),
    ``stem_for("_2")``, ``stem_for("_3")``, ... are tried. ``build(paths)`` gives the contents for the names being
    tried (a report names its own paths), for ``exts`` or a subset of them, in the order they appear (a report's
    last file is the one that says it is complete). Names are claimed with link(), which fails on an existing
    name, so two processes never get the same set; the files appear whole, in order, or not at all.
    """
    _make_dir(directory)
    n = 1
    while True:
        stem = stem_for("" if n == 1 else f"_{n}")
        paths = {ext: directory / f"{stem}{ext}" for ext in exts}
        if any(path.exists() for path in paths.values()):
            n += 1
            continue
        contents = build(paths)
        order = [ext for ext in exts if ext in contents]
        temps: list[str] = []
        linked: list[Path] = []
        current = paths[order[0]]
        try:
            for ext in order:
                current = paths[ext]
                temps.append(_write_temp(directory, current, contents[ext]))
            taken = False
            for ext, temp in zip(order, temps, strict=True):
                current = paths[ext]
                try:
                    os.link(temp, current)
                except FileExistsError:
                    taken = True
                    break
                except OSError:
                    _unlink_all(linked)
                    raise
                linked.append(current)
            if taken:
                _unlink_all(linked)
                n += 1
                continue
            fsync_dir(directory)
            return {ext: paths[ext] for ext in order}
        except OSError as exc:
            raise WriteError(f"cannot write {current}: {exc.strerror or exc}") from exc
        finally:
            for name in temps:
                with contextlib.suppress(OSError):
                    os.unlink(name)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def atomic_write_text(path: Path | str, text: str, mode: int | None = None) -> Path:
    """Atomic write of UTF-8 text (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: Path | str, obj: Any, *, compact: bool = False) -> Path:
    """Atomic write of ``obj`` as pretty, key-sorted JSON with a trailing newline; ``compact`` writes one line
    with the C encoder (a machine's file rewritten every check: pretty-printing goes through the pure-Python
    encoder, several times slower on a large state)."""
    if compact:
        return atomic_write_text(path, json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n")
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


@contextlib.contextmanager
def locked(path: Path | str, *, blocking: bool = True) -> Iterator[int]:
    """Hold an exclusive flock on ``path`` (created if needed) for the duration of the block."""
    lock_path = Path(path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WriteError(f"cannot open lock file {lock_path}: {exc.strerror or exc}") from exc
    try:
        flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError as exc:
            from qtsafe.errors import StateError

            raise StateError(f"{lock_path} is held by another qtsafe process") from exc
        yield fd
    finally:
        os.close(fd)


def append_jsonl(path: Path | str, record: dict[str, Any]) -> None:
    """Append one JSON object as one line under an exclusive lock, then fsync. Never rewrites the file."""
    target = Path(path)
    line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WriteError(f"cannot open {target} for appending: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        written = os.write(fd, line)
        if written != len(line):
            raise WriteError(f"short write to {target}: {written} of {len(line)} bytes")
        os.fsync(fd)
    except OSError as exc:
        raise WriteError(f"cannot append to {target}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
