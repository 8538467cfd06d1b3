"""The offline model: deterministic, role-aware, labelled, and a proper Agno model (sync, async, stream)."""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from agno.agent import Agent
from agno.models.message import Message

from tdev.llm.offline import OFFLINE_MODEL_ID, OfflineModel, read_brief, resources_in

LABEL = f"[offline model {OFFLINE_MODEL_ID}: deterministic template output, not written by an LLM]"
TODO_REQUEST = "Build a REST API for todo items"
ROLES = ["DesignAgent", "CodeAgent", "TestAgent", "SecurityAgent", "ReviewAgent"]


def messages(role: str, prompt: str) -> list[Message]:
    return [
        Message(role="system", content=f"An agent.\n- Role: {role}\n- Be precise."),
        Message(role="user", content=prompt),
    ]


def prompt_for(request: str, upstream: str = "") -> str:
    task = '<task id="t1" agent="X" intent="x">\nDo it.\n</task>'
    return f"<request>\n{request}\n</request>\n\n{task}\n\n{upstream}"


def upstream_block(task_id: str, agent: str, status: str, body: str, dependency: str = "hard") -> str:
    attributes = f'task_id="{task_id}" agent="{agent}" status="{status}" dependency="{dependency}"'
    return f"<upstream {attributes}>\n{body}\n</upstream>\n"


def answer(role: str, prompt: str) -> str:
    response = OfflineModel().invoke(messages(role, prompt), Message(role="assistant"))
    assert isinstance(response.content, str)
    return response.content


def python_block(text: str) -> str:
    match = re.search(r"```python\n(.*?)\n```", text, re.DOTALL)
    assert match, "no python block in the answer"
    return match.group(1)


# ------------------------------------------------------------------------------------ every answer
@pytest.mark.parametrize("role", [*ROLES, "TranslatorAgent", ""])
def test_every_answer_starts_with_the_label(role: str) -> None:
    # Given any role, known or not
    # When the model answers
    text = answer(role, prompt_for(TODO_REQUEST))
    # Then the first line says it is template output
    assert text.splitlines()[0] == LABEL


@pytest.mark.parametrize("role", ROLES)
def test_the_same_input_gives_byte_identical_output(role: str) -> None:
    prompt = prompt_for("Build a blog with posts, comments and user authentication")
    assert answer(role, prompt).encode() == answer(role, prompt).encode()


def test_the_same_input_through_two_agents_gives_identical_runs() -> None:
    def run() -> str:
        agent = Agent(
            model=OfflineModel(), name="CodeAgent", instructions=["Role: CodeAgent"], telemetry=False
        )
        return str(agent.run(prompt_for(TODO_REQUEST)).content)

    assert run() == run()


def test_different_requests_give_different_answers() -> None:
    assert answer("CodeAgent", prompt_for(TODO_REQUEST)) != answer(
        "CodeAgent", prompt_for("An API for books")
    )


# ------------------------------------------------------------------------------------------- roles
def test_design_names_components_endpoints_data_model_and_decisions() -> None:
    text = answer("DesignAgent", prompt_for(TODO_REQUEST))
    for heading in ("## Components", "## Data model", "## Endpoints", "## Decisions"):
        assert heading in text
    assert "POST /todos" in text
    assert "GET /todos/{todo_id}" in text
    assert "| todo_id |" in text


def test_design_adds_auth_only_when_the_request_asks_for_it() -> None:
    with_auth = answer("DesignAgent", prompt_for(TODO_REQUEST + " with JWT authentication"))
    without = answer("DesignAgent", prompt_for(TODO_REQUEST))
    assert "owner_id" in with_auth
    assert "owner_id" not in without
    assert "names no authentication" in without


