"""Why the engine collapses beside CPU hogs on 3.13t: lock spinning turned into time slices.

Runs ``engine_overhead.py``'s 3-stage no-op pipeline ``--runs`` times with ``--hogs``
busy-looping processes beside it, and records with the kernel's tracer (tracefs)
every ``sched_yield`` our threads make and every context switch.  Per run it
prints the throughput, the yields, how many of them gave the core away, the
time those threads then waited to run again, and all the time our threads
waited runnable after losing the core.  A diagnostic, not a claim.

A free-threaded CPython's internal mutex (``PyMutex``: ``threading.Lock``, the
per-object locks of dicts, lists and types, biased reference counting's queues)
calls ``sched_yield`` before it sleeps whenever it finds the lock taken (GIL
builds: never).  On 3.13 it yields 40 times every time, however soon the holder
lets go: its spin loop never looks at the lock again (CPython gh-135871).  The
last column counts bursts of yields (one thread's yields less than 20 ms apart)
and, in brackets, those a multiple of 40 long.  On an idle core a yield costs
microseconds; when a busy process shares the core, each one can hand it that
process until the scheduler's next tick (4 ms at HZ=250).

Linux only; needs write access to tracefs (root, usually):

    sudo python benchmarks/engine_yields.py [--items 20000] [--runs 6] [--hogs 2]
                                            [--hog-session same|own] [--quick]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_overhead import hogs_running, run_ftpipe  # noqa: E402

import ftpipe  # noqa: E402

_EVENTS = ("sched/sched_switch", "syscalls/sys_enter_sched_yield")
# "comm-tid (tgid) [cpu] flags time: event: fields", with options/record-tgid set.
_LINE = re.compile(r"^\s*.+?-(\d+)\s+\(\s*(\d+|-+)\)\s+\[\d+\]\s+\S+\s+([\d.]+): (\w+)(.*)$")
_SWITCH = re.compile(r"prev_pid=(\d+) .*?prev_state=(\S+) ==> .*?next_pid=(\d+)")
# Yields of one thread closer together than this are one burst: one contended lock, or
# several back to back (a yield that gives the core away returns a tick, 4 ms, later).
ROUND_GAP_S = 0.02


def tracefs() -> Path:
    for root in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (root / "trace").exists() and os.access(root / "trace", os.W_OK):
            return root
    raise SystemExit(
        "engine_yields: needs a writable tracefs (/sys/kernel/tracing): run as root on Linux"
    )


def _write(root: Path, name: str, value: str) -> None:
    (root / name).write_text(value)


def traced_run(root: Path, n: int) -> tuple[float, str]:
    """One run's items/s and the trace recorded during it."""
    _write(root, "trace", "")
    _write(root, "tracing_on", "1")
    t0 = time.perf_counter()
    try:
        got = run_ftpipe(n)
    finally:
        elapsed = time.perf_counter() - t0
        _write(root, "tracing_on", "0")
    assert got == n, f"delivered {got} of {n} items"
    return n / elapsed, (root / "trace").read_text()


def summarize(trace: str, pid: int) -> dict[str, float]:
    """What our threads' yields and lost cores cost, from one run's trace."""
    me = str(pid)
    yielded: dict[int, float] = {}  # tid -> time of its last yield
    gave_up: dict[int, float] = {}  # tid -> when a yield took it off the core
    preempted: dict[int, float] = {}  # tid -> when it left the core still runnable
    out = {"yields": 0, "gave_up": 0, "after_yield_s": 0.0, "runnable_wait_s": 0.0}
    waits: list[float] = []
    rounds: list[int] = []  # yields per burst: one thread's yields less than ROUND_GAP_S apart
    burst: dict[int, int] = {}  # tid -> yields in its current burst
    last_yield: dict[int, float] = {}
    for line in trace.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        tid, tgid, t, event = int(m[1]), m[2], float(m[3]), m[4]
        if event == "sys_sched_yield" and tgid == me:
            if t - last_yield.get(tid, -1.0) < ROUND_GAP_S:
                burst[tid] += 1
            else:
                if tid in burst:
                    rounds.append(burst[tid])
                burst[tid] = 1
            yielded[tid] = last_yield[tid] = t
            out["yields"] += 1
        elif event == "sched_switch" and (s := _SWITCH.search(m[5])) is not None:
            prev, state, nxt = int(s[1]), s[2], int(s[3])
            if tgid == me and state.startswith("R"):
                preempted[prev] = t
                if t - yielded.pop(prev, -1.0) < 50e-6:
                    gave_up[prev] = t
                    out["gave_up"] += 1
            if nxt in preempted:
                out["runnable_wait_s"] += t - preempted.pop(nxt)
            if nxt in gave_up:
                waits.append(t - gave_up.pop(nxt))
    out["after_yield_s"] = sum(waits)
    out["median_wait_us"] = statistics.median(waits) * 1e6 if waits else 0.0
    rounds += burst.values()
    out["bursts"] = len(rounds)
    out["bursts_of_40s"] = sum(1 for r in rounds if r % 40 == 0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--hogs", type=int, default=2)
    parser.add_argument("--hog-session", choices=("same", "own"), default="same")
    parser.add_argument("--quick", action="store_true", help="2 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 2
    root = tracefs()
    settings = ("trace_clock", "buffer_size_kb", "options/record-tgid")
    saved = {name: (root / name).read_text() for name in settings}
    _write(root, "trace_clock", "mono")  # a switch out on one CPU, back in on another
    _write(root, "buffer_size_kb", "65536")
    _write(root, "options/record-tgid", "1")
    for event in _EVENTS:
        _write(root, f"events/{event}/enable", "1")
    info = ftpipe.runtime_info(find_others=False)
    print(
        f"# Python {info.version} ({info.gil_summary}), {args.items} items, "
        f"{args.hogs} hogs ({args.hog_session} session)"
    )
    print(
        "  items/s   yields  gave the core away  their wait (sum, median)  runnable wait"
        "  bursts (of 40n yields)"
    )
    try:
        with hogs_running(args.hogs, own_session=args.hog_session == "own"):
            time.sleep(0.5)  # let the hogs settle on the cores
            for _ in range(args.runs):
                rate, trace = traced_run(root, args.items)
                s = summarize(trace, os.getpid())
                print(
                    f"  {rate:>8,.0f} {s['yields']:>8.0f} {s['gave_up']:>19.0f}"
                    f"   {s['after_yield_s'] * 1e3:>8.0f} ms, {s['median_wait_us']:>6.0f} µs"
                    f"   {s['runnable_wait_s'] * 1e3:>10.0f} ms"
                    f"   {s['bursts']:>6.0f} ({s['bursts_of_40s']:.0f})"
                )
    finally:
        for event in _EVENTS:
            _write(root, f"events/{event}/enable", "0")
        _write(root, "trace", "")
        for name, value in saved.items():
            current = re.search(r"\[(\w+)\]", value)
            _write(root, name, current[1] if current else value.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
