"""The run loop: starts each task the moment its dependencies succeeded and a slot is free.

No SQL and no subprocess here: task types run tasks, listeners record them. Everything
happens on one asyncio loop, so the bookkeeping needs no locks, and a finished task wakes
the loop at once (no polling interval). A whole run costs O(tasks + edges).
"""

from __future__ import annotations

import asyncio
import os
import signal
import traceback
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mflow.checked import Flow, Settings, SettingsWatcher
from mflow.envvars import expand
from mflow.listener import RunListener
from mflow.liveness import signal_group
from mflow.logs import task_log_path
from mflow.states import RunState, TaskState, check_transition
from mflow.tasktypes.context import MAX_SECONDS, OutOfResources, TaskContext, TaskResult

if TYPE_CHECKING:
    from mflow.tasktypes.registry import TaskTypes

FLUSH_INTERVAL_S = 0.25


@dataclass(frozen=True)
class RunOutcome:
    state: RunState
    task_states: dict[str, TaskState]
    messages: dict[str, str]  # the last message of each task that has one
    log_paths: dict[str, Path]  # the log of each task's last attempt


class Engine:
    def __init__(
        self,
        flow: Flow,
        types: TaskTypes,
        settings: SettingsWatcher,
        listener: RunListener,
        run_id: int,
        *,
        selected: Collection[str] | None = None,
        skipped: Mapping[str, str] | None = None,
        extra_env: dict[str, str] | None = None,
        resumed_from: int | None = None,
        force: bool = False,
        on_overlap: Callable[[], None] | None = None,
    ):
        """`selected`: run only these tasks (their other dependencies count as met).
        `skipped`: tasks that succeeded in the run being resumed -> where; they show SKIPPED.
        `extra_env`: variables mflow gives every task (run id, reaper token).
        `resumed_from`, `force`: this run resumes that one (with --force); task types that
        keep state of their own (nested flows) resume it too.
        `on_overlap`: called once, when a task starts while another runs."""
        self.resumed_from = resumed_from
        self.force = force
        self.flow = flow
        self.types = types
        self.watcher = settings
        # A running flow takes only max_process_concurrency from a reloaded config.json;
        # every other setting is the one the run started with.
        self.defaults = settings.current.model
        self.listener = listener
        self.run_id = run_id
        self.log_directory = settings.current.log_directory
        self.base_env = {**os.environ, **settings.current.env, **(extra_env or {})}
        selected_set = set(flow.tasks) if selected is None else set(selected)
        self.order = [task_id for task_id in flow.tasks if task_id in selected_set]
        self.skipped = {t: why for t, why in (skipped or {}).items() if t in selected_set}
        to_run = selected_set - self.skipped.keys()
        # Dependencies outside the selection, or skipped, are treated as met.
        self.waiting_on = {
            task_id: len({dep for dep in flow.tasks[task_id].depends if dep in to_run})
            for task_id in self.order
        }
        self.state = dict.fromkeys(self.order, TaskState.PENDING)
        self.pids: dict[str, int] = {}
        self.details: dict[tuple[str, int], dict[str, Any]] = {}  # see TaskContext.record
        self.messages: dict[str, str] = {}
        self.log_paths: dict[str, Path] = {}
        self.attempts = dict.fromkeys(self.order, 0)
        self.ready: deque[str] = deque(
            t for t in self.order if self.waiting_on[t] == 0 and t not in self.skipped
        )
        # an asyncio task per attempt, or a _StartedAttempt for one started at once
        self.running: dict[str, asyncio.Task[TaskResult] | _StartedAttempt] = {}
        self._held_records: list[_StartedAttempt] | None = None  # see _started_ended
        self.retry_timers: dict[str, asyncio.TimerHandle] = {}
        self.cancelled = False
        self._on_overlap = on_overlap
        self._resources_noticed = False
        self._done: asyncio.Future[None] | None = None

    # -- public ---------------------------------------------------------------------------
    async def run(self) -> RunOutcome:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        flush_timer = loop.call_later(FLUSH_INTERVAL_S, self._flush_tick)
        reload_timer = loop.call_later(self.defaults.check_new_config_interval, self._reload_tick)
        self._timers = [flush_timer, reload_timer]
        for task_id in self.order:
            if task_id in self.skipped:
                self._set_state(task_id, TaskState.SKIPPED, self.skipped[task_id])
        self._fill()
        self._check_done()
        try:
            await self._done
        finally:
            for timer in self._timers:
                timer.cancel()
        state = self._run_state()
        self.listener.run_ended(state, self._run_message(state))
        return RunOutcome(state, dict(self.state), self.messages, self.log_paths)

    def cancel(self) -> None:
        """Start no more tasks; stop the running ones (their groups get SIGTERM, then SIGKILL)."""
        if self.cancelled:
            return
        self.cancelled = True
        self.listener.notice("cancel requested: stopping running tasks")
        for timer in self.retry_timers.values():
            timer.cancel()
        for task_id in list(self.retry_timers):
            self._set_state(task_id, TaskState.CANCELLED, "run cancelled")
        self.retry_timers.clear()
        self.ready.clear()
        for atask in self.running.values():
            atask.cancel()
        self._check_done()

    def kill_now(self) -> None:
        """A second interrupt: SIGKILL every running task's group without a grace period."""
        self.cancel()
        for pid in self.pids.values():
            signal_group(pid, signal.SIGKILL)

    def reload_settings(self) -> None:
        """Re-read config.json now (also done every check_new_config_interval seconds)."""
        before = self.watcher.current
        if self.watcher.poll():
            after = self.watcher.current
            old, new = before.max_process_concurrency, after.max_process_concurrency
            if new != old:
                self.listener.limit_changed(old, new)
                self._fill()
            if new == old or _other_than_the_limit(before) != _other_than_the_limit(after):
                self.listener.notice(
                    "config file reloaded; a running flow takes only a new "
                    "max_process_concurrency from it, the rest applies next run"
                )
        elif self.watcher.last_error:
            self.listener.notice(
                "config file changed but is invalid; the run goes on with the "
                "previous settings:\n" + self.watcher.last_error
            )
            self.watcher.last_error = None

    # -- scheduling -----------------------------------------------------------------------
    def _fill(self) -> None:
        limit = self.watcher.current.max_process_concurrency
        while self.ready and len(self.running) < limit and not self.cancelled:
            if self.running and self._on_overlap is not None:
                on_overlap, self._on_overlap = self._on_overlap, None
                on_overlap()
            if not self._launch(self.ready.popleft()):
                break  # out of descriptors or processes: wait for a running task to end

    def _launch(self, task_id: str) -> bool:
        """Start an attempt of `task_id`; False if it must wait for a running task to end."""
        attempt = self.attempts[task_id] = self.attempts[task_id] + 1
        spec = self.flow.tasks[task_id]
        task_type = self.types.get(spec.type)
        # Built-in bash has start_now; every other type (a subclass of bash that may have
        # its own run() included) and every attempt with a timeout go through run().
        if "start_now" in type(task_type).__dict__ and not self._timeout(spec):
            return self._start(task_id, attempt, spec, task_type.start_now)
        atask = asyncio.ensure_future(self._attempt(task_id, attempt))
        self.running[task_id] = atask
        atask.add_done_callback(lambda done, task_id=task_id: self._attempt_done(task_id, done))
        return True

    def _attempt_done(self, task_id: str, atask: asyncio.Task[TaskResult]) -> None:
        del self.running[task_id]
        self._finished(task_id)

    def _finished(self, task_id: str) -> None:
        """After an attempt's end is recorded: what its state means for the rest."""
        state = self.state[task_id]
        if state is TaskState.SUCCESS:
            self._release_dependents(task_id)
        elif state is TaskState.RETRYING:
            delay = self._retry_delay(task_id)
            loop = asyncio.get_running_loop()
            self.retry_timers[task_id] = loop.call_later(delay, self._retry_due, task_id)
        elif state is TaskState.FAILED:
            self._fail_descendants(task_id)
        self._fill()
        self._check_done()

    def _release_dependents(self, task_id: str) -> None:
        for child in self.flow.graph.dependents[task_id]:
            if child in self.waiting_on:
                self.waiting_on[child] -= 1
                if self.waiting_on[child] == 0 and self.state[child] is TaskState.PENDING:
                    self.ready.append(child)

    def _retry_due(self, task_id: str) -> None:
        del self.retry_timers[task_id]
        self.ready.appendleft(task_id)
        self._fill()

    def _retry_delay(self, task_id: str) -> float:
        spec = self.flow.tasks[task_id]
        defaults = self.defaults
        delay = spec.retry_delay if spec.retry_delay is not None else defaults.default_retry_delay
        backoff = (
            spec.retry_backoff if spec.retry_backoff is not None else defaults.default_retry_backoff
        )
        exponent = min(self.attempts[task_id] - 1, 64)  # 100 ** 64 is still a float
        return min(float(delay * backoff**exponent), MAX_SECONDS)

    def max_attempts(self, task_id: str) -> int:
        spec = self.flow.tasks[task_id]
        retries = spec.retries if spec.retries is not None else self.defaults.default_retries
        return retries + 1

    def _fail_descendants(self, task_id: str) -> None:
        for child in self.flow.graph.descendants([task_id]):
            if self.state.get(child) is TaskState.PENDING:
                self._set_state(
                    child, TaskState.UPSTREAM_FAILED, f"upstream task '{task_id}' failed"
                )

    def _check_done(self) -> None:
        if self.running or self.retry_timers or (self.ready and not self.cancelled):
            return
        if self.cancelled:
            for task_id, state in self.state.items():
                # RETRYING: its retry was due, but it still waited for a free slot
                if state in (TaskState.PENDING, TaskState.RETRYING):
                    self._set_state(task_id, TaskState.CANCELLED, "run cancelled")
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def _set_state(self, task_id: str, state: TaskState, message: str = "") -> None:
        check_transition(self.state[task_id], state)  # a wrong move is a bug: stop loudly
        self.state[task_id] = state
        if message:
            self.messages[task_id] = message
        self.listener.task_state(task_id, state, self.attempts[task_id], message)

    # -- one attempt ----------------------------------------------------------------------
    async def _attempt(self, task_id: str, attempt: int) -> TaskResult:
        spec = self.flow.tasks[task_id]
        task_type = self.types.get(spec.type)
        assert task_type is not None  # validation guarantees it
        log_path = self.log_paths[task_id] = task_log_path(
            self.log_directory, self.run_id, task_id, attempt
        )
        ctx = self._context(task_id, attempt, spec.env, log_path)
        ctx.on_process = lambda pid: self._on_process(task_id, attempt, pid)
        ctx.record = lambda key, value: self._record_detail(task_id, attempt, key, value)
        self._record_start(task_id, attempt, log_path)
        timeout = self._timeout(spec)
        try:
            if timeout:
                async with asyncio.timeout(timeout):
                    result = await task_type.run(spec, ctx)
            else:
                result = await task_type.run(spec, ctx)
        except TimeoutError:
            result = TaskResult(False, None, f"timeout after {timeout:g} s")
        except asyncio.CancelledError:
            self._record_cancelled(task_id, attempt)
            return TaskResult(False, None, "run cancelled")
        except (Exception, SystemExit) as exc:  # a bug in a task type (a plugin calling
            result = _internal_error(log_path, spec.type, exc)  # sys.exit, even) fails it
        finally:
            self.pids.pop(task_id, None)
        if not isinstance(result, TaskResult):  # a plugin's bug too: the attempt must end
            result = TaskResult(
                False,
                None,
                f"internal error in task type '{spec.type}': its run() returned "
                f"{type(result).__name__}, not a TaskResult",
            )
        self._record_result(task_id, attempt, result)
        return result

    def _context(
        self, task_id: str, attempt: int, task_env: dict[str, str], log_path: Path
    ) -> TaskContext:
        return TaskContext(
            run_id=self.run_id,
            task_id=task_id,
            attempt=attempt,
            log_path=log_path,
            cwd=self.flow.folder,
            env=self._env(task_env),
            kill_grace_s=self.defaults.kill_grace,
            resumed_from=self.resumed_from,
            force=self.force,
        )

    def _timeout(self, spec: Any) -> float:
        return spec.timeout or self.defaults.default_timeout

    def _record_start(self, task_id: str, attempt: int, log_path: Path) -> None:
        self.listener.attempt_started(task_id, attempt, log_path)
        max_attempts = self.max_attempts(task_id)
        self._set_state(
            task_id,
            TaskState.RUNNING,
            f"attempt {attempt} of {max_attempts}" if max_attempts > 1 else "",
        )

    # -- one attempt, started at once ------------------------------------------------------
    def _start(self, task_id: str, attempt: int, spec: Any, start_now: Any) -> bool:
        """An attempt of a type that can start its process at once (bash), without a timeout:
        no asyncio task and no coroutines, about 30 us less per task, and on a chain the
        next process starts before the previous attempt is recorded (see _started_ended)."""
        log_path = task_log_path(self.log_directory, self.run_id, task_id, attempt)
        try:
            started = start_now(spec, self._context(task_id, attempt, spec.env, log_path))
        except Exception as exc:  # a bug in a task type must not take the run down
            started = _internal_error(log_path, spec.type, exc)
        if isinstance(started, OutOfResources):
            processes = sum(
                1
                for run in self.running.values()
                if isinstance(run, _StartedAttempt) and run.child is not None
            )
            if processes:
                # Nothing ran, nothing is recorded: it goes first again once one of these
                # processes ended and gave its files back. (With none, it fails as it is.)
                self.attempts[task_id] -= 1
                self.ready.appendleft(task_id)
                if not self._resources_noticed:
                    self._resources_noticed = True
                    self.listener.notice(
                        f"{processes} tasks are running and no more can start for now: "
                        f"{started.reason}. The others wait for running tasks to end; "
                        "raise the limit to run more at once"
                    )
                return False
        self.log_paths[task_id] = log_path
        attempt_run = _StartedAttempt(self, task_id, attempt, started)
        self.running[task_id] = attempt_run
        if self._held_records is not None:
            self._held_records.append(attempt_run)
        else:
            self._record_started(attempt_run)
        loop = asyncio.get_running_loop()
        if isinstance(started, TaskResult):  # it could not start: it ends in the next turn
            loop.call_soon(self._started_ended, attempt_run, started)
        else:
            self.pids[task_id] = started.pid
            started.on_done = lambda: self._process_ended(attempt_run)
        return True

    def _record_started(self, attempt_run: _StartedAttempt) -> None:
        task_id, attempt = attempt_run.task_id, attempt_run.attempt
        self._record_start(task_id, attempt, self.log_paths[task_id])
        if attempt_run.child is not None:
            self.listener.attempt_process(task_id, attempt, attempt_run.child.pid)

    def _process_ended(self, attempt_run: _StartedAttempt) -> None:
        assert attempt_run.child is not None
        try:
            result = attempt_run.child.result()
        except Exception as exc:  # as in _attempt: this task fails, the run goes on
            spec = self.flow.tasks[attempt_run.task_id]
            result = _internal_error(self.log_paths[attempt_run.task_id], spec.type, exc)
        self._started_ended(attempt_run, result)

    def _started_ended(self, attempt_run: _StartedAttempt, result: TaskResult) -> None:
        if attempt_run.stopping is not None:
            return  # cancelled: _stop_started records it
        task_id, attempt = attempt_run.task_id, attempt_run.attempt
        del self.running[task_id]
        self.pids.pop(task_id, None)
        if self.cancelled and attempt_run.child is None:
            # It could not start, and the run was cancelled before its end was handled:
            # as on the other path, an attempt that did not run counts as cancelled.
            self._record_cancelled(task_id, attempt)
            self._finished(task_id)
            return
        if not result.ok:
            self._record_result(task_id, attempt, result)
            self._finished(task_id)
            return
        # Start the dependents first: on a chain this is the critical path. Their records
        # are held until this attempt's end is recorded, so that every reader sees them in
        # order (this task SUCCESS, then theirs RUNNING).
        self._held_records = []
        try:
            self._release_dependents(task_id)
            self._fill()
        finally:
            held, self._held_records = self._held_records, None
            self._record_result(task_id, attempt, result)
            for started in held:
                self._record_started(started)
        self._check_done()

    async def _stop_started(self, attempt_run: _StartedAttempt) -> None:
        assert attempt_run.child is not None
        task_id = attempt_run.task_id
        try:
            await attempt_run.child.stop(self.defaults.kill_grace)
            self._record_cancelled(task_id, attempt_run.attempt)
        finally:  # whatever happened, the run must not wait for this attempt forever
            del self.running[task_id]
            self.pids.pop(task_id, None)
            self._check_done()

    def _record_cancelled(self, task_id: str, attempt: int) -> None:
        self.listener.attempt_ended(task_id, attempt, TaskState.CANCELLED, None, "run cancelled")
        self._set_state(task_id, TaskState.CANCELLED, "run cancelled")

    def _record_detail(self, task_id: str, attempt: int, key: str, value: Any) -> None:
        details = self.details.setdefault((task_id, attempt), {})
        details[key] = value
        self.listener.attempt_details(task_id, attempt, dict(details))

    def _on_process(self, task_id: str, attempt: int, pid: int) -> None:
        self.pids[task_id] = pid
        self.listener.attempt_process(task_id, attempt, pid)

    def _record_result(self, task_id: str, attempt: int, result: TaskResult) -> None:
        if result.ok:
            self.listener.attempt_ended(task_id, attempt, TaskState.SUCCESS, result.exit_code, "")
            self._set_state(task_id, TaskState.SUCCESS)
            return
        self.listener.attempt_ended(
            task_id, attempt, TaskState.FAILED, result.exit_code, result.message
        )
        max_attempts = self.max_attempts(task_id)
        if attempt < max_attempts and not self.cancelled:
            self._set_state(
                task_id,
                TaskState.RETRYING,
                f"attempt {attempt} of {max_attempts} failed: {result.message}",
            )
        else:
            self._set_state(task_id, TaskState.FAILED, result.message)

    def _env(self, task_env: dict[str, str]) -> dict[str, str]:
        if not task_env:
            return self.base_env
        env = dict(self.base_env)
        for key, value in task_env.items():
            env[key] = expand(value, env)
        return env

    # -- periodic -------------------------------------------------------------------------
    def _flush_tick(self) -> None:
        self.listener.flush()
        self._timers[0] = asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self._flush_tick)

    def _reload_tick(self) -> None:
        try:
            self.reload_settings()
        finally:  # whatever happened, keep watching the file
            interval = self.defaults.check_new_config_interval
            self._timers[1] = asyncio.get_running_loop().call_later(interval, self._reload_tick)

    # -- outcome --------------------------------------------------------------------------
    def _run_state(self) -> RunState:
        if self.cancelled:
            return RunState.CANCELLED
        ok = (TaskState.SUCCESS, TaskState.SKIPPED)
        return RunState.SUCCESS if all(s in ok for s in self.state.values()) else RunState.FAILED

    def _run_message(self, state: RunState) -> str | None:
        if state is RunState.SUCCESS:
            return None
        counts: dict[str, int] = {}
        for task_state in self.state.values():
            counts[task_state] = counts.get(task_state, 0) + 1
        return ", ".join(f"{count} {name}" for name, count in counts.items())


