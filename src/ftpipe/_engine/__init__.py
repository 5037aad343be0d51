"""The stage engine: bounded batched channels, stage workers, ordering, errors, shutdown."""

from ._builder import PipelineBuilder, set_diagnostic_hook
from ._config import FnKind, PipelineConfig, StageConfig, StageKind
from ._executor_kinds import ExecutorKind, executor_kind_names, register_executor_kind
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
    "executor_kind_names",
    "register_executor_kind",
    "set_diagnostic_hook",
    "stop_all_pipelines",
]
