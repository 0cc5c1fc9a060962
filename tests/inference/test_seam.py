"""The engine seam: the web side imports no MLX, what crosses it survives a trip through bytes, and the
inference package has no import circle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import uuid
from pathlib import Path

import msgpack
import pytest

from inference.engine.stats import EngineStats, ModelStats
from inference.engine.types import (
    EmbeddingRequest,
    GenerationRequest,
    GrammarSpec,
    SamplingParams,
    new_engine_id,
    request_from_wire,
    to_wire,
)
from tests.conftest import REPO
from tests.inference.engine_kit import collect, generation
from tests.inference.engine_kit import run as run_request

PRODUCT_PACKAGES = ("mlxhub", "catalog", "inference", "routing", "audit")
# The modules that run where the engine runs (they import MLX, or drive an engine); everything else in the
# product is web side. The seam itself (client, types, stats, config) is web side too.
ENGINE_SIDE = (
    "inference.engine.",
    "inference.bench.engine_alone",
)
SEAM = (
    "inference.engine.grammars",
    "inference.engine.client",
    "inference.engine.types",
    "inference.engine.stats",
    "inference.engine.config",
)


def product_modules() -> list[str]:
    modules = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            modules.append(name)
    return modules


def web_side_modules() -> list[str]:
    return [name for name in product_modules() if name in SEAM or not name.startswith(ENGINE_SIDE)]


IMPORT_ALL = """
import importlib, json, sys
import django
django.setup()
names = json.loads(sys.argv[1])
for name in names:
    importlib.import_module(name)
# Every request path the web side has, as a client sees it (the URL conf imports every view and router).
import mlxhub.urls  # noqa
from inference.runtime import engine_client
print(json.dumps({"mlx": sorted(m for m in sys.modules if m == "mlx" or m.startswith(("mlx.", "mlx_lm", "mlx_vlm")))}))
"""


def test_every_web_side_module_imports_without_mlx(tmp_path):
    env = {
        "DJANGO_SETTINGS_MODULE": "mlxhub.settings",
        "MLXHUB_HOME": str(tmp_path),
        "MLXHUB_ENGINE_PRELOAD": "0",
        "PATH": "/usr/bin:/bin",
    }
    names = web_side_modules()
    assert "inference.api" in names and "inference.serving" in names and "inference.engine.client" in names
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, json.dumps(names)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"mlx": []}


def _imports_of(path: Path, package: str) -> set[str]:
    """Every module of ``package`` this file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == package or name.startswith(package + ".")}


def test_the_inference_package_has_no_import_circle():
    modules = {name for name in product_modules() if name.startswith("inference")}
    graph = {}
    for name in modules:
        path = REPO / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        graph[name] = {target for target in _imports_of(path, "inference") if target in modules and target != name}

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for target in graph[node]:
                if target == start:
                    return [*trail, start]
                if target not in trail:
                    stack.append((target, [*trail, target]))
        return None

    cycles = [cycle for name in sorted(graph) if (cycle := cycle_from(name))]
    assert cycles == []


def test_requests_cross_the_seam_as_bytes_and_come_back_equal():
    chat = GenerationRequest(
        model={"key": "/m", "path": "/m", "context_length": 64, "kind": "vision", "pinned": True, "idle_ttl": 5.0},
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image"}]}],
        max_tokens=8,
        stop=["\n\n"],
        sampling=SamplingParams(temperature=0.5, logit_bias={7: -100.0}, seed=2**63),
        images=[b"\x89PNG fake bytes"],
        trace_id="client-id",
        tools=[{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}],
        grammar=GrammarSpec(
            kind="tool_calls",
            tools=({"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}},),
            choice="add",
            parallel=False,
        ),
    )
    embedding = EmbeddingRequest(model={"key": "/e", "path": "/e", "context_length": None}, inputs=["a", [1, 2]])
    scoring = GenerationRequest(
        model={"key": "/m", "path": "/m", "context_length": None},
        prompts=["a", [1, 2, 3]],
        max_tokens=0,
        logprobs=5,
        n=3,
        echo=True,
    )

    for request in (chat, embedding, scoring):
        packed = msgpack.packb(to_wire(request), use_bin_type=True)
        assert request_from_wire(msgpack.unpackb(packed, raw=False, strict_map_key=False)) == request


def test_every_request_gets_its_own_engine_id_whatever_the_client_sent():
    ids = {new_engine_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert GenerationRequest(model={"key": "", "path": "", "context_length": None}).request_id != "client-id"


def test_stats_read_back_from_the_engines_own_figures():
    wire = {
        "started": True,
        "alive": True,
        "steps": 3,
        "models": {"/m": {"state": "loaded", "kind": "text", "path": "/m", "weights_bytes": 10, "new_figure": 1}},
        "in_flight": {"/m": 2},
        "memory": {"budget_bytes": 100, "active_bytes": 50},
        "evictions": 1,
        "waiting_for_memory": 0,
    }
    stats = EngineStats.from_wire(json.loads(json.dumps(wire)))

    assert stats.model("/m") == ModelStats(key="/m", state="loaded", kind="text", path="/m", weights_bytes=10)
    assert stats.model("/m").memory_bytes == 10
    assert stats.model("/other").state == "unloaded"
    assert (stats.in_flight, stats.memory.budget_bytes, stats.steps) == ({"/m": 2}, 100, 3)


@pytest.fixture
def tiny_spec(tiny_model_dir):
    return {"key": str(tiny_model_dir), "path": str(tiny_model_dir), "context_length": None}


async def test_the_engines_events_are_plain_data_a_channel_layer_can_carry(engine, tiny_spec):
    outcome = await run_request(engine, generation(tiny_spec, max_tokens=4))

    assert outcome.kinds[0] == "accepted" and outcome.kinds[-1] == "finish"
    for event in outcome.events:
        assert msgpack.unpackb(msgpack.packb(event, use_bin_type=True), raw=False) == event
    assert EngineStats.from_wire(msgpack.unpackb(msgpack.packb(engine.stats()), raw=False)).alive


async def test_two_submissions_with_one_client_id_are_two_requests_to_the_engine(engine, tiny_spec):
    from inference.engine.local import InProcessEngineClient

    client = InProcessEngineClient(engine=engine)
    trace = f"same-{uuid.uuid4().hex}"
    first = client.open(generation(tiny_spec, max_tokens=200, trace_id=trace))
    second = client.open(generation(tiny_spec, max_tokens=6, trace_id=trace))
    first.cancel()  # one client leaves: only its own request ends

    kept = await collect(second)
    assert kept.last["type"] == "finish" and kept.last["finish_reason"] in ("length", "stop")
