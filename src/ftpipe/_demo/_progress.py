"""The demo's progress display: one status line on stderr while it measures."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress"]


class Progress:
    """One status line on stderr: rewritten in place on a terminal, plain lines otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._started = time.perf_counter()
        self._prefix = ""

    def stage(self, text: str) -> None:
        """Start a new stage: ``text`` prefixes every line until the next one."""
        self._prefix = text
        self.line("")

    def line(self, text: str) -> None:
        """Show ``text`` (the detector's progress) under the current stage."""
        stamp = f"[{time.perf_counter() - self._started:5.0f} s] {self._prefix}"
        message = f"{stamp}: {text}" if text else stamp
        if self._tty:
            self._stream.write("\r\x1b[K" + message[:150])
        else:
            self._stream.write(message + "\n")
        self._stream.flush()

    def done(self, text: str) -> None:
        """End the stage with a line that stays."""
        if self._tty:
            self._stream.write("\r\x1b[K")
        self._stream.write(f"[{time.perf_counter() - self._started:5.0f} s] {text}\n")
        self._stream.flush()
