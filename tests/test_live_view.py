"""The live view on a terminal (a real pseudo-terminal): what its last frame shows."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from conftest import Project, bash

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_a_terminal(project: Project) -> str:
    """`mflow run` with its stdout on a pseudo-terminal: everything it drew, as text."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
    with subprocess.Popen(
        [sys.executable, "-m", "mflow", "run"],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
    ) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end closed: mflow is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=60)
    os.close(leader)
    return ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "")


def test_the_last_frame_lists_what_failed_not_a_retry_that_succeeded(project: Project) -> None:
    project.write_tasks(
        [
            # fails once, then succeeds on its retry
            bash(
                "flaky",
                "if [ -e tried ]; then exit 0; fi; touch tried; exit 1",
                retries=2,
                retry_delay=1,
            ),
            bash("broken", "exit 4"),
        ]
    )
    drawn = run_on_a_terminal(project)
    assert "RETRYING flaky" in drawn  # it was shown while the retry was due
    last_frame = drawn[drawn.rindex("run 1  ") : drawn.rindex("run 1 FAILED in")]
    assert "2/2 done" in last_frame and "SUCCESS 1" in last_frame
    assert "FAILED broken: exit code 4" in last_frame
    assert "flaky" not in last_frame
