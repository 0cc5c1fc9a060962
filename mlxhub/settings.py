"""MLX Hub settings: one file, every value from the environment.

Unset ``MLXHUB_REDIS_URL`` gives the embedded default (SQLite, Celery on
kombu's filesystem transport, in-memory channel layer, local-memory cache);
setting it moves the broker, results, channel layer and cache to Redis.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import environ
from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _typed(name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be {expected}, got {raw!r}") from exc


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def _env_int(name: str, default: int) -> int:
    return _typed(name, default, int, "an integer")


def _env_float(name: str, default: float) -> float:
    return _typed(name, default, float, "a number")


def _env_bool(name: str, default: bool) -> bool:
    return _typed(name, default, _parse_bool, "one of 1/0, true/false, yes/no, on/off")


def _env_path(name: str, default: Path) -> Path:
    raw = env.str(name, default="")
    return Path(raw).expanduser().resolve() if raw else default


_SIZE_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}


def _env_bytes(name: str, default: str) -> int:
    """A size in bytes ("12GiB", "500M", "8000000000") or a share of the physical memory ("60%")."""
    raw = env.str(name, default=default).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(%|[kmgt]i?)?b?", raw, re.I)
    if match is None or float(match.group(1)) <= 0:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a size: use bytes, a unit (12GiB, 500M) or a percentage (60%)."
        )
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    if unit == "%":
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return int(physical * min(number, 100.0) / 100)
    return int(number * _SIZE_UNITS[unit])


def _env_port(name: str, default: int) -> int:
    port = _env_int(name, default)
    if not 0 < port < 65536:
        raise ImproperlyConfigured(f"{name} must be between 1 and 65535, got {port}")
    return port


MLXHUB_HOME = _env_path("MLXHUB_HOME", BASE_DIR / ".mlxhub")
MLXHUB_HOME.mkdir(parents=True, exist_ok=True)
MLXHUB_MODELS_DIR = _env_path("MLXHUB_MODELS_DIR", MLXHUB_HOME / "models")
MLXHUB_HOST = env.str("MLXHUB_HOST", default="127.0.0.1")
MLXHUB_PORT = _env_port("MLXHUB_PORT", 8000)
MLXHUB_REDIS_URL = env.str("MLXHUB_REDIS_URL", default="")
# Bootstrap values; random (and printed once) when unset.
MLXHUB_ADMIN_PASSWORD = env.str("MLXHUB_ADMIN_PASSWORD", default="")
MLXHUB_API_KEY = env.str("MLXHUB_API_KEY", default="")
# The demo model's size: "demo" for people, "tiny" for the test suite.
MLXHUB_DEMO_PRESET = env.str("MLXHUB_DEMO_PRESET", default="demo")
# Start the resident MLX engine in this process (web processes of the
# embedded default do; management commands and Celery workers do not).
MLXHUB_ENGINE_PRELOAD = _env_bool("MLXHUB_ENGINE_PRELOAD", True)
# Which engine client the web side talks to (a dotted path); the in-process engine is the only one today.
MLXHUB_ENGINE_CLIENT = env.str("MLXHUB_ENGINE_CLIENT", default="inference.engine.local.InProcessEngineClient")
# On SIGTERM/SIGINT the web process stops admitting and lets requests in flight finish for this long.
MLXHUB_DRAIN_SECONDS = _env_float("MLXHUB_DRAIN_SECONDS", 30.0)
# Test-only hooks (the test suite's live servers turn them on; never set in production): with them on,
# MLXHUB_TEST_ENGINE_FAULT names a file whose appearance kills the engine thread (the watchdog's test).
MLXHUB_TEST_HOOKS = _env_bool("MLXHUB_TEST_HOOKS", False)
MLXHUB_TEST_ENGINE_FAULT = env.str("MLXHUB_TEST_ENGINE_FAULT", default="") if MLXHUB_TEST_HOOKS else ""
MLXHUB_MAX_QUEUE = _env_int("MLXHUB_MAX_QUEUE", 64)
MLXHUB_MAX_BATCH = _env_int("MLXHUB_MAX_BATCH", 32)
MLXHUB_PREFILL_STEP = _env_int("MLXHUB_PREFILL_STEP", 256)
MLXHUB_PREFIX_CACHE_BYTES = _env_int("MLXHUB_PREFIX_CACHE_BYTES", 512 * 1024 * 1024)
MLXHUB_REQUEST_TIMEOUT = _env_float("MLXHUB_REQUEST_TIMEOUT", 600.0)
# Per-endpoint limits on a whole generation (seconds), e.g. "chat=300,completions=120".
MLXHUB_ENDPOINT_TIMEOUTS: dict[str, float] = {
    "chat": MLXHUB_REQUEST_TIMEOUT,
    "completions": MLXHUB_REQUEST_TIMEOUT,
    **env.dict("MLXHUB_ENDPOINT_TIMEOUTS", cast={"value": float}, default={}),
}
MLXHUB_HEARTBEAT_SECONDS = _env_float("MLXHUB_HEARTBEAT_SECONDS", 5.0)
MLXHUB_MAX_BODY_BYTES = _env_int("MLXHUB_MAX_BODY_BYTES", 8 * 1024 * 1024)
# Images in chat messages (vision models): the most bytes one may have, how long a URL fetch may take,
# and whether URLs may point at private, loopback or link-local addresses (off: a guard against SSRF).
MLXHUB_IMAGE_MAX_BYTES = _env_int("MLXHUB_IMAGE_MAX_BYTES", 20 * 1024 * 1024)
MLXHUB_IMAGE_FETCH_TIMEOUT = _env_float("MLXHUB_IMAGE_FETCH_TIMEOUT", 10.0)
MLXHUB_IMAGE_ALLOW_PRIVATE = _env_bool("MLXHUB_IMAGE_ALLOW_PRIVATE", False)
# Per request: at most this many images, and this many pixels in all of them together (decoding allocates
# width x height x 4 bytes per image, outside the engine's memory budget).
MLXHUB_MAX_IMAGES = _env_int("MLXHUB_MAX_IMAGES", 8)
MLXHUB_IMAGE_MAX_PIXELS = _env_int("MLXHUB_IMAGE_MAX_PIXELS", 40_000_000)
MLXHUB_IMAGE_MAX_TOTAL_PIXELS = _env_int("MLXHUB_IMAGE_MAX_TOTAL_PIXELS", 64_000_000)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else generated once into MLXHUB_HOME (0600)."""
    from_env = env.str("MLXHUB_SECRET_KEY", default="") or env.str("SECRET_KEY", default="")
    if from_env:
        return from_env
    key_file = MLXHUB_HOME / "secret_key"
    if not key_file.exists():
        # O_EXCL: two processes starting together must not write two keys.
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(64))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("MLXHUB_DEBUG", False)
# Behind TLS (a reverse proxy): secure cookies, HSTS, redirect to https.
MLXHUB_SECURE = _env_bool("MLXHUB_SECURE", False)

