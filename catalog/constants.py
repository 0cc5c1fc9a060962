from __future__ import annotations

DEMO_PROFILE_NAME = "demo"
DEMO_REPO_ID = "local/mlxhub-demo"
# Files a model folder in the Hugging Face layout must have to be served.
REQUIRED_MODEL_FILES = ("config.json",)
WEIGHT_SUFFIXES = (".safetensors",)

# Hub search.
DEFAULT_AUTHOR = "mlx-community"
SEARCH_PAGE_SIZE = 20
SEARCH_MAX_PAGE_SIZE = 100
# Filters the hub cannot apply (quantization, architecture) are applied to at most this many results.
SEARCH_MAX_CANDIDATES = 500
SEARCH_SORTS = {"downloads": "downloads", "likes": "likes", "recency": "last_modified"}
# The pipeline tags the hub gives each kind of model.
KIND_PIPELINE_TAGS = {
    "text": "text-generation",
    "vision": "image-text-to-text",
    "embedding": "feature-extraction",
}
SEARCH_EXPAND = [
    "author",
    "config",
    "downloads",
    "likes",
    "lastModified",
    "createdAt",
    "tags",
    "pipeline_tag",
    "library_name",
    "gated",
    "private",
    "usedStorage",
    "cardData",
]
CARD_SUMMARY_CHARS = 600
# Weights take their file size in memory, plus room for the KV cache and activations.
MEMORY_OVERHEAD_FACTOR = 1.2
MEMORY_BUDGET_FRACTION = 0.75

# Downloads.
# Progress rows are written (and the pause/cancel flag read) at most this often.
DOWNLOAD_PROGRESS_INTERVAL = 0.25
# An ETA beyond this is shown as this (a stalled link would overflow the column).
MAX_ETA_SECONDS = 30 * 24 * 3600
DOWNLOAD_CONNECT_TIMEOUT = 10.0
# A read that waits longer than this for the next bytes counts as a network error (and is retried).
DOWNLOAD_READ_TIMEOUT = 30.0
DOWNLOAD_MAX_RETRIES = 8
DOWNLOAD_RETRY_BACKOFF = 2
DOWNLOAD_RETRY_BACKOFF_MAX = 120
# How long a new task waits for the previous one to release a download's folder.
DOWNLOAD_LOCK_WAIT = 30.0
# Folders under MLXHUB_MODELS_DIR that hold no models.
PARTIAL_DIR_NAME = ".partial"
TRASH_DIR_NAME = ".trash"
PART_SUFFIX = ".part"
# What a download fetches from a repository: what MLX loaders read, not other formats' weights. Never code:
# `*.py` files (a repository's "remote code") are not fetched, so nothing downloaded can ever be imported.
DOWNLOAD_FILE_PATTERNS = (
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "*.tiktoken",
    "*.jinja",
    "*.md",
    "*.jsonl",
)
# Where a download notes that its folder was moved into place, so a worker that dies before the job is
# marked done lets the next one finish the job without fetching again (beside the partial folder).
INSTALLED_SUFFIX = ".installed"
# Serialises the free-disk check with the creation of the job it admits, across processes.
DISK_LOCK_NAME = ".disk.lock"
# What a member is told who tries to change someone else's download (API and pages).
DOWNLOAD_NOT_YOURS = "Members pause, resume or cancel only the downloads they asked for; an admin can change any."
