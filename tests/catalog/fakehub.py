"""A local HTTP server that speaks the part of the Hugging Face hub API that huggingface_hub 2.4 uses.

Endpoints (as called by ``HfApi`` and ``hf_hub_download``):
- ``GET /api/models`` (``list_models``): search, author, filter, pipeline_tag, sort, limit, expand,
  full, config; cursor pagination through a ``Link: <…>; rel="next"`` header.
- ``GET /api/models/{repo}[/revision/{rev}]`` (``model_info``), ``?blobs=true`` adds sizes and LFS info.
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (``list_repo_tree``).
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: ``ETag``, ``Content-Length``, ``X-Repo-Commit``,
  ``Accept-Ranges``; a ``Range`` request gets ``206`` and ``Content-Range``.
Errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo) as the hub does,
so huggingface_hub raises its own typed errors.

Faults, set by a test for one repository file: drop the connection half-way (once), answer 500 (once),
answer 404 (always), send more bytes than the file has (once, with or without a Content-Length), answer a
range from the wrong byte (once), and a bandwidth limit per repository (slow server).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import pytest

ORG = "mlx-community"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
SEND_CHUNK = 4096


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith((".safetensors", ".bin", ".npz"))


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, bytes]
    downloads: int = 0
    likes: int = 0
    days_old: int = 10
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = "text-generation"
    gated: bool = False
    private: bool = False
    branches: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        digest = hashlib.sha1(usedforsecurity=False)
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + self.files[name])
        self.sha = digest.hexdigest()
        self.branches.setdefault("main", self.sha)

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]

    @property
    def last_modified(self) -> str:
        return (EPOCH - timedelta(days=self.days_old)).isoformat().replace("+00:00", ".000Z")

    def config(self) -> dict[str, Any]:
        return json.loads(self.files["config.json"]) if "config.json" in self.files else {}

    def card_data(self) -> dict[str, Any] | None:
        readme = self.files.get("README.md", b"").decode()
        match = re.match(r"^---\n(.*?)\n---\n", readme, re.S)
        if not match:
            return None
        data: dict[str, Any] = {}
        for line in match.group(1).splitlines():
            key, _, value = line.partition(":")
            data[key.strip()] = value.strip()
        return data

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if is_lfs(path) else git_blob_sha(data)

    def file_entry(self, path: str) -> dict[str, Any]:
        data = self.files[path]
        entry: dict[str, Any] = {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": path}
        if is_lfs(path):
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def sibling(self, path: str, blobs: bool) -> dict[str, Any]:
        if not blobs:
            return {"rfilename": path}
        entry = self.file_entry(path)
        sibling: dict[str, Any] = {"rfilename": path, "size": entry["size"], "blobId": entry["oid"]}
        if "lfs" in entry:
            lfs = entry["lfs"]
            sibling["lfs"] = {"size": lfs["size"], "sha256": lfs["oid"], "pointerSize": lfs["pointerSize"]}
        return sibling

    def properties(self) -> dict[str, Any]:
        """Every property the hub can return for a model; the endpoints pick from these."""
        config = self.config()
        config_subset = {key: config[key] for key in ("architectures", "model_type") if key in config}
        if "quantization" in config:
            config_subset["quantization_config"] = config["quantization"]
        return {
            "_id": self.sha[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.author,
            "sha": self.sha,
            "lastModified": self.last_modified,
            "createdAt": self.last_modified,
            "private": self.private,
            "gated": "manual" if self.gated else False,
            "disabled": False,
            "downloads": self.downloads,
            "likes": self.likes,
            "library_name": "mlx",
            "tags": sorted({"mlx", "safetensors", *self.tags, *([self.pipeline_tag] if self.pipeline_tag else [])}),
            "pipeline_tag": self.pipeline_tag,
            "config": config_subset,
            "cardData": self.card_data(),
            "usedStorage": sum(len(data) for data in self.files.values()),
            "trendingScore": 0,
        }


@dataclass
class RecordedRequest:
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int = 0
    bytes_sent: int = 0
    aborted: bool = False


class FakeHub:
    def __init__(self, *, page_size: int = 1000) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.page_size = page_size
        self.token: str | None = None
        self.requests: list[RecordedRequest] = []
        self._drop_once: set[tuple[str, str]] = set()
        self._fail_once: dict[tuple[str, str], int] = {}
        self._missing: set[tuple[str, str]] = set()
        self._overrun_once: dict[tuple[str, str], tuple[int, bool]] = {}
        self._misaligned_once: set[tuple[str, str]] = set()
        self._bandwidth: dict[str, float] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo: FakeRepo) -> FakeRepo:
        with self._lock:
            self.repos[repo.repo_id] = repo
        return repo

    # Faults.
    def drop_once(self, repo_id: str, path: str) -> None:
        """The next GET of this file sends half its bytes, then the connection is reset."""
        with self._lock:
            self._drop_once.add((repo_id, path))

    def fail_once(self, repo_id: str, path: str, status: int = 500) -> None:
        with self._lock:
            self._fail_once[(repo_id, path)] = status

    def missing(self, repo_id: str, path: str) -> None:
        """The file stays listed but every resolve of it answers 404."""
        with self._lock:
            self._missing.add((repo_id, path))

    def overrun_once(self, repo_id: str, path: str, extra: int, *, announce: bool = True) -> None:
        """The next GET of this file sends ``extra`` bytes past its end (a whole or a ranged answer); with
        ``announce`` the Content-Length counts them, without it there is none and the connection closes."""
        with self._lock:
            self._overrun_once[(repo_id, path)] = (extra, announce)

    def misaligned_once(self, repo_id: str, path: str) -> None:
        """The next ranged GET of this file answers 206 from byte 0 (a broken cache), saying so in Content-Range."""
        with self._lock:
            self._misaligned_once.add((repo_id, path))

    def throttle(self, repo_id: str, bytes_per_second: float | None) -> None:
        with self._lock:
            if bytes_per_second is None:
                self._bandwidth.pop(repo_id, None)
            else:
                self._bandwidth[repo_id] = bytes_per_second

    def file_requests(self, repo_id: str, path: str, method: str = "GET") -> list[RecordedRequest]:
        suffix = f"/{repo_id}/resolve/"
        with self._lock:
            return [
                request
                for request in self.requests
                if request.method == method and request.path.startswith(suffix) and request.path.endswith(f"/{path}")
            ]

    def _take(self, faults: set[tuple[str, str]] | dict[tuple[str, str], int], key: tuple[str, str]) -> Any:
        with self._lock:
            if isinstance(faults, set):
                if key in faults:
                    faults.discard(key)
                    return True
                return None
            return faults.pop(key, None)


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        pass

    Handler.hub = hub
    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # Plumbing.
    def _dispatch(self, *, head: bool) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        path = unquote(url.path)
        self.record = RecordedRequest(self.command, path, self.headers.get("Range"), self.headers.get("Authorization"))
        with self.hub._lock:
            self.hub.requests.append(self.record)
        if path == "/api/models":
            self._list_models(query)
        elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path):
            self._tree(match.group(1), match.group(2), match.group(3) or "", query)
        elif match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            self._model_info(match.group(1), match.group(2) or "main", query)
        elif match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            self._resolve(match.group(1), match.group(2), match.group(3), head=head)
        else:
            self._error(404, "EntryNotFound", f"No route for {path}")

    def _send(
        self, status: int, body: bytes = b"", *, headers: dict[str, str] | None = None, head: bool = False
    ) -> None:
        self.record.status = status
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self.record.bytes_sent += len(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(
            status, json.dumps(payload).encode(), headers={"Content-Type": "application/json", **(headers or {})}
        )

    def _error(self, status: int, code: str, message: str, *, head: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
        self._send(status, body, headers=headers, head=head)

    def _authorized(self, repo: FakeRepo) -> bool:
        return self.hub.token is not None and self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _repo(self, repo_id: str, *, head: bool = False, for_files: bool = False) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized(repo)):
            self._error(401 if repo is not None else 404, "RepoNotFound", "Repository not found", head=head)
            return None
        if for_files and repo.gated and not self._authorized(repo):
            self._error(401, "GatedRepo", "Access to this model is restricted; log in with a token", head=head)
            return None
        return repo

    def _commit(self, repo: FakeRepo, revision: str, *, head: bool = False) -> str | None:
        if revision == repo.sha:
            return revision
        if revision in repo.branches:
            return repo.branches[revision]
        self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
        return None

    # Endpoints.
    def _list_models(self, query: dict[str, list[str]]) -> None:
        repos = [repo for repo in self.hub.repos.values() if not repo.private or self._authorized(repo)]
        if search := query.get("search", [""])[0].lower():
            repos = [repo for repo in repos if search in repo.repo_id.lower()]
        if author := query.get("author", [""])[0]:
            repos = [repo for repo in repos if repo.author == author]
        for tag in query.get("filter", []):
            repos = [repo for repo in repos if tag in repo.properties()["tags"]]
        if pipeline_tag := query.get("pipeline_tag", [""])[0]:
            repos = [repo for repo in repos if repo.pipeline_tag == pipeline_tag]
        sort = query.get("sort", [""])[0]
        sort_keys = {
            "downloads": lambda repo: repo.downloads,
            "likes": lambda repo: repo.likes,
            "lastModified": lambda repo: -repo.days_old,
            "createdAt": lambda repo: -repo.days_old,
        }
        if sort in sort_keys:
            repos.sort(key=sort_keys[sort], reverse=True)
        elif sort:
            self._error(400, "BadRequest", f"Invalid sort {sort}")
            return
        offset = int(query.get("cursor", ["0"])[0])
        page_size = min(self.hub.page_size, int(query.get("limit", [str(self.hub.page_size)])[0]))
        page = repos[offset : offset + page_size]
        expand = query.get("expand", [])
        default_fields = [
            "_id",
            "id",
            "modelId",
            "likes",
            "downloads",
            "trendingScore",
            "private",
            "tags",
            "pipeline_tag",
            "library_name",
            "createdAt",
        ]
        if expand:
            fields = ["_id", "id", *expand]
        else:
            fields = list(default_fields)
            if query.get("full", [""])[0].lower() == "true":
                fields += ["author", "sha", "lastModified", "gated", "disabled", "siblings"]
            if query.get("config", [""])[0].lower() == "true":
                fields.append("config")
            if query.get("cardData", [""])[0].lower() == "true":
                fields.append("cardData")
        items = []
        for repo in page:
            properties = repo.properties()
            properties["siblings"] = [repo.sibling(path, blobs=False) for path in sorted(repo.files)]
            items.append({name: properties[name] for name in fields if name in properties})
        headers = {}
        if offset + page_size < len(repos):
            next_query = [(key, value) for key, values in query.items() if key != "cursor" for value in values]
            next_url = f"{self.hub.url}/api/models?{urlencode([*next_query, ('cursor', offset + page_size)])}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._json(200, items, headers)

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id)
        if repo is None or self._commit(repo, revision) is None:
            return
        blobs = query.get("blobs", [""])[0].lower() == "true"
        properties = repo.properties()
        properties["sha"] = repo.branches.get(revision, revision)
        properties["siblings"] = [repo.sibling(path, blobs=blobs) for path in sorted(repo.files)]
        if expand := query.get("expand", []):
            properties = {name: properties[name] for name in ["_id", "id", *expand] if name in properties}
        self._json(200, properties)

    def _tree(self, repo_id: str, revision: str, folder: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id)
        if repo is None or self._commit(repo, unquote(revision)) is None:
            return
        recursive = query.get("recursive", [""])[0].lower() == "true"
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        entries: dict[str, dict[str, Any]] = {}
        for path in sorted(repo.files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest and not recursive:
                name = prefix + rest.split("/")[0]
                entries[name] = {"type": "directory", "oid": git_blob_sha(name.encode()), "size": 0, "path": name}
            else:
                entries[path] = repo.file_entry(path)
        if folder and not entries:
            self._error(404, "EntryNotFound", f"{folder} does not exist")
            return
        self._json(200, list(entries.values()))

    def _resolve(self, repo_id: str, revision: str, path: str, *, head: bool) -> None:
        repo = self._repo(repo_id, head=head, for_files=True)
        if repo is None:
            return
        commit = self._commit(repo, revision, head=head)
        if commit is None:
            return
        key = (repo_id, path)
        if path not in repo.files or key in self.hub._missing:
            self._error(404, "EntryNotFound", f"{path} does not exist on {revision}", head=head)
            return
        if not head and (status := self.hub._take(self.hub._fail_once, key)):
            self._error(status, "InternalError", "Injected server error")
            return
        data = repo.files[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{repo.etag(path)}"',
            "X-Repo-Commit": commit,
        }
        status, start = 200, 0
        if range_header := self.headers.get("Range"):
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip())
            if match is None or int(match.group(1)) >= len(data):
                self._send(416, headers={"Content-Range": f"bytes */{len(data)}"}, head=head)
                return
            start = 0 if not head and self.hub._take(self.hub._misaligned_once, key) else int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            data = data[start : end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{len(repo.files[path])}"
        overrun = None if head else self.hub._take(self.hub._overrun_once, key)
        if overrun is not None:
            extra, announce = overrun
            data += hashlib.shake_256(data).digest(extra)
            if not announce:
                headers["Connection"] = "close"
                self.close_connection = True
        self.record.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if overrun is None or overrun[1]:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if head:
            return
        drop_at = len(data) // 2 if self.hub._take(self.hub._drop_once, key) else None
        self._stream(repo_id, data, drop_at)

    def _stream(self, repo_id: str, data: bytes, drop_at: int | None) -> None:
        sent = 0
        try:
            while sent < len(data):
                if drop_at is not None and sent >= drop_at:
                    self._reset_connection()
                    return
                limit = len(data) if drop_at is None else drop_at
                chunk = data[sent : min(sent + SEND_CHUNK, limit)]
                self.wfile.write(chunk)
                sent += len(chunk)
                self.record.bytes_sent = sent
                bandwidth = self.hub._bandwidth.get(repo_id)
                if bandwidth:
                    self.wfile.flush()
                    time.sleep(len(chunk) / bandwidth)
        except (BrokenPipeError, ConnectionResetError):
            self.record.aborted = True
            self.close_connection = True

    def _reset_connection(self) -> None:
        self.wfile.flush()
        # SO_LINGER 0: close with a TCP reset, as a dropped network connection looks to the client.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.record.aborted = True
        self.close_connection = True
        self.connection.close()


# Repositories built from a real model folder, and small config-only ones for the other kinds.
README_TEMPLATE = """---
license: {license}
library_name: mlx
---
# {name}

