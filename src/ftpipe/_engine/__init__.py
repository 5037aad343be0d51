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
    _inline (+ _handover): stages run by the consumer's thread until their calls
    prove slow (PipelineBuilder(inline=True), the default).
    _context: worker_info() / item_seed() inside stage calls (thread-local, set per
    worker and per chunk);  _setup: initializer= checked at build, run per worker;
    _state: checkpoints (Pipeline.state_dict, PipelineBuilder.build(state=)).
"""

from ._apply_report import TuningWarning
from ._builder import PipelineBuilder
from ._config import FnKind, PipelineConfig, StageConfig, StageKind
from ._context import WorkerInfo, item_seed, worker_info
from ._executor_kinds import (
    ExecutorKind,
    executor_kind,
    executor_kind_names,
    register_executor_kind,
)
from ._hooks import set_diagnostic_hook
from ._pipeline import Pipeline
from ._resumable import check_resumable
from ._run import stop_all_pipelines
from ._state import resume, state_of
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
    "WorkerInfo",
    "check_resumable",
    "executor_kind",
    "executor_kind_names",
    "item_seed",
    "register_executor_kind",
    "resume",
    "set_diagnostic_hook",
    "state_of",
    "stop_all_pipelines",
    "worker_info",
]
