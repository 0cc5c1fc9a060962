"""The Hugging Face hub, through huggingface_hub for metadata and our own range-resuming stream for files.

Why our own stream for the files instead of ``hf_hub_download``: a download must stop within a second when
someone pauses or cancels it, report progress as it goes, and survive any network error by resuming from
the bytes already on disk. ``hf_hub_download`` reads 10 MB before its progress callback runs (so a slow
link cannot be cancelled promptly), gives up on a connection reset (it resumes only on connect, timeout
and protocol errors), and keeps files in its own cache layout. The URLs, headers and token handling
still come from huggingface_hub (``hf_hub_url``, ``build_hf_headers``), so the requests are the ones
the hub expects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import httpx2
from django.conf import settings
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.utils import build_hf_headers

from catalog.constants import DOWNLOAD_CONNECT_TIMEOUT, DOWNLOAD_READ_TIMEOUT

LIBRARY_NAME = "mlxhub"
T = TypeVar("T")


class HubError(Exception):
    """A hub request failed; the message is safe to show a person."""

    status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HubNotFound(HubError):
    status = 404


class HubAccessDenied(HubError):
    status = 403


class HubUnavailable(HubError):
    """Worth retrying: the network failed, or the hub answered 5xx or 429."""

    status = 503


class DownloadStopped(Exception):
    """The progress callback asked the stream to stop (pause, cancel, or the job moved to another worker)."""


def endpoint() -> str:
    return str(settings.MLXHUB_HF_ENDPOINT).rstrip("/")


def api(token: str | None) -> HfApi:
    # token=False: never fall back to a token lying in ~/.cache/huggingface on the server.
    return HfApi(endpoint=endpoint(), token=token or False, library_name=LIBRARY_NAME)


def _status_error(status: int, what: str) -> HubError:
    if status in {401, 403}:
        return HubAccessDenied(f"The hub refused access to {what} (HTTP {status}); a token with access is needed.")
    if status == 404:
        return HubNotFound(f"{what} was not found on the hub (HTTP 404).")
    if status == 429 or status >= 500:
        return HubUnavailable(f"The hub answered HTTP {status} for {what}.")
    return HubError(f"The hub answered HTTP {status} for {what}.")


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """huggingface_hub's and httpx's exceptions, as HubError subclasses with a readable message."""
    try:
        yield
    except GatedRepoError as exc:
        raise HubAccessDenied(f"{what} is gated: accept its terms on the hub and store a token with access.") from exc
    except RepositoryNotFoundError as exc:
        raise HubNotFound(f"{what} was not found on the hub (or it is private and no token gives access).") from exc
    except RevisionNotFoundError as exc:
        raise HubNotFound(f"{what}: that revision was not found on the hub.") from exc
    except RemoteEntryNotFoundError as exc:
        raise HubNotFound(f"{what} was not found on the hub (HTTP 404).") from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 502
        raise _status_error(status, what) from exc
    except (httpx2.TransportError, httpx.TransportError) as exc:
        raise HubUnavailable(
            f"Network error with the hub at {endpoint()} for {what}: {exc or type(exc).__name__}"
        ) from exc


def call(what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with translated_errors(what):
        return function(*args, **kwargs)


def model_info(repo_id: str, *, revision: str | None, token: str | None) -> ModelInfo:
    return call(repo_id, api(token).model_info, repo_id, revision=revision, files_metadata=True)


def file_url(repo_id: str, path: str, *, revision: str) -> str:
    return hf_hub_url(repo_id, path, revision=revision, endpoint=endpoint())


def headers(token: str | None) -> dict[str, str]:
    built = build_hf_headers(token=token or False, library_name=LIBRARY_NAME)
    built["Accept-Encoding"] = "identity"  # byte offsets must be offsets in the file itself
    return built


def read_text(repo_id: str, path: str, *, revision: str, token: str | None, max_bytes: int = 256 * 1024) -> str | None:
    """A small text file (the card, config.json); None when the repository has none."""
    what = f"{repo_id}/{path}"
    try:
        with translated_errors(what), _client() as client:
            response = client.get(file_url(repo_id, path, revision=revision), headers=headers(token))
            if response.status_code != 200:
                raise _status_error(response.status_code, what)
            return response.content[:max_bytes].decode("utf-8", errors="replace")
    except HubNotFound:
        return None


def _client() -> httpx.Client:
    timeout = httpx.Timeout(DOWNLOAD_READ_TIMEOUT, connect=DOWNLOAD_CONNECT_TIMEOUT)
    return httpx.Client(timeout=timeout, follow_redirects=True)


def _range_start(content_range: str) -> int | None:
    """The first byte of a ``Content-Range: bytes START-END/TOTAL`` header, or None."""
    unit, _, spec = content_range.partition(" ")
    start = spec.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


class HubOversize(HubError):
    """The hub sent more bytes than the file's listed size: not retried, the file is not what was listed."""


def stream_file(
    url: str,
    part_path: Path,
    *,
    token: str | None,
    expected_size: int,
    on_bytes: Callable[[int], None],
    what: str,
) -> None:
    """Append the rest of ``url`` to ``part_path``, starting after the bytes already there.

    ``on_bytes(n)`` runs after every chunk written; it may raise DownloadStopped. Network failures
    raise HubUnavailable with the partial file kept, so the next attempt resumes where this one stopped.
    The file never grows past ``expected_size``: a longer answer (whole or ranged) is cut there and raises
    HubOversize, before the extra bytes reach the disk.
    """
    have = part_path.stat().st_size if part_path.exists() else 0
    if have > expected_size:
        part_path.unlink()  # not a prefix of this file: start over
        have = 0
    if have == expected_size:
        return
    request_headers = headers(token)
    if have:
        request_headers["Range"] = f"bytes={have}-"
    with translated_errors(what), _client() as client, client.stream("GET", url, headers=request_headers) as response:
        if response.status_code not in {200, 206}:
            raise _status_error(response.status_code, what)
        mode = "ab"
        if response.status_code == 206 and _range_start(response.headers.get("Content-Range", "")) != have:
            part_path.unlink(missing_ok=True)  # appending a range that starts elsewhere would corrupt the file
            raise HubUnavailable(f"{what}: the hub's range answer did not start at byte {have:,}; starting over.")
        if have and response.status_code == 200:
            mode = "wb"  # the server ignored the range: the body is the whole file
            on_bytes(-have)
            have = 0
        room = expected_size - have
        oversize = HubOversize(f"{what}: the hub sent more than the {expected_size:,} bytes it lists for this file.")
        announced = response.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > room:
            raise oversize
        with part_path.open(mode) as handle:
            # No chunk_size: httpx would hold bytes back until a whole chunk arrived, and on a slow link a
            # pause or cancel would wait for it. Reads come as the network delivers them (at most 64 KiB).
            for chunk in response.iter_bytes():
                if len(chunk) > room:
                    handle.write(chunk[:room])
                    on_bytes(room)
                    raise oversize
                handle.write(chunk)
                room -= len(chunk)
                on_bytes(len(chunk))


class Throttle:
    """True at most once per ``interval`` seconds (and on the first call)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = float("-inf")

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False
