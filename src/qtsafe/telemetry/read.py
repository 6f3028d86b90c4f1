"""Reading one window from a source: check the stream, resolve ``--last`` to a start ID, then page with progress."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from qtsafe.telemetry.sources import Page, Progress, RedisStreamSource, ServerMark, Source
from qtsafe.telemetry.window import Window


@dataclasses.dataclass(frozen=True)
class WindowRead:
    """A read about to begin: where it starts and what the progress line counts against."""

    source: Source
    window: Window
    total: int  # the stream's length; -1 when the source cannot say (an export)
    start: str  # the cutover's ID, or with --last the oldest of the newest N entries in the window
    mark: ServerMark | None  # who served the stream as the read began (gather pins every page to it)

    def pages(self, progress: Progress | None = None) -> Iterator[Page]:
        """The window's entries in pages, oldest first, reporting progress against the stream's length."""
        return self.source.pages(self.start, self.window.end_id, progress=progress,
                                 total=self.total if self.total >= 0 else None, since=self.mark)


def open_read(source: Source, window: Window, *, marked: bool = False) -> WindowRead:
    """Check the source (a missing stream is an error), note its server when ``marked``, resolve ``--last``."""
    total = source.check()
    mark = source.mark() if marked and isinstance(source, RedisStreamSource) else None
    start = window.start_id
    if window.last is not None:
        start = source.first_id_of_last(window.last, start, window.end_id) or start
    return WindowRead(source, window, total, start, mark)
