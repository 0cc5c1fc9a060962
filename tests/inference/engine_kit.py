"""Driving the engine directly (no Django, no HTTP): requests, their events, and waiting for it to settle."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from inference.engine.client import RequestStream
from inference.engine.engine import Engine
from inference.engine.local import InProcessEngineClient
from inference.engine.types import EngineRequest as Request
from inference.engine.types import GenerationRequest, ModelSpec, SamplingParams

PROMPT = "once upon a time there was a little boy who"
GREEDY = SamplingParams(temperature=0.0)
WAIT_SECONDS = 60


@dataclass
class Outcome:
    # Any, not EngineEvent: the tests read fields of whichever event type they expect.
    events: list[Any] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [event["type"] for event in self.events]

    @property
    def last(self) -> Any:
        return self.events[-1]

    @property
    def pieces(self) -> list[str]:
        return [event["text"] for event in self.events if event["type"] in ("delta", "finish") and event["text"]]

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def generation(spec: ModelSpec, **fields: Any) -> GenerationRequest:
    if not {"messages", "prompt", "prompt_tokens"} & fields.keys():
        fields["prompt"] = PROMPT
    fields.setdefault("max_tokens", 16)
    fields.setdefault("sampling", GREEDY)
    return GenerationRequest(request_id=uuid.uuid4().hex, model=spec, **fields)


async def collect(stream: RequestStream) -> Outcome:
    outcome = Outcome()
    async with asyncio.timeout(WAIT_SECONDS):
        async for event in stream:
            outcome.events.append(event)
    return outcome


async def run(engine: Engine, request: Request) -> Outcome:
    return await collect(InProcessEngineClient(engine=engine).open(request))


async def settled(engine: Engine, key: str) -> dict[str, Any]:
    """Stats once the engine has let go of every request for ``key``."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        stats = engine.stats()
        if stats["in_flight"].get(key, 0) == 0 and stats["models"].get(key, {}).get("active_requests", 0) == 0:
            return stats
        await asyncio.sleep(0.05)
    raise AssertionError(f"requests still in flight: {engine.stats()}")
