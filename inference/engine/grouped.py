"""Admitting a request of several choices to a text runner: each prompt is prefilled once, then its
``n`` choices join the batch from that cache (through the prefix cache, which copies it for each).

With ``echo`` the prompt's pass also gives its tokens' log-probabilities; ``max_tokens`` 0 stops there
(a prompt scored, nothing generated).
"""

from __future__ import annotations

from typing import Any

from inference.engine.choices import ChoiceGroup, choice_request
from inference.engine.logprobs import TokenTexts, entries, score_prompt, token_pieces
from inference.engine.tokens import render_prompt
from inference.engine.types import DeltaEvent, EventSink, GenerationRequest, TokenLogprob, finish_event

# ``runner`` below is the TextRunner admitting the request (not imported: text.py imports this module).


def admit_group(runner: Any, request: GenerationRequest, sink: EventSink) -> None:
    group = ChoiceGroup(request, sink)
    try:
        for prompt in range(len(request.prompts) if request.prompts is not None else 1):
            _admit_prompt(runner, request, group, prompt)
    except BaseException:
        group.failed = True  # the engine refuses the request once: the choices admitted so far end silently
        for member in list(group.members):
            runner.cancel(member)
            runner.group_of.pop(member, None)
        raise
    runner.groups[request.request_id] = group
    group.start()
    if group.running == 0:  # every choice ended at admission (max_tokens 0)
        runner.groups.pop(request.request_id, None)
        runner.release()


def _admit_prompt(runner: Any, request: GenerationRequest, group: ChoiceGroup, prompt: int) -> None:
    from mlx_lm.models.cache import make_prompt_cache

    first = prompt * request.n
    base = choice_request(request, prompt=prompt, index=first, max_tokens=request.max_tokens or 0)
    param = "messages" if request.messages is not None else "prompt"
    tokens = render_prompt(runner.tokenizer, base)
    max_tokens = runner.prompt_budget(tokens, request.max_tokens, param=param)
    group.prompt_tokens += len(tokens)
    scores = request.echo and request.logprobs is not None
    shared = max_tokens > 0 and request.n > 1 and len(tokens) > 1
    rows = None
    if scores or shared:
        # One pass over the prompt but its last token (the batch computes that one's logits for each choice).
        cache, rest = (
            (None, tokens[:-1]) if scores else runner.prefix_cache.fetch_nearest_cache(runner.key, tokens[:-1])
        )
        cache = cache if cache is not None else make_prompt_cache(runner.model)
        group.cached_tokens += len(tokens) - 1 - len(rest)
        rows = score_prompt(runner.model, rest, step=runner.config.prefill_step, cache=cache, rows_wanted=scores)
        if max_tokens > 0:
            runner.prefix_cache.insert_cache(runner.key, tokens[:-1], cache)
    echoed: tuple[str, list[TokenLogprob] | None] | None = None
    if request.echo:
        pieces = token_pieces(runner.fresh_detokenizer(), tokens, final=True)
        scored: list[TokenLogprob] | None = None
        if scores and request.logprobs is not None:
            texts = runner.token_texts or TokenTexts(runner.tokenizer)
            runner.token_texts = texts
            assert rows is not None or len(tokens) == 1
            later = entries(texts, pieces[1:], tokens[1:], rows, request.logprobs) if rows is not None else []
            scored = [{"text": pieces[0], "logprob": None, "top": None}, *later]
        echoed = ("".join(pieces), scored)
    for index in range(first, first + request.n):
        member = group.member(index)
        if echoed is not None:
            text, scored = echoed
            delta: DeltaEvent = {"type": "delta", "text": text, "tokens": 0}
            if scored is not None:
                delta["logprobs"] = scored
            member(delta)
        if max_tokens == 0:
            group.end_choice(index, finish_event("length", prompt=len(tokens), completion=0))
            continue
        choice = choice_request(request, prompt=prompt, index=index, max_tokens=max_tokens)
        runner.group_of[choice.request_id] = group
        group.members.append(choice.request_id)
        group.running += 1
        runner.admit(choice, member)
