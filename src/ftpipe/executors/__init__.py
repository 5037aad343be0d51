"""Executors for pipeline stages, all ``concurrent.futures.Executor``s with one constructor.

``ThreadExecutor`` (threads), ``InterpreterExecutor`` (one isolated
subinterpreter per worker), ``ProcessExecutor`` (persistent worker processes,
numpy buffers through shared memory), and ``run_in_subprocess`` (a whole
pipeline in one child process).  Importing this package registers the
``"process"`` and ``"interpreter"`` kinds with the engine.
"""

from ._context import BrokenWorkerError
from ._interpreter import InterpreterExecutor
from ._kinds import register_kinds
from ._pool import WorkerPool
from ._process import ProcessExecutor
from ._remote import RemoteTraceback
from ._run_in_subprocess import SubprocessPipeline, run_in_subprocess
from ._subinterpreters import subinterpreters_available
from ._thread import ThreadExecutor

register_kinds()

__all__ = [
    "BrokenWorkerError",
    "InterpreterExecutor",
    "ProcessExecutor",
    "RemoteTraceback",
    "SubprocessPipeline",
    "ThreadExecutor",
    "WorkerPool",
    "run_in_subprocess",
    "subinterpreters_available",
]