def test_code_is_a_runnable_crud_module_named_after_the_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a request about todo items
    text = answer("CodeAgent", prompt_for(TODO_REQUEST))
    # Then the answer holds Python with CRUD functions for "todo" that work
    assert "def " in text
    module = types.ModuleType("todo_service")
    monkeypatch.setitem(sys.modules, "todo_service", module)  # dataclasses look their module up
    exec(compile(python_block(text), "todo_service.py", "exec"), module.__dict__)
    created = module.create_todo(title="write tests")
    assert module.get_todo(created["todo_id"]) == created
    assert module.list_todos() == [created]
    module.delete_todo(created["todo_id"])
    assert module.list_todos() == []


def test_tests_are_pytest_cases_that_pass_against_the_generated_code(tmp_path: Path) -> None:
    # Given the code and the tests the offline model writes for the same request
    prompt = prompt_for("Create a service to manage books")
    code = answer("CodeAgent", prompt)
    tests = answer("TestAgent", prompt)
    assert "def test_" in tests
    (tmp_path / "book_service.py").write_text(python_block(code))
    (tmp_path / "test_book_service.py").write_text(python_block(tests))
    # When pytest runs them together
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then they all pass
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_tests_say_which_upstream_code_they_target() -> None:
    code = answer("CodeAgent", prompt_for(TODO_REQUEST))
    tests = answer(
        "TestAgent", prompt_for(TODO_REQUEST, upstream_block("code-1", "CodeAgent", "SUCCEEDED", code))
    )
    assert "task `code-1`" in tests


def test_security_review_checks_owasp_categories_and_reports_findings() -> None:
    text = answer("SecurityAgent", prompt_for(TODO_REQUEST))
    assert "## Findings" in text
    for category in ("A01", "A02", "A03", "A05", "A07", "A09"):
        assert category in text
    assert "Input validation" in text
    assert "Secrets" in text
    assert "[HIGH] A07" in text  # no authentication was asked for


def test_security_review_finds_missing_ownership_in_upstream_code_and_hard_coded_secrets() -> None:
    code = answer("CodeAgent", prompt_for(TODO_REQUEST))
    leaked = 'DB_PASSWORD = "hunter2"'
    upstream = upstream_block("code", "CodeAgent", "SUCCEEDED", code + "\n" + leaked)
    text = answer("SecurityAgent", prompt_for(TODO_REQUEST + " with login", upstream))
    assert "[HIGH] A01 Broken access control" in text
    assert "[OK] Input validation" in text
    assert "[HIGH] Secrets" in text


def test_review_references_each_upstream_result_and_failed_ones() -> None:
    design = answer("DesignAgent", prompt_for(TODO_REQUEST))
    code = answer("CodeAgent", prompt_for(TODO_REQUEST))
    upstream = (
        upstream_block("design", "DesignAgent", "SUCCEEDED", design)
        + upstream_block("code", "CodeAgent", "SUCCEEDED", code)
        + upstream_block("security", "SecurityAgent", "FAILED", "This upstream task failed: boom", "soft")
    )
    text = answer("ReviewAgent", prompt_for(TODO_REQUEST, upstream))
    assert "- design (DesignAgent) SUCCEEDED: Design: Build a REST API for todo items" in text
    assert "- code (CodeAgent) SUCCEEDED" in text
    assert "- security (SecurityAgent) FAILED (soft dependency)" in text
    assert "CHANGES REQUESTED: security failed." in text


def test_review_approves_when_every_upstream_succeeded() -> None:
    code = answer("CodeAgent", prompt_for(TODO_REQUEST))
    tests = answer("TestAgent", prompt_for(TODO_REQUEST))
    upstream = upstream_block("code", "CodeAgent", "SUCCEEDED", code) + upstream_block(
        "tests", "TestAgent", "SUCCEEDED", tests
    )
    text = answer("ReviewAgent", prompt_for(TODO_REQUEST, upstream))
    assert "consistency: tests call create_todo and the code defines it" in text
    assert "APPROVED WITH NOTES" in text


