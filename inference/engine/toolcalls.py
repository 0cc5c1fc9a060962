"""Tool calls read from a request's output while it decodes: content text apart from call spans, and
each call as events, id and name first, then its arguments in pieces as the model writes them.

The engine emits the same events whether the client streams or not (the web side renders both from
them), so a streamed answer and a whole one cannot differ. Pieces:

- mlx-lm's ``TextStateMachine`` splits the decoded text at the format's markers (it strips them and holds
  back text that may still become one);
- each call span goes through a fresh mlx-vlm ``ToolCallDeltaState`` (OpenAI-shaped deltas from mlx-lm's
  parser modules: incremental for json_tools, qwen3_coder and gemma4, and a final check by the parser at
  the end marker); for the other parsers the span is parsed whole at its end. mlx-vlm's class is an
  internal of the pinned mlx-vlm 0.7.10: this module is the only one that touches it;
- a span that yields no call (free text that looked like a marker, a body the parser refuses, a span
  cut short before its name) comes back as content text, markers included: nothing is lost. A call
  whose id and name were already sent stays a call, with the arguments it got.
- ids are ours (``call_`` + 24 hex digits), never the model's or mlx-vlm's uuid4.

Under a tool-call grammar (``forced``) everything outside the spans is the grammar's separators, not
content, and the name can be read ahead of the decoded text from the bytes the grammar forces next
(``lookahead``), so the first tool_call event comes as soon as the name is determined.
"""

from __future__ import annotations

import importlib
import json
import re
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from mlx_vlm.tools.streaming import ToolCallDeltaState

from inference.engine.grammars import GENERIC_END, GENERIC_START
from inference.engine.types import ToolArgumentsEvent, ToolCallEvent

TextStateMachine = importlib.import_module("mlx_lm.generate").TextStateMachine
JSON_TOOLS = importlib.import_module("mlx_lm.tool_parsers.json_tools")
# A Hermes call body whose name is complete (its closing quote and the comma after it are in).
HERMES_HEAD = re.compile(r'^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,')
# What parsers raise on a body that is not a call of theirs.
PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, SyntaxError)

Piece = str | ToolCallEvent | ToolArgumentsEvent


@dataclass(frozen=True)
class ToolFormat:
    """How a model writes calls: its mlx-lm parser module and the markers around each call."""

    parser: ModuleType
    start: str
    end: str  # "" for formats whose call runs to the end of the output (mistral)


GENERIC_FORMAT = ToolFormat(parser=JSON_TOOLS, start=GENERIC_START, end=GENERIC_END)


def native_format(tokenizer: Any) -> ToolFormat | None:
    """The format the model's chat template teaches, when mlx-lm knows its parser; else None."""
    if not getattr(tokenizer, "has_tool_calling", False) or tokenizer.tool_parser is None:
        return None
    parser = importlib.import_module(tokenizer.tool_parser.__module__)
    return ToolFormat(parser=parser, start=tokenizer.tool_call_start, end=tokenizer.tool_call_end or "")


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class _Span:
    """One call span: its text so far, its delta reader, and the calls announced from it (by local index)."""

    stream: ToolCallDeltaState
    base: int  # the answer-wide index of its first call
    text: str = ""
    names: dict[int, str] = field(default_factory=dict)
    broken: bool = False  # the delta reader refused what followed what it had sent: stop feeding it


