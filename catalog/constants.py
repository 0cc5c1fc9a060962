from __future__ import annotations

DEMO_PROFILE_NAME = "demo"
DEMO_REPO_ID = "local/mlxhub-demo"
# Files a model folder in the Hugging Face layout must have to be served.
REQUIRED_MODEL_FILES = ("config.json",)
WEIGHT_SUFFIXES = (".safetensors",)
