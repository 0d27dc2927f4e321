"""The benchmark's workloads, and their files for every runner (standard library only).

A workload is a DAG of shell tasks: (task id, [ids it depends on]) pairs in a topological
order, produced lazily so that the 100,000-task ones never sit in this process's memory
(its peak RSS is inherited by every child it starts, see run.py). Every task runs `true`,
except in `long_output`, whose one task prints LONG_OUTPUT_BYTES bytes.

The emitters follow the reference generator of the peer figures quoted in README.md
(same DAGs, same way of writing each runner's file). Where a task writes output, every
runner sends it to a log file: mflow into its own task log, the others through a shell
redirection, so that all of them pay for storing the bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Deps = Iterator[tuple[str, list[str]]]

TRUE = "true"
LONG_OUTPUT_BYTES = 200_000_000
LONG_OUTPUT_CMD = f"head -c {LONG_OUTPUT_BYTES} /dev/zero | tr '\\0' x"
CHAIN = 200


def wide(n: int) -> Callable[[], Deps]:
    def gen() -> Deps:
        for i in range(n):
            yield f"t{i}", []

    return gen


def chain(n: int) -> Callable[[], Deps]:
    def gen() -> Deps:
        for i in range(n):
            yield f"t{i}", [f"t{i - 1}"] if i else []

    return gen


def layered(layers: int, width: int, fan: int = 3) -> Callable[[], Deps]:
    """Task i of layer k > 0 depends on tasks i, i+1, ... i+fan-1 (mod width) of layer k-1."""

    def gen() -> Deps:
        for k in range(layers):
            for i in range(width):
                deps = [f"l{k - 1}_{(i + j) % width}" for j in range(fan)] if k else []
                yield f"l{k}_{i}", deps

    return gen


@dataclass(frozen=True)
class Workload:
    name: str
    what: str
    tasks: int
    deps: Callable[[], Deps]
    command: str = TRUE  # every task's command
    kind: str = "other"  # "wide" (independent tasks), "chain" or "other"
    big: bool = False  # 100k: slow peers skipped, 1 counted run, no warm-up


WORKLOADS = {
    w.name: w
    for w in (
        Workload("w0", "1 task (start-up cost)", 1, wide(1), kind="wide"),
        Workload("w1", "1,000 independent tasks", 1000, wide(1000), kind="wide"),
        Workload("w1_10k", "10,000 independent tasks", 10_000, wide(10_000), kind="wide"),
        Workload("w2", f"chain of {CHAIN}", CHAIN, chain(CHAIN), kind="chain"),
        Workload("w3", "10 layers x 100, fan-in 3", 1000, layered(10, 100)),
        Workload(
            "wide_100k", "100,000 independent tasks", 100_000, wide(100_000), "true", "wide", True
        ),
        Workload(
            "layered_100k",
            "100 layers x 1,000, fan-in 3",
            100_000,
            layered(100, 1000),
            big=True,
        ),
        Workload(
            "long_output",
            f"1 task printing {LONG_OUTPUT_BYTES // 1_000_000} MB",
            1,
            wide(1),
            LONG_OUTPUT_CMD,
        ),
    )
}


def _write(path: str, chunks) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for c in chunks:
            f.write(c)
    return path


def _py_deps(w: Workload) -> Iterator[str]:
    """`DEPS = {...}` as Python source, written entry by entry."""
    yield "DEPS = {\n"
    for t, d in w.deps():
        yield f"    {t!r}: {d!r},\n"
    yield "}\n"


def with_log(cmd: str, log: str) -> str:
    """`cmd`, its output (stdout and stderr) into the file `log`: how the peers keep it."""
    return f"{{ {cmd}; }} > {json.dumps(log)} 2>&1" if cmd != TRUE else cmd


# ------------------------------------------------------------------------------ mflow
def write_mflow(w: Workload, out: str) -> tuple[str, str, str]:
    """-> (task file, config.json, log directory). One task per line, like the reference."""

    def rows():
        yield '{"tasks": ['
        for i, (t, d) in enumerate(w.deps()):
            row = {"id": t, "type": "bash", "command": w.command, "depends": d}
            yield ("," if i else "") + "\n" + json.dumps(row)
        yield "\n]}\n"

    taskfile = _write(os.path.join(out, "mflow", w.name + ".json"), rows())
    logdir = os.path.join(out, "scratch", "mflow", w.name)
    config = os.path.join(out, "mflow", w.name + ".config.json")
    _write(config, [json.dumps({"max_process_concurrency": 2, "log_directory": logdir})])
    return taskfile, config, logdir


# ------------------------------------------------------------------------------- make
def write_make(w: Workload, out: str, log: str) -> str:
    """Phony targets, recipe `@true` (make runs it without a shell, as mflow does)."""
    recipe = "\t@" + with_log(w.command, log).replace("$", "$$") + "\n"

    def lines():
        # One .PHONY line, as the reference writes it: make merges each further `.PHONY: t`
        # line into the list it has, which costs it time quadratic in the number of tasks
        # (25% more at 10,000 tasks, more at 100,000) and would flatter mflow.
        for target in (".PHONY: all", "\nall:"):
            yield target
            for t, _ in w.deps():
                yield " " + t
        yield "\n"
        for t, d in w.deps():
            yield f"{t}:{''.join(' ' + x for x in d)}\n{recipe}"

    return _write(os.path.join(out, "make", w.name + ".mk"), lines())


# ------------------------------------------------------------------------------ xargs
def write_xargs_input(w: Workload, out: str) -> str:
    """One line per task; `xargs -n1 true` then runs `true <line>` once per line."""
    return _write(os.path.join(out, "xargs", w.name + ".txt"), (f"{i}\n" for i in range(w.tasks)))


# ------------------------------------------------------------------------------- doit
def write_doit(w: Workload, out: str, log: str) -> str:
    """doit tasks with task_dep edges; `true` as a list action (no shell), else a shell."""
    action = ["true"] if w.command == TRUE else with_log(w.command, log)

    def src():
        yield f'"""doit DAG for workload {w.name}: generated by bench/, do not edit."""\n'
        yield from _py_deps(w)
        yield f"ACTION = {action!r}\n\n\n"
        yield "def task_t():\n"
        yield "    for tid, deps in DEPS.items():\n"
        yield '        yield {"name": tid, "actions": [ACTION], '
        yield '"task_dep": ["t:" + d for d in deps]}\n'

    return _write(os.path.join(out, "doit", w.name, "dodo.py"), src())


# ------------------------------------------------------------------------------ luigi
def write_luigi(w: Workload, out: str, mark: str, log: str) -> str:
    """A luigi module (class T, wrapper task All); marker files make a task complete."""
    cmd = ["true"] if w.command == TRUE else with_log(w.command, log)

    def src():
        yield f'"""luigi DAG for workload {w.name}: generated by bench/, do not edit."""\n'
        yield "import os\nimport subprocess\n\nimport luigi\n\n"
        yield f"MARK = {mark!r}\nos.makedirs(MARK, exist_ok=True)\nCMD = {cmd!r}\n"
        yield from _py_deps(w)
        yield """