def test_an_unknown_role_gets_a_generic_summary() -> None:
    text = answer("TranslatorAgent", prompt_for(TODO_REQUEST))
    assert "# Response (TranslatorAgent)" in text
    assert "Task: Do it." in text


# ---------------------------------------------------------------------------------- understanding
def test_a_prompt_without_sections_is_the_request() -> None:
    brief = read_brief(messages("CodeAgent", "An API for invoices"))
    assert brief.role == "CodeAgent"
    assert brief.request == "An API for invoices"
    assert brief.upstream == ()


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ("Build a REST API for todo items", ["todo"]),
        ("Build a REST API for to-do items with user authentication", ["todo"]),
        ("A blog with posts and comments", ["blog", "post", "comment"]),
        ("An app that lets people track expenses and budgets", ["expense", "people", "budget"]),
        ("Build something simple", ["item"]),
        ("Manage categories", ["category"]),
    ],
)
def test_resources_come_from_the_nouns_of_the_request(request_text: str, expected: list[str]) -> None:
    assert resources_in(request_text) == expected


# ----------------------------------------------------------------------------- tokens and streaming
def test_tokens_are_a_quarter_of_the_characters_rounded_up() -> None:
    msgs = messages("DesignAgent", prompt_for(TODO_REQUEST))
    response = OfflineModel().invoke(msgs, Message(role="assistant"))
    usage = response.response_usage
    assert usage is not None
    input_chars = sum(len(str(m.content)) for m in msgs)
    assert usage.input_tokens == math.ceil(input_chars / 4)
    assert usage.output_tokens == math.ceil(len(str(response.content)) / 4)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_agent_run_reports_the_models_usage() -> None:
    agent = Agent(
        model=OfflineModel(), name="DesignAgent", instructions=["Role: DesignAgent"], telemetry=False
    )
    output = agent.run(prompt_for(TODO_REQUEST))
    assert output.metrics is not None
    assert output.metrics.input_tokens > 0
    assert output.metrics.output_tokens == math.ceil(len(str(output.content)) / 4)


@pytest.mark.parametrize("role", ROLES)
def test_streaming_yields_several_chunks_that_add_up_to_the_answer(role: str) -> None:
    model = OfflineModel()
    msgs = messages(role, prompt_for(TODO_REQUEST))
    whole = model.invoke(msgs, Message(role="assistant"))
    chunks = list(model.invoke_stream(msgs, Message(role="assistant")))
    assert len(chunks) > 1
    assert "".join(str(c.content) for c in chunks) == whole.content
    usages = [c.response_usage for c in chunks if c.response_usage is not None]
    assert len(usages) == 1  # Agno sums usage over chunks: it must come once
    assert whole.response_usage is not None
    assert usages[0].input_tokens == whole.response_usage.input_tokens
    assert usages[0].output_tokens == whole.response_usage.output_tokens


def test_a_streamed_agent_run_equals_a_plain_one() -> None:
    def agent() -> Agent:
        return Agent(
            model=OfflineModel(), name="TestAgent", instructions=["Role: TestAgent"], telemetry=False
        )

    plain = agent().run(prompt_for(TODO_REQUEST))
    streamed = "".join(
        str(event.content)
        for event in agent().run(prompt_for(TODO_REQUEST), stream=True)
        if getattr(event, "event", "") == "RunContent" and event.content is not None
    )
    assert streamed == plain.content


def test_async_invoke_and_stream_match_the_sync_answer() -> None:
    model = OfflineModel()
    msgs = messages("SecurityAgent", prompt_for(TODO_REQUEST))
    whole = model.invoke(msgs, Message(role="assistant")).content

    async def both() -> tuple[str, str]:
        single = await model.ainvoke(msgs, Message(role="assistant"))
        pieces = [str(c.content) async for c in model.ainvoke_stream(msgs, Message(role="assistant"))]
        return str(single.content), "".join(pieces)

    assert asyncio.run(both()) == (whole, whole)
