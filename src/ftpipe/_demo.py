"""``python -m ftpipe demo``: threads, subinterpreters or processes? Measured on this machine.

    for each workload of the battery (_demo_workloads.WORKLOADS):
        ftpipe.diagnose(fn, inputs, configurations=[3.13t, 3.13t gil=1, stock GIL builds...])
    for each configuration:
        python -m ftpipe._demo_workloads pipeline   # one pipeline on thread / interpreter / process
    print the table; write demo.html (plots, tables) and demo.json into --out

Interpreters other than this one are usually bare (no numpy): the numpy rows say
"no numpy" there rather than fail; ``--python PATH`` adds or replaces one (a
virtual environment's ``python`` keeps its packages).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._demo_workloads import WORKLOADS, Workload
from ._runtime import InterpreterInfo, find_interpreters, is_free_threaded, usable_cores
from .diagnose import Configuration, Diagnosis, diagnose
from .diagnose._launch import only_ftpipe_path

__all__ = ["DemoResult", "Row", "configurations", "has_numpy", "main", "run_demo"]

# The whole demo's time budget (issue: under 3 minutes on 2 cores), the share of it
# the battery may use (the pipeline comparison gets the rest), what one probe is
# expected to take at least, and the least time worth starting a pipeline run with.
DEADLINE_S = 150.0
QUICK_DEADLINE_S = 90.0
BATTERY_SHARE = 0.72
FULL_PROBE_S = 5.0
QUICK_PROBE_S = 3.0
PIPELINE_MIN_S = 8.0

HOW_TO_GET_FT = (
    "No free-threaded Python (3.13t) was found, so the GIL-off columns are missing.\n"
    "Get one with `bash tools/find-pythons.sh` in ftpipe's repository (builds CPython 3.13\n"
    "with --disable-gil into ~/.cache/ftpipe, about three minutes, once), or\n"
    "`uv python install 3.13t`, or pyenv (3.13t); then run the demo again."
)


@dataclass(frozen=True)
class Row:
    """One workload's outcome: its diagnosis, or why it could not run, per configuration."""

    workload: Workload
    diagnosis: Diagnosis | None
    skipped: dict[str, str]  # configuration label -> why it was not measured
    error: str = ""


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo measured; what the table, the HTML and the JSON are made from."""

    configurations: tuple[Configuration, ...]
    rows: tuple[Row, ...]
    pipelines: dict[str, dict[str, Any]]  # configuration label -> pipeline_timings() or error
    cores: int
    seconds: float
    quick: bool
    notes: tuple[str, ...] = field(default=())


# --- configurations -----------------------------------------------------------------------


def _version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def _short(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".") if x.isdigit())


def _describe(path: str) -> InterpreterInfo | None:
    code = (
        "import sys, sysconfig; print('%d.%d.%d' % sys.version_info[:3], "
        "bool(sysconfig.get_config_var('Py_GIL_DISABLED')))"
    )
    try:
        out = subprocess.run(
            [path, "-c", code], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return InterpreterInfo(os.path.abspath(path), out[0], out[1] == "True")


def configurations(extra: Sequence[str] = (), *, quick: bool = False) -> list[Configuration]:
    """This interpreter, a free-threaded one (GIL off and on), and the stock GIL builds found.

    ``extra`` paths replace a found interpreter of the same version and kind (a venv
    with numpy instead of a bare build) or are added.  In quick mode only one stock GIL
    build is kept (the free-threaded one's minor version, else the newest), plus this
    interpreter when it is a GIL build.
    """
    here = InterpreterInfo(sys.executable, _version(), is_free_threaded())
    found: dict[str, InterpreterInfo] = {}  # label -> interpreter; this one wins its label
    for info in [here, *find_interpreters()]:
        found.setdefault(info.label, info)
    for path in extra:
        given = _describe(path)
        if given is None:
            raise ValueError(f"--python {path}: not a runnable Python interpreter")
        if given.label == here.label and os.path.realpath(path) != os.path.realpath(here.path):
            print(
                f"ftpipe demo: --python {path} replaces this interpreter ({sys.executable})",
                file=sys.stderr,
            )
        found[given.label] = given
    threaded = sorted(
        (i for i in found.values() if i.free_threaded),
        key=lambda i: (i.label == here.label, _key(i.version)),
        reverse=True,
    )
    stock = sorted(
        (i for i in found.values() if not i.free_threaded),
        key=lambda i: _key(i.version),
        reverse=True,
    )
    if threaded:
        # Same minor version first: the detector measures the free-threading tax
        # against the first stock build, and 3.13t vs 3.13 is the clean comparison.
        ft_minor = _short(threaded[0].version)
        stock.sort(key=lambda i: _short(i.version) == ft_minor, reverse=True)
    if quick:
        # The newest (or same-minor) stock build, and this interpreter when it is one.
        stock = [i for n, i in enumerate(stock) if n == 0 or i is found.get(here.label)]
    configs: list[Configuration] = []
    if threaded:
        ft = threaded[0]
        configs.append(Configuration(ft.label, "no-gil", ft.path, ft.version, True, None))
        configs.append(Configuration(f"{ft.label} gil=1", "gil", ft.path, ft.version, True, 1))
    configs += [
        Configuration(f"{i.label} GIL", "gil-build", i.path, i.version, False, None) for i in stock
    ]
    return configs


_numpy_cache: dict[str, bool] = {}


def has_numpy(executable: str) -> bool:
    """Whether ``import numpy`` works in that interpreter (asked once per binary)."""
    if executable not in _numpy_cache:
        try:
            done = subprocess.run(
                [executable, "-c", "import numpy"],
                capture_output=True,
                timeout=60,
                env=_child_env(),
            )
            _numpy_cache[executable] = done.returncode == 0
        except (OSError, subprocess.SubprocessError):
            _numpy_cache[executable] = False
    return _numpy_cache[executable]


def _child_env() -> dict[str, str]:
    """This environment with ftpipe importable and no GIL override (each run sets its own).

    ftpipe alone goes on the path, not its parent directory: for an installed ftpipe that
    is this interpreter's site-packages, whose numpy would shadow the other one's.
    """
    here = only_ftpipe_path()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "FTPIPE_DIAGNOSTIC_MODE")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
    return env


# --- running --------------------------------------------------------------------------------


class Progress:
    """One status line on stderr: rewritten in place on a terminal, plain lines otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._started = time.perf_counter()
        self._prefix = ""

    def stage(self, text: str) -> None:
        self._prefix = text
        self.line("")

    def line(self, text: str) -> None:
        stamp = f"[{time.perf_counter() - self._started:5.0f} s] {self._prefix}"
        message = f"{stamp}: {text}" if text else stamp
        if self._tty:
            self._stream.write("\r\x1b[K" + message[:150])
        else:
            self._stream.write(message + "\n")
        self._stream.flush()

    def done(self, text: str) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K")
        self._stream.write(f"[{time.perf_counter() - self._started:5.0f} s] {text}\n")
        self._stream.flush()


def _probes(workload: Workload, configs: Sequence[Configuration]) -> int:
    """How many probe subprocesses the workload will start."""
    return sum(1 for c in configs if not workload.needs_numpy or has_numpy(c.executable))


def _diagnose_row(
    workload: Workload,
    configs: Sequence[Configuration],
    quick: bool,
    progress: Progress,
    left_out: Sequence[Configuration] = (),
) -> Row:
    skipped = {c.label: "out of time" for c in left_out}
    usable = []
    for config in configs:
        if workload.needs_numpy and not has_numpy(config.executable):
            skipped[config.label] = "no numpy"
        else:
            usable.append(config)
    if not usable:
        return Row(workload, None, skipped, "numpy is not installed in any interpreter")
    try:
        d = diagnose(
            workload.fn,
            workload.inputs,
            configurations=usable,
            quick=quick,
            progress=progress.line,
            stage=workload.title,
        )
    except Exception as exc:  # noqa: BLE001 - one broken row must not sink the demo
        return Row(workload, None, skipped, f"{type(exc).__name__}: {exc}")
    return Row(workload, d, skipped)


def _pipeline(config: Configuration, quick: bool, timeout: float) -> dict[str, Any]:
    argv = [config.executable]
    if config.gil is not None:
        argv += ["-X", f"gil={config.gil}"]
    argv += ["-m", "ftpipe._demo_workloads", "pipeline"] + (["--quick"] if quick else [])
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=_child_env(), check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    if done.returncode != 0 or not done.stdout.strip():
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"error": tail[:200]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _busy_note() -> str:
    """A warning when other processes already keep the cores busy ("" when quiet)."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return ""
    cores = usable_cores()
    if load <= max(1.0, 0.5 * cores):
        return ""
    return (
        f"Other processes were busy when the demo started (1-minute load average {load:.1f} "
        f"on {cores} usable cores): expect noisy figures and 'inconclusive' verdicts; rerun "
        "on a quieter machine for clean ones."
    )


class _Schedule:
    """Keeps the demo within its time budget on a slow or busy machine.

    The detector measures longer when figures are unstable, so on a busy machine a
    full run would overrun.  A machine already busy at the start gets short
    measurements (as with ``--quick``) from the first workload; otherwise, from the
    probe times seen so far, the schedule predicts the rest and, once behind,
    shortens measurements, then leaves out the older stock GIL builds, then keeps
    only the free-threaded pair.  The notes say what was cut.
    """

    def __init__(self, quick: bool, busy: bool) -> None:
        self.started = time.perf_counter()
        self.deadline = QUICK_DEADLINE_S if quick else DEADLINE_S
        self.quick = quick or busy
        self._spent = {True: 0.0, False: 0.0}  # quick? -> seconds in probes
        self._probes = {True: 0, False: 0}
        self.notes: list[str] = []
        if busy and not quick:
            self.notes.append(
                "So measurements were shortened (as with --quick) from the start: full ones "
                "would not settle on a busy machine and would overrun the time budget."
            )

    def left(self, share: float = 1.0) -> float:
        return share * self.deadline - (time.perf_counter() - self.started)

    def cost(self, quick: bool) -> float:
        """Seconds one probe is expected to take (what was seen, or a floor)."""
        floor = QUICK_PROBE_S if quick else FULL_PROBE_S
        n = self._probes[quick]
        return max(floor, self._spent[quick] / n) if n else floor

    def record(self, quick: bool, probes: int, seconds: float) -> None:
        self._spent[quick] += seconds
        self._probes[quick] += probes

    def _note(self, key: str, text: str) -> None:
        if not any(key in n for n in self.notes):
            self.notes.append(text)

    def plan(
        self, title: str, remaining: Sequence[Workload], configs: Sequence[Configuration]
    ) -> tuple[bool, list[Configuration]]:
        """Quick or not, and which configurations, for the next workload."""
        left = self.left(BATTERY_SHARE)

        def fits(chosen: Sequence[Configuration], quick: bool) -> bool:
            return left >= sum(_probes(w, chosen) for w in remaining) * self.cost(quick)

        if not self.quick and fits(configs, False):
            return False, list(configs)
        if not self.quick:
            self._note(
                "shortened",
                f"The machine was slow (busy?): from '{title}' on, measurements were "
                "shortened (as with --quick) to keep the demo within its time budget.",
            )
        if fits(configs, True):
            return True, list(configs)
        stock = [c for c in configs if c.role == "gil-build"]
        kept = [c for c in configs if c.role != "gil-build"] + stock[:1]
        if len(kept) < len(configs):
            self._note(
                "left out",
                f"Behind schedule: from '{title}' on, "
                f"{', '.join(c.label for c in stock[1:])} were left out.",
            )
        if fits(kept, True) or len(kept) <= 2:
            return True, kept
        pair = [c for c in configs if c.role != "gil-build"] or stock[:1]
        self._note(
            "only",
            f"Far behind schedule: from '{title}' on, only {', '.join(c.label for c in pair)} "
            "were measured.",
        )
        return True, pair


def run_demo(
    *,
    quick: bool = False,
    pythons: Sequence[str] = (),
    workloads: Sequence[str] | None = None,
    pipelines: bool = True,
    progress: Progress | None = None,
) -> DemoResult:
    """Measure the battery and the pipeline comparison; see the module docstring.

    Args:
        quick: Shorter measurements and fewer configurations.
        pythons: Extra interpreters (paths), e.g. virtual environments with numpy.
        workloads: Keys of the workloads to run (all when None).
        pipelines: Also run the pipeline comparison.
        progress: Where progress goes (stderr by default).
    """
    busy = _busy_note()
    schedule = _Schedule(quick, busy=bool(busy))
    progress = progress or Progress()
    configs = configurations(pythons, quick=quick)
    chosen = [w for w in WORKLOADS if workloads is None or w.key in workloads]
    if not any(c.free_threaded for c in configs):
        schedule.notes.append(HOW_TO_GET_FT)
    rows = []
    for n, workload in enumerate(chosen, 1):
        progress.stage(f"[{n}/{len(chosen)}] {workload.title}")
        short, chosen_configs = schedule.plan(workload.title, chosen[n - 1 :], configs)
        began = time.perf_counter()
        left_out = [c for c in configs if c not in chosen_configs]
        row = _diagnose_row(workload, chosen_configs, short, progress, left_out)
        schedule.record(short, _probes(workload, chosen_configs), time.perf_counter() - began)
        verdict = row.diagnosis.verdict.value if row.diagnosis else row.error
        progress.done(f"{workload.title}: {verdict}")
        rows.append(row)
    results: dict[str, dict[str, Any]] = {}
    if pipelines:
        # The pipeline comparison runs on the free-threaded pair and the newest stock build:
        # the older stock builds add nothing (no subinterpreters before 3.13).
        # In order of interest, should time run out: free-threaded without the GIL, the
        # newest stock build, then the free-threaded build with the GIL forced on.
        stock = [c for c in configs if c.role == "gil-build"][:1]
        wanted = [c for c in configs if c.role == "no-gil"] + stock
        wanted += [c for c in configs if c.role == "gil"]
        for n, config in enumerate(wanted, 1):
            left = schedule.left()
            if left < PIPELINE_MIN_S:
                results[config.label] = {"error": "skipped: the demo ran out of its time budget"}
                continue
            progress.stage(f"pipeline [{n}/{len(wanted)}] {config.label}")
            results[config.label] = _pipeline(config, quick, timeout=left)
            progress.done(f"pipeline on {config.label}: done")
    if busy:
        schedule.notes.insert(0, busy)
    return DemoResult(
        tuple(configs),
        tuple(rows),
        results,
        usable_cores(),
        time.perf_counter() - schedule.started,
        quick,
        tuple(schedule.notes),
    )


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ftpipe demo",
        description=(
            "Threads, subinterpreters or processes? Run the classic workloads (pure-Python loop, "
            "numpy add, numpy dot, writing files, waiting on I/O) through the contention "
            "detector on every interpreter found, and one pipeline on every executor."
        ),
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="where demo.html and demo.json go (default: ./ftpipe-report-demo-<date-time>)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short measurements, fewer interpreters (under 1.5 min)",
    )
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="PATH",
        help="another interpreter to include, e.g. a virtual environment's python with numpy "
        "(replaces a found one of the same version); may be repeated",
    )
    parser.add_argument(
        "--workloads",
        metavar="KEYS",
        help="comma-separated subset of: " + ", ".join(w.key for w in WORKLOADS),
    )
    parser.add_argument("--no-pipeline", action="store_true", help="skip the pipeline comparison")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the exit status (0, or 2 for bad arguments)."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    keys = None
    if args.workloads:
        keys = [k.strip() for k in args.workloads.split(",") if k.strip()]
        unknown = sorted(set(keys) - {w.key for w in WORKLOADS})
        if unknown:
            _parser().error(f"unknown workload(s) {', '.join(unknown)}")
    out: Path = args.out or Path(f"ftpipe-report-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    print(
        "ftpipe demo: measuring on every interpreter found; progress below, table at the end"
        + (" (quick)" if args.quick else ""),
        file=sys.stderr,
    )
    try:
        result = run_demo(
            quick=args.quick,
            pythons=args.python,
            workloads=keys,
            pipelines=not args.no_pipeline,
        )
    except ValueError as exc:
        print(f"ftpipe demo: {exc}", file=sys.stderr)
        return 2
    from ._demo_report import write_report
    from ._demo_table import format_result, to_dict

    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps(to_dict(result), indent=2))
    page = write_report(result, out / "demo.html")
    print(format_result(result))
    print(f"\nreport: {page.resolve()}")
    print(f"took {result.seconds:.0f} s")
    return 0
