"""The FastAPI application: the REST API under /api, the web page at / (every asset served
from the package: no CDN, works offline), OpenAPI at /docs.

Read-only unless a token is set (config.json `api_token` or MFLOW_API_TOKEN): then cancel,
retry and resume answer to `Authorization: Bearer <token>`, and to nothing else.
"""

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParameter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from pydantic import BeforeValidator

from mflow import __version__
from mflow.errors import EnvironmentFault
from mflow.server import models
from mflow.server.actions import Actions, Refused
from mflow.server.reads import (
    HELD_BACK,
    AttemptLog,
    NotFound,
    Reads,
    attempt_over,
    read_log,
    whole_lines,
)

WEB = Path(__file__).resolve().parent.parent / "web"
FOLLOW_POLL_S = 0.25  # how often a followed log or a watched run is looked at
WATCH_POLL_S = 0.5
LIVENESS_EVERY = 5  # polls between looks at whether a run's mflow is alive
# In any case, as `mflow runs --state failed` takes it
RunStateName = Annotated[
    Literal["RUNNING", "SUCCESS", "FAILED", "CANCELLED", "INTERRUPTED"],
    BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value),
]

RunIdPath = Annotated[int, PathParameter(ge=1, le=2**62, description="a run's id")]
AttemptPath = Annotated[int, PathParameter(ge=1, le=2**62, description="1 for the first attempt")]

ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "no token, or not the server's"},
    403: {"model": models.Error, "description": "the server is read-only (no token set)"},
    409: {"model": models.Error, "description": "the action does not apply to the run now"},
}

# A stream's errors are JSON, not events (said explicitly, or they would be documented as
# text/event-stream like the stream itself).
_ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
STREAM_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such run, task or attempt", "content": _ERROR_JSON},
    503: {"description": "the state database does not answer", "content": _ERROR_JSON},
}


