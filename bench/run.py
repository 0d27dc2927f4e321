#!/usr/bin/env python3
"""Benchmark suite: mflow against make -j2, xargs -P2, doit, Luigi, Snakemake and Prefect.

Workloads (every task runs `true`, except long_output; concurrency limit 2 everywhere):
  w0            1 task (start-up cost)          w1      1,000 independent tasks
  w1_10k        10,000 independent tasks         w2      chain of 200
  w3            10 layers x 100, fan-in 3        long_output  1 task printing 200 MB
  wide_100k     100,000 independent tasks
  layered_100k  100 layers x 1,000; task i of layer k>0 depends on tasks i, i+1, i+2
                (mod 1,000) of layer k-1
  validate, validate_wide_100k, validate_layered_100k
                `mflow validate` on the w0 / wide_100k / layered_100k task files
  startup_floor the libraries mflow is built on (click, asyncio, pydantic), each imported
                alone, against mflow's (warm and cold) and doit's whole w0 runs

mflow's runs after the warm-up round are warm starts: the flow was checked by the first
run and is read from mflow's cache of checked flows (src/mflow/warmstart.py), as it is for
a user's nightly run of an unchanged flow. The startup_floor series also times a cold one
(MFLOW_FLOW_CACHE=off: every file checked), and the validate workloads time the check.

Each run is one whole process, measured like the reference measure.py (wall, cpu of the
process tree, ru_maxrss) plus the runner's own peak RSS (VmHWM of its process, sampled).
Runners alternate (mflow, make, xargs, doit, luigi, snakemake, prefect, then again) after
a warm-up round; a runner leaves the rotation after N counted runs or once its counted
runs exceed the workload's time budget (at least one counted run). Slow peers are skipped
where a run would take minutes to hours; every skip is recorded with its reason.

  .venv/bin/python bench/run.py             # the full suite (about 35 minutes on 2 cores)
  .venv/bin/python bench/run.py --quick     # a few minutes: no 100k, no slow peers, n=3
  .venv/bin/python bench/run.py --only w1,w2 --runners make -n 9

(With the project's venv: mflow is found next to its python. mflow always runs.)

A full run writes results as JSON (bench/results.json), a Markdown report
(bench/results.md, also printed) and the chart docs/bench-overhead.png. A quick or partial
run (--quick, --only, --runners) prints the report and writes bench/results-quick.json
only, unless --md or --chart say where to write more. Target checks are printed as PASS/FAIL and
are informational: the exit status is 1 only if a run crashed (non-zero exit, wrong
result, or mflow timed out), 0 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402
import workloads as W  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RUNNERS = ["mflow", "make", "xargs", "doit", "luigi", "snakemake", "prefect"]
SLOW = ("luigi", "snakemake", "prefect")
PEER_LABEL = {
    "mflow": "mflow",
    "make": "make -j2",
    "xargs": "xargs -P2",
    "doit": "doit",
    "luigi": "Luigi",
    "snakemake": "Snakemake",
    "prefect": "Prefect",
}
VALIDATE = {
    "validate": "w0",
    "validate_wide_100k": "wide_100k",
    "validate_layered_100k": "layered_100k",
}
ORDER = [
    "w0",
    "startup_floor",
    "w1",
    "w2",
    "w3",
    "long_output",
    "validate",
    "w1_10k",
    "validate_wide_100k",
    "validate_layered_100k",
    "wide_100k",
    "layered_100k",
]
QUICK = ["w0", "startup_floor", "w1", "w2", "w3", "long_output", "validate", "w1_10k"]
POLL_S = 0.05  # VmHWM sampling period
SHORT = ("w0", "w2", "long_output", "validate")  # twice the counted runs
BIG_BUDGET_S = 300  # a peer whose 10k run predicts more than this at 100k is skipped there


@dataclass
class Plan:
    """How a workload is run: warm-up rounds, counted runs, budget and timeout per run."""

    warmup: int
    n: int
    budget: float  # seconds of counted runs per runner, after which it leaves the rotation
    timeout: float  # seconds before a run is killed
    cap: dict = field(default_factory=dict)  # runner -> fewer counted runs than n


def plan_for(name: str, args) -> Plan:
    if name in ("wide_100k", "layered_100k"):
        # mflow and make twice (the targets need them), the other peers once
        n = min(args.n, 2)
        return Plan(0, n, 1e9, min(args.timeout, 480), {"xargs": 1, "doit": 1})
    if name == "w1_10k":
        return Plan(args.warmup, args.n, 60 if not args.quick else 30, min(args.timeout, 240))
    if name.startswith("validate_"):
        return Plan(args.warmup, min(args.n, 3), 20, min(args.timeout, 60))
    if name in SHORT:  # runs of a fraction of a second: a stray job moves one a lot
        return Plan(args.warmup, 2 * args.n, 20, min(args.timeout, 120))
    return Plan(args.warmup, args.n, 20, min(args.timeout, 120))


@dataclass
class Job:
    runner: str
    argv: list[str]
    prepare: object = None  # callable run before every run (wipe state)
    check: object = None  # callable after a run that exited 0 -> error text or None
    env: dict | None = None
    stdin: str | None = None
    cwd: str | None = None


@dataclass
class Run:
    wall: float
    cpu: float
    tree_mib: float  # ru_maxrss from wait4: largest process of the tree (has a floor)
    own_mib: float  # VmHWM of the runner's own process, sampled every POLL_S
    rc: int
    own_cpu: float = 0.0  # user+sys of the runner's own process, sampled like own_mib
    background: float | None = None  # cores busy with other processes meanwhile (approx.)
    timed_out: bool = False
    error: str | None = None


@dataclass
class Ctx:
    out: str
    mflow: str
    bins: dict  # "core"/"prefect" -> bin dir or None
    failures: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    floor: dict = field(default_factory=dict)  # label -> summary (startup_floor)


# ----------------------------------------------------------------------------- measuring
def _vmhwm(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _own_cpu(pid: int) -> float:
    """user+sys CPU seconds of the process itself (not its children), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _HZ
    except (OSError, ValueError, IndexError):
        return 0.0