class ToolCallTracker:
    def __init__(self, *, format: ToolFormat, tools: list[dict[str, Any]], forced: bool) -> None:
        self.format = format
        self.tools = tools
        self.forced = forced
        transitions = {"normal": [(format.start, "tool")], "tool": [(format.end, "normal")] if format.end else []}
        self._state = TextStateMachine(transitions).make_state("normal")
        self._span: _Span | None = None
        self._calls = 0  # calls announced in closed spans

    @property
    def called(self) -> bool:
        return self._calls > 0 or bool(self._span and self._span.names)

    @property
    def completed_calls(self) -> int:
        """Calls whose span has closed (their arguments are all out)."""
        return self._calls

    @property
    def wants_lookahead(self) -> bool:
        """Inside a forced call whose name is not known yet: the grammar's forced bytes may tell it."""
        return self.forced and self._span is not None and not self._span.names

    def feed(self, text: str, *, lookahead: str = "") -> list[Piece]:
        """Decoded text in; content text and tool events out, in order."""
        self._state, segments = TextStateMachine.split(self._state, text)
        out: list[Piece] = []
        for position, (state, chunk) in enumerate(segments):
            if position:  # a marker lies between two segments
                if state == "tool":
                    self._open(out)
                else:
                    self._close(out, ended=True)
            if state == "tool":
                self._inside(chunk, out)
            elif chunk and not self.forced:
                out.append(chunk)
        if lookahead and self.wants_lookahead:
            self._peek(lookahead, out)
        return out

    def finish(self) -> list[Piece]:
        """The output ended: what was held back, and the call span still open (cut short, or a format
        without an end marker)."""
        self._state, held, current = TextStateMachine.flush(self._state)
        out: list[Piece] = []
        if current == "tool" and self._span is not None:
            self._inside(held, out)
            self._close(out, ended=False)
        elif held and not self.forced:
            out.append(held)
        return out

    # ---- spans ----------------------------------------------------------------------------------

    def _open(self, out: list[Piece]) -> None:
        self._span = _Span(stream=ToolCallDeltaState(self.format.parser, self.tools), base=self._calls)
        self._read(self._span, self.format.start, out)

    def _inside(self, chunk: str, out: list[Piece]) -> None:
        if self._span is None or not chunk:
            return
        self._span.text += chunk
        self._read(self._span, chunk, out)

    def _read(self, span: _Span, text: str, out: list[Piece]) -> None:
        if span.broken:
            return
        try:
            deltas = span.stream.feed(text)
        except PARSE_ERRORS:
            span.broken = True
            return
        for delta in deltas:
            local = int(delta["index"])
            function = delta.get("function") or {}
            if local not in span.names:
                self._announce(span, local, str(function.get("name") or ""), out)
            if function.get("arguments"):
                out.append(self._arguments(span.base + local, function["arguments"]))

    def _close(self, out: list[Piece], *, ended: bool) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        if ended:
            self._read(span, self.format.end, out)
        if not span.names:
            calls = self._parse_whole(span.text)
            if calls:
                for local, (name, arguments) in enumerate(calls):
                    self._announce(span, local, name, out)
                    out.append(self._arguments(span.base + local, arguments))
            else:
                out.append(self.format.start + span.text + (self.format.end if ended else ""))
        self._calls = span.base + len(span.names)

    def _parse_whole(self, text: str) -> list[tuple[str, str]]:
        """(name, arguments JSON) of each call in a span the delta reader did not stream; [] if none."""
        try:
            parsed = self.format.parser.parse_tool_call(text.strip(), self.tools)
        except PARSE_ERRORS:
            return []
        calls = []
        for call in parsed if isinstance(parsed, list) else [parsed]:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"].strip():
                return []
            arguments = call.get("arguments", {})
            calls.append((call["name"].strip(), arguments if isinstance(arguments, str) else json.dumps(arguments)))
        return calls

    def _peek(self, lookahead: str, out: list[Piece]) -> None:
        assert self._span is not None
        head = HERMES_HEAD.match(self._span.text + lookahead)
        if head:
            self._announce(self._span, 0, json.loads(f'"{head.group(1)}"'), out)

    def _announce(self, span: _Span, local: int, name: str, out: list[Piece]) -> None:
        span.names[local] = name
        out.append({"type": "tool_call", "index": span.base + local, "id": new_call_id(), "name": name})

    @staticmethod
    def _arguments(index: int, arguments: str) -> ToolArgumentsEvent:
        return {"type": "tool_arguments", "index": index, "arguments": arguments}
