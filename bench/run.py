#!/usr/bin/env python3
"""Benchmark mflow against `make -j2` on synthetic DAGs (standard library only).

Workloads (every task runs `true`; concurrency limit 2 for both runners):
  w0      1 task (start-up floor)        w1      1,000 independent tasks
  w1_10k  10,000 independent tasks       w2      chain of 200 (t_i depends on t_{i-1})
  w3      10 layers x 100; task i of layer k>0 depends on tasks i, i+1, i+2
          (mod 100) of layer k-1
  validate  `mflow validate` on w0 (mflow only)

For each workload this writes an mflow task file, a config.json and a Makefile, then runs
make and mflow alternately (1 uncounted warm-up each, then N counted runs each). Each run
is measured as a whole process: wall seconds (monotonic clock around spawn..reap), cpu
seconds (user+sys from os.wait4, including waited-for descendants) and peak RSS in MiB
(ru_maxrss: the largest single process among those). Output is discarded. mflow's log
directory (and so its state DB, <log_directory>/mflow.db) is wiped before every run.

  python3 bench/run.py                       # all workloads, 5 runs each
  python3 bench/run.py --quick               # 1 run each, no w1_10k
  python3 bench/run.py --only w1,w2 -n 9 --json /tmp/bench.json
  python3 bench/run.py --mflow .venv/bin/mflow --out /tmp/bench-files

Target checks are printed as PASS/FAIL but are informational; the exit status is 1 only
if some run exited non-zero (or timed out), 0 otherwise.
"""

import argparse
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

ALL = ["w0", "w1", "w1_10k", "w2", "w3", "validate"]
CHAIN = 200


def wide(n):
    return {f"t{i}": [] for i in range(n)}


def chain(n):
    return {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(n)}


def layered(layers=10, width=100):
    return {
        f"l{k}_{i}": [f"l{k - 1}_{(i + j) % width}" for j in range(3)] if k else []
        for k in range(layers)
        for i in range(width)
    }


DAGS = {
    "w0": lambda: wide(1),
    "w1": lambda: wide(1000),
    "w1_10k": lambda: wide(10000),
    "w2": lambda: chain(CHAIN),
    "w3": layered,
}


def write_files(out, name, deps):
    """Write <name>.json (mflow tasks), <name>.mk (Makefile) and <name>.config.json."""
    # Written row by row: this process's peak RSS is the floor of every peak measured
    # (see measure()), so it must not balloon while generating w1_10k.
    taskfile, makefile = os.path.join(out, name + ".json"), os.path.join(out, name + ".mk")
    with open(taskfile, "w") as f:
        f.write('{"tasks": [')
        for i, (t, d) in enumerate(deps.items()):
            row = {"id": t, "type": "bash", "command": "true", "depends": d}
            f.write(("," if i else "") + "\n" + json.dumps(row))
        f.write("\n]}\n")
    with open(makefile, "w") as f:
        f.write(f".PHONY: all {' '.join(deps)}\nall: {' '.join(deps)}\n")
        for t, d in deps.items():
            f.write(f"{t}: {' '.join(d)}".rstrip() + "\n\t@true\n")
    logdir = os.path.join(out, "logs", name)
    config = os.path.join(out, name + ".config.json")
    with open(config, "w") as f:
        json.dump({"max_process_concurrency": 2, "log_directory": logdir}, f)
    return taskfile, makefile, config, logdir


def reset(logdir):
    """Give mflow an empty log directory (and so an empty state DB)."""
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir)


def measure(argv, timeout):
    """Run argv once; return (wall s, cpu s, peak MiB, exit code); -9 = killed (timeout).

    Like measure.py. Caveat: Linux carries the spawning process's RSS high-water mark
    across exec into the child's ru_maxrss, so no peak below this script's own peak RSS
    can be seen; the summary prints that floor (the peak reported for `true`)."""
    t0 = time.monotonic()
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    timer = threading.Timer(timeout, os.killpg, (p.pid, signal.SIGKILL))
    timer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
    except BaseException:  # e.g. Ctrl-C: the child is in its own session, so kill it too
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        raise
    finally:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)  # so Popen won't reap it again
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0, p.returncode


def run_series(jobs, n, warmup, timeout, failures, label):
    """jobs: {runner: (prepare_fn or None, argv)}; run them alternately. -> {runner: [runs]}"""
    runs = {r: [] for r in jobs}
    for i in range(warmup + n):
        for runner, (prepare, argv) in jobs.items():
            if prepare:
                prepare()
            res = measure(argv, timeout)
            if res[3] != 0:
                what = "warm-up" if i < warmup else f"run {i - warmup + 1}/{n}"
                how = f"exited {res[3]}" if res[3] > 0 else f"killed by signal {-res[3]}"
                msg = f"!!! {runner} {label} {what} {how}: {' '.join(argv)}"
                print(msg, file=sys.stderr, flush=True)
                failures.append(msg)
            if i >= warmup:
                runs[runner].append(res)
    return runs


def summarize(runs):
    walls = [r[0] for r in runs]
    return {
        "wall_median": statistics.median(walls),
        "wall_min": min(walls),
        "wall_max": max(walls),
        "cpu_median": statistics.median(r[1] for r in runs),
        "peak_mib": max(r[2] for r in runs),
        "failed_runs": sum(r[3] != 0 for r in runs),
        "runs": [dict(zip(("wall", "cpu", "peak_mib", "rc"), r, strict=True)) for r in runs],
    }


