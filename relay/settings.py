"""Every setting Relay has, read from the environment here and nowhere else.

Other modules read `django.conf.settings.RELAY_*`; tests override them with
`override_settings` or by setting the environment before Django starts.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VERSION = "0.1.0"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def _env_bool(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: use true or false")


def _env_int(name: str, default: int) -> int:
    value = _env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a whole number") from None


def _env_float(name: str, default: float) -> float:
    value = _env(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a number of seconds") from None


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in (_env(name, default) or "").split(",") if item.strip()]


def parse_retry_schedule(text: str) -> list[float]:
    """`"5,300,1800"` -> `[5.0, 300.0, 1800.0]`; raises ValueError on anything else."""
    delays = [float(part) for part in text.split(",") if part.strip()]
    if any(delay < 0 for delay in delays):
        raise ValueError("retry delays must not be negative")
    return delays


RELAY_ENV = _env("RELAY_ENV", "development")
if RELAY_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"RELAY_ENV={RELAY_ENV!r}: use development or production")
RELAY_DATA_DIR = Path(_env("RELAY_DATA_DIR") or Path.cwd() / ".relay").resolve()
RELAY_DATABASE_URL = _env("RELAY_DATABASE_URL")
RELAY_DATABASE_POOL_SIZE = _env_int("RELAY_DATABASE_POOL_SIZE", 10)
RELAY_REDIS_URL = _env("RELAY_REDIS_URL")
RELAY_MAX_BODY_BYTES = _env_int("RELAY_MAX_BODY_BYTES", 1024 * 1024)
RELAY_DELIVERY_TIMEOUT = _env_float("RELAY_DELIVERY_TIMEOUT", 15.0)
RELAY_DISPATCH_CONCURRENCY = _env_int("RELAY_DISPATCH_CONCURRENCY", 200)
RELAY_TARGET_ALLOWLIST = _env_list("RELAY_TARGET_ALLOWLIST")
RELAY_LEASE_SECONDS = _env_float("RELAY_LEASE_SECONDS", 30.0)
"""A claimed delivery's lease lasts its endpoint's timeout plus this margin; after that a
dead dispatcher's deliveries are claimable again."""
RELAY_SHUTDOWN_GRACE = _env_float("RELAY_SHUTDOWN_GRACE", 10.0)
"""On SIGTERM, how long deliveries in flight may take to finish before they are handed back."""
RELAY_MAX_CONNECTIONS = _env_int("RELAY_MAX_CONNECTIONS", 2000)
"""Connections one web worker serves at once; over it, new requests get 503."""
RELAY_HEADER_TIMEOUT = _env_float("RELAY_HEADER_TIMEOUT", 30.0)
"""A request's line and headers must arrive within this many seconds, else the connection
is closed (a client trickling bytes must not hold a connection for ever)."""
RELAY_PUBLIC_URL = (_env("RELAY_PUBLIC_URL") or "").rstrip("/") or None
RELAY_DEDUP_WINDOW = _env_float("RELAY_DEDUP_WINDOW", 24 * 3600.0)
RELAY_RETENTION_DAYS = _env_int("RELAY_RETENTION_DAYS", 30)
RELAY_ROLLUP_RETENTION_DAYS = _env_int("RELAY_ROLLUP_RETENTION_DAYS", 30)
"""How long the per-minute and per-hour aggregates behind stats and charts are kept."""
RELAY_LOG_FORMAT = _env("RELAY_LOG_FORMAT", "text")
RELAY_METRICS_PUBLIC = _env_bool("RELAY_METRICS_PUBLIC", False)
RELAY_METRICS_DIR = Path(_env("RELAY_METRICS_DIR") or Path(tempfile.gettempdir()) / (
    "relay-metrics-" + hashlib.sha256(str(RELAY_DATA_DIR).encode()).hexdigest()[:12]
)).resolve()
"""Where each process writes its metric files (one directory per deployment on a machine)."""
RELAY_REQUEST_LOG = _env_bool("RELAY_REQUEST_LOG", True)
RELAY_ATTEMPT_LOG = _env("RELAY_ATTEMPT_LOG", "failures")
"""`failures`: a log line for each attempt that did not succeed; `all`: for every attempt.
Every attempt is recorded in the database either way."""
if RELAY_ATTEMPT_LOG not in ("failures", "all"):
    raise ImproperlyConfigured(f"RELAY_ATTEMPT_LOG={RELAY_ATTEMPT_LOG!r}: use failures or all")
RELAY_TRUST_X_FORWARDED_PROTO = _env_bool("RELAY_TRUST_X_FORWARDED_PROTO", False)
RELAY_SOURCE_CACHE_SECONDS = _env_float("RELAY_SOURCE_CACHE_SECONDS", 2.0)
RELAY_SMTP_URL = _env("RELAY_SMTP_URL")
"""Where email endpoints send: smtp://user:pass@host:587?starttls=true or smtps://..."""
RELAY_SMTP_FROM = _env("RELAY_SMTP_FROM", "relay@localhost")
RELAY_ALERT_INTERVAL = _env_float("RELAY_ALERT_INTERVAL", 15.0)
"""Seconds between two evaluations of the alert rules by each dispatcher."""
try:
    RELAY_RETRY_SCHEDULE = parse_retry_schedule(
        _env("RELAY_RETRY_SCHEDULE") or "5,300,1800,7200,18000,36000,36000"
    )
