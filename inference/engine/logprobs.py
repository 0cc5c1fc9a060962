"""Log-probabilities on the engine thread: of each generated token (from the row the batch already
computed for sampling) and of a prompt's tokens (one forward pass, for ``echo``).

The values are the log-softmax the sampler draws from: the model's logits after ``logit_bias``, the
penalties and a grammar's mask, before temperature and top-p / top-k / min-p. A token's ``text`` is what
a streaming detokenizer adds for it, so the texts of an answer's tokens concatenate to its text.
Nothing here runs for a request that does not ask.
"""

from __future__ import annotations

import threading
from typing import Any

import mlx.core as mx

from inference.engine.types import EngineEvent, EventSink, TokenLogprob

# A banned token's log-probability (-inf) as OpenAI writes it: JSON has no infinity.
FLOOR = -9999.0
# How many alternatives a token may list (OpenAI's limit).
MAX_TOP = 20


def clamp(value: float) -> float:
    return value if value > FLOOR else FLOOR


class TokenTexts:
    """Each token id's text alone (for the alternatives), decoded once per model."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._texts: dict[int, str] = {}

    def __call__(self, token: int) -> str:
        text = self._texts.get(token)
        if text is None:
            try:
                text = self.tokenizer.decode([token])
            except (IndexError, KeyError, OverflowError, TypeError, ValueError):
                text = ""  # an id past the tokenizer's vocabulary (a padded output layer)
            self._texts[token] = text
        return text


_streams = threading.local()


def side_stream() -> Any:
    """A stream of its own (MLX streams belong to the thread that makes them): the batch has already
    queued the next decode step on the default one, and work queued behind it would wait for that
    whole forward pass."""
    stream = getattr(_streams, "side", None)
    if stream is None:
        stream = _streams.side = mx.new_stream(mx.default_device())
    return stream


def entries(texts: TokenTexts, pieces: list[str], tokens: list[int], rows: mx.array, top: int) -> list[TokenLogprob]:
    """One entry per token: its text (``pieces``), its value in its row of ``rows``, the row's best."""
    top_ids: list[list[int]] = [[] for _ in tokens]
    top_values: list[list[float]] = [[] for _ in tokens]
    with mx.stream(side_stream()):
        rows = rows.astype(mx.float32)
        chosen = mx.take_along_axis(rows, mx.array(tokens)[:, None], axis=-1)[:, 0]
        if top > 0:
            ids = mx.argpartition(-rows, kth=top - 1, axis=-1)[:, :top]
            best = mx.take_along_axis(rows, ids, axis=-1)
            order = mx.argsort(-best, axis=-1)
            ids, best = mx.take_along_axis(ids, order, axis=-1), mx.take_along_axis(best, order, axis=-1)
            mx.eval(chosen, ids, best)
            top_ids, top_values = ids.tolist(), best.tolist()  # type: ignore[assignment]
        values: list[float] = chosen.tolist()  # type: ignore[assignment]
    return [
        {
            "text": piece,
            "logprob": clamp(value),
            "top": [(texts(token), clamp(best)) for token, best in zip(ids, bests, strict=True)],
        }
        for piece, value, ids, bests in zip(pieces, values, top_ids, top_values, strict=True)
    ]


def score_step(texts: TokenTexts, responses: list[Any], active: dict[int, Any]) -> dict[int, TokenLogprob]:
    """The entries of one decode step's rows whose request asks (``active[uid].logprobs`` is its track),
    from the rows the batch sampled from, computed together (one evaluation for the step); the texts are
    filled in by each row's track. Nothing is computed when no row asks."""
    rows = [
        (response.uid, response.token, response.logprobs, request.logprobs.top)
        for response in responses
        if (request := active.get(response.uid)) is not None and request.logprobs is not None
    ]
    if not rows:
        return {}
    top = min(max(wanted for *_, wanted in rows), MAX_TOP)
    scored = entries(
        texts, [""] * len(rows), [token for _, token, _, _ in rows], mx.stack([row for _, _, row, _ in rows]), top
    )
    return {
        uid: {**entry, "top": (entry["top"] or [])[:wanted]}
        for (uid, _, _, wanted), entry in zip(rows, scored, strict=True)
    }


