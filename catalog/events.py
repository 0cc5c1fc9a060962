"""Download progress on the channel layer, group ``download_<id>``.

With Redis every web process hears a worker's events; with the embedded in-memory layer they stay in the
worker's own process, so pages poll the Download row instead (see NOTES.md).
"""

from __future__ import annotations

import logging
from typing import Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from catalog.models import Download

logger = logging.getLogger(__name__)


class DownloadProgressEvent(TypedDict):
    type: Literal["download.progress"]
    download_id: int
    status: str
    bytes_done: int
    bytes_total: int
    speed_bps: float
    eta_seconds: int | None
    error: str


def download_group(download_id: int) -> str:
    return f"download_{download_id}"


def progress_event(download: Download) -> DownloadProgressEvent:
    return {
        "type": "download.progress",
        "download_id": download.pk,
        "status": download.status,
        "bytes_done": download.bytes_done,
        "bytes_total": download.bytes_total,
        "speed_bps": download.speed_bps,
        "eta_seconds": download.eta_seconds,
        "error": download.error,
    }


def push_progress(event: DownloadProgressEvent) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(download_group(event["download_id"]), dict(event))
    except Exception:  # a progress bar must never fail a download
        logger.warning("could not push progress for download %s", event["download_id"], exc_info=True)
