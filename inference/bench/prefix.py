"""The prefix-cache check: a long prompt, then the same conversation plus a short turn, TTFT of both."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inference.bench.common import BenchError, Say, loadgen_module
from inference.bench.constants import PREFIX_EXTRA_TURN
from inference.bench.servers import Server


def prefix_check(
    *, servers: Mapping[str, Server], loadgen_dir: Path, words: int, timeout: float, say: Say
) -> dict[str, Any]:
    """Per server: prompt tokens, the second turn's cached tokens, and how much sooner its first token came."""
    make_prompt = loadgen_module(loadgen_dir).make_prompt
    checks: dict[str, Any] = {}
    for index, (name, server) in enumerate(servers.items()):
        first_turn = [{"role": "user", "content": make_prompt(words, 777, index)}]
        first = stream_chat(server, first_turn, max_tokens=8, timeout=timeout)
        second = stream_chat(server, first_turn + PREFIX_EXTRA_TURN, max_tokens=8, timeout=timeout)
        usage_first, usage_second = first["usage"] or {}, second["usage"] or {}
        checks[name] = {
            "prompt_tokens": usage_first.get("prompt_tokens"),
            "second_prompt_tokens": usage_second.get("prompt_tokens"),
            "second_cached_tokens": (usage_second.get("prompt_tokens_details") or {}).get("cached_tokens"),
            "ttft_first_s": round(first["ttft_s"], 3),
            "ttft_second_s": round(second["ttft_s"], 3),
            "speedup": round(first["ttft_s"] / second["ttft_s"], 2),
        }
        say(
            f"  prefix {name:<14} {checks[name]['prompt_tokens']} tokens: ttft {first['ttft_s']:.2f}s, then "
            f"{second['ttft_s']:.2f}s with {checks[name]['second_cached_tokens']} cached "
            f"({checks[name]['speedup']:.1f}x)"
        )
    return checks


def stream_chat(server: Server, messages: list[dict[str, str]], *, max_tokens: int, timeout: float) -> dict[str, Any]:
    """One streamed chat completion: time to first content chunk and the usage block."""
    body: dict[str, Any] = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if server.model:
        body["model"] = server.model
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if server.api_key:
        headers["Authorization"] = f"Bearer {server.api_key}"
    host, port = server.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    started = time.perf_counter()
    result: dict[str, Any] = {"ttft_s": None, "usage": None, "text": ""}
    try:
        connection.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise BenchError(f"{server.name} answered {response.status}: {response.read(300)!r}")
        while line := response.readline():
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            message = json.loads(payload)
            if message.get("error"):
                raise BenchError(f"{server.name} failed: {message['error']}")
            if message.get("usage"):
                result["usage"] = message["usage"]
            for choice in message.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if result["ttft_s"] is None:
                        result["ttft_s"] = time.perf_counter() - started
                    result["text"] += content
    finally:
        connection.close()
    if result["ttft_s"] is None:
        raise BenchError(f"{server.name} sent no content for the prefix-cache check")
    return result
