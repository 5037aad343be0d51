"""ftpipe: free-threaded-Python-first pipelines, pluggable executors, and a contention detector.

The whole public API is re-exported here.
"""

from ._engine import (
    Pipeline,
    PipelineBuilder,
    PipelineConfig,
    PipelineStats,
    StageConfig,
    StageStats,
)
from ._runtime import InterpreterInfo, RuntimeInfo, find_interpreters, runtime_info
from .diagnose import Diagnosis, Verdict, diagnose  # importing it installs diagnostic mode
from .executors import (
    BrokenWorkerError,
    InterpreterExecutor,
    ProcessExecutor,
    ThreadExecutor,
    run_in_subprocess,
)

__version__ = "0.1.0"

__all__ = [
    "BrokenWorkerError",
    "Diagnosis",
    "Verdict",
    "diagnose",
    "InterpreterExecutor",
    "ProcessExecutor",
    "ThreadExecutor",
    "run_in_subprocess",
    "InterpreterInfo",
    "Pipeline",
    "PipelineBuilder",
    "PipelineStats",
    "PipelineConfig",
    "RuntimeInfo",
    "StageConfig",
    "StageStats",
    "find_interpreters",
    "runtime_info",
]
