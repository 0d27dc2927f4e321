"""The `mflow` program: a warm start when one applies (warmstart.py), else the command line.

Kept apart from cli.py so that a warm start loads neither click nor the models."""

from __future__ import annotations

import os
import signal
import sys

_ctrl_c: list[int] = []  # a Ctrl-C while mflow loads, even one Python let go of


def _on_ctrl_c(signum: int, frame: object) -> None:
    _ctrl_c.append(signum)
    # Python drops this when it lands in a callback of the import machinery ("Exception
    # ignored in ... cb"): then the flag above still stops the run before it begins
    raise KeyboardInterrupt


def stop_if_interrupted() -> None:
    """Before a run begins: a Ctrl-C during the load ends mflow here, as it would have."""
    if _ctrl_c:
        _say_aborted()
        exit_now(130)


def _say_aborted() -> None:
    if sys.stderr is not None:  # started with it closed: nothing to say it on
        # A new line first, as click does once a command has started: a terminal has
        # just echoed ^C where the cursor was.
        sys.stderr.write("\nAborted.\n")


def _quiet_about_ctrl_c(unraisable: sys.UnraisableHookArgs) -> None:
    """The Ctrl-C Python let go of is not reported as a traceback (the flag stops the
    run); anything else is, as Python would."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def main() -> None:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not if ignored
        signal.signal(signal.SIGINT, _on_ctrl_c)
        sys.unraisablehook = _quiet_about_ctrl_c
    try:
        from mflow import warmstart

        code = warmstart.run(sys.argv[1:])
        if code is not None:
            exit_now(code)
        from mflow.cli import main as command_line

        command_line()  # it exits too
    except KeyboardInterrupt:  # Ctrl-C while mflow loads, before a command handles it
        _say_aborted()
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
