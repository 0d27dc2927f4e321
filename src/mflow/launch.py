"""The `mflow` program: a warm start when one applies (warmstart.py), else the command line.

Kept apart from cli.py so that a warm start loads neither click nor the models."""

from __future__ import annotations

import os
import sys


def main() -> None:
    try:
        from mflow import warmstart

        code = warmstart.run(sys.argv[1:])
        if code is not None:
            exit_now(code)
        from mflow.cli import main as command_line

        command_line()  # it exits too
    except KeyboardInterrupt:  # Ctrl-C while mflow loads, before a command handles it
        if sys.stderr is not None:  # started with it closed: nothing to say it on
            # A new line first, as click does once a command has started: a terminal has
            # just echoed ^C where the cursor was.
            sys.stderr.write("\nAborted.\n")
        exit_now(130)


def exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass  # a reader that went away (`mflow runs | head`) is not an error
    # Everything is written and closed by now; skipping the interpreter's teardown saves
    # a good part of a short run's time (it unloads every imported module, one by one).
    os._exit(code)