class _StartedAttempt:
    """An attempt the engine started at once (Engine._start): its process, or the result of
    a start that failed. cancel() stops the process as cancelling an attempt's task would."""

    __slots__ = ("engine", "task_id", "attempt", "child", "stopping")

    def __init__(self, engine: Engine, task_id: str, attempt: int, started: Any):
        self.engine = engine
        self.task_id = task_id
        self.attempt = attempt
        self.child = None if isinstance(started, TaskResult) else started
        self.stopping: asyncio.Task[None] | None = None

    def cancel(self) -> None:
        if self.child is not None and self.stopping is None:
            self.stopping = asyncio.ensure_future(self.engine._stop_started(self))
            self.stopping.add_done_callback(_report_failure)


def _other_than_the_limit(settings: Settings) -> tuple[Any, ...]:
    """What a reload may change besides max_process_concurrency (applied next run). A warm
    start's settings hold the model's fields as they were cached (JSON values, no token)."""
    model = settings.model
    if hasattr(model, "model_dump"):
        fields = model.model_dump(mode="json", exclude={"api_token"})
    else:
        fields = dict(vars(model))
    fields.pop("max_process_concurrency", None)
    return settings.log_directory, settings.env, fields


def _report_failure(stopping: asyncio.Task[None]) -> None:
    """A bug while stopping an attempt: to the loop's handler (the run reports it), now
    rather than whenever the task is garbage-collected."""
    if not stopping.cancelled() and stopping.exception() is not None:
        stopping.get_loop().call_exception_handler(
            {"message": "error while stopping a task", "exception": stopping.exception()}
        )


def _internal_error(log_path: Path, type_name: str, exc: BaseException) -> TaskResult:
    """A bug in a task type fails that attempt (its traceback in the attempt's log)."""
    _append(log_path, "".join(traceback.format_exception(exc)))
    return TaskResult(False, None, f"internal error in task type '{type_name}': {exc!r}")


def _append(path: Path, text: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as log:
            log.write(text)
    except OSError:
        pass  # the task's message says what went wrong; the log was only a bonus
