"""The one adapter over ``systemctl`` / ``journalctl`` / ``git``: subprocess with timeouts, binaries from settings.

Nothing else in qtsafe runs these programs. Every call has a timeout (a hung ``systemctl restart``
must not hang the canary), and every failure becomes a :class:`SystemdError` with the command and its
stderr. The adapter is a small class so tests can also hand in a recording fake, but the test suite
mostly runs it for real against a fake ``systemctl`` script on PATH.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from qtsafe.config import Settings
from qtsafe.errors import SystemdError


def parse_environment(line: str) -> dict[str, str]:
    """Parse ``systemctl show -p Environment`` output into ``{name: value}``.

    systemd prints ``Environment=A=1 "B={\\"x\\":1}"``: space-separated assignments, shell-quoted
    when they hold special characters; later assignments of the same name win.
    """
    text = line.strip()
    if text.startswith("Environment="):
        text = text[len("Environment="):]
    out: dict[str, str] = {}
    try:
        words = shlex.split(text, posix=True)
    except ValueError as exc:
        raise SystemdError(f"cannot parse the unit's Environment property: {exc}: {text[:200]!r}") from None
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise SystemdError(f"unexpected entry in the unit's Environment property: {word[:200]!r}")
        out[name] = value
    return out


class Systemd:
    """``systemctl``/``journalctl`` for one unit, with per-call timeouts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.unit = settings.unit
        self.query_timeout = settings.canary.command_timeout
        self.restart_timeout = settings.canary.restart_timeout

    def _run(self, argv: Sequence[str], timeout: float, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise SystemdError(f"'{shlex.join(argv)}' timed out after {timeout:g}s") from None
        except OSError as exc:
            raise SystemdError(f"cannot run '{argv[0]}': {exc.strerror or exc}") from None
        if check and proc.returncode != 0:
            detail = " ".join((proc.stderr or proc.stdout or "").split())[:300]
            raise SystemdError(f"'{shlex.join(argv)}' failed with exit {proc.returncode}: {detail or 'no output'}")
        return proc

    def is_active(self) -> str:
        """The unit's ActiveState word (``active``, ``inactive``, ``failed``, ...). Non-zero exit is normal here."""
        proc = self._run([self.settings.systemctl, "is-active", self.unit], self.query_timeout, check=False)
        word = (proc.stdout or "").strip().splitlines()
        return word[0].strip() if word else "unknown"

    def daemon_reload(self) -> None:
        self._run([self.settings.systemctl, "daemon-reload"], self.restart_timeout)

    def restart(self) -> None:
        self._run([self.settings.systemctl, "restart", self.unit], self.restart_timeout)

    def show(self, prop: str) -> str:
        """The raw ``Prop=value`` line of ``systemctl show -p Prop``."""
        proc = self._run([self.settings.systemctl, "show", self.unit, "-p", prop], self.query_timeout)
        for line in (proc.stdout or "").splitlines():
            if line.startswith(prop + "="):
                return line
        raise SystemdError(f"'systemctl show {self.unit} -p {prop}' printed no {prop}= line")

    def environment(self) -> dict[str, str]:
        """The unit's configured ``Environment=`` (unit file plus drop-ins, as of the last daemon-reload)."""
        return parse_environment(self.show("Environment"))

    def active_since(self) -> dt.datetime:
        """When the unit last entered 'active', as an aware UTC datetime.

        Asked for with ``--timestamp=utc`` so no local zone has to be guessed; a zone other than UTC in
        the answer is refused rather than misread. Never active (empty or ``n/a``) is an error.
        """
        argv = [self.settings.systemctl, "show", self.unit, "-p", "ActiveEnterTimestamp"]
        try:
            proc = self._run([*argv, "--timestamp=utc"], self.query_timeout)
        except SystemdError as first:
            # systemd < 248 has no --timestamp=; ask plainly and accept the answer only if it is in UTC.
            try:
                proc = self._run(argv, self.query_timeout)
            except SystemdError:
                raise first from None
        line = next((x for x in (proc.stdout or "").splitlines() if x.startswith("ActiveEnterTimestamp=")), "")
        raw = line.partition("=")[2].strip()
        match = re.search(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?: (\S+))?$", raw)
        if not match:
            raise SystemdError(f"{self.unit} has no usable ActiveEnterTimestamp ({raw or 'empty'!r}); is it running?")
        if match.group(3) not in (None, "UTC"):
            raise SystemdError(f"{self.unit} ActiveEnterTimestamp is not in UTC: {raw!r}")
        return dt.datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}+00:00")

    def journal_tail(self, lines: int = 20) -> list[str]:
        """The unit's last ``lines`` journal lines, kept as proof. Failure here is reported, not fatal."""
        proc = self._run(
            [self.settings.journalctl, "-u", self.unit, "-n", str(lines), "--no-pager"], self.query_timeout
        )
        return (proc.stdout or "").splitlines()[-lines:]

    def git_head(self) -> str | None:
        """The engine repo's ``HEAD`` commit, or None when no repo is configured or git cannot tell."""
        repo = self.settings.engine_repo
        if not repo or not Path(repo).is_dir():
            return None
        try:
            proc = self._run(["git", "-C", repo, "rev-parse", "HEAD"], self.query_timeout, check=False)
        except SystemdError:
            return None
        head = (proc.stdout or "").strip()
        return head if proc.returncode == 0 and len(head) == 40 else None
