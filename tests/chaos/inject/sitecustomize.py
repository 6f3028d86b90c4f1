"""Fault injection for chaos subprocesses (on PYTHONPATH only when a test asks for it).

``CHAOS_FAIL="replace:<glob>,write:<glob>,link:<glob>"`` makes ``os.replace`` onto a file whose name
matches, ``os.write`` to an open file whose name matches, or ``os.link`` creating a name that matches,
fail with ``CHAOS_ERRNO`` (default ENOSPC), as a full disk would.
Everything else in the process is the real code, unmodified.
"""

from __future__ import annotations

import errno
import fnmatch
import os

_SPEC = os.environ.get("CHAOS_FAIL", "")
_ERRNO = getattr(errno, os.environ.get("CHAOS_ERRNO", "ENOSPC"))
_RULES = [tuple(rule.split(":", 1)) for rule in _SPEC.split(",") if ":" in rule]


def _hit(kind: str, path: object) -> bool:
    name = os.path.basename(os.fsdecode(path))  # type: ignore[arg-type]
    return any(k == kind and fnmatch.fnmatch(name, glob) for k, glob in _RULES)


def _fail(path: object) -> OSError:
    return OSError(_ERRNO, os.strerror(_ERRNO), os.fsdecode(path))  # type: ignore[arg-type]


if _RULES:
    _replace = os.replace
    _write = os.write
    _link = os.link

    def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if _hit("replace", dst):
            raise _fail(dst)
        return _replace(src, dst, *args, **kwargs)

    def write(fd, data):  # type: ignore[no-untyped-def]
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if path and _hit("write", path):
            raise _fail(path)
        return _write(fd, data)

    def link(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        if _hit("link", dst):
            raise _fail(dst)
        return _link(src, dst, *args, **kwargs)

    os.replace = replace
    os.write = write
    os.link = link
