"""Fixtures for the live /v1 tests: clients pointed at the session's server, and its model's tokenizer."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from catalog.demo_model import build_model
from inference.engine.engine import Engine
from inference.runtime import engine_config
from tests.conftest import LiveHub


@pytest.fixture(scope="session")
def openai_client(live_hub: LiveHub) -> openai.OpenAI:
    # No retries: a 429 or a 5xx must reach the test, not be retried away.
    return openai.OpenAI(base_url=f"{live_hub.base_url}/v1", api_key=live_hub.api_key, max_retries=0, timeout=60)


@pytest.fixture
def async_openai_client(live_hub: LiveHub) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{live_hub.base_url}/v1", api_key=live_hub.api_key, max_retries=0, timeout=60)


@pytest.fixture(scope="session")
def http(live_hub: LiveHub) -> Iterator[httpx.Client]:
    with live_hub.client() as client:
        yield client


@pytest.fixture(scope="session")
def demo_model_dir(live_hub: LiveHub) -> Path:
    """The folder the server loads for the "demo" profile, as its own database says."""
    result = live_hub.manage(
        "shell",
        "-c",
        "from catalog.models import Profile; print(Profile.objects.get(name='demo').local_model.path)",
    )
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tokenizer(demo_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(demo_model_dir))


@pytest.fixture
def make_engine() -> Iterator[Callable[..., Engine]]:
    """Engines made here are stopped at the end of the test; pass start=False to queue requests first."""
    engines: list[Engine] = []

    def make(*, start: bool = True, **config: Any) -> Engine:
        engine = Engine(engine_config(**config))
        engines.append(engine)
        if start:
            engine.start()
        return engine

    yield make
    for engine in engines:
        engine.stop()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture(scope="session")
def three_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three folders of the demo preset (about 9 MB of weights each): loads large enough to measure."""
    root = tmp_path_factory.mktemp("three")
    first = build_model(root / "a", "demo")
    for name in ("b", "c"):
        shutil.copytree(first, root / name)
    return [first, root / "b", root / "c"]


@pytest.fixture(scope="session")
def minilm_model(live_hub: LiveHub) -> str:
    """The real all-MiniLM-L6-v2 weights served by the session's server as "minilm"."""
    from tests.model_builders import minilm_path

    live_hub.manage("register_model", str(minilm_path()), "--name", "minilm")
    return "minilm"


@pytest.fixture(scope="session")
def vision_model(live_hub: LiveHub, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random-weight PaliGemma built here, served as "tiny-vision"."""
    from tests.model_builders import build_tiny_paligemma

    folder = build_tiny_paligemma(tmp_path_factory.mktemp("vision") / "paligemma")
    live_hub.manage("register_model", str(folder), "--name", "tiny-vision")
    return "tiny-vision"
