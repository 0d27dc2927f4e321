"""Draw the benchmark chart from results.json: per-task overhead and chain latency per runner.

  bench/.peers-venv/bin/python bench/chart.py bench/results.json docs/bench-overhead.png

Runs in the peers' venv (matplotlib is no project dependency); `make bench` calls it.
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import PEER_LABEL as LABEL  # noqa: E402  (the suite's names, standard library only)
from run import RUNNERS as ORDER  # noqa: E402


def panel(ax, items, title, unit):
    """items: [(runner, value, note)] -> horizontal bars on a log scale, value written."""
    items = [i for i in items if i[1] is not None and i[1] > 0]
    if not items:
        ax.set_axis_off()
        ax.set_title(title + "\n(not measured)", fontsize=10)
        return
    names = [LABEL[r] + "".join(f"\n{n}" for n in note) for r, _, note in items]
    values = [v for _, v, _ in items]
    colors = ["#d62728" if r == "mflow" else "#7f7f7f" for r, _, note in items]
    y = range(len(items))
    ax.barh(y, values, color=colors)
    ax.set_yticks(list(y), names, fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xscale("log")
    lo, hi = min(values), max(values)
    ax.set_xlim(lo / 3, hi * 6)
    for i, v in enumerate(values):
        ax.text(v * 1.1, i, f"{v:.3g} {unit}", va="center", fontsize=9)
    ax.set_xlabel(f"{unit} (log scale; lower is better)", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", which="major", alpha=0.3)


def _dur(s):
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        res = json.load(f)
    der, meta = res["derived"], res["meta"]
    tasks, links = [], []
    for r in ORDER:
        d = der.get(r)
        if not d:
            continue
        start = [] if d.get("startup_s") is None else [f"start-up {_dur(d['startup_s'])}"]
        if d.get("task_ms_10k") is not None:
            tasks.append((r, d["task_ms_10k"], start))
        elif d.get("task_ms_1k") is not None:
            tasks.append((r, d["task_ms_1k"], ["1,000 tasks", *start]))
        if d.get("link_ms") is not None:
            links.append((r, d["link_ms"], (["serial"] if r == "xargs" else []) + start))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 6), layout="constrained")
    panel(a, tasks, "Per-task overhead: 10,000 independent tasks `true`", "ms/task")
    panel(b, links, "Chain latency: 200 tasks, each after the previous", "ms/link")
    fig.suptitle(
        "mflow and its peers, 2 tasks at a time (start-up excluded: (wall - wall of 1 task) / N)",
        fontsize=11,
    )
    fig.text(
        0.5,
        -0.02,
        f"{meta['date']} · {meta['cpu']}, {meta['cpus']} cores · {meta['system']} · "
        f"medians of up to {meta['n']} runs ({2 * meta['n']} for one task and the chain) · mflow {meta['mflow']}",
        ha="center",
        fontsize=8,
        color="#555555",
    )
    fig.savefig(dst, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
