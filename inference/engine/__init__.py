"""The resident MLX engine: plain Python, no Django, one thread owns all MLX work."""
