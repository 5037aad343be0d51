"""ftpipe: free-threaded-Python-first pipelines, pluggable executors, and a contention detector.

The whole public API is re-exported here.
"""

from ._engine import PipelineBuilder, PipelineConfig, StageConfig
from ._runtime import InterpreterInfo, RuntimeInfo, find_interpreters, runtime_info

__version__ = "0.1.0"

__all__ = [
    "InterpreterInfo",
    "PipelineBuilder",
    "PipelineConfig",
    "RuntimeInfo",
    "StageConfig",
    "find_interpreters",
    "runtime_info",
]
