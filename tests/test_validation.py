"""Invalid task files and config.json: every problem reported at once, with file, line, task
and key; exit code 2, and nothing run or recorded."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from conftest import (
    TASK_LINE,
    Project,
    assert_exit,
    assert_no_traceback,
    bash,
    problems,
    warnings,
)

# The example tasks.json of the original README, as written there, keeping its bash tasks
# and tarea6 (spark and oracle are not built-in types yet).
README_TASKS = """\
{
    "tasks": [
        {
            "id": "tarea1",
            "type": "bash",
            "command": "/home/mestevez/tmp/tarea1.sh"
        },
        {
            "id": "tarea2",
            "type": "bash",
            "command": "/home/mestevez/tmp/tarea2.sh",
            "depends": ["tarea1"]
        },
        {
            "id": "tarea3",
            "type": "bash",
            "command": "/home/mestevez/tmp/tarea3.sh",
            "depends": ["tarea2"]
        },
        {
            "id": "tarea4",
            "type": "bash",
            "command": "/home/mestevez/tmp/tarea4.sh",
            "depends": ["tarea1","tarea3"]
        },
        {
            "id": "tarea6",
            "type": "bash",
            "command": "/home/mestevez/tmp/tarea6.sh",
            "depends": ["tarea5","tarea2"]
        },
        {
            "id": "tarea7",
            "type": "bash",
            "command": "/home/mestevez/tmp/tarea7.sh"
        }
    ]
}
"""


def validate(project: Project, tasks, *args: str):
    project.write_tasks(tasks)
    return project.mflow("validate", *args)


def only_problem(result):
    """The single problem of a report; checks the exit code, the count line and no traceback."""
    assert_exit(result, 2)
    assert_no_traceback(result)
    found = problems(result.stderr)
    assert len(found) == 1, result
    assert "1 problem found; nothing was run" in result.stderr, result
    return found[0]


def test_valid_file_passes(project: Project) -> None:
    result = validate(project, [bash("a", "true"), bash("b", "true", "a")])
    assert_exit(result, 0)
    assert result.stderr == ""


def test_unknown_dependency_with_suggestion(project: Project) -> None:
    result = validate(
        project,
        [
            bash("extract_orders", "true"),
            bash("load", "true", "extract_order"),
        ],
    )
    problem = only_problem(result)
    assert problem.file.endswith("tasks.json")
    assert problem.line == TASK_LINE + 1
    assert "task 'load'" in problem.text
    assert "key 'depends'" in problem.text
    assert "depends on unknown task 'extract_order'" in problem.text
    assert "(did you mean 'extract_orders'?)" in problem.text


def test_unknown_dependency_without_close_match_has_no_suggestion(project: Project) -> None:
    result = validate(project, [bash("a", "true"), bash("b", "true", "zzzzzzzz")])
    problem = only_problem(result)
    assert "depends on unknown task 'zzzzzzzz'" in problem.text
    assert "did you mean" not in problem.text


def test_readme_example_reports_tarea5(project: Project) -> None:
    result = validate(project, README_TASKS)
    problem = only_problem(result)
    line = next(i for i, text in enumerate(README_TASKS.splitlines(), 1) if '"tarea5"' in text)
    assert problem.file.endswith("tasks.json")
    assert problem.line == line
    assert "task 'tarea6'" in problem.text
    assert "depends on unknown task 'tarea5'" in problem.text


def test_cycle_is_named(project: Project) -> None:
    result = validate(
        project,
        [
            bash("start", "true"),
            bash("a", "true", "start", "b"),
            bash("b", "true", "c"),
            bash("c", "true", "a"),
        ],
    )
    problem = only_problem(result)
    assert "dependency cycle: a -> b -> c -> a" in problem.text
    assert "task 'a'" in problem.text
    assert problem.line == TASK_LINE + 1


def test_self_dependency_is_a_cycle(project: Project) -> None:
    result = validate(project, [bash("a", "true", "a")])
    problem = only_problem(result)
    assert "dependency cycle: a -> a" in problem.text


def test_duplicate_id(project: Project) -> None:
    result = validate(project, [bash("a", "true"), bash("b", "true"), bash("a", "echo again")])
    problem = only_problem(result)
    assert problem.line == TASK_LINE + 2
    assert "task 'a'" in problem.text
    assert "duplicate id" in problem.text


def test_unknown_task_type(project: Project) -> None:
    result = validate(project, [bash("a", "true"), {"id": "b", "type": "bsh", "command": "true"}])
    problem = only_problem(result)
    assert problem.line == TASK_LINE + 1
    assert "task 'b'" in problem.text
    assert "key 'type'" in problem.text
    assert "unknown task type" in problem.text
    assert "'bsh'" in problem.text
    assert "did you mean 'bash'" in problem.text


def test_missing_command(project: Project) -> None:
    result = validate(project, [bash("a", "true"), {"id": "b", "type": "bash"}])
    problem = only_problem(result)
    assert problem.line == TASK_LINE + 1
    assert "task 'b'" in problem.text
    assert "key 'command'" in problem.text
    assert "required key is missing" in problem.text


def test_missing_id(project: Project) -> None:
    result = validate(project, [bash("a", "true"), {"type": "bash", "command": "true"}])
    problem = only_problem(result)
    assert problem.line == TASK_LINE + 1
    assert "key 'id'" in problem.text
    assert "required key is missing" in problem.text


def test_depends_must_be_a_list(project: Project) -> None:
    result = validate(project, [bash("a", "true"), bash("z", "true", depends="a")])
    problem = only_problem(result)
    assert problem.line == TASK_LINE + 1
    assert "task 'z'" in problem.text
    assert "key 'depends'" in problem.text
    assert "list" in problem.text


def test_unknown_key_is_a_warning_with_suggestion(project: Project) -> None:
    result = validate(project, [bash("a", "true", comand="echo typo")])
    assert_exit(result, 0)
    found = warnings(result.stderr)
    assert len(found) == 1, result
    assert f"tasks.json:{TASK_LINE}:" in found[0]
    assert "task 'a'" in found[0]
    assert "key 'comand'" in found[0]
    assert "(did you mean 'command'?)" in found[0]
    assert problems(result.stderr) == []


def test_misspelt_required_key_is_an_error_and_a_hint(project: Project) -> None:
    result = validate(project, [{"id": "a", "type": "bash", "comand": "true"}])
    assert_exit(result, 2)
    errors = [p for p in problems(result.stderr) if "required key is missing" in p.text]
    assert len(errors) == 1 and "key 'command'" in errors[0].text, result
    assert "(did you mean 'command'?)" in result.stderr  # the hint is shown...
    assert "1 problem found; nothing was run" in result.stderr  # ...but is no error itself


def test_every_problem_is_listed_sorted_by_line(project: Project) -> None:
    result = validate(
        project,
        [
            bash("extract_orders", "true"),
            bash("load", "true", "extract_order"),  # unknown dependency
            {"id": "x", "type": "bsh", "command": "true"},  # unknown type
            {"id": "y", "type": "bash"},  # missing command
            bash("extract_orders", "true"),  # duplicate id
            bash("p", "true", "q"),  # cycle p -> q -> p
            bash("q", "true", "p"),
        ],
    )
    assert_exit(result, 2)
    assert_no_traceback(result)
    found = problems(result.stderr)
    assert "5 problems found; nothing was run" in result.stderr, result
    assert [p.line for p in found] == [TASK_LINE + i for i in (1, 2, 3, 4, 5)], result
    texts = [p.text for p in found]
    assert "depends on unknown task 'extract_order'" in texts[0]
    assert "unknown task type" in texts[1]
    assert "required key is missing" in texts[2]
    assert "duplicate id" in texts[3]
    assert "dependency cycle: p -> q -> p" in texts[4]


def test_malformed_json_gives_line_and_column(project: Project) -> None:
    text = '{\n  "tasks": [\n    {"id": "a",, "type": "bash"}\n  ]\n}\n'
    problem = only_problem(validate(project, text))
    assert problem.file.endswith("tasks.json")
    assert (problem.line, problem.col) == (3, 16)
    assert "malformed JSON" in problem.text


def test_not_a_task_file(project: Project) -> None:
    result = validate(project, '{"jobs": []}\n')
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "tasks.json" in result.stderr
    assert '"tasks"' in result.stderr


def test_missing_task_file(project: Project) -> None:
    result = project.mflow("validate", "--taskfile", "nope.json")
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "nope.json" in result.stderr
    assert "not found" in result.stderr


YAML_TASKS = """\
tasks:
  - id: a
    type: bash
    command: echo from-yaml-a > yaml_a.txt
  - id: b
    type: bash
    command: cat yaml_a.txt > yaml_b.txt
    depends: [a]