def token_pieces(detokenizer: Any, tokens: list[int], *, final: bool) -> list[str]:
    """What ``detokenizer`` adds for each token (a multi-byte character lands on the token completing it)."""
    pieces = []
    for token in tokens:
        detokenizer.add_token(token)
        pieces.append(detokenizer.last_segment)
    if final:
        detokenizer.finalize()
        if pieces:
            pieces[-1] += detokenizer.last_segment
    return pieces


def score_prompt(model: Any, tokens: list[int], *, step: int, cache: list[Any], rows_wanted: bool) -> mx.array | None:
    """Run ``tokens`` through the model into ``cache`` (a fresh prompt cache), ``step`` tokens at a time;
    with ``rows_wanted``, the log-softmax after each token (row i predicts token i + 1)."""
    rows = []
    for start in range(0, len(tokens), step):
        logits = model(mx.array(tokens[start : start + step])[None], cache=cache)[0]
        if rows_wanted:
            logits = logits.astype(mx.float32)
            rows.append(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
            mx.eval(rows[-1])
        mx.eval([entry.state for entry in cache])
    return mx.concatenate(rows, axis=0) if rows_wanted and rows else None


class LogprobTrack:
    """A request's generated tokens' entries, sent with the text they make up.

    It wraps the request's sink: each delta and the finish carry the entries of their text. Text held
    back (a stop string that may still match) holds its entries; a stop string cuts the last one; the
    tokens of a tool call are not listed (OpenAI lists content tokens only).
    """

    def __init__(self, sink: EventSink, *, texts: TokenTexts, detokenizer: Any, top: int) -> None:
        self.sink = sink
        self.texts = texts
        self.detokenizer = detokenizer
        self.top = min(top, MAX_TOP)
        self.pending: list[TokenLogprob] = []
        self.sent = 0  # characters of text sent
        self.covered = 0  # characters of text the sent entries make up

    def add(self, token: int, scored: TokenLogprob, *, end_of_text: bool) -> None:
        """A sampled token, with its entry from ``score_step``."""
        piece = "" if end_of_text else token_pieces(self.detokenizer, [token], final=False)[0]
        self.pending.append({**scored, "text": piece})

    def forced(self, tokens: list[int]) -> None:
        """Tokens a grammar forced: certain, so log-probability 0."""
        for token, piece in zip(tokens, token_pieces(self.detokenizer, tokens, final=False), strict=True):
            self.pending.append({"text": piece, "logprob": 0.0, "top": [(self.texts(token), 0.0)][: self.top]})

    def _take(self, *, final: bool) -> list[TokenLogprob]:
        taken = []
        while self.pending and self.covered + len(self.pending[0]["text"]) <= self.sent:
            entry = self.pending.pop(0)
            self.covered += len(entry["text"])
            taken.append(entry)
        if final:
            if self.pending and self.covered < self.sent:  # a stop string ended the text inside this token
                entry = self.pending.pop(0)
                taken.append({**entry, "text": entry["text"][: self.sent - self.covered]})
                self.covered = self.sent
            if all(not entry["text"] for entry in self.pending):  # the end-of-text token
                taken += self.pending
            self.pending = []
        return taken

    def __call__(self, event: EngineEvent) -> None:
        if event["type"] == "delta":
            self.sent += len(event["text"])
            event = {**event, "logprobs": self._take(final=False)}
        elif event["type"] == "finish":
            self.detokenizer.finalize()
            if self.pending:
                self.pending[-1] = {
                    **self.pending[-1],
                    "text": self.pending[-1]["text"] + self.detokenizer.last_segment,
                }
            self.sent += len(event["text"])
            event = {**event, "logprobs": self._take(final=True)}
        elif event["type"] in ("tool_call", "tool_arguments", "reasoning"):  # content tokens only are listed
            self.pending = [entry for entry in self.pending if not entry["text"]]
            self.covered = self.sent
        self.sink(event)