ALLOWED_HOSTS = env.list(
    "MLXHUB_ALLOWED_HOSTS",
    default=sorted({MLXHUB_HOST, "127.0.0.1", "localhost", "[::1]", "testserver"}),
)
CSRF_TRUSTED_ORIGINS = env.list("MLXHUB_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "django_htmx",
    "axes",
    "mlxhub.accounts",
    "mlxhub",
    "catalog",
    "inference",
    "routing",
    "audit",
]

MIDDLEWARE = [
    # First: whether X-Forwarded-Proto is believed (only from MLXHUB_TRUSTED_PROXIES) before anything asks.
    "mlxhub.proxies.TrustedProxyMiddleware",
    "mlxhub.middleware.RequestIdMiddleware",
    "mlxhub.middleware.OpenAIErrorShapeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last: turns a sign-in refused for repeated failures into the page that says so.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "mlxhub.urls"
ASGI_APPLICATION = "mlxhub.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "mlxhub.pages.navigation",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{MLXHUB_HOME / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the Celery worker writes; IMMEDIATE
    # transactions take the write lock up front instead of failing mid-way.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Sign-in throttling (django-axes): after MLXHUB_LOGIN_FAILURE_LIMIT failed sign-ins for one username from one
# address, that pair is refused, even with the right password, for MLXHUB_LOGIN_COOLOFF_MINUTES (a failure
# meanwhile starts the wait again). Per pair, not per address: people behind one NAT do not lock each other
# out, and nobody locks the admin out from everywhere. Both /login/ and /admin/login/ use Django's auth form.
AUTHENTICATION_BACKENDS = [
    "mlxhub.accounts.backends.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _env_int("MLXHUB_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=_env_float("MLXHUB_LOGIN_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "mlxhub.proxies.client_ip"
AXES_LOCKOUT_CALLABLE = "mlxhub.accounts.views.login_locked_out"
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins need no row of their own; failures are kept
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_TIME.total_seconds() <= 0:
    raise ImproperlyConfigured("MLXHUB_LOGIN_FAILURE_LIMIT and MLXHUB_LOGIN_COOLOFF_MINUTES must be positive")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The pages' own CSS and JavaScript, and the vendored CSS framework: nothing comes from a CDN.
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = MLXHUB_HOME / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files from the finders too, so a run without collectstatic works.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Every role signs in on the product's own page; the admin's login page stays for the admin.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"
DATA_UPLOAD_MAX_MEMORY_SIZE = MLXHUB_MAX_BODY_BYTES

if MLXHUB_REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "mlxhub.caching.SharedPoolRedisCache",  # one connection pool per process, not per request
            "LOCATION": MLXHUB_REDIS_URL,
            "KEY_PREFIX": "mlxhub",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [MLXHUB_REDIS_URL]},
        }
    }
    CELERY_BROKER_URL = MLXHUB_REDIS_URL
    CELERY_RESULT_BACKEND = MLXHUB_REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    BROKER_DIR = MLXHUB_HOME / "broker"
    for _sub in ("queue", "processed", "control"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_RESULT_BACKEND = None
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        # Remote control (celery inspect) files; kombu's default is ./control.
        "control_folder": str(BROKER_DIR / "control"),
        "polling_interval": 0.2,
    }