"""


def test_yaml_task_file_runs(project: Project) -> None:
    project.write_tasks(YAML_TASKS, name="tasks.yaml")
    assert_exit(project.mflow("validate", "--taskfile", "tasks.yaml"), 0)
    project.run_ok("--taskfile", "tasks.yaml")
    assert (project.root / "yaml_b.txt").read_text() == "from-yaml-a\n"
    assert set(project.task_states(project.last_run_id()).values()) == {"SUCCESS"}


def test_yaml_problem_carries_its_line(project: Project) -> None:
    text = YAML_TASKS.replace("depends: [a]", "depends: [a, aa]")
    project.write_tasks(text, name="tasks.yaml")
    problem = only_problem(project.mflow("validate", "--taskfile", "tasks.yaml"))
    assert problem.file.endswith("tasks.yaml")
    assert problem.line == 8
    assert "task 'b'" in problem.text
    assert "depends on unknown task 'aa'" in problem.text


def test_malformed_yaml_carries_its_line(project: Project) -> None:
    text = "tasks:\n  - id: a\n    type: bash\n   command: [\n"
    project.write_tasks(text, name="tasks.yaml")
    problem = only_problem(project.mflow("validate", "--taskfile", "tasks.yaml"))
    assert problem.file.endswith("tasks.yaml")
    assert problem.line == 4
    assert "YAML" in problem.text


@pytest.mark.parametrize(
    "value, words",
    [
        (0, "greater than or equal to 1"),
        ('"three"', "integer"),
    ],
)
def test_config_error_names_file_and_key(project: Project, value, words) -> None:
    project.write_config(
        f'{{\n  "log_directory": "./logs/",\n  "max_process_concurrency": {value}\n}}\n'
    )
    project.write_tasks([bash("a", "touch ran.txt")])
    for command in ("validate", "run"):
        result = project.mflow(command)
        problem = only_problem(result)
        assert problem.file.endswith("config.json")
        assert problem.line == 3
        assert "key 'max_process_concurrency'" in problem.text
        assert words in problem.text
    assert not (project.root / "ran.txt").exists()
    assert project.nothing_recorded()


def test_config_unknown_key_is_a_warning_with_suggestion(project: Project) -> None:
    project.write_config({"max_proces_concurrency": 2, "log_directory": "./logs/"})
    result = validate(project, [bash("a", "true")])
    assert_exit(result, 0)
    found = warnings(result.stderr)
    assert len(found) == 1, result
    assert "config.json" in found[0]
    assert "(did you mean 'max_process_concurrency'?)" in found[0]


def test_config_env_with_unset_variable(project: Project) -> None:
    project.write_config(env={"TARGET": "${MFLOW_TEST_SURELY_UNSET}/out"})
    project.write_tasks([bash("a", "touch ran.txt")])
    result = project.mflow("run", env={})
    problem = only_problem(result)
    assert problem.file.endswith("config.json")
    assert "MFLOW_TEST_SURELY_UNSET" in problem.text
    assert "TARGET" in problem.text
    assert not (project.root / "ran.txt").exists()
    assert project.nothing_recorded()


@pytest.mark.parametrize("other", ["load.attempt1", "load.attempt02", "load.attempts2"])
def test_ids_like_a_retry_log_that_no_retry_writes_are_fine(project: Project, other: str):
    assert_exit(validate(project, [bash("load", "true"), bash(other, "true")]), 0)


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (["a/b", "a b"], "its log file name would be the same as task 'a/b's"),
        (["load", "load.attempt2"], "the same as that of attempt 2 of task 'load'"),
        (["load.attempt3", "load"], "the same as that of attempt 3 of task 'load'"),
    ],
)
def test_two_tasks_that_would_share_a_log_file_are_refused(
    project: Project, ids: list[str], words: str
) -> None:
    problem = only_problem(validate(project, [bash(ids[0], "true"), bash(ids[1], "true")]))
    assert words in problem.text
    assert "rename" in problem.text


def test_unset_variables_are_listed_with_the_other_problems(project: Project) -> None:
    project.write_config(default_retries=-1, env={"BASE": "/data", "FOO": "${MFLOW_TEST_UNSET_A}"})
    project.write_tasks(
        [
            bash("a", "true", retries=-2, env={"B": "${MFLOW_TEST_UNSET_B}"}),
            bash("b", "true", retries=-3, env={"OUT": "${BASE}/out"}),  # config's env: set
        ]
    )
    result = project.mflow("validate")
    assert_exit(result, 2)
    found = sorted(
        (Path(p.file).name, p.line, p.text.split(":")[0]) for p in problems(result.stderr)
    )
    assert [(name, text) for name, _, text in found] == [
        ("config.json", "key 'default_retries'"),
        ("config.json", "key 'env.FOO'"),
        ("tasks.json", "task 'a'"),
        ("tasks.json", "task 'a'"),
        ("tasks.json", "task 'b'"),
    ], result
    assert "MFLOW_TEST_UNSET_A" in result.stderr and "MFLOW_TEST_UNSET_B" in result.stderr
    assert "${BASE}" not in result.stderr
    assert "5 problems found" in result.stderr


def test_home_and_variables_in_paths_are_expanded_as_a_shell_would(project: Project) -> None:
    home = project.root / "home"
    home.mkdir()
    project.write_tasks([bash("a", "true")])
    project.write_config(log_directory="~/nightly-logs")
    project.run_ok(env={"HOME": str(home)})
    assert (home / "nightly-logs" / "mflow.db").exists()
    assert not (project.root / "~").exists()  # no folder named "~"
    project.write_config(log_directory="${MFLOW_TEST_LOGS}/logs")
    project.run_ok(env={"MFLOW_TEST_LOGS": str(home)})
    assert (home / "logs" / "mflow.db").exists()
    unset = project.mflow("run", env={})
    problem = only_problem(unset)
    assert (
        "key 'log_directory': ${MFLOW_TEST_LOGS} is set neither in the environment" in problem.text
    )


def test_reading_state_needs_none_of_the_tasks_variables(project: Project) -> None:
    # cron has the tasks' secrets; the operator who reads the history later may not
    project.write_config(env={"TARGET": "${MFLOW_TEST_SECRET}/out"})
    project.write_tasks([bash("a", "echo hello")])
    project.run_ok(env={"MFLOW_TEST_SECRET": "s3cret"})
    for args in (["runs"], ["status", "1"], ["logs", "1", "a"]):
        result = project.mflow(*args, env={})
        assert_exit(result, 0)
        assert "MFLOW_TEST_SECRET" not in result.stderr
    assert "hello" in project.mflow("logs", "1", "a", env={}).stdout
    again = project.mflow("run", env={})  # a run still needs them, and says so
    assert "MFLOW_TEST_SECRET" in only_problem(again).text


def _datasources(project: Project, *connections: dict) -> None:
    (project.root / "oracle.json").write_text(json.dumps({"connections": list(connections)}))


def test_an_unused_datasource_may_name_an_unset_variable(project: Project) -> None:
    # one shared oracle.json, each flow exporting only the passwords it needs
    siper = {
        "name": "siper_fisco",
        "connection_string": "db1:1521/fisco",
        "user": "SIPER",
        "password": "${MFLOW_TEST_SIPER_PW}",
    }
    _datasources(project, siper, {"name": "wh", "url": "postgresql://u:${MFLOW_TEST_WH}@h/db"})
    project.write_tasks([bash("a", "touch ran.txt")])
    project.run_ok(env={})
    assert (project.root / "ran.txt").exists()
    assert_exit(project.mflow("runs", env={}), 0)
    query = {"id": "q", "type": "sql", "db": "siper_fisco", "command": "select 1 from dual"}
    used = project.mflow("validate", "--taskfile", str(project.write_tasks([query], "q.json")))
    problem = only_problem(used)
    assert (problem.file, problem.line) == (str(project.root / "q.json"), TASK_LINE)
    assert "task 'q': key 'db': datasource 'siper_fisco' cannot be used" in problem.text
    assert "${MFLOW_TEST_SIPER_PW} is not set in the environment" in problem.text
    assert "oracle.json:1:" in problem.text  # where to set it right


def test_a_connection_that_is_only_a_variable_may_be_unset_too(project: Project) -> None:
    _datasources(project, {"name": "pg", "url": "${MFLOW_TEST_PG_URL}"})
    project.write_tasks([bash("a", "touch ran.txt")])
    project.run_ok(env={})
    assert_exit(project.mflow("runs", env={}), 0)
    query = {"id": "q", "type": "sql", "db": "pg", "command": "select 1"}
    used = project.mflow("validate", "--taskfile", str(project.write_tasks([query], "q.json")))
    assert "${MFLOW_TEST_PG_URL} is not set in the environment" in only_problem(used).text


def test_the_password_of_a_connection_not_usable_here_is_still_masked(project: Project) -> None:
    from mflow.datasources import load_datasources

    secret = "Sup3rS3cret-pw"
    _datasources(
        project,
        {"name": "dw", "connection_string": "${MFLOW_TEST_DSN}", "user": "etl", "password": secret},
        {"name": "wh", "url": f"postgresql://etl:{secret}x@${{MFLOW_TEST_HOST}}/db"},
    )
    sources = load_datasources(project.root / "oracle.json", required=True)
    assert set(sources.unusable) == {"dw", "wh"}
    assert (
        sources.mask(f"login etl/{secret} failed; etl:{secret}x@h")
        == "login etl/*** failed; etl:***@h"
    )


def test_config_env_and_spark_home_in_paths(project: Project) -> None:
    # ${VAR}s a path names may come from config.json's own env; spark_submit's are only
    # needed by a spark task
    project.write_config(
        env={"BASE": str(project.root / "base")},
        log_directory="${BASE}/logs",
        spark_submit="${SPARK_HOME}/bin/spark-submit",
    )
    project.write_tasks([bash("a", "true")])
    project.run_ok(env={})
    assert (project.root / "base" / "logs" / "mflow.db").exists()
    assert_exit(project.mflow("runs", env={}), 0)
    assert_exit(project.mflow("validate", env={}), 0)


def test_the_state_datasource_needs_its_variables_for_every_command(project: Project) -> None:
    _datasources(project, {"name": "mflow", "url": "postgresql://u:${MFLOW_TEST_PW}@h/db"})
    project.write_tasks([bash("a", "touch ran.txt")])
    run = project.mflow("run", env={})
    assert "${MFLOW_TEST_PW} is not set in the environment" in only_problem(run).text
    assert not (project.root / "ran.txt").exists()
    runs = project.mflow("runs", env={})
    assert_exit(runs, 2)
    assert_no_traceback(runs)
    assert "${MFLOW_TEST_PW} is not set" in runs.stderr
    assert "1 problem found; nothing was read" in runs.stderr


def test_task_env_with_unset_variable(project: Project) -> None:
    project.write_tasks(
        [
            bash("a", "touch ran_a.txt"),
            bash("b", "touch ran_b.txt", env={"TARGET": "${MFLOW_TEST_SURELY_UNSET}/out"}),
        ]
    )
    result = project.mflow("run")
    problem = only_problem(result)
    assert problem.file.endswith("tasks.json")
    assert problem.line == TASK_LINE + 1
    assert "task 'b'" in problem.text
    assert "MFLOW_TEST_SURELY_UNSET" in problem.text
    assert not (project.root / "ran_a.txt").exists()
    assert project.nothing_recorded()


@pytest.mark.parametrize(
    "tasks",
    [
        pytest.param([bash("a", "touch ran.txt"), bash("b", "true", "c")], id="unknown-dep"),
        pytest.param([bash("a", "touch ran.txt"), bash("b", "true", "b")], id="cycle"),
        pytest.param([bash("a", "touch ran.txt"), bash("a", "true")], id="duplicate"),
        pytest.param(
            '{"tasks": [\n  {"id": "a", "type": "bash", "command": "touch ran.txt"},\n]}\n',
            id="malformed-json",
        ),
    ],
)
def test_invalid_file_runs_and_records_nothing(project: Project, tasks) -> None:
    project.write_tasks(tasks)
    result = project.mflow("run")
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "nothing was run" in result.stderr
    assert not (project.root / "ran.txt").exists()
    assert project.nothing_recorded()


def test_run_after_an_invalid_one_is_recorded_alone(project: Project) -> None:
    """An invalid run leaves no run row behind, even in an existing database."""
    project.write_tasks([bash("a", "true")])
    project.run_ok()
    project.write_tasks([bash("a", "true", "nope")])
    assert_exit(project.mflow("run"), 2)
    rows = project.db("SELECT run_id, state FROM mf_runs")
    assert rows == [{"run_id": 1, "state": "SUCCESS"}]


def test_original_env_list_form_and_case_insensitive_keys_are_accepted(project: Project) -> None:
    """Files written for the original Go tool load unchanged."""
    project.write_config(
        json.dumps(
            {
                "max_process_concurrency": 3,
                "check_new_config_interval": 1,
                "log_directory": "./logs/",
                "env": [{"key": "GREETING", "value": "hola"}],
            }
        )
    )
    result = validate(project, [{"id": "a", "type": "bash", "command": "true", "Depends": []}])
    assert_exit(result, 0)
    assert problems(result.stderr) == []


def test_common_keys_in_any_case_count_everywhere(project: Project) -> None:
    """`ID`, `Type`, `DEPENDS` as the original's Go parser read them: ids, dependencies,
    duplicates and env checks all see them."""
    tasks = [
        {"ID": "a", "Type": "bash", "Command": "true"},
        {"Id": "b", "TYPE": "bash", "command": "true", "DEPENDS": ["a", "ghost"]},
        {"ID": "a", "type": "bash", "command": "true"},
    ]
    result = validate(project, tasks)
    assert_exit(result, 2)
    texts = [p.text for p in problems(result.stderr)]
    assert any("depends on unknown task 'ghost'" in t for t in texts), result
    assert any("duplicate id" in t for t in texts), result
    assert not any("unknown task 'a'" in t for t in texts), result


def test_env_entries_in_the_original_form_accept_any_case_and_bad_ones_are_numbered(
    project: Project,
) -> None:
    ok = validate(project, [bash("a", "true", env=[{"Key": "A", "Value": "1"}])])
    assert_exit(ok, 0)
    bad = validate(project, [bash("a", "true", env=[{"key": "A", "value": "1"}, {"name": "B"}])])
    problem = only_problem(bad)
    assert "entry #2" in problem.text and "'key': 'NAME'" not in problem.text


def test_blank_command_is_an_error(project: Project) -> None:
    problem = only_problem(validate(project, [bash("a", "   ")]))
    assert "task 'a'" in problem.text and "the command is empty" in problem.text


def test_type_in_other_case_gets_a_suggestion(project: Project) -> None:
    problem = only_problem(validate(project, [{"id": "a", "type": "BASH", "command": "true"}]))
    assert "unknown task type 'BASH' (did you mean 'bash'?)" in problem.text


def test_an_unknown_dependency_never_suggests_the_task_itself(project: Project) -> None:
    problem = only_problem(validate(project, [bash("tarea6", "true", "tarea5")]))
    assert "did you mean" not in problem.text


def test_problems_of_config_and_task_file_are_reported_together(project: Project) -> None:
    project.write_config(max_process_concurrency=0)
    result = validate(project, [bash("a", "true", "nope")])
    assert_exit(result, 2)
    files = sorted(p.file for p in problems(result.stderr))
    assert files == ["config.json", "tasks.json"], result
    assert "2 problems found" in result.stderr


@pytest.mark.parametrize("tasks", [[bash("a", "true")], [bash("a", "true", "nowhere")]])
def test_loading_a_flow_leaves_the_cycle_collector_as_it_was(project: Project, tasks):
    """Loading pauses Python's cycle collector (see mflow.loading); a long-lived process
    (`mflow serve` reads flows too) must get it back, also after a file was refused."""
    import gc

    from mflow.errors import InvalidFilesError
    from mflow.inputs import load_inputs

    project.write_tasks(tasks)
    assert gc.isenabled()
    refused = bool(tasks[0].get("depends"))  # on a task that does not exist
    with pytest.raises(InvalidFilesError) if refused else contextlib.nullcontext():
        load_inputs(project.root / "config.json", False, project.root / "tasks.json")
    assert gc.isenabled()