class T(luigi.Task):
    tid = luigi.Parameter()

    def requires(self):
        return [T(tid=d) for d in DEPS[self.tid]]

    def output(self):
        return luigi.LocalTarget(os.path.join(MARK, self.tid))

    def run(self):
        subprocess.run(CMD, shell=isinstance(CMD, str), check=True)
        with open(self.output().path, "w"):
            pass


class All(luigi.WrapperTask):
    def requires(self):
        return [T(tid=t) for t in DEPS]
"""

    return _write(os.path.join(out, "luigi", f"dag_{w.name}.py"), src())


# -------------------------------------------------------------------------- snakemake
def write_snakemake(w: Workload, out: str, log: str) -> str:
    """One wildcard rule; touch() marker outputs under the work dir's mark/."""
    shell = with_log(w.command, log)

    def src():
        yield f"# snakemake DAG for workload {w.name}: generated by bench/, do not edit.\n"
        yield from _py_deps(w)
        yield f"""
wildcard_constraints:
    t="[A-Za-z0-9_]+"

rule all:
    input: expand("mark/{{t}}", t=list(DEPS))

rule t:
    input: lambda wc: ["mark/" + d for d in DEPS[wc.t]]
    output: touch("mark/{{t}}")
    shell: {shell.replace("{", "{{").replace("}", "}}")!r}
"""

    return _write(os.path.join(out, "snakemake", w.name, "Snakefile"), src())


# ---------------------------------------------------------------------------- prefect
def write_prefect(w: Workload, out: str, log: str) -> str:
    """A prefect flow, ThreadPoolTaskRunner(max_workers=2)."""
    cmd = ["true"] if w.command == TRUE else with_log(w.command, log)

    def src():
        yield f'"""prefect flow for workload {w.name}: generated by bench/, do not edit."""\n'
        yield "import subprocess\n\nfrom prefect import flow, task\n"
        yield "from prefect.task_runners import ThreadPoolTaskRunner\n\n"
        yield f"CMD = {cmd!r}\n"
        yield from _py_deps(w)
        yield """

@task
def sh(tid):
    subprocess.run(CMD, shell=isinstance(CMD, str), check=True)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2), log_prints=False)
def dag():
    futs = {}
    for tid, deps in DEPS.items():  # insertion order is topological
        futs[tid] = sh.with_options(name=tid).submit(tid, wait_for=[futs[d] for d in deps])
    for f in futs.values():
        f.result()


if __name__ == "__main__":
    dag()
"""

    return _write(os.path.join(out, "prefect", f"flow_{w.name}.py"), src())
