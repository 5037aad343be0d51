"""Scheduling priority and CPU pinning for the threads and processes a pipeline starts.

::

    PipelineBuilder(priority=, cpus=) ─┐
    ThreadExecutor(priority=, ...)    ─┼─► Scheduling.of(priority, cpus, where)   (build time)
    run_in_subprocess(priority=, ...) ─┘        │
                                                ├─► apply_to_thread()   a new thread, on itself, first
                                                └─► apply_to_process()  a new child process, at start

Priorities:

- ``"normal"`` (the default): nothing is touched; threads run as their creator does.
- ``"background"``: niceness 19 for a thread in the consumer's process.  Under
  contention a nice-19 thread gets about 1.5% of a core beside a nice-0 one
  (weight 15 against 1024), yet it always gets *some*: a pipeline thread holding
  a lock, the GIL or a buffer slot the consumer waits on, or one that a
  free-threaded build's stop-the-world pause (GC) waits for, reaches its next
  safe point within a few scheduler periods.  That is why it is the recommended
  setting.  A process of the pipeline's own (``run_in_subprocess``'s child, a
  ``"process"`` stage's workers) holds nothing the consumer waits on but the
  data it sends, which the consumer waits for asleep, leaving it the cores: it
  goes down to ``SCHED_IDLE``.  That matters: a nice-19 thread that the kernel
  lets run keeps the core until the next tick (4 ms at HZ=250), and sometimes
  delays the consumer's wake-up as long, which is what a training step's p99
  shows; a ``SCHED_IDLE`` thread yields it at once.
- ``"idle"``: ``SCHED_IDLE`` per thread (weight 3, and the kernel treats a CPU
  running only idle tasks as free when it places a waking thread, so the
  consumer wakes without waiting).  Starves completely while other work runs:
  the priority inversions above can then stall the consumer for as long as the
  machine stays busy.  Falls back to niceness 19 where it is refused.

Linux is the only system with per-thread niceness (``setpriority`` with a
thread id); elsewhere ``apply_to_thread`` does nothing and warns once, while
``apply_to_process`` still lowers a whole child process (POSIX ``nice``), so
``run_in_subprocess`` keeps working there.  Lowering is always permitted to an
unprivileged user; raising back is not, so nothing here ever raises a priority:
a thread already nicer than 19 keeps its value.  Threads and processes created
by a lowered thread inherit its niceness, policy and CPU set (Linux ``clone`` /
``fork``), which is what lowers threads that a stage function starts itself.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["NORMAL", "PRIORITIES", "Scheduling", "start_forkserver_here"]

PRIORITIES = ("normal", "background", "idle")
BACKGROUND_NICE = 19

_PER_THREAD = sys.platform.startswith("linux")
_warned_lock = threading.Lock()  # guards _warned
_warned: set[str] = set()
# Set once a whole process was lowered (a pipeline's child): its threads need no warning.
# A plain flag written before any pipeline thread of that process starts.
_process_lowered = False


def _warn_once(key: str, message: str) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


@dataclass(frozen=True)
class Scheduling:
    """How the threads and processes of a pipeline or executor are scheduled.

    Attributes:
        priority: ``"normal"``, ``"background"`` or ``"idle"`` (see the module docs).
        cpus: The CPU ids they are pinned to; None: wherever the creator may run.
    """

    priority: str = "normal"
    cpus: frozenset[int] | None = None

    @classmethod
    def of(cls, priority: str, cpus: Iterable[int] | None, where: str) -> Scheduling:
        """Validate ``priority`` and ``cpus`` (at build time).

        Args:
            priority: One of ``PRIORITIES``.
            cpus: None, or a non-empty collection of CPU ids this process may use
                (``os.sched_getaffinity(0)``).
            where: Names the caller in messages (``"PipelineBuilder"``).

        Raises:
            ValueError: ``priority`` is not one of ``PRIORITIES``, or ``cpus`` is empty
                or names a CPU this process may not use.
            TypeError: ``cpus`` is not a collection of ints.
        """
        if not isinstance(priority, str) or priority not in PRIORITIES:
            raise ValueError(
                f"{where}: priority must be one of {', '.join(map(repr, PRIORITIES))}, "
                f"got {priority!r}"
            )
        if cpus is None:
            return cls(priority, None)
        if isinstance(cpus, (str, bytes)) or not isinstance(cpus, Iterable):
            raise TypeError(f"{where}: cpus must be None or a set of CPU ids, got {cpus!r}")
        chosen = frozenset(cpus)
        if not chosen:
            raise ValueError(f"{where}: cpus must name at least one CPU, got {cpus!r}")
        if any(isinstance(c, bool) or not isinstance(c, int) for c in chosen):
            raise TypeError(
                f"{where}: cpus must be CPU ids (ints), got {sorted(chosen, key=str)!r}"
            )
        if hasattr(os, "sched_getaffinity"):
            allowed = os.sched_getaffinity(0)
            if not chosen <= allowed:
                raise ValueError(
                    f"{where}: cpus {sorted(chosen - allowed)} are not among the CPUs this "
                    f"process may use ({sorted(allowed)})"
                )
        elif any(c < 0 for c in chosen):
            raise ValueError(f"{where}: CPU ids are >= 0, got {sorted(chosen)}")
        return cls(priority, chosen)

    @property
    def is_normal(self) -> bool:
        """Nothing to apply: normal priority and no pinning."""
        return self.priority == "normal" and self.cpus is None

    def apply_to_thread(self) -> None:
        """Lower (and pin) the calling thread; a new thread calls this on itself first.

        Never raises: a refusal (a seccomp filter, a CPU set changed since
        validation) leaves the thread as it was and warns once.
        """
        if self.is_normal:
            return
        if not _PER_THREAD:
            if not _process_lowered:
                _warn_once(
                    "thread",
                    f"ftpipe: priority={self.priority!r} / cpus= apply per thread on Linux "
                    f"only; on {sys.platform} this process's pipeline threads run at normal "
                    "priority (run_in_subprocess lowers a whole child process instead)",
                )
            return
        _lower(threading.get_native_id(), self.priority)
        if self.cpus is not None:
            try:
                os.sched_setaffinity(0, self.cpus)  # 0: the calling thread on Linux
            except OSError as exc:
                _warn_once("cpus", f"ftpipe: cannot pin threads to cpus {sorted(self.cpus)}: {exc}")

    def apply_to_process(self) -> None:
        """Lower (and pin) the whole calling process; a new child process calls this at start.

        Every thread it has now is lowered; threads it starts later inherit.
        """
        global _process_lowered
        if self.is_normal:
            return
        if not _PER_THREAD:
            if hasattr(os, "setpriority"):
                try:  # the whole process: one niceness for all its threads
                    current = os.getpriority(os.PRIO_PROCESS, 0)
                    os.setpriority(os.PRIO_PROCESS, 0, max(current, BACKGROUND_NICE))
                    _process_lowered = True
                except OSError as exc:
                    _warn_once("process", f"ftpipe: cannot lower this process's priority: {exc}")
            else:
                _warn_once(
                    "process",
                    f"ftpipe: priority={self.priority!r} is not supported on {sys.platform}; "
                    "the pipeline runs at normal priority",
                )
            return
        # The process is the pipeline's own: "background" goes as low as "idle" here
        # (nothing in it can hold up the consumer; see the module docs).
        policy = "idle" if self.priority == "background" else self.priority
        for tid in _threads_of_this_process():
            _lower(tid, policy)
            if self.cpus is not None:
                try:
                    os.sched_setaffinity(tid, self.cpus)
                except OSError as exc:
                    _warn_once("cpus", f"ftpipe: cannot pin to cpus {sorted(self.cpus)}: {exc}")
        _process_lowered = True


NORMAL = Scheduling()


def _threads_of_this_process() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [threading.get_native_id()]


def _lower(tid: int, priority: str) -> None:
    """Lower thread ``tid`` (Linux) to ``priority``, never raising its priority."""
    if priority == "normal":
        return
    if priority == "idle":
        try:
            # Changing another thread's policy needs no privilege when lowering;
            # sched_param(0) is the only priority SCHED_IDLE takes.
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError) as exc:
            _warn_once(
                "idle",
                f"ftpipe: SCHED_IDLE was refused ({exc}); threads that would run "
                f"SCHED_IDLE run at niceness {BACKGROUND_NICE} instead",
            )
        # SCHED_IDLE ignores niceness, but a thread that falls back (or whose
        # policy someone resets) should still be nice.
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)
    except OSError as exc:
        _warn_once("nice", f"ftpipe: cannot lower thread priority: {exc}")


def start_forkserver_here(start_method: str) -> None:
    """Start multiprocessing's forkserver now, from the calling thread, if it is used.

    The forkserver, shared by every later process of this interpreter, inherits
    the priority and CPU set of the thread that starts it, and nothing can raise
    them back: a process executor calls this from the thread that creates it,
    never from one of its worker threads, which a background pipeline may have
    lowered (they start lazily, from the thread that submits).
    """
    if start_method == "forkserver" and "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        forkserver.ensure_running()