except ValueError as exc:
    raise ImproperlyConfigured(
        f"RELAY_RETRY_SCHEDULE: {exc}; give comma-separated seconds such as 5,300,1800"
    ) from None

if RELAY_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("RELAY_LOG_FORMAT must be text or json")


def _secret_key() -> str:
    configured = _env("RELAY_SECRET_KEY")
    if configured:
        return configured
    if RELAY_ENV == "production":
        raise ImproperlyConfigured(
            "RELAY_SECRET_KEY is required when RELAY_ENV=production: set it to a long random "
            "string (python -c 'import secrets; print(secrets.token_urlsafe(48))') and keep it: "
            "it encrypts the stored secrets."
        )
    key_file = RELAY_DATA_DIR / "secret_key"
    if not key_file.exists():
        RELAY_DATA_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("RELAY_DEBUG", False)
ALLOWED_HOSTS = _env_list("RELAY_ALLOWED_HOSTS", "" if RELAY_ENV == "production" else "*")

if RELAY_ENV == "production":
    if DEBUG:
        raise ImproperlyConfigured(
            "RELAY_DEBUG must be off when RELAY_ENV=production: unset it or set RELAY_DEBUG=false "
            "(debug pages show settings and request data)."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "RELAY_ALLOWED_HOSTS is required when RELAY_ENV=production: set it to the host "
            "names Relay is reached by, comma-separated (relay.example.com)."
        )
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured(
            "RELAY_SECRET_KEY is too short for RELAY_ENV=production: use at least 32 random "
            "characters (python -c 'import secrets; print(secrets.token_urlsafe(48))')."
        )

RELAY_MODEL_MODULES = ["kernel.models", "hooks.models", "dispatch.models"]
"""The modules whose Tortoise models make up Relay's schema, all under the app label
`relay` (the label the migrations were recorded with: it must not change)."""
RELAY_MIGRATIONS_PACKAGE = "relay.dbmigrations"

INSTALLED_APPS = [
    "relay",
    "hooks",
    "dispatch",
    "live",
    "django.contrib.staticfiles",
    "ninja",
]

# Only natively async middleware: every sync one costs a thread hop per request.
MIDDLEWARE: list[str] = [
    "kernel.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "relay.urls"
ASGI_APPLICATION = "relay.asgi.application"
DATABASES: dict[str, Any] = {}
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Bodies are read by the ingest guard and the views as raw bytes, never as forms.
DATA_UPLOAD_MAX_MEMORY_SIZE = None
FILE_UPLOAD_MAX_MEMORY_SIZE = max(RELAY_MAX_BODY_BYTES, 2_621_440)

# Behind a reverse proxy, prefer uvicorn's `--proxy-headers --forwarded-allow-ips=<proxy>`:
# it takes the scheme and client address from X-Forwarded-* only when the proxy sent them.
# RELAY_TRUST_X_FORWARDED_PROTO makes Django trust X-Forwarded-Proto from anyone: turn it
# on only when every request reaches Relay through a proxy that sets that header itself.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if RELAY_TRUST_X_FORWARDED_PROTO else None
)
USE_X_FORWARDED_HOST = _env_bool("RELAY_USE_X_FORWARDED_HOST", False)
SESSION_COOKIE_SECURE = RELAY_ENV == "production"
CSRF_COOKIE_SECURE = RELAY_ENV == "production"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

if RELAY_REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": RELAY_REDIS_URL, "socket_timeout": None}]},
        }
    }
else:
    # Without Redis, live messages cross processes (dispatchers, web workers) through
    # PostgreSQL's LISTEN/NOTIFY (kernel.pglayer).
    CHANNEL_LAYERS = {"default": {"BACKEND": "kernel.pglayer.PostgresChannelLayer"}}

RELAY_LOG_LEVEL = (_env("RELAY_LOG_LEVEL", "INFO") or "INFO").upper()
if RELAY_LOG_LEVEL not in logging.getLevelNamesMapping():
    raise ImproperlyConfigured(
        f"RELAY_LOG_LEVEL={RELAY_LOG_LEVEL!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "kernel.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": RELAY_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": RELAY_LOG_LEVEL},
    "loggers": {
        # A succeeded attempt is an INFO line: kept only with RELAY_ATTEMPT_LOG=all.
        "relay.attempt": {"level": max(
            logging.getLevelNamesMapping()[RELAY_LOG_LEVEL],
            logging.INFO if RELAY_ATTEMPT_LOG == "all" else logging.WARNING)},
        "django": {"level": "WARNING"},
        "tortoise": {"level": "WARNING"},
        "asyncio": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # 4xx/5xx are already in relay.request's one line per request; Django's own lines
        # for 4xx would repeat them. Server errors (with their traceback) are kept.
        "django.request": {"level": "ERROR"},
        # uvicorn's access line would carry the query string (tokens): relay.request replaces it.
        "uvicorn": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "uvicorn.access": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