MLXHUB_AUDIT_RETENTION_DAYS = _env_int("MLXHUB_AUDIT_RETENTION_DAYS", 90)
# Keep /v1/responses answers (with their prompt text) for previous_response_id and GET; off by default.
MLXHUB_RESPONSES_STORE = _env_bool("MLXHUB_RESPONSES_STORE", False)
# /metrics answers without a key only when this is on (e.g. a scraper on a private network).
MLXHUB_METRICS_PUBLIC = _env_bool("MLXHUB_METRICS_PUBLIC", False)
# The API schemas and their pages: /v1/docs, /v1/openapi.json and /api/schema/ (off: all three answer 404).
MLXHUB_API_DOCS = _env_bool("MLXHUB_API_DOCS", True)
CELERY_BEAT_SCHEDULE = {
    "audit-purge": {"task": "audit.tasks.audit_log_purge_expired", "schedule": 3600.0},
    "responses-purge": {"task": "inference.tasks.stored_responses_purge_expired", "schedule": 3600.0},
}

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = not MLXHUB_REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "mlxhub.accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["mlxhub.accounts.permissions.HasRole"],
    "EXCEPTION_HANDLER": "mlxhub.problems.problem_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "mlxhub.pagination.Pagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MLX Hub control API",
    "DESCRIPTION": "Models, downloads, profiles, keys, teams, routing and audit; errors are RFC 7807 problems.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,  # write-only fields (a credential's secret) appear in requests only
}


def _env_networks(name: str, default: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for value in env.list(name, default=default):
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an IP address or a CIDR range") from exc
    return networks


# Proxies whose X-Forwarded-Proto and X-Forwarded-For are believed (addresses or CIDR ranges); by default a
# proxy on this machine. The scheme header names a request.META key that no HTTP header can produce
# (headers arrive as HTTP_*): mlxhub.proxies.TrustedProxyMiddleware sets it for trusted proxies' requests only.
MLXHUB_TRUSTED_PROXY_NETWORKS = _env_networks("MLXHUB_TRUSTED_PROXIES", ["127.0.0.1", "::1"])
SECURE_PROXY_SSL_HEADER = ("MLXHUB_TRUSTED_PROTO", "https")

if MLXHUB_SECURE:
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = _env_int("MLXHUB_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOG_LEVEL = env.str("MLXHUB_LOG_LEVEL", default="INFO")
# json: one object per line with the request id (for log shippers); plain: for a terminal.
MLXHUB_LOG_FORMAT = env.str("MLXHUB_LOG_FORMAT", default="json")
if MLXHUB_LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"MLXHUB_LOG_FORMAT must be json or plain, got {MLXHUB_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "mlxhub.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "mlxhub.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": MLXHUB_LOG_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # its lockouts are warnings; every start and sign-in is not news
    },
}

