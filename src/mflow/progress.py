"""What a run shows on the terminal: plain timestamped lines, or a live rich view on a TTY,
and the summary at the end."""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import IO, Any

from mflow.clock import local_clock
from mflow.engine import RunOutcome
from mflow.listener import RunListener
from mflow.logs import log_is_current
from mflow.states import RunState, TaskState


class Terminal:
    """Standard output that cannot break a run: when the reader goes away (`| head`), the
    output is closed (`>&-`) or the disk is full, mflow stops printing and carries on."""

    def __init__(self, out: IO[str] | None):
        self.out = out
        self.broken = out is None

    def write(self, text: str) -> None:
        if not self.broken:
            try:
                self.out.write(text)  # type: ignore[union-attr]
            except (OSError, ValueError):
                self.broken = True

    def flush(self) -> None:
        if not self.broken:
            try:
                self.out.flush()  # type: ignore[union-attr]
            except (OSError, ValueError):
                self.broken = True

    def buffer_lines(self) -> None:
        """Keep lines until the next flush (the run flushes a few times a second and at its
        end) even under PYTHONUNBUFFERED: a system call per line shows at 10,000 tasks."""
        reconfigure = getattr(self.out, "reconfigure", None)
        if not self.broken and reconfigure is not None:
            try:
                reconfigure(line_buffering=False, write_through=False)
            except (OSError, ValueError):
                self.broken = True

    def isatty(self) -> bool:
        try:
            return not self.broken and self.out.isatty()  # type: ignore[union-attr]
        except (OSError, ValueError):
            return False


class PlainReporter(RunListener):
    """One line per change, for logs, cron mail and pipes. It makes its output block
    buffered: the run flushes it a few times a second and at the end."""

    def __init__(self, run_id: int, out: Terminal | None = None):
        self.run_id = run_id
        self.out = out or Terminal(sys.stdout)
        self.out.buffer_lines()
        self._clock = local_clock()

    def _line(self, text: str) -> None:
        self.out.write(f"{self._clock.now()} {text}\n")

    def task_state(self, task_id: str, state: TaskState, attempt: int, message: str = "") -> None:
        self._line(f"{state:<15} {task_id}" + (f"  ({message})" if message else ""))

    def limit_changed(self, old: int, new: int) -> None:
        self._line(f"max_process_concurrency {old} -> {new}")

    def notice(self, text: str) -> None:
        self._line(text)

    def flush(self) -> None:
        self.out.flush()


class LiveReporter(RunListener):
    """A rich live view: progress bar, counts by state, the running tasks and recent failures."""

    def __init__(self, run_id: int, total: int):
        from rich.console import Console
        from rich.live import Live

        self.run_id = run_id
        self.total = total
        self.console = Console()
        self.states: dict[str, TaskState] = {}
        self.started: dict[str, tuple[float, str]] = {}
        self.failures: dict[str, str] = {}  # task -> its latest failure, oldest first
        self.started_at = time.monotonic()
        self.live = Live(
            console=self.console, refresh_per_second=8, transient=False, get_renderable=self._render
        )
        self.live.start()

    def task_state(self, task_id: str, state: TaskState, attempt: int, message: str = "") -> None:
        self.states[task_id] = state
        if state is TaskState.RUNNING:
            self.started[task_id] = (time.monotonic(), message)
        else:
            self.started.pop(task_id, None)
        if state in (TaskState.FAILED, TaskState.RETRYING):
            self.failures.pop(task_id, None)
            self.failures[task_id] = f"{state} {task_id}: {message}"
        elif state is TaskState.SUCCESS:  # a retry that made it is no failure to show
            self.failures.pop(task_id, None)

    def notice(self, text: str) -> None:
        self.live.console.print(text)

    def run_ended(self, state: RunState, message: str | None = None) -> None:
        self.live.stop()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        counts = Counter(self.states.values())
        done = sum(n for s, n in counts.items() if s.finished)
        elapsed = time.monotonic() - self.started_at
        head = Text(f"run {self.run_id}  {done}/{self.total} done  {elapsed:.1f} s  ")
        for state, count in sorted(counts.items()):
            head.append(f"{state} {count}  ", style=STYLES.get(state, ""))
        table = Table(box=None, show_header=False, padding=(0, 1))
        now = time.monotonic()
        for task_id, (since, extra) in list(self.started.items())[:15]:
            table.add_row(Text("RUNNING", style="yellow"), task_id, f"{now - since:.1f} s", extra)
        if len(self.started) > 15:
            table.add_row("", f"... and {len(self.started) - 15} more", "", "")
        bar = Table.grid()  # a bar alone would share its line with what follows
        bar.add_row(ProgressBar(total=max(self.total, 1), completed=done, width=60))
        parts: list[Any] = [head, bar, table]
        parts += [Text(line, style="red") for line in list(self.failures.values())[-5:]]
        return Group(*parts)


STYLES = {
    TaskState.SUCCESS: "green",
    TaskState.FAILED: "bold red",
    TaskState.UPSTREAM_FAILED: "red",
    TaskState.RUNNING: "yellow",
    TaskState.RETRYING: "magenta",
    TaskState.CANCELLED: "dim",
    TaskState.SKIPPED: "cyan",
    TaskState.INTERRUPTED: "red",
}


def summary(run_id: int, elapsed_s: float, outcome: RunOutcome) -> str:
    """Counts by state, then each task that did not succeed with its message and log."""
    counts = Counter(outcome.task_states.values())
    lines = [
        f"run {run_id} {outcome.state} in {elapsed_s:.2f} s: "
        + ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
    ]
    run_started = datetime.fromtimestamp(time.time() - elapsed_s, UTC)
    for task_id, task_state in outcome.task_states.items():
        if task_state in (TaskState.FAILED, TaskState.INTERRUPTED):
            log = outcome.log_paths.get(task_id)
            try:
                shown = log if log and log_is_current(log.stat(), run_started) else "no output"
            except OSError:
                shown = "no output"
            lines.append(
                f"  {task_state} {task_id}: {outcome.messages.get(task_id, '')}  (log: {shown})"
            )
    upstream = [t for t, s in outcome.task_states.items() if s is TaskState.UPSTREAM_FAILED]
    if upstream:
        more = f" and {len(upstream) - 10} more" if len(upstream) > 10 else ""
        lines.append(f"  not run because a dependency failed: {', '.join(upstream[:10])}{more}")
    return "\n".join(lines)
