"""Each protocol's thinking fields as the engine takes them: template kwargs, the thinking switch, a budget.

OpenAI chat: ``chat_template_kwargs`` (``enable_thinking`` among them), ``reasoning_effort`` (to the template
as ``reasoning_effort``; ``"none"`` turns thinking off) and vLLM's ``thinking_token_budget``. Responses:
``reasoning.effort`` the same way. Anthropic: ``thinking`` (``enabled`` with its ``budget_tokens``,
``adaptive``, ``disabled``; absent is disabled, as on Anthropic's API) and ``output_config.effort``. The
engine does the rest (``inference.engine.reasoning``). No MLX here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.errors import OpenAIError

# Names a client's chat_template_kwargs may not set: the server renders these parts of the prompt.
RESERVED_TEMPLATE_KWARGS = frozenset(
    {
        "conversation",
        "messages",
        "tools",
        "documents",
        "chat_template",
        "add_generation_prompt",
        "continue_final_message",
        "tokenize",
        "padding",
        "truncation",
        "max_length",
        "return_tensors",
        "return_dict",
        "return_assistant_tokens_mask",
        "tokenizer_kwargs",
    }
)


@dataclass
class ThinkingPlan:
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    thinking: bool | None = None
    budget: int | None = None


def checked_template_kwargs(kwargs: dict[str, Any] | None, *, param: str = "chat_template_kwargs") -> dict[str, Any]:
    checked = dict(kwargs or {})
    for name in checked:
        if name in RESERVED_TEMPLATE_KWARGS or not name.isidentifier():
            raise OpenAIError(
                f"{param}.{name} cannot be set: the server renders that part of the prompt.",
                param=f"{param}.{name}",
            )
    return checked


def _with_effort(plan: ThinkingPlan, effort: str | None) -> ThinkingPlan:
    if effort:
        plan.template_kwargs["reasoning_effort"] = effort
        if effort == "none":
            plan.thinking = False
    return plan


def chat_thinking(payload: Any) -> ThinkingPlan:
    kwargs = checked_template_kwargs(getattr(payload, "chat_template_kwargs", None))
    plan = ThinkingPlan(template_kwargs=kwargs, budget=getattr(payload, "thinking_token_budget", None))
    if "enable_thinking" in kwargs:
        plan.thinking = bool(kwargs.pop("enable_thinking"))
    return _with_effort(plan, getattr(payload, "reasoning_effort", None))


def responses_thinking(payload: Any) -> ThinkingPlan:
    reasoning = getattr(payload, "reasoning", None)
    return _with_effort(ThinkingPlan(), getattr(reasoning, "effort", None) if reasoning is not None else None)


def anthropic_thinking(payload: Any, *, max_tokens: int | None) -> ThinkingPlan:
    config = getattr(payload, "thinking", None)
    output = getattr(payload, "output_config", None)
    plan = _with_effort(ThinkingPlan(), getattr(output, "effort", None) if output is not None else None)
    kind = getattr(config, "type", None)
    if kind in ("enabled", "adaptive"):
        plan.thinking = True
        budget = getattr(config, "budget_tokens", None) if kind == "enabled" else None
        if kind == "enabled" and budget is None:
            raise OpenAIError("thinking.budget_tokens: Field required", param="thinking.budget_tokens")
        if budget is not None and max_tokens is not None and budget >= max_tokens:
            raise OpenAIError(
                "`max_tokens` must be greater than `thinking.budget_tokens`.", param="thinking.budget_tokens"
            )
        plan.budget = budget
    else:  # absent or disabled: no thinking, as on Anthropic's API
        plan.thinking = False
    return plan
