"""``manage.py bench``'s parts: MLX Hub against mlx_lm.server on the same local model, interleaved.

Both servers run as subprocesses on free loopback ports and share this machine,
so every figure is only meaningful as a ratio taken in the same run: for each
concurrency, the runs alternate between the contenders (ABBA across rounds) with
the same prompts, every prompt new to every prompt cache. The hub runs the CPU
kernel path its launcher gives it (``--kernels``, MLXHUB_CPU_KERNELS); mlx_lm.server
always runs stock. Two more contenders price the web tier, each in a fresh process on
the hub's kernel path: the hub's engine driven directly through its in-process client
(``engine_alone``, at every concurrency) and mlx-lm's ``stream_generate`` (``in_process``,
at concurrency 1).

No part imports Django: the command (``inference/management/commands/bench.py``) reads
the settings and hands the parts plain values.
"""