def create_app(
    reads: Reads, actions: Actions | None, token: str | None, backend_display: str
) -> FastAPI:
    app = FastAPI(
        title="mflow",
        version=__version__,
        summary="Runs, tasks, attempts and logs of mflow, a DAG runner for batch jobs.",
        docs_url=None,  # /docs below: Swagger UI from the package, not from a CDN
        redoc_url=None,
        responses={
            404: {"model": models.Error, "description": "no such run, task or attempt"},
            503: {"model": models.Error, "description": "the state database does not answer"},
        },
    )

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(EnvironmentFault)
    async def _unavailable(_: Request, exc: EnvironmentFault) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    def authorized(authorization: Annotated[str | None, Header()] = None) -> Actions:
        if token is None or actions is None:
            raise HTTPException(
                403,
                "this server is read-only: set api_token in config.json "
                "(or MFLOW_API_TOKEN) to allow actions",
            )
        scheme, _, given = (authorization or "").partition(" ")
        # As bytes: compare_digest takes only ASCII text, and a header may carry any byte
        # (the server hands it over decoded as Latin-1, one character a byte).
        matches = secrets.compare_digest(
            given.strip().encode("latin-1", "replace"), token.strip().encode("utf-8")
        )
        if scheme.lower() != "bearer" or not matches:
            raise HTTPException(
                401,
                "give the token as 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return actions

    # -- reads ----------------------------------------------------------------------------
    @app.get("/api/health", response_model=models.Health, tags=["service"])
    def health() -> dict[str, Any]:
        return {
            "status": "ok" if reads.runs_recorded() else "no runs recorded yet",
            "version": __version__,
            "backend": backend_display,
            "actions": token is not None,
        }

    @app.get("/api/runs", response_model=models.RunPage, tags=["runs"])
    def list_runs(
        state: Annotated[RunStateName | None, Query(description="only runs in this state")] = None,
        flow: Annotated[
            str | None, Query(description="task files whose path contains this text")
        ] = None,
        since: Annotated[
            datetime | None, Query(description="started at or after (ISO 8601; UTC if no zone)")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="started before (ISO 8601; UTC if no zone)")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> dict[str, Any]:
        return reads.runs(
            limit, offset, state=state, flow=flow, since=_utc(since), until=_utc(until)
        )

    @app.get("/api/runs/{run_id}", response_model=models.RunDetail, tags=["runs"])
    def get_run(run_id: RunIdPath) -> dict[str, Any]:
        return reads.run(_id(run_id))

    @app.get("/api/runs/{run_id}/dag", response_model=models.Dag, tags=["runs"])
    def get_dag(run_id: RunIdPath) -> dict[str, Any]:
        return reads.dag(_id(run_id))

    # A stream's generator runs after the answer has begun: what can be refused (an
    # unknown id) is looked up before, by these dependencies.
    def known_run(run_id: RunIdPath) -> int:
        return reads.run_row(_id(run_id))["run_id"]

    def known_attempt(run_id: RunIdPath, task_id: str, attempt: AttemptPath) -> AttemptLog:
        return reads.attempt_state(_id(run_id), task_id, _id(attempt))

    @app.get(
        "/api/runs/{run_id}/events",
        response_class=EventSourceResponse,
        tags=["runs"],
        responses=STREAM_ERRORS,
    )
    async def watch_run(
        run_id: Annotated[int, Depends(known_run)], request: Request
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: `run` with the run (as GET /api/runs/{run_id}) each time it
        changes, then `end` once it is over."""
        last, polls = None, 0
        while not await request.is_disconnected():
            polls += 1
            if polls % LIVENESS_EVERY == 0:  # a run whose mflow died would stay RUNNING
                gone = await asyncio.to_thread(reads.store.run_is_gone, run_id)
                if gone and reads.store.read_only:  # marked so by the next one who may
                    yield ServerSentEvent(data={"state": "INTERRUPTED"}, event="end")
                    return
            # A few aggregates tell whether anything changed; the whole run (which costs
            # tens of milliseconds at thousands of tasks) is read only when something did.
            signature = await asyncio.to_thread(reads.store.run_signature, run_id)
            if signature != last:
                last = signature
                data = await asyncio.to_thread(reads.run, run_id)
                yield ServerSentEvent(data=data, event="run")
            if signature[0] != "RUNNING":
                yield ServerSentEvent(data={"state": signature[0]}, event="end")
                return
            await asyncio.sleep(WATCH_POLL_S)

    @app.get(
        "/api/runs/{run_id}/tasks/{task_id:path}/attempts",
        response_model=list[models.Attempt],
        tags=["tasks"],
    )
    def get_attempts(run_id: RunIdPath, task_id: str) -> list[dict[str, Any]]:
        return reads.attempts(_id(run_id), task_id)

    @app.get(
        "/api/runs/{run_id}/tasks/{task_id:path}/attempts/{attempt}/log",
        response_class=Response,
        tags=["logs"],
        responses={
            200: {"content": {"text/plain": {}}, "description": "the log's bytes"},
        },
    )
    def get_log(
        run_id: RunIdPath,
        task_id: str,
        attempt: AttemptPath,
        offset: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        length: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        tail: Annotated[int | None, Query(ge=0, le=1_000_000, description="last N lines")] = None,
    ) -> Response:
        """An attempt's log: all of it (up to 4 MiB), a byte range (`offset`, `length`), or
        the last `tail` lines (then offset and length are not used). Headers: X-Log-Offset (where the bytes start), X-Log-Size (the
        file's size), X-Attempt-State."""
        chunk = reads.log(
            _id(run_id), task_id, _id(attempt), offset=offset, length=length, tail=tail
        )
        return Response(
            reads.mask(chunk.data.decode("utf-8", "replace")),
            media_type="text/plain; charset=utf-8",
            headers={
                "X-Log-Offset": str(chunk.offset),
                "X-Log-Size": str(chunk.size),
                "X-Attempt-State": chunk.state,
            },
        )

    @app.get(
        "/api/runs/{run_id}/tasks/{task_id:path}/attempts/{attempt}/log/follow",
        response_class=EventSourceResponse,
        tags=["logs"],
        responses=STREAM_ERRORS,
    )
    async def follow_log(
        run_id: RunIdPath,
        task_id: str,
        attempt: AttemptPath,
        first: Annotated[AttemptLog, Depends(known_attempt)],
        request: Request,
        offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-sent events: `log` events `{"offset", "next_offset", "text"}` as the log
        grows (from byte `offset`; `next_offset` is where to resume after a reconnect), then
        `end` `{"state"}` once the attempt is over and all is sent."""
        found, position = first, offset
        while not await request.is_disconnected():
            chunk = await asyncio.to_thread(
                read_log, found.path, found.state, position, None, None, found.started_at
            )
            data = chunk.data
            if data and not attempt_over(found.state) and not data.endswith(b"\n"):
                # A line still being written waits for its end (a long one, for more of
                # it): masking and decoding need it whole
                cut = data.rfind(b"\n") + 1
                data = data[: cut or (whole_lines(data) if len(data) >= 2 * HELD_BACK else 0)]
            if data:
                text = reads.mask(data.decode("utf-8", "replace"))
                position = chunk.offset + len(data)
                yield ServerSentEvent(
                    data={"offset": chunk.offset, "next_offset": position, "text": text},
                    event="log",
                )
                continue
            if attempt_over(found.state):
                yield ServerSentEvent(data={"state": found.state}, event="end")
                return
            await asyncio.sleep(FOLLOW_POLL_S)
            found = await asyncio.to_thread(reads.attempt_state, run_id, task_id, attempt)
            # (run_id and attempt were checked by known_attempt before the stream began)

    # -- actions --------------------------------------------------------------------------
    @app.post(
        "/api/runs/{run_id}/cancel",
        response_model=models.ActionDone,
        tags=["actions"],
        responses=ACTION_ERRORS,
    )
    def cancel_run(run_id: RunIdPath, allowed: Annotated[Actions, Depends(authorized)]) -> dict:
        return {"run_id": run_id, "message": allowed.cancel(reads.run_row(run_id))}

    @app.post(
        "/api/runs/{run_id}/resume",
        response_model=models.ActionDone,
        tags=["actions"],
        responses=ACTION_ERRORS,
    )
    def resume_run(run_id: RunIdPath, allowed: Annotated[Actions, Depends(authorized)]) -> dict:
        new, message = allowed.resume(reads.run_row(run_id))
        return {"run_id": new, "message": message}

    @app.post(
        "/api/runs/{run_id}/tasks/{task_id:path}/retry",
        response_model=models.ActionDone,
        tags=["actions"],
        responses=ACTION_ERRORS,
    )
    def retry_task(
        run_id: RunIdPath, task_id: str, allowed: Annotated[Actions, Depends(authorized)]
    ) -> dict:
        run = reads.run_row(run_id)
        new, message = allowed.retry(run, reads.task_row(run_id, task_id))
        return {"run_id": new, "message": message}

    # -- the web page ---------------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="mflow API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
        )

    @app.get("/", include_in_schema=False)
    @app.get("/runs/{run_id}", include_in_schema=False)
    def page(run_id: str | None = None) -> FileResponse:  # the page says if there is no such run
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def _id(value: int) -> int:
    """Ids are positive and fit every backend's integer column; others cannot exist."""
    if not 1 <= value <= 2**62:
        raise NotFound(f"no such id {value}")
    return value


def _utc(value: datetime | None) -> datetime | None:
    """Naive UTC, as the store keeps times; a time without a zone is taken as UTC."""
    if value is not None and value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+14:00: before the first day there is
            raise HTTPException(422, f"{value.isoformat()} is out of range in UTC") from None
    return value
