"""The diagnostic hook: what ``build()`` returns under ``FTPIPE_DIAGNOSTIC_MODE=1``.

The engine cannot import the detector (layers import downward), so the detector
plugs in here when ``ftpipe.diagnose`` is imported.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ._config import PipelineConfig

__all__ = ["diagnostic_hook", "set_diagnostic_hook"]

# Set once by ftpipe.diagnose when it is imported (and swapped by its probe); read by
# build().  The lock makes the swap and the read safe from any thread.
_diagnostic_hook: Callable[[PipelineConfig], Any] | None = None
_hook_lock = threading.Lock()


def set_diagnostic_hook(
    hook: Callable[[PipelineConfig], Any] | None,
) -> Callable[[PipelineConfig], Any] | None:
    """Install what ``build()`` returns instead of a pipeline under ``FTPIPE_DIAGNOSTIC_MODE=1``.

    Returns the hook it replaces, so a caller can put it back.
    """
    global _diagnostic_hook
    with _hook_lock:
        previous, _diagnostic_hook = _diagnostic_hook, hook
    return previous


def diagnostic_hook() -> Callable[[PipelineConfig], Any] | None:
    """The hook ``build()`` should call now: None unless diagnostic mode is on."""
    if os.environ.get("FTPIPE_DIAGNOSTIC_MODE", "") in ("", "0"):
        return None
    with _hook_lock:
        return _diagnostic_hook
