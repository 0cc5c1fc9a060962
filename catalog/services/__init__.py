"""Writes for the catalog. One module per concern; everything is importable from ``catalog.services``."""

from __future__ import annotations

from catalog.services.download_folders import download_model_dir, download_partial_dir, models_dir
from catalog.services.downloads import (
    DownloadRefused,
    DownloadStarted,
    DownloadStateError,
    download_cancel,
    download_execute,
    download_fail,
    download_pause,
    download_requeue,
    download_resume,
    download_start,
    downloads_recover,
)
from catalog.services.folders import (
    ModelFolderError,
    inspect_model_folder,
    local_model_register,
    profile_delete,
    profile_save,
    profile_upsert,
)
from catalog.services.local import (
    LocalModelDeleted,
    LocalModelInUse,
    ScanResult,
    local_model_delete,
    local_models_scan,
)
from catalog.services.tokens import hub_token_clear, hub_token_problem, hub_token_set

__all__ = [
    "DownloadRefused",
    "DownloadStarted",
    "DownloadStateError",
    "LocalModelDeleted",
    "LocalModelInUse",
    "ModelFolderError",
    "ScanResult",
    "download_cancel",
    "download_execute",
    "download_fail",
    "download_model_dir",
    "download_partial_dir",
    "download_pause",
    "download_requeue",
    "download_resume",
    "download_start",
    "downloads_recover",
    "hub_token_clear",
    "hub_token_problem",
    "hub_token_set",
    "inspect_model_folder",
    "local_model_delete",
    "local_model_register",
    "local_models_scan",
    "models_dir",
    "profile_delete",
    "profile_save",
    "profile_upsert",
]
