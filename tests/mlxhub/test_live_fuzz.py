"""Schemathesis over both published schemas (/v1/openapi.json and /api/schema/) against a live hub with the
admin's control key and the demo model's name: no answer is a 5xx and no traceback reaches the server's log.

Examples are bounded per operation (FUZZ_EXAMPLES) and generation is capped (max_tokens), so the run stays
within its time budget on two shared cores. With `-s` the figures are printed at the end (operations, cases
per operation, answers by status). docs/bad-input.md has the figures and what the run found.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.catalog.fakehub import FakeHub
from tests.conftest import LiveHub, start_hub, stop_hub
from tests.model_builders import minilm_path

# schemathesis is a pytest plugin, so pytest rewrites its modules as they are imported, and it imports most of
# them lazily, from inside a test. On CPython 3.11.7 that rewrite can fail deep in a test's stack
# ("SystemError: AST constructor recursion depth mismatch", CPython gh-106905, fixed in 3.11.8); importing
# them here, while the module is collected, keeps the rewrite at a shallow depth.
for _module in pkgutil.walk_packages(schemathesis.__path__, "schemathesis."):
    if _module.name.startswith(("schemathesis.specs", "schemathesis.generation", "schemathesis.openapi")):
        importlib.import_module(_module.name)

pytestmark = pytest.mark.live

# Per operation; a deeper run locally: FUZZ_EXAMPLES=200 pytest tests/mlxhub/test_live_fuzz.py -s
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
MODEL = "demo"
EMBEDDING_MODEL = "minilm"  # the real all-MiniLM-L6-v2 that a test package ships, for /v1/embeddings
MAX_NEW_TOKENS = 8
# The generating endpoints and the field each reads its output bound from.
TOKEN_BOUND = {
    "/v1/chat/completions": "max_tokens",
    "/v1/completions": "max_tokens",
    "/v1/messages": "max_tokens",
    "/v1/responses": "max_output_tokens",
}
BOUND_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# A conversation the demo model can take, per generating endpoint: the third kind of case keeps everything else
# the schema drew (sampling, stops, tools, formats) and swaps this in, so the engine's side is reached too.
CONVERSATION = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "Hi"}]},
    "/v1/completions": {"prompt": "Hi"},
    "/v1/messages": {"messages": [{"role": "user", "content": "Hi"}]},
    "/v1/messages/count_tokens": {"messages": [{"role": "user", "content": "Hi"}]},
    "/v1/responses": {"input": "Hi"},
}

FIGURES: dict[str, Any] = {"operations": Counter(), "status": Counter(), "skipped": 0, "seconds": 0.0}


class Fuzzed:
    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.headers = {"Authorization": f"Bearer {hub.api_key}"}
        self.log_offset = len(hub.log_path.read_bytes())
        with hub.client() as control:
            own = control.get("/api/keys/").json()["results"]
            local = control.get("/api/catalog/local/").json()
        self.own_key_ids = {str(row["id"]) for row in own if hub.api_key.startswith(row["prefix"])}
        self.demo_local_ids = {str(row["id"]) for row in local if {MODEL, EMBEDDING_MODEL} & set(row["profiles"])}

    def new_log(self) -> str:
        data = self.hub.log_path.read_bytes()
        fresh, self.log_offset = data[self.log_offset :], len(data)
        return fresh.decode(errors="replace")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    # Hub search and downloads reach a local hub with no repositories, never the internet.
    fake_hub = FakeHub()
    hub = start_hub(tmp_path_factory.mktemp("fuzz-hub"), HF_ENDPOINT=fake_hub.url, MLXHUB_HF_ENDPOINT=fake_hub.url)
    hub.manage("register_model", str(minilm_path()), "--name", EMBEDDING_MODEL)
    yield Fuzzed(hub)
    print("\nschemathesis figures:", json.dumps(FIGURES))
    stop_hub(hub)
    fake_hub.close()


def fuzz_config(fuzzed: Fuzzed) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "base-url": fuzzed.hub.base_url,
            "headers": fuzzed.headers,
            "generation": {"mode": "all", "max-examples": FUZZ_EXAMPLES},
        }
    )


def bounded(case: schemathesis.Case) -> None:
    """The demo model's name where a model is named, and a small output bound on every generating call."""
    if "model_id" in (case.path_parameters or {}):
        case.path_parameters["model_id"] = MODEL  # type: ignore[index]
    body = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("model"), str):
        body["model"] = EMBEDDING_MODEL if case.operation.path == "/v1/embeddings" else MODEL
    for name in BOUND_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_NEW_TOKENS:
            body[name] = MAX_NEW_TOKENS
    bound = TOKEN_BOUND.get(case.operation.path)
    if bound and not any(name in body for name in BOUND_FIELDS):
        body[bound] = MAX_NEW_TOKENS
    if isinstance(body.get("n"), int) and not isinstance(body["n"], bool) and body["n"] > 2:
        body["n"] = 2


