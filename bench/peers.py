"""The peers' own virtual environments: created on first use, never project dependencies.

`bench/.peers-venv` holds doit, Luigi, Snakemake and matplotlib (for the chart);
`bench/.peers-venv-prefect` holds Prefect, apart because its dependency tree is large
and may not install everywhere (it is optional). Each venv has a stamp file listing what
was installed; a changed pin list reinstalls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Pinned so that figures taken on different days compare like with like.
CORE = ["doit==0.37.0", "luigi==3.8.1", "snakemake==9.27.1", "matplotlib==3.11.2"]
PREFECT = ["prefect==3.9.1"]

VENVS = {
    "core": (os.path.join(HERE, ".peers-venv"), CORE),
    "prefect": (os.path.join(HERE, ".peers-venv-prefect"), PREFECT),
}


def _stamp(venv: str) -> str:
    return os.path.join(venv, ".bench-installed")


def ensure(which: str, timeout: float = 900) -> tuple[str | None, str]:
    """Create/update venv `which` ("core" or "prefect") -> (its bin dir or None, note)."""
    venv, reqs = VENVS[which]
    want = "\n".join(reqs) + "\n"
    try:
        with open(_stamp(venv)) as f:
            if f.read() == want:
                return os.path.join(venv, "bin"), "already installed"
    except OSError:
        pass
    log = venv + ".install.log"
    shown = os.path.relpath(log, os.path.dirname(HERE))
    print(f"... installing {', '.join(reqs)} into {os.path.relpath(venv)}", file=sys.stderr)
    t0 = time.monotonic()
    pip = [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "--quiet"]
    steps = [[sys.executable, "-m", "venv", venv], pip + ["--upgrade", "pip"], pip + reqs]
    with open(log, "w") as out:
        for argv in steps:
            left = timeout - (time.monotonic() - t0)
            try:
                rc = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=max(left, 1)
                ).returncode
            except subprocess.TimeoutExpired:
                return None, f"install took longer than {timeout:.0f} s (see {shown})"
            if rc != 0:
                return None, f"install failed: {' '.join(argv)} (see {shown})"
    with open(_stamp(venv), "w") as f:
        f.write(want)
    return os.path.join(venv, "bin"), f"installed in {time.monotonic() - t0:.0f} s"


def version(bin_dir: str, dist: str) -> str:
    try:
        return subprocess.run(
            [
                os.path.join(bin_dir, "python"),
                "-c",
                f"import importlib.metadata as m; print(m.version({dist!r}))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
