"""How a loaded model's weights are served on this CPU (the kernel path).

The engine calls ``prepare_model`` once per load, on its own thread, right after
the weights are read; what it returns is shown with the model's stats.
"""

from __future__ import annotations

from typing import Any


def prepare_model(model: Any, *, path: str) -> dict[str, Any]:
    """Leave the weights as the checkpoint stores them (the stock path)."""
    return {"kernel_path": "stock"}
