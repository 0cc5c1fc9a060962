"""``manage.py bench_constrained``: what enforcing a grammar costs inside the shared batch, the engine alone.

The measurement is ``inference.bench.constrained`` (its docstring says how the runs are arranged); the
command's shape (the model made when missing, the hub's kernel path) is ``inference.bench.engine_command``'s.
"""

from __future__ import annotations

from inference.bench.engine_command import EngineBenchCommand


class Command(EngineBenchCommand):
    help = (
        "Measure json_schema vs unconstrained decode speed at concurrency 1 and 8, a 4+4 mixed batch's "
        "unconstrained rows vs a plain batch of 8, and the time to the first tool-call event vs a plain "
        "first token, interleaved, on the small model with the hub's engine alone."
    )
    name = "bench_constrained"
    module = "inference.bench.constrained"
    default_rounds = 6
    round_time = "a few seconds each"
