"""ftpipe: free-threaded-Python-first pipelines, pluggable executors, and a contention detector.

Everything public is re-exported here, each name once: a user reads this file and
knows the API.  ``ftpipe.torch`` is the exception, imported on demand because it
needs PyTorch.

    Pipelines            PipelineBuilder -> build() -> Pipeline; PipelineConfig,
                         StageConfig, PipelineStats, StageStats; TuningWarning
    Inside stage calls   worker_info() -> WorkerInfo, item_seed() (PipelineBuilder(seed=...))
    Executors            ThreadExecutor, InterpreterExecutor, ProcessExecutor,
                         run_in_subprocess -> SubprocessPipeline, BrokenWorkerError,
                         RemoteTraceback; new kinds: ExecutorKind, register_executor_kind,
                         executor_kind_names, WorkerPool
    Contention detector  diagnose() -> Diagnosis (Verdict, Curve, Point, ExecutorAdvice,
                         ExecutorTrial),
                         Configuration, DiagnosticProfiler
    Runtime facts        runtime_info() -> RuntimeInfo, find_interpreters() -> InterpreterInfo,
                         subinterpreters_available()
"""

from ._engine import (
    ExecutorKind,
    Pipeline,
    PipelineBuilder,
    PipelineConfig,
    PipelineStats,
    StageConfig,
    StageStats,
    TuningWarning,
    WorkerInfo,
    executor_kind_names,
    item_seed,
    register_executor_kind,
    worker_info,
)
from ._runtime import InterpreterInfo, RuntimeInfo, find_interpreters, runtime_info
from .diagnose import (  # importing it installs diagnostic mode
    Configuration,
    Curve,
    Diagnosis,
    DiagnosticProfiler,
    ExecutorAdvice,
    ExecutorTrial,
    Point,
    Verdict,
    diagnose,
)
from .executors import (  # importing it registers the "process" and "interpreter" kinds
    BrokenWorkerError,
    InterpreterExecutor,
    ProcessExecutor,
    RemoteTraceback,
    SubprocessPipeline,
    ThreadExecutor,
    WorkerPool,
    run_in_subprocess,
    subinterpreters_available,
)

__version__ = "0.1.0"

__all__ = [
    "BrokenWorkerError",
    "Configuration",
    "Curve",
    "Diagnosis",
    "DiagnosticProfiler",
    "ExecutorAdvice",
    "ExecutorKind",
    "ExecutorTrial",
    "InterpreterExecutor",
    "InterpreterInfo",
    "Pipeline",
    "PipelineBuilder",
    "PipelineConfig",
    "PipelineStats",
    "Point",
    "ProcessExecutor",
    "RemoteTraceback",
    "RuntimeInfo",
    "StageConfig",
    "StageStats",
    "SubprocessPipeline",
    "ThreadExecutor",
    "TuningWarning",
    "Verdict",
    "WorkerInfo",
    "WorkerPool",
    "diagnose",
    "executor_kind_names",
    "find_interpreters",
    "item_seed",
    "register_executor_kind",
    "run_in_subprocess",
    "runtime_info",
    "subinterpreters_available",
    "worker_info",
]
