"""``manage.py bench_eval``: what log-probabilities and ``n`` cost inside the shared batch, the engine alone.

The measurement is ``inference.bench.evaluation`` (its docstring says how the runs are arranged); the command's
shape (the model made when missing, the hub's kernel path) is ``inference.bench.engine_command``'s.
"""

from __future__ import annotations

from inference.bench.engine_command import EngineBenchCommand


class Command(EngineBenchCommand):
    help = (
        "Measure decode speed with logprobs (top 5) vs without at concurrency 1 and 8, and one request with "
        "n: 4 vs 4 separate requests on a 500-token prompt, interleaved, on the small model with the hub's "
        "engine alone."
    )
    name = "bench_eval"
    module = "inference.bench.evaluation"
    default_rounds = 3
    round_time = "about a minute each"
    extra_options = (
        ("--prompt-tokens", 500, "The n: 4 prompt, about."),
        ("--n-tokens", 64, "Tokens per choice for n: 4."),
    )
