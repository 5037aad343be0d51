"""The stage engine: bounded batched channels, stage workers, ordering, errors, shutdown.

::

    _builder ──► _config (frozen) ──► _pipeline (what the user holds)
                                          │
                                          ▼
                                        _run ──► _source ──► _channel ──► stage workers ──► ...
                                          │
                                          └─► _plan: config ─► worker body and count
                                                ├─ _thread_stage    batched / collected / streamed
                                                ├─ _async_stage     one event loop, N calls
                                                └─ _executor_stage  chunks on an executor
                                                     all built on _stage (runtime, retry and
                                                     error policies) and _calls (calling fn)

    _executor_kinds: executor kinds registered by ftpipe.executors;  _stats: counters.
    _workforce: a stage's live size and which threads retire;  _resize: Pipeline.resize
    and executor switches;  _tuner (+ _tuning): concurrency="auto" / executor="auto";
    _apply_report: a diagnosis report's advice applied to a builder's stages.
"""

from ._apply_report import TuningWarning
from ._builder import PipelineBuilder, set_diagnostic_hook
from ._config import FnKind, PipelineConfig, StageConfig, StageKind
from ._executor_kinds import (
    ExecutorKind,
    executor_kind,
    executor_kind_names,
    register_executor_kind,
)
from ._pipeline import Pipeline
from ._run import stop_all_pipelines
from ._stats import PipelineStats, StageStats

__all__ = [
    "ExecutorKind",
    "FnKind",
    "PipelineBuilder",
    "Pipeline",
    "PipelineConfig",
    "PipelineStats",
    "StageConfig",
    "StageKind",
    "StageStats",
    "TuningWarning",
    "executor_kind",
    "executor_kind_names",
    "register_executor_kind",
    "set_diagnostic_hook",
    "stop_all_pipelines",
]
