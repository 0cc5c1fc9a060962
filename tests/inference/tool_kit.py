"""Tools, bounded schemas and a schema check for the grammar tests, and the tool-template copies of the tiny
model (one of them the terse model, which ends its turns by itself)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.model_builders import build_terse_model, build_tool_model

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ADD: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {
                "x": {"type": "integer", "minimum": -1000, "maximum": 1000},
                "y": {"type": "integer", "minimum": -1000, "maximum": 1000},
            },
            "required": ["x", "y"],
            "additionalProperties": False,
        },
    },
}
TOOLS = (WEATHER, ADD)
PARAMETERS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
# Enums, booleans, bounded integers and short strings: a random model ends inside them.
BOUNDED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 10},
        "ok": {"type": "boolean"},
        "count": {"type": "integer", "minimum": 0, "maximum": 99},
        "kind": {"enum": ["cat", "dog", "bird"]},
        "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]$"},
    },
    "required": ["name", "ok", "count", "kind", "code"],
    "additionalProperties": False,
}
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """What ``value`` breaks of ``schema``, for the keywords the tests' schemas use."""
    if "enum" in schema:
        return [] if value in schema["enum"] else [f"{where}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        errors = [f"{where}: {name} missing" for name in schema.get("required", []) if name not in value]
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            errors += [f"{where}: extra {name}" for name in value if name not in properties]
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(item, properties[name], f"{where}.{name}")
        return errors
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: not a string"]
        errors = []
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            errors.append(f"{where}: length {len(value)}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        return errors
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{where}: not an integer"]
        inside = schema.get("minimum", value) <= value <= schema.get("maximum", value)
        return [] if inside else [f"{where}: {value} out of bounds"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: not a boolean"]
    raise AssertionError(f"schema_errors does not know {schema}")


@pytest.fixture(scope="session")
def tool_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a Hermes tool template and `<tool_call>`/`</tool_call>` as added tokens."""
    return build_tool_model(tiny_model_dir, tmp_path_factory.mktemp("tools") / "tiny-tools")


@pytest.fixture(scope="session")
def text_marker_tool_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same template with the markers left as plain text (several tokens each)."""
    return build_tool_model(tiny_model_dir, tmp_path_factory.mktemp("tools") / "tiny-tools-text", added_markers=False)


@pytest.fixture(scope="session")
def terse_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tool-template copy that ends a turn after about four tokens at temperature 1, with a 64k context."""
    return build_terse_model(tiny_model_dir, tmp_path_factory.mktemp("terse") / "tiny-terse")
