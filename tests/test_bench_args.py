"""The benchmark harness's command line (bench/run.py): where each kind of run writes, and
what it refuses. Nothing is benchmarked here: only the arguments are parsed."""

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
