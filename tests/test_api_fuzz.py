"""A fuzz pass over the API from its own OpenAPI document: every endpoint, with generated
ids, filters and ranges, on a real recorded run. No answer may be a server error, and
every answer must match what the document says (status codes, JSON shapes)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from conftest import Project, assert_exit, bash
from mflow.server.serve import build_app


def test_the_api_keeps_its_contract_under_generated_requests(project: Project):
    project.write_tasks(
        [
            bash("extract", "echo extracted"),
            bash("flaky", "echo try; exit 3", "extract", retries=1, retry_delay=0),
        ]
    )
    assert_exit(project.mflow("run"), 1)
    app, _, _ = build_app(project.root / "config.json", None)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def keeps_contract(case: schemathesis.Case) -> None:
            case.call_and_validate()

        keeps_contract()
        checked.append(operation.label)
    assert len(checked) >= 11, checked
