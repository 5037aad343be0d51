"""Helpers the CPython-suite runner sends into workers (kept importable everywhere).

A subinterpreter imports a function or class by module and qualified name, so
what the generic tests hand to an ``InterpreterExecutor`` lives here, in a
module with no test-runner imports.
"""

from __future__ import annotations

import os
import select


class PipeEvent:
    """An event that works across subinterpreters: a pipe that becomes readable once set.

    The suite's ``create_event()`` returns a ``threading.Event`` for threads and a
    manager's event for processes; neither crosses into a subinterpreter, but a
    file descriptor does (subinterpreters share the process's descriptor table).
    """

    def __init__(self) -> None:
        self._r, self._w = os.pipe()

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self._r, self._w))

    def set(self) -> None:
        os.write(self._w, b"x")

    def is_set(self) -> bool:
        return bool(select.select([self._r], [], [], 0)[0])

    def wait(self, timeout: float | None = None) -> bool:
        return bool(select.select([self._r], [], [], timeout)[0])

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)


def _rebuild(r: int, w: int) -> PipeEvent:
    event = PipeEvent.__new__(PipeEvent)
    event._r, event._w = r, w
    return event