def with_conversation(case: schemathesis.Case) -> schemathesis.Case:
    conversation = CONVERSATION.get(case.operation.path)
    if conversation and isinstance(case.body, dict):
        case.body.update(json.loads(json.dumps(conversation)))
    return case


def destroys_the_fixture(case: schemathesis.Case, fuzzed: Fuzzed) -> bool:
    """Calls that would take the fuzzer's own key, the demo profile or its weights away from later cases."""
    path, method = case.operation.path, case.method.upper()
    ident = str((case.path_parameters or {}).get("id", (case.path_parameters or {}).get("name", "")))
    if path.startswith("/api/keys/{id}") and method != "GET":
        return ident in fuzzed.own_key_ids
    if path == "/api/catalog/local/{id}/" and method == "DELETE":
        return ident in fuzzed.demo_local_ids
    if path == "/api/profiles/{name}/" and method != "GET":
        return ident in {MODEL, EMBEDDING_MODEL}
    return False


def exercise(case: schemathesis.Case, fuzzed: Fuzzed) -> None:
    FIGURES["operations"][f"{case.method.upper()} {case.operation.path}"] += 1
    if destroys_the_fixture(case, fuzzed):
        FIGURES["skipped"] += 1
        return
    bounded(case)
    started = time.monotonic()
    response = case.call(headers=fuzzed.headers, timeout=60)
    FIGURES["seconds"] += time.monotonic() - started
    FIGURES["status"][str(response.status_code)] += 1
    assert response.status_code < 500, f"{response.status_code} for {case.as_curl_command()}\n{response.text[:2000]}"
    log = fuzzed.new_log()
    assert "Traceback" not in log, f"traceback after {case.as_curl_command()}:\n{last_exception(log)}"


def last_exception(log: str) -> str:
    """The exception a logged traceback ends with (the log is JSON lines with escaped tracebacks)."""
    lines = log.replace("\\n", "\n").splitlines()
    raised = [line for line in lines if line.split(":", 1)[0].strip().endswith(("Error", "Exception"))]
    return "\n".join(raised[-3:]) or log[-1500:]


HYPOTHESIS = hypothesis.settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the repository
    derandomize=True,  # every run draws the same cases
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def fuzz(schema: Any, fuzzed: Fuzzed) -> None:
    """Every operation in turn, cases valid and invalid for its schema; all failures are reported together."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        strategy = st.one_of(
            positive, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), positive.map(with_conversation)
        )

        @HYPOTHESIS
        @hypothesis.given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            exercise(case, fuzzed)

        try:
            run()
        except Exception as exc:  # an assertion, or Hypothesis' group of them: report every operation's
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")
        time.sleep(0.2)  # what this operation's requests log after their answers belongs to it
        if "Traceback" in (log := fuzzed.new_log()):
            failures.append(f"{operation.label}: traceback in the log: {last_exception(log)}")
    for failure in failures:
        print("\nFUZZ FAILURE", failure)
    assert not failures, "\n\n".join(failures)


def test_the_v1_api_answers_fuzzed_requests_without_a_server_error(fuzzed: Fuzzed) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.hub.base_url}/v1/openapi.json", config=fuzz_config(fuzzed))
    fuzz(schema, fuzzed)


def test_the_control_api_answers_fuzzed_requests_without_a_server_error(fuzzed: Fuzzed) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.hub.base_url}/api/schema/", config=fuzz_config(fuzzed))
    fuzz(schema, fuzzed)


def test_the_fuzzed_server_logged_no_traceback(fuzzed: Fuzzed) -> None:
    time.sleep(1)  # the audit writer and the engine log after the answer
    assert sum(FIGURES["status"].values()) > 0
    log = fuzzed.new_log()
    assert "Traceback" not in log, log[-4000:]
    assert fuzzed.hub.process.poll() is None