# Catalog
# The Hugging Face hub (or a mirror); HF_ENDPOINT is huggingface_hub's own variable.
MLXHUB_HF_ENDPOINT = env.str("MLXHUB_HF_ENDPOINT", default="") or env.str(
    "HF_ENDPOINT", default="https://huggingface.co"
)
# The Hugging Face cache scanned for models already on disk.
MLXHUB_HF_CACHE_DIR = _env_path(
    "MLXHUB_HF_CACHE_DIR",
    Path(env.str("HF_HUB_CACHE", default="") or Path(env.str("HF_HOME", default="~/.cache/huggingface")) / "hub")
    .expanduser()
    .resolve(),
)
# Fernet keys for secrets at rest, newest first; unset: one generated into MLXHUB_HOME/encryption_key.
MLXHUB_ENCRYPTION_KEYS = env.list("MLXHUB_ENCRYPTION_KEYS", default=[])
MLXHUB_HUB_CACHE_SECONDS = _env_int("MLXHUB_HUB_CACHE_SECONDS", 120)
# A download is refused unless this much disk stays free after it.
MLXHUB_DOWNLOAD_MIN_FREE_BYTES = _env_int("MLXHUB_DOWNLOAD_MIN_FREE_BYTES", 1024**3)
# The free disk downloads count on instead of measuring MLXHUB_MODELS_DIR's disk (unset: measure it): a fixed
# figure for tests, or a way to give downloads less than the disk has.
MLXHUB_DOWNLOAD_FREE_BYTES: int | None = _typed("MLXHUB_DOWNLOAD_FREE_BYTES", None, int, "an integer")
MLXHUB_DOWNLOAD_QUEUE = env.str("MLXHUB_DOWNLOAD_QUEUE", default="celery")
# A running download whose worker has not written for this long is taken over by another worker.
MLXHUB_DOWNLOAD_LEASE_SECONDS = _env_float("MLXHUB_DOWNLOAD_LEASE_SECONDS", 60.0)
# What the model pool may hold (weights, KV caches, the prefix cache): bytes ("12GiB", "8000000000")
# or a share of the physical memory ("60%"); unset: three quarters of the physical memory.
MLXHUB_MEMORY_BUDGET_BYTES = _env_bytes("MLXHUB_MEMORY_BUDGET", "75%")
# Idle models unload after this many seconds unless their profile sets its own TTL; 0: never.
MLXHUB_IDLE_TTL_SECONDS = _env_float("MLXHUB_IDLE_TTL_SECONDS", 0.0)
# A request for a model that does not fit waits this long for busy models to go idle, then gets 503.
MLXHUB_LOAD_WAIT_SECONDS = _env_float("MLXHUB_LOAD_WAIT_SECONDS", 30.0)
# huggingface_hub's HTTP client (httpx2) logs every request at INFO, as httpx does.
LOGGING["loggers"]["httpx2"] = {"level": "WARNING"}  # type: ignore[index]

# Routing
# Upstream calls: attempts before the first byte reaches the client, backoff bounds, read timeout.
MLXHUB_ROUTING_RETRY_ATTEMPTS = _env_int("MLXHUB_ROUTING_RETRY_ATTEMPTS", 3)
MLXHUB_ROUTING_RETRY_INITIAL_SECONDS = _env_float("MLXHUB_ROUTING_RETRY_INITIAL_SECONDS", 0.2)
MLXHUB_ROUTING_RETRY_MAX_SECONDS = _env_float("MLXHUB_ROUTING_RETRY_MAX_SECONDS", 2.0)
MLXHUB_ROUTING_READ_TIMEOUT = _env_float("MLXHUB_ROUTING_READ_TIMEOUT", 600.0)
# Circuit breaker per upstream: consecutive failures that open it, and the pause before one probe.
MLXHUB_ROUTING_BREAKER_FAILURES = _env_int("MLXHUB_ROUTING_BREAKER_FAILURES", 5)
MLXHUB_ROUTING_BREAKER_PAUSE_SECONDS = _env_float("MLXHUB_ROUTING_BREAKER_PAUSE_SECONDS", 30.0)

# Kernels
# How an engine serves float weights on a CPU (mlxhub/kernels.py): auto, float32 through an optimized
# BLAS when its launcher preloaded one, else stock; optimized, require that BLAS; stock, the checkpoint's
# own dtype on MLX's kernels. The launchers read the same variables to build an engine's environment.
from mlxhub.kernels import parse_cpu_kernels  # noqa: E402  (plain Python, shared with the launchers)

MLXHUB_CPU_KERNELS = _typed("MLXHUB_CPU_KERNELS", "auto", parse_cpu_kernels, "one of auto, optimized, stock")
# A BLAS library exporting cblas_sgemm to preload instead of the one found (MKL here, else a system OpenBLAS).
MLXHUB_BLAS_LIBRARY = env.str("MLXHUB_BLAS_LIBRARY", default="")
