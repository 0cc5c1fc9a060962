"""Claude Code and Codex CLI, the versions tests/npm/package-lock.json pins (``make test`` installs them into
.npm-tools/), each through one turn against a live server, run as their docs say to run them
non-interactively.

Both send their whole agent prompt (Claude Code about 50 KB to /v1/messages, Codex about 41 KB to
/v1/responses: 30k and 24k tokens on the tiny tokenizer) with a dozen tools offered, and both fail a turn
stopped at the token limit, so they talk to the terse model, which has a 64k context and ends its turns by
itself. Each test checks what the agent reports and the audit rows its requests left: the usage the agent
read back is what MLX Hub counted.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, LiveHub
from tests.inference import tool_kit
from tests.inference.client_kit import TERSE_MODEL, assert_served, client_hub, request_id

pytestmark = pytest.mark.live

terse_model_dir = tool_kit.terse_model_dir  # fixture

NPM_BIN = REPO / ".npm-tools" / "node_modules" / ".bin"
AGENT_TIMEOUT = 240
# The agents' own prompts, in tokens of the tiny tokenizer, are at least this long.
AGENT_PROMPT_TOKENS = 20000


def agent_binary(name: str) -> Path:
    path = NPM_BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: `make test` installs the coding agents (npm ci from tests/npm)")
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, terse_model_dir: Any) -> Iterator[LiveHub]:
    with client_hub(tmp_path_factory.mktemp("agents-hub"), terse_model=terse_model_dir) as live:
        yield live


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    """The agent's environment: a home of its own, so no one's settings or sessions leak in or out."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANTHROPIC_", "OPENAI_", "CODEX_"))}
    return {**env, "HOME": str(home), **extra}


def run_agent(command: list[str], *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=AGENT_TIMEOUT
    )


def test_claude_code_gets_through_a_turn(hub: LiveHub, tmp_path: Path) -> None:
    rid = request_id("claude-code")
    env = agent_env(
        tmp_path / "home",
        ANTHROPIC_BASE_URL=hub.base_url,
        ANTHROPIC_API_KEY=hub.api_key,
        ANTHROPIC_MODEL=TERSE_MODEL,
        ANTHROPIC_CUSTOM_HEADERS=f"x-request-id: {rid}",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        CLAUDE_CODE_MAX_OUTPUT_TOKENS="64",
    )

    done = run_agent(
        [str(agent_binary("claude")), "-p", "say hi", "--output-format", "json"], env=env, cwd=tmp_path / "work"
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["type"] == "result" and result["subtype"] == "success", result
    assert result["is_error"] is False and result["stop_reason"] == "end_turn", result
    assert isinstance(result["result"], str)
    assert set(result["modelUsage"]) == {TERSE_MODEL}
    # An empty answer (end-of-text first, one turn in four) makes Claude Code ask once more.
    rows = assert_served(hub, rid, endpoint="messages", models=[TERSE_MODEL] * result["num_turns"])
    assert all(row["prompt_tokens"] > AGENT_PROMPT_TOKENS and row["streamed"] for row in rows)
    # Claude Code adds up what each answer's usage said: uncached input and cache reads, as MLX Hub counted.
    usage = result["usage"]
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] == sum(row["prompt_tokens"] for row in rows)
    assert usage["output_tokens"] == sum(row["completion_tokens"] for row in rows)


def test_codex_gets_through_a_turn(hub: LiveHub, tmp_path: Path) -> None:
    rid = request_id("codex")
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        f'model = "{TERSE_MODEL}"\n'
        'model_provider = "hub"\n\n'
        "[model_providers.hub]\n"
        'name = "MLX Hub"\n'
        f'base_url = "{hub.base_url}/v1"\n'
        'env_key = "MLXHUB_TEST_API_KEY"\n'
        'wire_api = "responses"\n'
        f'http_headers = {{ "x-request-id" = "{rid}" }}\n'
    )
    env = agent_env(tmp_path / "home", CODEX_HOME=str(codex_home), MLXHUB_TEST_API_KEY=hub.api_key)
    command = [str(agent_binary("codex")), "exec", "--json", "--skip-git-repo-check", "--sandbox", "read-only"]

    done = run_agent([*command, "say hi"], env=env, cwd=tmp_path / "work")

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    kinds = [event["type"] for event in events]
    assert "turn.failed" not in kinds and "error" not in kinds, events
    # Codex takes its answer from response.output_item.done and its usage from response.completed.
    messages = [event["item"] for event in events if event["type"] == "item.completed"]
    assert [item["type"] for item in messages if item["type"] != "error"] == ["agent_message"], events
    assert isinstance(messages[-1]["text"], str)
    (turn,) = [event for event in events if event["type"] == "turn.completed"]
    (row,) = assert_served(hub, rid, endpoint="responses", models=[TERSE_MODEL])
    assert row["streamed"] and row["prompt_tokens"] > AGENT_PROMPT_TOKENS
    assert (turn["usage"]["input_tokens"], turn["usage"]["output_tokens"]) == (
        row["prompt_tokens"],
        row["completion_tokens"],
    )
