"""The contention detector: why a function does (not) scale with threads, GIL or otherwise.

    ftpipe.diagnose(fn, inputs) -> Diagnosis      # .verdict, .explanation, .to_json(), .to_html()
    python -m ftpipe diagnose MODULE:FUNC --inputs MODULE:ATTR|FILE.pkl
    FTPIPE_DIAGNOSTIC_MODE=1 python train.py       # build() returns a profiler of every stage

Importing this package installs the diagnostic-mode hook in the engine.
"""

from .._engine import set_diagnostic_hook
from ._api import diagnose
from ._diagnosis import Diagnosis
from ._diagnostic_mode import DiagnosticProfiler
from ._records import Configuration, Curve, ExecutorAdvice, ExecutorTrial, Point, Verdict

__all__ = [
    "Configuration",
    "Curve",
    "Diagnosis",
    "DiagnosticProfiler",
    "ExecutorAdvice",
    "ExecutorTrial",
    "Point",
    "Verdict",
    "diagnose",
]

set_diagnostic_hook(DiagnosticProfiler)
