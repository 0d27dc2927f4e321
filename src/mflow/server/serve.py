"""Start the API and web page on a state database named by config.json (and datasources)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from mflow.errors import EnvironmentFault, InvalidFilesError, UsageError
from mflow.server.actions import Actions
from mflow.server.reads import Reads
from mflow.store.store import StateStore

TOKEN_VARIABLE = "MFLOW_API_TOKEN"


def build_app(config: Path | None, datasources: Path | None):  # -> FastAPI
    from mflow.datasources import load_datasources
    from mflow.inputs import DEFAULT_DATASOURCES, open_store, resolve_backend
    from mflow.server.app import create_app
    from mflow.settings import load_settings

    # The tasks' env is not the server's business: a resume or retry it starts loads the
    # files again, and reports there what is missing.
    settings = load_settings(
        config or Path("config.json"), required=config is not None, tasks_env=False
    )
    sources = load_datasources(datasources or DEFAULT_DATASOURCES, required=datasources is not None)
    backend = resolve_backend(settings, sources)
    path = backend.sqlite_path

    def opened() -> StateStore | None:
        # No SQLite file yet: the server waits for the first run rather than create one
        # (it may have been started in the wrong folder). A file this user may not write
        # is opened read-only.
        if path is not None and not path.exists():
            return None
        return open_store(settings, backend, create=path is None)

    token = os.environ.get(TOKEN_VARIABLE) or settings.model.api_token
    if token is not None and len(token.strip()) < 16:
        raise UsageError(f"{TOKEN_VARIABLE} must be at least 16 characters")
    reads = Reads(opened, sources.mask)
    reads.runs_recorded()  # a database that cannot be used is reported now, not per request
    actions = Actions(
        reads,
        settings.source.resolve() if settings.source else None,
        datasources.resolve() if datasources else sources.path,
    )
    display = backend.display or backend.url
    return create_app(reads, actions if token else None, token, display), display, bool(token)


def serve(config: Path | None, datasources: Path | None, host: str, port: int) -> None:
    import uvicorn

    try:
        app, display, actions = build_app(config, datasources)
    except InvalidFilesError as exc:
        raise exc.instead("the server was not started") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:  # bound here: a taken port is said plainly, and --port 0 shows the port it got
        listening = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise EnvironmentFault(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    port = listening.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    mode = "actions allowed with the token" if actions else "read-only (no api_token set)"
    print(f"mflow serve: http://{shown}:{port}/  state: {display}  {mode}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[listening])