{summary}

## Use with mlx

```bash
pip install mlx-lm
```
"""


def readme(name: str, summary: str, license: str = "apache-2.0") -> bytes:
    return README_TEMPLATE.format(name=name, summary=summary, license=license).encode()


def text_repo(model_dir: Path, repo_id: str, **options: Any) -> FakeRepo:
    files = {item.name: item.read_bytes() for item in sorted(model_dir.iterdir()) if item.is_file()}
    name = repo_id.split("/")[-1]
    files.setdefault("README.md", readme(name, f"{name} is a tiny llama model converted to MLX for tests."))
    return FakeRepo(repo_id, files, **options)


def config_repo(repo_id: str, config: dict[str, Any], *, weights_bytes: int = 2048, **options: Any) -> FakeRepo:
    """A repository with a config, a small weights file and a card: enough to register, not to load."""
    name = repo_id.split("/")[-1]
    weights = hashlib.shake_256(repo_id.encode()).digest(weights_bytes)
    files = {
        "config.json": json.dumps(config, indent=2).encode(),
        "model.safetensors": weights,
        "README.md": readme(name, f"{name}: a {config.get('model_type', 'model')} for tests."),
    }
    return FakeRepo(repo_id, files, **options)


def embedding_config() -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "max_position_embeddings": 512,
        "torch_dtype": "float32",
    }


def vision_config() -> dict[str, Any]:
    return {
        "architectures": ["PaliGemmaForConditionalGeneration"],
        "model_type": "paligemma",
        "text_config": {"model_type": "gemma", "max_position_embeddings": 8192},
        "vision_config": {"model_type": "siglip_vision_model", "image_size": 224},
        "quantization": {"group_size": 64, "bits": 8},
    }


def quantized(config: dict[str, Any], bits: int) -> dict[str, Any]:
    return {**config, "quantization": {"group_size": 64, "bits": bits}}


def catalog_repos(model_dir: Path) -> list[FakeRepo]:
    """The repositories the search tests know by heart."""
    tiny_config = json.loads((model_dir / "config.json").read_text())
    return [
        text_repo(model_dir, f"{ORG}/tiny-llama-bf16", downloads=500, likes=5, days_old=30),
        config_repo(
            f"{ORG}/tiny-llama-4bit", quantized(tiny_config, 4), downloads=900, likes=1, days_old=20, tags=["4-bit"]
        ),
        config_repo(
            f"{ORG}/tiny-llama-8bit", quantized(tiny_config, 8), downloads=100, likes=50, days_old=2, tags=["8-bit"]
        ),
        config_repo(
            f"{ORG}/mini-bert-embed",
            embedding_config(),
            downloads=300,
            likes=9,
            days_old=5,
            pipeline_tag="feature-extraction",
        ),
        config_repo(
            f"{ORG}/pali-vision-8bit",
            vision_config(),
            downloads=50,
            likes=3,
            days_old=1,
            pipeline_tag="image-text-to-text",
            tags=["8-bit"],
        ),
        config_repo(
            "someone-else/tiny-llama-4bit",
            quantized(tiny_config, 4),
            downloads=10_000,
            likes=500,
            days_old=3,
            tags=["4-bit"],
        ),
    ]


@contextmanager
def running_fake_hub(**options: Any) -> Iterator[FakeHub]:
    hub = FakeHub(**options)
    try:
        yield hub
    finally:
        hub.close()


@pytest.fixture(scope="session")
def fake_hub(tiny_model_dir: Path) -> Iterator[FakeHub]:
    """One fake hub for the session, holding the catalog repositories; tests add their own repositories."""
    with running_fake_hub(page_size=2) as hub:
        for repo in catalog_repos(tiny_model_dir):
            hub.add(repo)
        yield hub


def resolve_url(hub: FakeHub, repo_id: str, path: str, revision: str = "main") -> str:
    return f"{hub.url}/{repo_id}/resolve/{quote(revision, safe='')}/{path}"


@pytest.fixture
def hub_settings(settings: Any, fake_hub: FakeHub, tmp_path: Path) -> Any:
    """Settings for a test against the fake hub: its URL, a fresh models folder and HF cache, an empty cache."""
    from django.core.cache import cache

    settings.MLXHUB_HF_ENDPOINT = fake_hub.url
    settings.MLXHUB_MODELS_DIR = tmp_path / "models"
    settings.MLXHUB_HF_CACHE_DIR = tmp_path / "hf-cache"
    settings.MLXHUB_DOWNLOAD_MIN_FREE_BYTES = 0
    settings.MLXHUB_DOWNLOAD_FREE_BYTES = None  # the real disk; a test sets a figure to try the reservations
    settings.MLXHUB_HUB_CACHE_SECONDS = 60
    cache.clear()
    yield settings
    cache.clear()
