"""Running a bash task's command: with `bash -c`, or exec'd directly when bash would add
nothing. Kept apart from the model in bash.py: a warm start runs commands without it."""

from __future__ import annotations

import functools
import re
import shutil
from typing import TYPE_CHECKING

from mflow.tasktypes.context import TaskContext, TaskResult

if TYPE_CHECKING:
    from mflow.tasktypes.process import Child

# Words made only of these characters mean the same to bash as to exec: no quoting,
# expansion, globbing, redirection or control operator can be present.
_PLAIN_COMMAND = re.compile(r"[A-Za-z0-9_./:,+@%=-]+(?: +[A-Za-z0-9_./:,+@%=-]+)*")

# Builtins and keywords behave differently from (or have no) programs of the same name;
# `true` and `false` are absent because /usr/bin/true and /usr/bin/false are identical.
_BASH_WORDS = frozenset(
    """
! [[ ]] case coproc do done elif else esac fi for function if in select then time until while
. : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare
dirs disown echo enable eval exec exit export fc fg getopts hash help history jobs kill let
local logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt
source suspend test times trap type typeset ulimit umask unalias unset wait
""".split()
)


async def run_command(command: str, ctx: TaskContext) -> TaskResult:
    from mflow.tasktypes.process import run_process  # keeps asyncio out of `validate`

    return await run_process(command_argv(command, ctx.env), ctx, as_bash=True)


def start_command(command: str, ctx: TaskContext) -> Child | TaskResult:
    """Start the command now (see Engine._start): its Child, or the result of a failed start."""
    from mflow.tasktypes.process import start_process

    return start_process(command_argv(command, ctx.env), ctx, as_bash=True)


def command_argv(command: str, env: dict[str, str]) -> list[str]:
    return direct_argv(command, env) or [_bash(), "-c", command]


@functools.cache
def _bash() -> str:
    """bash found in mflow's own PATH, as the original found it: a task's env may set PATH
    for its command without losing the shell that runs it."""
    return shutil.which("bash") or "/bin/bash"


def direct_argv(command: str, env: dict[str, str]) -> list[str] | None:
    """The argv to exec without a shell, or None when only bash can run `command` faithfully."""
    if not _PLAIN_COMMAND.fullmatch(command.strip()):
        return None
    words = command.split()
    if words[0] in _BASH_WORDS or "=" in words[0]:
        return None
    return None if _bash_adds_to(env) else words


_last_checked: tuple[dict[str, str] | None, bool] = (None, False)


def _bash_adds_to(env: dict[str, str]) -> bool:
    """bash -c reads $BASH_ENV first and imports exported functions: then it must run.
    (Tasks without an env of their own share one dict, so remember the last answer.)"""
    global _last_checked
    if _last_checked[0] is not env:
        found = "BASH_ENV" in env or any(key.startswith("BASH_FUNC_") for key in env)
        _last_checked = (env, found)
    return _last_checked[1]
