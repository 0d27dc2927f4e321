"""Start the API and web page on a state database named by config.json (and datasources)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from mflow.errors import EnvironmentFault, UsageError
from mflow.server.actions import Actions
from mflow.server.reads import Reads

TOKEN_VARIABLE = "MFLOW_API_TOKEN"


def build_app(config: Path | None, datasources: Path | None):  # -> FastAPI
    from mflow.datasources import load_datasources
    from mflow.inputs import DEFAULT_DATASOURCES, open_store, resolve_backend
    from mflow.server.app import create_app
    from mflow.settings import load_settings

    settings = load_settings(config or Path("config.json"), required=config is not None)
    sources = load_datasources(datasources or DEFAULT_DATASOURCES, required=datasources is not None)
    backend = resolve_backend(settings, sources)
    path = backend.sqlite_path
    # An existing file is only read if this user may not write it; a new one is created,
    # so that the page can be opened before the first run.
    store = open_store(settings, backend, create=path is None or not path.exists())
    token = os.environ.get(TOKEN_VARIABLE) or settings.model.api_token
    if token is not None and len(token.strip()) < 16:
        raise UsageError(f"{TOKEN_VARIABLE} must be at least 16 characters")
    actions = Actions(
        store,
        settings.source.resolve() if settings.source else None,
        datasources.resolve() if datasources else sources.path,
    )
    reads = Reads(store, sources.mask)
    display = backend.display or backend.url
    return create_app(reads, actions if token else None, token, display), display, bool(token)


def serve(config: Path | None, datasources: Path | None, host: str, port: int) -> None:
    import uvicorn

    app, display, actions = build_app(config, datasources)
    try:  # say clearly that the port is taken, before uvicorn's own log does
        with socket.create_server((host, port), reuse_port=False):
            pass
    except OSError as exc:
        raise EnvironmentFault(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    mode = "actions allowed with the token" if actions else "read-only (no api_token set)"
    print(f"mflow serve: http://{host}:{port}/  state: {display}  {mode}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
