"""The shapes of the API's answers (they make the OpenAPI document at /docs). The fields
are those of `mflow runs --json` / `status --json`, which views.py builds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Error(BaseModel):
    detail: str = Field(description="what went wrong, in words")


class Parent(BaseModel):
    run_id: int
    task_id: str | None
    attempt: int | None


class Run(BaseModel):
    run_id: int
    state: str
    flow_path: str
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    task_count: int
    task_states: dict[str, int]
    pid: int | None
    host: str | None
    message: str | None
    resumed_from: int | None = None
    parent: Parent | None = None


class RunPage(BaseModel):
    runs: list[Run]
    total: int = Field(description="runs matching the filters, all pages together")
    limit: int
    offset: int


class Attempt(BaseModel):
    attempt: int
    state: str
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    exit_code: int | None
    message: str | None
    pid: int | None
    host: str | None
    log_path: str | None
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="what the task type recorded: argv, application_id, nested_run_id...",
    )


class Task(BaseModel):
    task_id: str
    type: str
    state: str
    max_attempts: int
    message: str | None
    depends: list[str] = Field(default_factory=list)
    attempts: list[Attempt]
    nested_run_ids: list[int] = Field(
        default_factory=list, description="runs of the nested flow an `mflow` task started"
    )


class RunDetail(Run):
    tasks: list[Task]


class DagNode(BaseModel):
    id: str
    type: str
    state: str
    attempts: int
    max_attempts: int
    message: str | None
    nested_run_ids: list[int] = Field(default_factory=list)


class DagEdge(BaseModel):
    source: str = Field(description="the task depended on")
    target: str = Field(description="the task that depends on it")


class Dag(BaseModel):
    run_id: int
    state: str
    nodes: list[DagNode]
    edges: list[DagEdge]


class Health(BaseModel):
    status: str
    version: str
    backend: str = Field(description="the state database, password masked")
    actions: bool = Field(description="whether cancel/retry/resume are enabled (a token is set)")


class ActionDone(BaseModel):
    run_id: int = Field(description="the run acted on, or the new run an action started")
    message: str
