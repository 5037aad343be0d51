"""ftpipe: free-threaded-Python-first pipelines, pluggable executors, and a contention detector.

The whole public API is re-exported here.
"""

from ._engine import Pipeline, PipelineBuilder, PipelineConfig, PipelineStats, StageConfig, StageStats
from ._runtime import InterpreterInfo, RuntimeInfo, find_interpreters, runtime_info

__version__ = "0.1.0"

__all__ = [
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