def _busy() -> float:
    """CPU seconds the whole machine has been busy (user, system, irq, steal) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / _HZ


_HZ = os.sysconf("SC_CLK_TCK")


def measure(job: Job, timeout: float, errfile: str) -> Run:
    """Run the job once as a whole process; see the module docstring for what is measured.

    ru_maxrss of the tree has a floor: on Linux a child inherits in ru_maxrss the
    high-water mark of the process that spawned it, so no figure below this script's own
    peak shows there. VmHWM of the runner's own process has no such floor and no children
    mixed in; it is sampled every POLL_S seconds while the process lives (so growth in its
    last POLL_S is missed, and a process shorter than POLL_S shows 0), and only until it
    has exited, before it is reaped, so the pid cannot have been reused meanwhile.

    background: the machine's busy CPU time during the run minus the run's own (process
    tree) CPU time, per second of wall time: how many cores other processes took. Only
    for runs of 0.5 s or more (the counters tick every 10 ms)."""
    stdin = open(job.stdin, "rb") if job.stdin else subprocess.DEVNULL
    env = dict(os.environ, **job.env) if job.env else None
    killed = threading.Event()
    busy0 = _busy()
    t0 = time.monotonic()
    with open(errfile, "wb") as err:
        p = subprocess.Popen(
            job.argv,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            env=env,
            cwd=job.cwd,
        )
    if job.stdin:
        stdin.close()

    def kill():
        killed.set()
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    own = [0.0, 0.0]
    exited = threading.Event()

    def poll():
        while not exited.wait(POLL_S):
            own[0] = max(own[0], _vmhwm(p.pid))
            own[1] = max(own[1], _own_cpu(p.pid))

    timer = threading.Timer(timeout, kill)
    poller = threading.Thread(target=poll, daemon=True)
    timer.start()
    poller.start()
    try:
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        wall = time.monotonic() - t0
        busy = _busy() - busy0
        exited.set()
        poller.join()
        _, status, ru = os.wait4(p.pid, 0)
    except BaseException:  # e.g. Ctrl-C: the child is in its own session, so kill it too
        kill()
        p.wait()
        raise
    finally:
        timer.cancel()
        exited.set()
    p.returncode = os.waitstatus_to_exitcode(status)  # so Popen won't reap it again
    try:  # whatever the runner left running in its group (a timed-out run's children)
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    run = Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, own[0], p.returncode)
    run.own_cpu = own[1]
    run.timed_out = killed.is_set()
    if wall >= 0.5:
        run.background = max(0.0, busy - run.cpu) / wall
    if run.timed_out:
        run.error = f"timed out after {timeout:.0f} s"
    elif run.rc != 0:
        run.error = f"exited {run.rc}" if run.rc > 0 else f"killed by signal {-run.rc}"
    elif job.check:
        run.error = job.check()
    return run


def _tail(path: str, n: int = 5) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4000))
            lines = f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return ""
    return "\n".join("      | " + line for line in lines)


def run_series(name: str, jobs: list[Job], plan: Plan, ctx: Ctx) -> dict:
    """Run the jobs alternately -> {runner: {"runs": [...], "warmup": [...]}}."""
    res = {j.runner: {"runs": [], "warmup": []} for j in jobs}
    errfile = os.path.join(ctx.out, "scratch", "stderr.txt")
    active = list(jobs)
    rounds = 0
    while active:
        warm = rounds < plan.warmup
        for job in list(active):
            if job.prepare:
                job.prepare()
            # No writeback left over from the run before (Snakemake's thousand marker files,
            # a 200 MB log) to land on this one: the next runner in the rotation would pay.
            os.sync()
            r = measure(job, plan.timeout, errfile)
            slot = res[job.runner]["warmup" if warm else "runs"]
            slot.append(r)
            if r.wall > 5 or r.error:
                what = "warm-up" if warm else f"run {len(slot)}"
                state = r.error or "ok"
                if r.background is not None:
                    state += f", background load {r.background:.2f} cores"
                print(f"    {job.runner} {what}: {r.wall:.2f} s {state}", file=sys.stderr)
            if r.error and not (r.timed_out and job.runner != "mflow"):
                msg = f"{job.runner} {name}: {r.error}: {' '.join(job.argv)}"
                tail = _tail(errfile)
                print(f"!!! {msg}\n{tail}", file=sys.stderr, flush=True)
                ctx.failures.append(msg)
            done = len(res[job.runner]["runs"])
            spent = sum(x.wall for x in res[job.runner]["runs"])
            n = plan.cap.get(job.runner, plan.n)
            if r.timed_out or (not warm and (done >= n or spent >= plan.budget)):
                active.remove(job)
        rounds += 1
    return res


def summarize(runs: list[Run]) -> dict:
    walls = [r.wall for r in runs]
    bg = [r.background for r in runs if r.background is not None]
    return {
        "background_median": statistics.median(bg) if bg else None,
        "background_max": max(bg) if bg else None,
        "wall_median": statistics.median(walls),
        "wall_min": min(walls),
        "wall_max": max(walls),
        "cpu_median": statistics.median(r.cpu for r in runs),
        "own_peak_mib": max(r.own_mib for r in runs),
        "own_cpu_median": statistics.median(r.own_cpu for r in runs),
        "tree_peak_mib": max(r.tree_mib for r in runs),
        "n": len(runs),
        "timed_out": any(r.timed_out for r in runs),
        "failed_runs": sum(1 for r in runs if r.error and not r.timed_out),
        "runs": [r.__dict__ for r in runs],
    }


# ----------------------------------------------------------------------------- the jobs
def _wipe(*paths, mkdir=()):
    """-> a function that removes `paths` (files or folders), then creates `mkdir`."""

    def go():
        for p in (*paths, *mkdir):
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            elif os.path.lexists(p):
                os.unlink(p)
        for p in mkdir:
            os.makedirs(p)

    return go


def _check_size(path_or_dir: str, want: int):
    """For long_output: the log holds all the bytes."""

    def go():
        path = path_or_dir
        if os.path.isdir(path):
            sizes = [
                os.path.getsize(os.path.join(d, f))
                for d, _, fs in os.walk(path)
                for f in fs
                if f.endswith(".log")
            ]
            size = max(sizes, default=0)
        else:
            size = os.path.getsize(path) if os.path.exists(path) else 0
        return None if size >= want else f"log holds {size} bytes, expected {want}"

    return go


def _check_count(directory: str, want: int):
    """For Luigi, which exits 0 even when a task failed: every marker is there."""

    def go():
        have = len(os.listdir(directory)) if os.path.isdir(directory) else 0
        return None if have >= want else f"{have} of {want} tasks done"

    return go


def runners_for(w: W.Workload, ctx: Ctx, wanted: list[str], by: dict) -> tuple[list, dict]:
    """-> (runners to run on w, {runner: reason it is skipped})."""
    skip = {}
    names = []
    for r in wanted:
        if r == "xargs" and w.kind not in ("wide", "chain"):
            continue  # not a peer there: xargs has no dependencies
        if r in ("doit", "luigi", "snakemake") and not ctx.bins.get("core"):
            skip[r] = "not installed"
            continue
        if r == "prefect" and not ctx.bins.get("prefect"):
            skip[r] = "not installed"
            continue
        if r in SLOW and (w.big or w.name == "w1_10k"):
            # (the reference figures: about 8, 33 and 14 s on 1,000 tasks, 0.3, 1.8, 8 s on 1)
            one, onek = {"luigi": (0.3, 8), "snakemake": (1.8, 33), "prefect": (8, 14)}[r]
            took = "takes"
            s0, s1 = by.get("w0", {}).get(r), by.get("w1", {}).get(r)
            if s0 and s1 and not s0["timed_out"] and not s1["timed_out"]:
                one, onek, took = s0["wall_median"], s1["wall_median"], "took"
            per = max(onek - one, 0) / 1000
            skip[r] = (
                f"{took} {onek:.0f} s on 1,000 tasks ({per * 1000:.1f} ms a task); even growing"
                f" only linearly, one run would take {(one + per * 1e4) / 60:.1f} min at 10k"
                f" and {(one + per * 1e5) / 3600:.1f} h at 100k"
            )
            continue
        if w.big and r not in ("mflow", "make"):
            tenk = by.get("w1_10k", {}).get(r)
            if tenk and tenk["wall_median"] * 10 > BIG_BUDGET_S:
                skip[r] = (
                    f"{tenk['wall_median']:.1f} s at 10k predicts more than {BIG_BUDGET_S} s"
                    " at 100k (time budget)"
                )
                continue
        names.append(r)
    return names, skip


def jobs_for(w: W.Workload, names: list[str], ctx: Ctx) -> list[Job]:
    out = ctx.out
    scratch = os.path.join(out, "scratch")
    bins = ctx.bins
    jobs = []
    long = w.command != W.TRUE
    for r in names:
        log = os.path.join(scratch, r, w.name + ".log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        sized = _check_size(log, W.LONG_OUTPUT_BYTES) if long else None
        if r == "mflow":
            taskfile, config, logdir = W.write_mflow(w, out)
            ctx.files[w.name] = taskfile, config
            check = _check_size(logdir, W.LONG_OUTPUT_BYTES) if long else None
            argv = [ctx.mflow, "run", "--config", config, "--taskfile", taskfile]
            env = {"XDG_CACHE_HOME": os.path.join(out, "flow-cache")}  # its own, not the user's
            jobs.append(Job(r, argv, _wipe(mkdir=[logdir]), check, env=env))
        elif r == "make":
            mk = W.write_make(w, out, log)
            jobs.append(Job(r, ["make", "-j2", "-f", mk, "all"], _wipe(log), sized))
        elif r == "xargs":
            stdin = W.write_xargs_input(w, out)
            par = ["-P2"] if w.kind == "wide" else []  # a chain runs serially
            jobs.append(Job(r, ["xargs", *par, "-n1", "true"], stdin=stdin))
        elif r == "doit":
            dodo = W.write_doit(w, out, log)
            db = os.path.join(scratch, "doit", w.name + ".db")
            argv = [os.path.join(bins["core"], "doit"), "run", "-f", dodo, "--db-file", db]
            argv += ["-n", "2", "-P", "thread"]
            wipe = _wipe(log, *(db + s for s in ("", ".db", ".dat", ".dir", ".bak")))
            jobs.append(Job(r, argv, wipe, sized))
        elif r == "luigi":
            mark = os.path.join(scratch, "luigi", w.name)
            W.write_luigi(w, out, mark, log)
            argv = [os.path.join(bins["core"], "luigi"), "--module", f"dag_{w.name}", "All"]
            argv += ["--local-scheduler", "--workers", "2"]
            env = {"PYTHONPATH": os.path.join(out, "luigi")}
            count = _check_count(mark, w.tasks)
            check = (lambda c=count, s=sized: c() or s()) if long else count
            jobs.append(Job(r, argv, _wipe(mark, log), check, env=env, cwd=scratch))
        elif r == "snakemake":
            snakefile = W.write_snakemake(w, out, log)
            wd = os.path.join(scratch, "snakemake", w.name)
            argv = [os.path.join(bins["core"], "snakemake"), "-s", snakefile, "-d", wd]
            argv += ["--cores", "2", "--quiet", "all"]
            jobs.append(Job(r, argv, _wipe(wd, log), sized))
        elif r == "prefect":
            flow = W.write_prefect(w, out, log)
            env = {
                "PREFECT_HOME": os.path.join(scratch, "prefect-home"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
            }
            argv = [os.path.join(bins["prefect"], "python"), flow]
            jobs.append(Job(r, argv, _wipe(log), sized, env=env, cwd=scratch))
    return jobs


def bench(name: str, ctx: Ctx, args, by: dict) -> dict:
    plan = plan_for(name, args)
    if name in VALIDATE:
        w = W.WORKLOADS[VALIDATE[name]]
        if w.name not in ctx.files:
            ctx.files[w.name] = W.write_mflow(w, ctx.out)[:2]
        taskfile, config = ctx.files[w.name]
        argv = [ctx.mflow, "validate", "--config", config, "--taskfile", taskfile]
        jobs, skip, tasks = [Job("mflow", argv)], {}, w.tasks
    else:
        w = W.WORKLOADS[name]
        names, skip = runners_for(w, ctx, args.runners, by)
        jobs, tasks = jobs_for(w, names, ctx), w.tasks
    order = ", ".join(j.runner for j in jobs)
    print(
        f"... {name} ({tasks} tasks): {order}; {plan.warmup} warm-up, up to {plan.n} runs",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.monotonic()
    res = run_series(name, jobs, plan, ctx)
    row = {"workload": name, "tasks": tasks, "skipped": skip, "plan": plan.__dict__}
    for r, v in res.items():
        if v["runs"]:
            row[r] = summarize(v["runs"])
        else:  # timed out in the warm-up: report that as the (lower-bound) result
            row[r] = summarize(v["warmup"])
    brief = ", ".join(f"{r} {fmt_s(row[r])}" for r in res)
    print(f"    {name} done in {time.monotonic() - t0:.0f} s: {brief}", file=sys.stderr)
    shutil.rmtree(os.path.join(ctx.out, "scratch"), ignore_errors=True)
    os.makedirs(os.path.join(ctx.out, "scratch"), exist_ok=True)
    return row


# ----------------------------------------------------------------------------- start-up floor
_ONE_MODEL = "from pydantic import BaseModel\nclass M(BaseModel):\n    x: int\nM(x=1)\n"
FLOOR = [  # (what, Python code run with the benchmark's interpreter)
    ("interpreter alone", "pass"),
    ("import click", "import click"),
    ("import asyncio", "import asyncio"),
    ("import pydantic, validate one model", _ONE_MODEL),
    ("click + asyncio + pydantic, one model", "import asyncio, click\n" + _ONE_MODEL),
]


def startup_floor(ctx: Ctx, args) -> dict:
    """What mflow's start-up is made of: the libraries it is built on, imported alone, and
    mflow's and doit's whole one-task runs, in one alternated series -> {what: summary}
    (mflow's and doit's under their runner names)."""
    jobs = [Job(what, [sys.executable, "-c", code]) for what, code in FLOOR]
    names = ["mflow"] + (["doit"] if ctx.bins.get("core") and "doit" in args.runners else [])
    jobs += jobs_for(W.WORKLOADS["w0"], names, ctx)
    warm = jobs[len(FLOOR)]
    cold = dict(warm.env or {}, MFLOW_FLOW_CACHE="off")
    jobs.append(Job(COLD, warm.argv, warm.prepare, warm.check, env=cold))
    plan = Plan(args.warmup, max(args.n, 9), 20, min(args.timeout, 60))
    print(f"... startup_floor: {len(jobs)} commands, up to {plan.n} runs", file=sys.stderr)
    res = run_series("startup_floor", jobs, plan, ctx)
    shutil.rmtree(os.path.join(ctx.out, "scratch"), ignore_errors=True)
    os.makedirs(os.path.join(ctx.out, "scratch"), exist_ok=True)
    # (warm-up runs stand in only for a command that timed out before any counted run)
    return {what: summarize(v["runs"] or v["warmup"]) for what, v in res.items()}


COLD = "mflow: whole w0 run, cold (MFLOW_FLOW_CACHE=off: files checked)"
WARM_FLOOR = "import asyncio"  # all that a warm start needs of the three libraries


def _floor_label(what: str) -> str:
    if what == "mflow":
        return "mflow: whole w0 run, warm (flow checked before)"
    return f"{PEER_LABEL[what]}: whole w0 run" if what in PEER_LABEL else what


def floor_bounds(floor: dict, by: dict) -> list[str]:
    """The start-up-bound targets against a best case: the start-up of what a warm start
    imports (asyncio) plus what make spends on the same tasks (make's wall minus its own w0
    wall, so even w0's one task is left out), as if the runner cost no more than make per
    task. A target whose limit lies below its best case cannot be met unless the runner
    spends less per task than make does."""
    libs = floor.get(WARM_FLOOR)
    if not libs or libs["timed_out"] or libs["failed_runs"]:
        return []
    start = libs["wall_median"]

    def med(w, r):
        s = floor.get(r) if w == "startup_floor" else by.get(w, {}).get(r)
        return None if not s or s["timed_out"] or s["failed_runs"] else s["wall_median"]

    def best(w):
        make, make0 = med(w, "make"), med("w0", "make")
        return None if make is None or make0 is None else start + make - make0

    out = []
    chain, make_chain = best("w2"), med("w2", "make")
    if chain is not None and make_chain is not None:
        out.append(_bound("chain (w2) <= 2x make", 2 * make_chain, chain))
    for w in ("w0", "w2", "long_output"):
        # doit's one-task time from the floor series, measured beside the libraries
        b, doit = best(w), med("startup_floor" if w == "w0" else w, "doit")
        if b is not None and doit is not None:
            out.append(_bound(f"faster than doit on {w}", doit, b))
    b, luigi = best("w2"), med("w2", "luigi")
    if b is not None and luigi is not None:
        out.append(_bound("Luigi >= 10x slower on w2", luigi / 10, b))
    return out


def _bound(target: str, limit: float, best: float) -> str:
    verdict = "out of reach" if best > limit else "not ruled out"
    return f"{target}: limit {limit:.3f} s, best case {best:.3f} s: {verdict}"


def floor_report(floor: dict, by: dict) -> list[str]:
    L = [
        "Start-up floor: mflow's `run` imports click (command line), asyncio (the engine) "
        "and pydantic (the file models); a warm start (a flow checked before) imports "
        "asyncio alone. Each line is a whole `python -c` process with the benchmark's "
        "interpreter, alternated with mflow's (warm and cold) and doit's one-task runs (ms):\n"
    ]
    L.append("| what is started | median ms | min–max ms |")
    L.append("|---|---|---|")
    for what, s in floor.items():
        lo, mid, hi = (s[k] * 1000 for k in ("wall_min", "wall_median", "wall_max"))
        failed = " FAILED" if s["failed_runs"] or s["timed_out"] else ""
        L.append(f"| {_floor_label(what)} | {mid:.0f}{failed} | {lo:.0f}–{hi:.0f} |")
    libs, doit = floor.get(FLOOR[4][0]), floor.get("doit")
    if libs and doit:
        L.append(
            f"\nThe three libraries alone take {libs['wall_median'] * 1000:.0f} ms to start,"
            f" {libs['wall_median'] / doit['wall_median']:.2f}x doit's whole one-task run"
            f" ({doit['wall_median'] * 1000:.0f} ms)."
        )
    bounds = floor_bounds(floor, by)
    if bounds:
        L.append(
            "\nWhat that floor leaves of the start-up-bound targets. Best case = asyncio's"
            " start-up (all a warm start loads of the three) + make's time for the same tasks"
            " (make's wall − make's w0), as if the runner cost no more than make per task; a"
            " target whose limit is below its best case cannot be met unless the runner"
            " spends less per task than make does:\n"
        )
        L.extend(f"- {line}" for line in bounds)
    L.append("")
    return L


# ----------------------------------------------------------------------------- reporting
def fmt_s(s: dict | None, spread: bool = False) -> str:
    if not s:
        return "–"
    if s["timed_out"]:
        return f"> {s['wall_max']:.0f} (timed out)"
    v = s["wall_median"]
    prec = 3 if v < 10 else 1
    text = f"{v:.{prec}f}"
    if spread and s["n"] > 1:
        text += f" ({s['wall_min']:.{prec}f}–{s['wall_max']:.{prec}f})"
    elif spread:
        text += " (1 run)"
    if s["failed_runs"]:
        text += " FAILED"
    return text


def derived(by: dict) -> dict:
    """Per runner: start-up, ms per task (wide 1k/10k/100k, layered), ms per link (w2).

    The start-up (median wall of w0) is subtracted: per task = (wall(wN) - wall(w0)) / N,
    per link = (wall(w2) - wall(w0)) / (200 - 1)."""
    out = {}
    for r in RUNNERS:

        def med(w, r=r):
            s = by.get(w, {}).get(r)
            return None if not s or s["timed_out"] or s["failed_runs"] else s["wall_median"]

        start = med("w0")
        d = {"startup_s": start}
        for w, key in (
            ("w1", "task_ms_1k"),
            ("w1_10k", "task_ms_10k"),
            ("wide_100k", "task_ms_100k"),
            ("w3", "task_ms_layered_1k"),
            ("layered_100k", "task_ms_layered_100k"),
        ):
            v = med(w)
            if v is not None and start is not None:
                d[key] = (v - start) / W.WORKLOADS[w].tasks * 1000
        v = med("w2")
        if v is not None and start is not None:
            d["link_ms"] = (v - start) / (W.CHAIN - 1) * 1000
        if v is not None:
            d["link_ms_raw"] = v / W.CHAIN * 1000
        if len(d) > 1 or start is not None:
            out[r] = d
    return out


def ratio(by, w, a, b):
    """median(a) / median(b) on workload w, or None; a timed-out a gives a lower bound."""
    sa, sb = by.get(w, {}).get(a), by.get(w, {}).get(b)
    if not sa or not sb or sb["timed_out"] or sa["failed_runs"] or sb["failed_runs"]:
        return None
    return sa["wall_median"] / max(sb["wall_median"], 1e-9)


def checks(by: dict, der: dict) -> list[tuple[str, bool | None, str]]:
    """The issue's targets -> [(target, True/False/None = not measured, figures)]."""
    out = []

    def add(desc, ok, info):
        out.append((desc, ok, info))

    r = ratio(by, "w1_10k", "mflow", "make")
    add("wide 10k: mflow <= 1.3x make -j2", None if r is None else r <= 1.3, _x(r))
    r = ratio(by, "w2", "mflow", "make")
    add("chain (w2): mflow <= 2x make -j2", None if r is None else r <= 2, _x(r))
    lm, lk = der.get("mflow", {}).get("link_ms"), der.get("make", {}).get("link_ms")
    if lm is not None and lk:
        add(
            "chain latency per link, start-up excluded: mflow <= 2x make (supplementary)",
            lm <= 2 * lk,
            f"{lm:.2f} vs {lk:.2f} ms ({lm / lk:.2f}x)",
        )
    slower = []
    for w in ORDER:
        if w in VALIDATE or w not in by:
            continue
        r = ratio(by, w, "doit", "mflow")
        if r is not None:
            slower.append((w, r))
    if slower:
        bad = [f"{w} {1 / x:.2f}x" for w, x in slower if x <= 1]
        info = ", ".join(f"{w} {1 / x:.2f}x" for w, x in slower)
        add("every workload: mflow faster than doit (mflow/doit < 1)", not bad, info)
    else:
        add("every workload: mflow faster than doit", None, "doit not run")
    for peer in SLOW:  # on the DAGs: w0 and long_output measure start-up and output only
        desc = f"{PEER_LABEL[peer]} >= 10x slower than mflow (workloads of 200+ tasks)"
        rs = [(w, ratio(by, w, peer, "mflow")) for w in ORDER if w in by and w not in VALIDATE]
        dag = [(w, x) for w, x in rs if x is not None and W.WORKLOADS[w].tasks > 1]
        rest = [(w, x) for w, x in rs if x is not None and W.WORKLOADS[w].tasks == 1]
        if dag:
            info = ", ".join(f"{w} {x:.1f}x" for w, x in dag)
            info += "".join(f"; ({w} {x:.1f}x)" for w, x in rest)
            add(desc, all(x >= 10 for _, x in dag), info)
        else:
            add(desc, None, "not run")
    for w in ("validate_wide_100k", "validate_layered_100k"):
        s = by.get(w, {}).get("mflow")
        ok = None if not s else (not s["failed_runs"] and s["wall_median"] < 2)
        add(f"{w.replace('_', ' ', 1)}: < 2 s", ok, f"{s['wall_median']:.2f} s" if s else "")
    for w in ("wide_100k", "layered_100k"):
        s = by.get(w, {}).get("mflow")
        ok = None if not s else (not s["failed_runs"] and s["own_peak_mib"] < 600)
        add(f"{w}: mflow peak memory < 600 MiB", ok, f"{s['own_peak_mib']:.0f} MiB" if s else "")
    a, b = der.get("mflow", {}).get("task_ms_100k"), der.get("mflow", {}).get("task_ms_10k")
    ok = None if a is None or b is None else a <= 1.2 * b
    info = "" if ok is None else f"{a:.3f} vs {b:.3f} ms per task ({a / b:.2f}x)"
    add("cost per task at 100k within 1.2x of 10k (wide)", ok, info)
    return out


def _x(r):
    return "" if r is None else f"{r:.2f}x"


def report(rows: list, der: dict, results: list, meta: dict, notes: list, floor: dict) -> str:
    by = {r["workload"]: r for r in rows}
    present = [r for r in RUNNERS if any(r in row for row in rows)]
    L = []
    L.append("# Benchmark results\n")
    L.append(
        f"{meta['date']}, {meta['cpu']} ({meta['cpus']} cores), {meta['system']}, "
        f"Python {meta['python']}; mflow {meta['mflow']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["peers"].items())
        + ".\n"
    )
    L.append(
        "Wall seconds: median (min–max) of the counted runs; runners alternated, after a "
        "warm-up round (none on the 100k workloads). Lower is better. `–`: not run "
        "(see the notes).\n"
    )
    hdr = ["workload", "tasks"] + [PEER_LABEL[r] for r in present]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    for row in rows:
        cells = [row["workload"], f"{row['tasks']:,}"]
        cells += [fmt_s(row.get(r), spread=True) for r in present]
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L.append("Ratios to mflow (runner's median / mflow's median; above 1: mflow is faster):\n")
    others = [r for r in present if r != "mflow"]
    L.append("| workload | " + " | ".join(PEER_LABEL[r] for r in others) + " |")
    L.append("|---|" + "---|" * len(others))
    for row in rows:
        if row["workload"] in VALIDATE:
            continue
        cells = []
        for r in others:
            x = ratio(by, row["workload"], r, "mflow")
            s = row.get(r)
            cells.append(
                "–" if x is None else (f"> {x:.2f}" if s and s["timed_out"] else f"{x:.2f}")
            )
        L.append(f"| {row['workload']} | " + " | ".join(cells) + " |")
    L.append("")
    L.append(
        "Per-task overhead and chain latency, start-up excluded: ms per task = "
        "(wall(wide N) − wall(w0)) / N; ms per link = (wall(w2) − wall(w0)) / 199. "
        "The w2 column in brackets is wall(w2) / 200, start-up included.\n"
    )
    cols = [
        ("start-up (w0) s", "startup_s", 3),
        ("ms/task wide 1k", "task_ms_1k", 3),
        ("ms/task wide 10k", "task_ms_10k", 3),
        ("ms/task wide 100k", "task_ms_100k", 3),
        ("ms/task layered 100k", "task_ms_layered_100k", 3),
        ("ms/link w2", "link_ms", 2),
    ]
    L.append("| runner | " + " | ".join(c[0] for c in cols) + " |")
    L.append("|---|" + "---|" * len(cols))
    for r in present:
        d = der.get(r, {})
        cells = []
        for _, key, p in cols:
            v = d.get(key)
            cell = "–" if v is None else f"{v:.{p}f}"
            if key == "link_ms" and d.get("link_ms_raw") is not None:
                cell += f" ({d['link_ms_raw']:.2f})"
            cells.append(cell)
        L.append(f"| {PEER_LABEL[r]} | " + " | ".join(cells) + " |")
    L.append("")
    L.append(
        "mflow's CPU and memory: own peak = VmHWM of the mflow process (sampled every 50 ms, no "
        "children); tree = ru_maxrss of the process tree (has a floor: the harness's own "
        "peak, inherited by every child it starts). CPU: user+sys of the process tree "
        "(mflow, its tasks, its helper), and of the mflow process alone (sampled like own "
        "peak); per task: (own cpu - own cpu on w0) / tasks.\n"
    )
    L.append(
        "| workload | mflow wall s | tree cpu s | own cpu s | own cpu ms/task "
        "| own peak MiB | tree peak MiB |"
    )
    L.append("|---|---|---|---|---|---|---|")
    base = by.get("w0", {}).get("mflow")
    for row in rows:
        s = row.get("mflow")
        if s:
            per = "–"
            if base and row["tasks"] > 1 and row["workload"] not in VALIDATE:
                per = f"{(s['own_cpu_median'] - base['own_cpu_median']) / row['tasks'] * 1000:.3f}"
            L.append(
                f"| {row['workload']} | {fmt_s(s)} | {s['cpu_median']:.2f} | "
                f"{s['own_cpu_median']:.2f} | {per} | "
                f"{s['own_peak_mib']:.0f} | {s['tree_peak_mib']:.0f} |"
            )
    L.append("")
    L.append(
        "Background load: CPU taken by other processes during the counted runs, in cores "
        "(of 2), for runs of 0.5 s or more: median and max over all runners' runs. Above "
        "~0.3, runs competed for the CPU and their times are inflated.\n"
    )
    L.append("| workload | median | max |")
    L.append("|---|---|---|")
    for row in rows:
        bg = [
            x["background"]
            for r in RUNNERS
            if r in row
            for x in row[r]["runs"]
            if x["background"] is not None
        ]
        if bg:
            flag = " (noisy)" if max(bg) > 0.3 else ""
            L.append(f"| {row['workload']} | {statistics.median(bg):.2f} | {max(bg):.2f}{flag} |")
    L.append("")
    if floor:
        L.extend(floor_report(floor, by))
    L.append("Targets (informational; ratios from this run):\n")
    for desc, ok, info in results:
        mark = "SKIP" if ok is None else "PASS" if ok else "FAIL"
        L.append(f"- **{mark}** {desc}" + (f": {info}" if info else ""))
    L.append("")
    why_where = {}  # reason -> {runner: [workloads]}, to say each reason once
    for row in rows:
        for r, why in row["skipped"].items():
            why_where.setdefault(why, {}).setdefault(r, []).append(row["workload"])
    skips = []
    for why, where in why_where.items():
        groups = {}
        for r, ws in where.items():
            groups.setdefault(tuple(ws), []).append(PEER_LABEL[r])
        for ws, rs in groups.items():
            skips.append(f"- {', '.join(rs)} skipped on {', '.join(ws)}: {why}")
    if skips or notes:
        L.append("Notes:\n")
        L.extend(f"- {n}" for n in notes)
        L.extend(skips)
        L.append("")
    return "\n".join(L)


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.machine()


def mflow_version() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{head}{' + uncommitted changes in src/' if dirty else ''}" if head else "?"


def compile_mflow(mflow: str) -> str | None:
    """Byte-compile the measured mflow's package, as pip does when it installs one. An
    editable install under PYTHONDONTWRITEBYTECODE=1 never gets its .pyc files, and every
    start would compile mflow's modules from source (~30 ms here) -> a note, or None."""
    python = os.path.join(os.path.dirname(mflow), "python")
    if not os.access(python, os.X_OK):
        return "mflow's byte code not compiled: no python beside the mflow executable"
    code = (
        "import compileall, os, mflow\n"
        "compileall.compile_dir(os.path.dirname(mflow.__file__), quiet=1)"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return f"mflow's byte code not compiled: {done.stderr[-200:]}"
    return None


def find_mflow(given):
    if given:
        return os.path.abspath(given) if os.sep in given else (shutil.which(given) or given)
    beside = os.path.join(os.path.dirname(sys.executable), "mflow")
    return beside if os.access(beside, os.X_OK) else shutil.which("mflow")


def parse_args():
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    ap.add_argument(
        "-n",
        type=int,
        help="counted runs per runner (default 5; --quick 3); twice that on the workloads"
        " of a fraction of a second, at most 3 for validate_*, at most 2 at 100k",
    )
    ap.add_argument("--warmup", type=int, default=1, help="warm-up rounds (default 1)")
    ap.add_argument("--only", help="comma-separated workloads (default all): " + ",".join(ORDER))
    ap.add_argument("--runners", help="comma-separated runners (default all): " + ",".join(RUNNERS))
    ap.add_argument(
        "--quick",
        action="store_true",
        help="n=3, no 100k workloads, no Luigi/Snakemake/Prefect; JSON to results-quick.json",
    )
    ap.add_argument("--mflow", help="mflow executable (default: next to python, else PATH)")
    ap.add_argument("--out", help="write workload files here and keep them (default: temp dir)")
    ap.add_argument(
        "--json",
        help="results as JSON (default bench/results.json; bench/results-quick.json for a"
        " quick or partial run: --quick, --only or --runners)",
    )
    ap.add_argument(
        "--md", help="Markdown report (default bench/results.md; none for a quick or partial run)"
    )
    ap.add_argument(
        "--chart",
        help="chart PNG (default docs/bench-overhead.png; none for a quick or partial run)",
    )
    ap.add_argument(
        "--timeout", type=float, default=480, help="upper bound of the per-run timeouts (s)"
    )
    args = ap.parse_args()
    names = args.only.split(",") if args.only else (QUICK if args.quick else ORDER)
    bad = [w for w in names if w not in ORDER]
    if bad:
        ap.error(f"unknown workload {', '.join(map(repr, bad))}; choose from {', '.join(ORDER)}")
    args.names = [w for w in ORDER if w in names]
    explicit_runners = args.runners is not None
    default_runners = [r for r in RUNNERS if not (args.quick and r in SLOW)]
    args.runners = args.runners.split(",") if args.runners else default_runners
    bad = [r for r in args.runners if r not in RUNNERS]
    if bad:
        ap.error(f"unknown runner {', '.join(map(repr, bad))}; choose from {', '.join(RUNNERS)}")
    args.runners = [r for r in RUNNERS if r in args.runners or r == "mflow"]
    if args.n is None:
        args.n = 3 if args.quick else 5
    if args.n < 1:
        ap.error("-n must be >= 1")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    if not args.timeout > 0:
        ap.error("--timeout must be > 0 (seconds)")
    # Only a full run replaces the committed report and chart: a quick or partial one
    # (--only, --runners) writes its JSON aside, unless told where to write.
    if args.quick or args.only or explicit_runners:
        args.json = args.json or os.path.join(HERE, "results-quick.json")
    else:
        args.json = args.json or os.path.join(HERE, "results.json")
        args.md = args.md or os.path.join(HERE, "results.md")
        args.chart = args.chart or os.path.join(ROOT, "docs", "bench-overhead.png")
    return args


def main():
    args = parse_args()
    mflow = find_mflow(args.mflow)
    if not mflow or not os.access(mflow, os.X_OK):
        sys.exit(
            f"mflow executable not found ({mflow or 'not next to python, not on PATH'});"
            " use --mflow PATH"
        )
    if not shutil.which("make") or not shutil.which("xargs"):
        sys.exit("make and xargs must be on PATH")
    notes = []
    note = compile_mflow(mflow)
    if note:
        notes.append(note)
        print(f"!!! {note}", file=sys.stderr)
    bins = {}
    need_core = bool({"doit", "luigi", "snakemake"} & set(args.runners)) or args.chart
    if need_core:
        bins["core"], note = peers.ensure("core")
        if not bins["core"]:
            notes.append(f"doit, Luigi, Snakemake and the chart: {note}")
            print(f"!!! peers venv: {note}", file=sys.stderr)
    if "prefect" in args.runners:
        bins["prefect"], note = peers.ensure("prefect", timeout=600)
        if not bins["prefect"]:
            notes.append(f"Prefect (optional): {note}")
            print(f"!!! Prefect venv: {note} (Prefect skipped)", file=sys.stderr)
    out = os.path.abspath(args.out) if args.out else tempfile.mkdtemp(prefix="mflow-bench-")
    os.makedirs(os.path.join(out, "scratch"), exist_ok=True)
    ctx = Ctx(out, mflow, bins, notes=notes)
    started = datetime.datetime.now().astimezone()
    t0 = time.monotonic()
    rows, by = [], {}
    try:
        for w in args.names:
            if w == "startup_floor":
                ctx.floor = startup_floor(ctx, args)
                continue
            row = bench(w, ctx, args, by)
            rows.append(row)
            by[w] = row
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    pv = {}
    if bins.get("core"):
        for dist in ("doit", "luigi", "snakemake"):
            if dist in args.runners:
                pv[dist] = peers.version(bins["core"], dist)
    if bins.get("prefect"):
        pv["prefect"] = peers.version(bins["prefect"], "prefect")
    make_v = subprocess.run(["make", "--version"], capture_output=True, text=True).stdout
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": machine(),
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "mflow": mflow_version(),
        "peers": {"make": make_v.split("\n")[0].replace("GNU Make ", ""), **pv},
        "n": args.n,
        "warmup": args.warmup,
        "quick": args.quick,
        "duration_s": round(time.monotonic() - t0),
    }
    der = derived(by)
    results = checks(by, der)
    text = report(rows, der, results, meta, notes, ctx.floor)
    print()
    print(text)
    print(f"(suite took {meta['duration_s'] / 60:.1f} min)")
    with open(args.json, "w") as f:
        json.dump(
            {
                "meta": meta,
                "rows": rows,
                "derived": der,
                "startup_floor": ctx.floor,
                "checks": [{"target": d, "ok": ok, "info": i} for d, ok, i in results],
                "failures": ctx.failures,
                "notes": notes,
            },
            f,
            indent=1,
        )
    print(f"wrote {os.path.relpath(args.json)}")
    if args.md:
        with open(args.md, "w") as f:
            f.write(text + "\n")
        print(f"wrote {os.path.relpath(args.md)}")
    if args.chart and bins.get("core"):
        os.makedirs(os.path.dirname(args.chart), exist_ok=True)
        chart = os.path.join(HERE, "chart.py")
        py = os.path.join(bins["core"], "python")
        rc = subprocess.run([py, chart, args.json, args.chart]).returncode
        if rc != 0:
            ctx.failures.append(f"chart: exited {rc}")
        else:
            print(f"wrote {os.path.relpath(args.chart)}")
    if ctx.failures:
        print(f"\n!!! {len(ctx.failures)} run(s) FAILED:", file=sys.stderr)
        for msg in ctx.failures:
            print("  " + msg, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