def bench(name, out, mflow, args, failures):
    deps = DAGS["w0" if name == "validate" else name]()
    taskfile, makefile, config, logdir = write_files(out, name, deps)
    cmd = "validate" if name == "validate" else "run"
    jobs = {
        "make": (None, ["make", "-j2", "-f", makefile, "all"]),
        "mflow": (lambda: reset(logdir), [mflow, cmd, "--config", config, "--taskfile", taskfile]),
    }
    if name == "validate":
        del jobs["make"]
    print(f"... {name} ({len(deps)} tasks)", file=sys.stderr, flush=True)
    runs = run_series(jobs, args.n, args.warmup, args.timeout, failures, name)
    row = {"workload": name, "tasks": len(deps)}
    row.update({r: summarize(v) for r, v in runs.items()})
    if "make" in row:
        row["ratio"] = row["mflow"]["wall_median"] / max(row["make"]["wall_median"], 1e-9)
    return row


def fmt_wall(s):
    if not s:
        return "-"
    bad = " FAILED" if s["failed_runs"] else ""
    return f"{s['wall_median']:.3f} ({s['wall_min']:.3f}-{s['wall_max']:.3f}){bad}"


def print_table(rows):
    head = [
        "workload",
        "tasks",
        "make wall s (min-max)",
        "mflow wall s (min-max)",
        "mflow/make",
        "mflow MiB",
        "make MiB",
    ]
    table = [head]
    for r in rows:
        mk, mf = r.get("make"), r.get("mflow")
        table.append(
            [
                r["workload"],
                str(r["tasks"]),
                fmt_wall(mk),
                fmt_wall(mf),
                f"{r['ratio']:.2f}" if "ratio" in r else "-",
                f"{mf['peak_mib']:.1f}",
                f"{mk['peak_mib']:.1f}" if mk else "-",
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    for line in table:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )


def print_overheads(by):
    for name, unit, count in (("w2", "link", CHAIN), ("w1_10k", "task", 10000)):
        if name in by:
            per = {r: by[name][r]["wall_median"] / count * 1000 for r in ("make", "mflow")}
            print(f"{name}: ms per {unit}: make {per['make']:.3f}, mflow {per['mflow']:.3f}")


def checks(by):
    """Informational targets -> [(description, True/False/None=not run)]; failed runs fail."""

    def get(w, f):
        r = by.get(w)
        if r is None:
            return None
        return not any(r[x]["failed_runs"] for x in ("make", "mflow") if x in r) and f(r)

    return [
        ("w1_10k mflow/make <= 1.5", get("w1_10k", lambda r: r["ratio"] <= 1.5)),
        ("w1_10k mflow peak < 100 MiB", get("w1_10k", lambda r: r["mflow"]["peak_mib"] < 100)),
        ("w1 mflow/make <= 2.0", get("w1", lambda r: r["ratio"] <= 2.0)),
        ("w2 mflow/make <= 2.5", get("w2", lambda r: r["ratio"] <= 2.5)),
        (
            "validate (w0) median < 0.3 s",
            get("validate", lambda r: r["mflow"]["wall_median"] < 0.3),
        ),
    ]


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
    ap.add_argument("-n", type=int, default=5, help="counted runs per runner (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="uncounted runs first (default 1)")
    ap.add_argument("--only", help="comma-separated subset of: " + ",".join(ALL))
    ap.add_argument("--quick", action="store_true", help="n=1 and skip w1_10k (unless --only)")
    ap.add_argument("--mflow", help="mflow executable (default: next to python, else PATH)")
    ap.add_argument("--out", help="write workload files here and keep them (default: temp dir)")
    ap.add_argument("--json", help="also write results as JSON to this file")
    ap.add_argument("--timeout", type=float, default=600, help="kill a run after this many s")
    args = ap.parse_args()
    names = (
        args.only.split(",")
        if args.only
        else [w for w in ALL if not (args.quick and w == "w1_10k")]
    )
    bad = [w for w in names if w not in ALL]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {ALL}")
    args.names = [w for w in ALL if w in names]
    if args.quick:
        args.n = 1
    if args.n < 1:
        ap.error("-n must be >= 1")
    return args


def main():
    args = parse_args()
    mflow = find_mflow(args.mflow)
    if not mflow or not os.access(mflow, os.X_OK):
        sys.exit(
            f"mflow executable not found ({mflow or 'not next to python, not on PATH'});"
            " use --mflow PATH"
        )
    if not shutil.which("make"):
        sys.exit("make not found on PATH")
    out = os.path.abspath(args.out) if args.out else tempfile.mkdtemp(prefix="mflow-bench-")
    os.makedirs(out, exist_ok=True)
    failures = []
    try:
        rows = [bench(w, out, mflow, args, failures) for w in args.names]
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    by = {r["workload"]: r for r in rows}
    floor = measure(["true"], args.timeout)[2]
    print(f"mflow: {mflow}   runs: {args.n} (+{args.warmup} warm-up), alternating make/mflow")
    print(f"peak RSS floor (reported for `true`, inherited from this script): {floor:.1f} MiB")
    print_table(rows)
    print_overheads(by)
    results = checks(by)
    for desc, ok in results:
        print(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}  {desc}")
    if args.json:
        meta = {
            "mflow": mflow,
            "n": args.n,
            "warmup": args.warmup,
            "python": sys.version,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "rss_floor_mib": floor,
        }
        with open(args.json, "w") as f:
            json.dump(
                {
                    "meta": meta,
                    "rows": rows,
                    "failures": failures,
                    "checks": {d: ok for d, ok in results},
                },
                f,
                indent=1,
            )
    if failures:
        print(f"\n!!! {len(failures)} run(s) FAILED (non-zero exit):", file=sys.stderr)
        for msg in failures:
            print("  " + msg, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
