"""Progress for every step that runs longer than a few seconds: a tqdm bar on a terminal, one
plain line per update in a log (a file, CI, a notebook's captured stderr), never a screen of
carriage returns."""
from __future__ import annotations

import io
import sys
from typing import Any, Iterable

from tqdm.auto import tqdm

LOG_INTERVAL_S = 15.0  # seconds between lines when not on a terminal


class _Lines(io.TextIOBase):
    """A stream that turns tqdm's redraws ("\\r<status>") into whole lines."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable | None = None, *, desc: str, total: int | None = None,
             **options: Any) -> tqdm:
    """tqdm over `iterable` (or a manual bar of `total` steps) labelled `desc`; the bar stays
    when done (`leave=True`) unless told otherwise."""
    options.setdefault("leave", True)
    if not sys.stderr.isatty():
        options.setdefault("file", _Lines(sys.stderr))
        options.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(iterable, desc=desc, total=total, **options)
