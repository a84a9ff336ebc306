"""Settings for the ContextRT portal, read from the environment.

With no variables set the portal runs *embedded*: a SQLite file, Channels'
in-memory layer and an in-process Dramatiq broker, so ``make demo`` needs no
services. Production switches on with ``DATABASE_URL`` (PostgreSQL),
``REDIS_URL`` (channels-redis) and ``BROKER_URL`` (Dramatiq on Redis or
RabbitMQ).
"""
from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CONTEXTRT_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    # A per-installation key kept under var/ so sessions survive restarts of an
    # embedded install; production sets DJANGO_SECRET_KEY.
    key_file = VAR_DIR / "secret_key"
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        import secrets

        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()

ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS",
                                                   "http://127.0.0.1:8000,http://localhost:8000").split(",") if o]

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
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "portal.accounts",
    "portal.imaging",
    "portal.cases",
    "portal.jobs",
    "portal.reading",
    "portal.web",
    "evaluation.studies",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "portal" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: SQLite file by default, PostgreSQL through DATABASE_URL -------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("CONTEXTRT_SQLITE_PATH", str(VAR_DIR / "db.sqlite3")),
            # WAL lets the in-process worker write while page requests read; IMMEDIATE
            # transactions plus the busy timeout make concurrent writers wait, not fail.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # Tests run the in-process worker in threads beside the test's own queries. Django's
            # default in-memory test database is one shared-cache connection set whose table
            # locks fail at once ("database table is locked") instead of waiting, so tests use
            # a file, one per test process.
            "TEST": {
                "NAME": os.environ.get(
                    "CONTEXTRT_SQLITE_TEST_PATH",
                    str(Path(tempfile.gettempdir()) / f"contextrt-test-{os.getpid()}.sqlite3"),
                )
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels: in-memory by default, Redis through REDIS_URL ------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, the same as channels-redis'
            # blocking-pop timeout: idle consumers then die with TimeoutError. Read longer.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Dramatiq: in-process by default; redis:// or amqp:// through BROKER_URL --
BROKER_URL = os.environ.get("BROKER_URL", "")

# --- Storage of DICOM files, masks and results (addressed by UID) -------------
CONTEXTRT_STORAGE = Path(os.environ.get("CONTEXTRT_STORAGE", VAR_DIR / "storage"))
CONTEXTRT_UPLOAD_TMP = Path(os.environ.get("CONTEXTRT_UPLOAD_TMP", VAR_DIR / "upload-tmp"))
CONTEXTRT_MAX_UPLOAD_BYTES = int(os.environ.get("CONTEXTRT_MAX_UPLOAD_BYTES", 1024 * 1024 * 1024))
CONTEXTRT_MAX_UPLOAD_FILES = int(os.environ.get("CONTEXTRT_MAX_UPLOAD_FILES", 5000))
DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = CONTEXTRT_MAX_UPLOAD_FILES + 1  # one over, so the ingest reports its own limit clearly
FILE_UPLOAD_TEMP_DIR = str(CONTEXTRT_UPLOAD_TMP)
CONTEXTRT_UPLOAD_TMP.mkdir(parents=True, exist_ok=True)

# Model checkpoints the workers may load (directory of *.pt files).
CONTEXTRT_CHECKPOINT_DIR = Path(os.environ.get("CONTEXTRT_CHECKPOINT_DIR", BASE_DIR / "segmentation" / "checkpoints"))
# Optional local Hugging Face model directory for GPU workers (e.g. a 7B chat model).
CONTEXTRT_TEXT_MODEL_DIR = os.environ.get("CONTEXTRT_TEXT_MODEL_DIR", "")

# --- Auth ----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
SESSION_COOKIE_AGE = int(os.environ.get("CONTEXTRT_SESSION_SECONDS", 8 * 3600))
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CONTEXTRT_TOKEN_TTL = timedelta(hours=int(os.environ.get("CONTEXTRT_TOKEN_HOURS", 24)))
CONTEXTRT_LOGIN_MAX_FAILURES = int(os.environ.get("CONTEXTRT_LOGIN_MAX_FAILURES", 5))
CONTEXTRT_LOGIN_LOCKOUT_SECONDS = int(os.environ.get("CONTEXTRT_LOGIN_LOCKOUT_SECONDS", 900))

CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "portal.accounts.authentication.ExpiringTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ContextRT API",
    "DESCRIPTION": "Context-aware radiotherapy target contouring portal.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
# The Vite build of frontend/ lands in frontend/dist and is served as static files.
STATICFILES_DIRS = [p for p in [BASE_DIR / "frontend" / "dist"] if p.exists()]
WHITENOISE_MAX_AGE = 3600

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CONTEXTRT_LOG_LEVEL", "WARNING")},
}
