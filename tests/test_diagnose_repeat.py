"""A verdict must repeat across probe processes (diagnose/_repeat.py, decide's check)."""

from __future__ import annotations

import dataclasses
import sys

from ftpipe.diagnose import Configuration, Verdict
from ftpipe.diagnose._launch import run_probe
from ftpipe.diagnose._repeat import disagreement, reading, repeat_plan
from ftpipe.diagnose._sweep import SweepSettings
from ftpipe.diagnose._verdict import decide
from test_diagnose_verdict import curve


def second(first_label: str, speedup_at_2: float, **kw: object) -> object:
    """The same configuration measured again at 1 and 2 threads."""
    again = curve("no-gil", [1, speedup_at_2], label=f"{first_label} (second process)", **kw)  # type: ignore[arg-type]
    return dataclasses.replace(again, repeat_of=first_label)


def decide_all(*curves: object) -> object:
    return decide(
        curves,  # type: ignore[arg-type]
        cores=2,
        here_free_threaded=True,
        here_gil_off=True,
        subinterpreters=True,
    )


def test_processes_that_disagree_on_the_verdict_make_it_inconclusive_with_both_figures() -> None:
    first = curve("no-gil", [1, 1.70, 1.7], label="3.13t")
    gil = curve("gil", [1, 1.0, 1.0], label="3.13t gil=1")
    alone = decide_all(first, gil)
    assert alone.verdict is Verdict.GIL_BOUND  # type: ignore[attr-defined]
    d = decide_all(first, gil, second("3.13t", 1.02))
    assert d.verdict is Verdict.INCONCLUSIVE  # type: ignore[attr-defined]
    text = d.explanation  # type: ignore[attr-defined]
    assert "two probe processes disagreed" in text
    assert "1.70x" in text and "1.02x" in text
    assert "gil-bound" in text and "blocking-contention" in text


def test_processes_that_agree_keep_the_verdict_and_say_so() -> None:
    first = curve("no-gil", [1, 1.70, 1.7], label="3.13t")
    gil = curve("gil", [1, 1.0, 1.0], label="3.13t gil=1")
    d = decide_all(first, gil, second("3.13t", 1.68))
    assert d.verdict is Verdict.GIL_BOUND  # type: ignore[attr-defined]
    assert any("second process" in n and "1.68x" in n and "1.70x" in n for n in d.notes)  # type: ignore[attr-defined]


def test_a_gap_beyond_noise_with_the_same_verdict_is_noted_not_inconclusive() -> None:
    first = curve("no-gil", [1, 1.95, 1.9], label="3.13t")
    gil = curve("gil", [1, 1.0, 1.0], label="3.13t gil=1")
    d = decide_all(first, gil, second("3.13t", 1.70))
    assert d.verdict is Verdict.GIL_BOUND  # type: ignore[attr-defined]
    assert any("beyond their rounds' spread" in n for n in d.notes)  # type: ignore[attr-defined]


def test_a_repeat_is_not_taken_for_a_configuration_of_its_own() -> None:
    # A repeated stock-build curve must not become the "stock" reference, nor the GIL side.
    stock = curve("gil-build", [1, 1.0, 1.0], label="3.13 GIL build")
    again = dataclasses.replace(
        curve("gil-build", [1, 1.9], label="3.13 GIL build (second process)"),
        repeat_of="3.13 GIL build",
    )
    d = decide_all(stock, again)
    assert "(second process): 2 threads" not in d.explanation  # type: ignore[attr-defined]
    assert "as on 3.13 GIL build (second process)" not in d.explanation  # type: ignore[attr-defined]


def test_disagreement_needs_both_a_gap_and_ranges_apart() -> None:
    first = curve("no-gil", [1, 1.70], label="a")
    assert disagreement(first, second("a", 1.60), 2) is None  # < 0.15 apart
    assert disagreement(first, second("a", 1.20), 2) is not None
    wide = dataclasses.replace(
        first,
        points=tuple(
            dataclasses.replace(
                p, samples=(p.items_per_s * 0.6, p.items_per_s, p.items_per_s * 1.4)
            )
            for p in first.points
        ),
    )
    assert disagreement(wide, second("a", 1.20), 2) is None  # its own rounds reach 1.20x
    r = reading(first, 2)
    assert r is not None and r.low < 1.70 < r.high


def test_the_repeat_measures_only_the_compared_levels_in_less_time() -> None:
    first = curve("no-gil", [1, 1.7, 1.7], label="3.13t")
    settings = SweepSettings((1, 2, 4), budget_s=14.0)
    config, chosen = repeat_plan(first, 2, settings)
    assert config.label == "3.13t (second process)" and config.gil is None
    assert chosen.levels == (1, 2) and chosen.budget_s == 7.0


def test_a_failed_probe_of_the_default_no_gil_configuration_reads_gil_off() -> None:
    # It used to read "GIL on" (gil=None taken for "not 0").
    config = Configuration("3.13t", "no-gil", "/nonexistent/python3.13t", "3.13.5", True, None)
    c = run_probe(config, "m:f", "/nonexistent.pkl", SweepSettings((1, 2)))
    assert c.status == "crashed" and not c.gil_enabled and c.configuration == config
    forced_on = dataclasses.replace(config, label="3.13t gil=1", role="gil", gil=1)
    assert run_probe(forced_on, "m:f", "/x.pkl", SweepSettings((1, 2))).gil_enabled
    stock = Configuration("3.13", "gil-build", sys.executable + "-none", "3.13.0", False, None)
    assert run_probe(stock, "m:f", "/x.pkl", SweepSettings((1, 2))).gil_enabled


def test_a_gil_reenabling_import_is_named_even_when_the_repeat_check_noted_after_it() -> None:
    """The explanation took the last note for the re-enabled GIL's; the repeat check's note
    comes after it, so the module's name was lost (tests-3.13t-gil caught it in CI)."""
    first = curve("no-gil", [1, 1.70, 1.7], label="3.13t")
    stuck = dataclasses.replace(
        curve("no-gil", [1, 1.0, 1.0], label="3.13t old"), gil_reenabled_by=("oldext",)
    )
    gil = curve("gil", [1, 1.0, 1.0], label="3.13t gil=1")
    d = decide_all(first, gil, stuck, second("3.13t", 1.68))
    assert any("second process" in n for n in d.notes)  # type: ignore[attr-defined]
    assert "Importing oldext re-enabled the GIL" in d.explanation  # type: ignore[attr-defined]
