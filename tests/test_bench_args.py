"""The benchmark harness's command lines: where each kind of run of bench/run.py writes, and
what it and bench/bare_runner.py refuse. Nothing is benchmarked here: run.py's arguments
are only parsed, and the bare runner runs 20 tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def parsed(monkeypatch: pytest.MonkeyPatch, *argv: str):  # noqa: ANN201 (a Namespace)
    monkeypatch.syspath_prepend(str(BENCH))
    import run

    monkeypatch.setattr(sys, "argv", ["run.py", *argv])
    return run.parse_args()


def test_only_a_full_run_replaces_the_committed_report_and_chart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    full = parsed(monkeypatch)
    assert (Path(full.json).name, Path(full.md).name) == ("results.json", "results.md")
    assert Path(full.chart).name == "bench-overhead.png"
    for argv in (["--quick"], ["--only", "w0"], ["--runners", "make"]):
        partial = parsed(monkeypatch, *argv)
        assert Path(partial.json).name == "results-quick.json", argv
        assert partial.md is None and partial.chart is None, argv
    asked = parsed(monkeypatch, "--only", "w0", "--md", "out.md")
    assert asked.md == "out.md"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--only", "w9"], "unknown workload 'w9'; choose from w0, "),
        (["--only", "w0,"], "unknown workload ''"),
        (["--runners", "foo"], "unknown runner 'foo'; choose from mflow, make, "),
        (["-n", "0"], "-n must be >= 1"),
        (["--warmup", "-1"], "--warmup must be >= 0"),
        (["--timeout", "0"], "--timeout must be > 0 (seconds)"),
    ],
)
def test_a_bad_argument_is_refused_in_one_line_before_anything_runs(
    argv: list[str], error: str
) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"run.py: error: {error}" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("busy", ["-1", "nan", "2e6"])
def test_the_bare_runner_refuses_busy_work_it_cannot_spend(busy: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "bare_runner.py"), "--busy", busy],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--busy must be between 0 and 1,000,000 microseconds" in done.stderr
    assert done.stdout == ""


def test_the_bare_runner_spends_its_busy_work_on_its_own_cpu() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "bare_runner.py"), "-n", "20", "-r", "1", "--busy", "5000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "5000 µs of busy work after each" in done.stdout
    own_us = int(done.stdout.rsplit("own CPU:", 1)[1].split()[0])
    assert own_us >= 2500  # 5 ms of spinning a task; preemption can only take some of it
