"""The benchmark's contenders, limits and the issues' targets."""

from __future__ import annotations

HUB = "hub"
MLX = "mlx_lm.server"
IN_PROCESS = "in-process"  # the hub's kernel path without the web tier: mlx-lm's stream_generate, one process
ENGINE_ALONE = "engine-alone"  # the hub's own engine and in-process client without HTTP, Django or SSE
SERVED_NAME = "bench"
READY_TIMEOUT_S = 300
STOP_GRACE_S = 15
# Seconds a fresh contender process may take beyond its requests' own timeouts (imports, the model's load).
PROCESS_START_BUDGET_S = 120
# Seconds a run of the resident engine-alone process may take beyond its requests' own timeouts.
RUN_BUDGET_SLACK_S = 60
# The issues' figures: hub / mlx_lm.server ratios to reach, and the prefix-cache speed-up.
# On the stock kernel path the hub must match mlx_lm.server; on the optimized path, beat it by these.
TARGET_TOKS_RATIO = 1.0
TARGET_OPTIMIZED_TOKS_RATIO = {1: 2.5, 8: 4.0}
TARGET_OPTIMIZED_TTFT_P50_RATIO = {1: 0.25}
TARGET_TTFT_P95_RATIO = 1.0
TARGET_TTFT_CONCURRENCY = (4, 8)
TARGET_PREFIX_SPEEDUP = 3.0
# The web tier's cost at concurrency 1: hub tok/s at least this share of in-process stream_generate's.
TARGET_WEB_SHARE = 0.9
# Environment a benchmark must not inherit: it always measures the embedded default.
HUB_ENV_DROPPED = (
    "MLXHUB_HOME",
    "MLXHUB_API_KEY",
    "MLXHUB_ADMIN_PASSWORD",
    "MLXHUB_REDIS_URL",
    "MLXHUB_MODELS_DIR",
    "MLXHUB_ENGINE_PRELOAD",
    "DATABASE_URL",
)
# The prefix-cache check's second turn, sent after its long first prompt.
PREFIX_EXTRA_TURN = [
    {"role": "assistant", "content": "I have read all of it."},
    {"role": "user", "content": "Now say it again in five words."},
]
