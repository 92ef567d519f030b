"""Gatekeeper settings, read from the environment (see README, "Configuration")."""

from __future__ import annotations

import warnings
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from gatekeeper.env import (
    database_from_url,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
    load_dotenv,
    missing_secrets,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# The .env the first `make run` wrote (generated secrets, the database and broker it used), so
# manage.py, celery and gunicorn started later by hand find the same ones. Read before any
# setting; a variable already in the environment wins. Skipped under pytest and with
# GATEKEEPER_DOTENV=0 (gatekeeper/env.py, dotenv_enabled).
load_dotenv(BASE_DIR)

DEBUG = env_bool("DEBUG", False)
if missing := missing_secrets(DEBUG):
    raise ImproperlyConfigured(
        f"{' and '.join(missing)} not set while DEBUG is off. Set {'them' if len(missing) > 1 else 'it'} "
        "in the environment (`make run` writes generated ones to .env; docker compose refuses to "
        "start without them), or DEBUG=1 on a development machine."
    )
# The development key lets DEBUG runs and the tests start; the system check gatekeeper.E001
# refuses it whenever DEBUG is off.
SECRET_KEY_FROM_ENV = bool(env_str("SECRET_KEY"))
SECRET_KEY = env_str("SECRET_KEY") or "gatekeeper-insecure-development-key-0123456789abcdef"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's files from our own static files (WhiteNoise), not a CDN.
    "drf_spectacular_sidecar",
    # Throttles the admin's login (django-axes: a maintained lockout, rather than our own).
    "axes",
    "releases",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files under gunicorn, so a container needs no separate web server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: it answers a locked-out login.
    "axes.middleware.AxesMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# A username and address pair is locked out after this many failed admin logins, for an hour;
# a superuser lifts it early with `manage.py axes_reset_username NAME`.
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURES", 5)
AXES_COOLOFF_TIME = 1  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

ROOT_URLCONF = "gatekeeper.urls"
WSGI_APPLICATION = "gatekeeper.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# SQLite only for `make run` on a bare machine; tests and production use PostgreSQL.
DATABASES = {"default": database_from_url(env_str("DATABASE_URL", "sqlite:///db.sqlite3"), BASE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STATIC_ROOT = BASE_DIR / "staticfiles"
# Before `collectstatic` (development, tests) there is nothing for WhiteNoise to serve, and
# with DEBUG on Django's staticfiles app serves the admin's files itself.
warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Webhook bodies above this are refused with 413 before they are parsed.
WEBHOOK_MAX_BODY = env_int("WEBHOOK_MAX_BODY", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = WEBHOOK_MAX_BODY
# A Vercel delivery whose createdAt is older than this (seconds) is refused as a replay: Vercel's
# retries end well within it, and it lets `prune_deliveries` drop rows older than it safely.
WEBHOOK_REPLAY_WINDOW = env_int("WEBHOOK_REPLAY_WINDOW", 24 * 3600)
# A signed webhook that arrives while PostgreSQL is unreachable is kept in this directory and
# answered 503; the worker replays it every SPOOL_REPLAY_INTERVAL seconds (releases/inbound/spool.py).
# Web and worker must see the same directory (docker-compose.yml mounts one volume in both).
SPOOL_DIR = BASE_DIR / env_str("SPOOL_DIR", "var/spool")  # an absolute path replaces BASE_DIR
SPOOL_REPLAY_INTERVAL = env_float("SPOOL_REPLAY_INTERVAL", 10.0)
# A deployment.promoted this much older (seconds) than what is recorded as live is late or
# replayed, and does not move "live"; within it, clocks may disagree, and it is taken as live.
LIVE_ORDER_MARGIN = 60

# --- Security (production: `manage.py check --deploy` is clean with DEBUG off) -------------
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY")
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
# The login lockout's client address: behind the proxy the one it forwards, else the peer's (a
# client-sent X-Forwarded-For would let anyone pick a fresh address per guess).
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if BEHIND_TLS_PROXY else ["REMOTE_ADDR"]
)
# Behind TLS, plain HTTP is redirected and browsers are told to stay on HTTPS for a year (HSTS,
# with subdomains: those of Gatekeeper's own host). Each can be turned off; without TLS they stay
# off, so `make run`, the tests and the benchmarks keep speaking plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", BEHIND_TLS_PROXY)
# Probes (/healthz) and Prometheus' scrapes (/metrics) inside the network speak plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^metrics/?$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if BEHIND_TLS_PROXY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", BEHIND_TLS_PROXY)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", BEHIND_TLS_PROXY)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- REST API -------------------------------------------------------------------------------
# The cache /api/slo/ keeps measurements and throttle counts in: Redis (its own database, say
# redis://redis:6379/1) shares them between web processes; unset, each process keeps its own.
# A second's socket timeout: a hung Redis costs a request that, not a worker.
CACHE_URL = env_str("CACHE_URL")
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "OPTIONS": {"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# GET /api/slo/ per client address, in DRF's rate syntax.
SLO_RATE = env_str("SLO_RATE", "120/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Hashed tokens with the header DRF's authtoken used (releases/ops/tokens.py).
        "releases.ops.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_RATES": {"slo": SLO_RATE, "override": env_str("OVERRIDE_RATE", "30/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gatekeeper API",
    "DESCRIPTION": "Release gates for Vercel deployments judged by Sentry release health.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Like every other route under /api/: nothing is shown to a caller who has not logged in.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# --- Celery (broker only: PostgreSQL is the source of truth; Redis may vanish) ---------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Every countdown we use (MAX_COUNTDOWN, 30 s) is far below this, so Redis never redelivers a
# task that is still waiting (kombu#337); polls use none at all. A message whose worker died is
# redelivered after it, but PostgreSQL leases send the work again long before: the late copy
# finds its claim taken and does nothing.
#
# A Redis that accepts connections and never answers held webhooks and /healthz for minutes:
# kombu waits forever for a reply unless given a socket timeout, and its publish path retried the
# connection for CELERY_BROKER_CONNECTION_TIMEOUT on top. With these, a publish or a probe costs
# one attempt of about BROKER_SOCKET_TIMEOUT, and the watchdog re-drives what was not sent.
# Workers take the same options safely: they send BRPOP with a 1 s server-side timeout and read
# its reply only once the socket is readable (kombu's event loop), so the read timeout never cuts
# a wait short; a synchronous command (an ack, a publish from a task) now fails instead of hanging.
BROKER_SOCKET_TIMEOUT = env_float("BROKER_SOCKET_TIMEOUT", 1.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_timeout": BROKER_SOCKET_TIMEOUT or None,  # 0: wait forever, as kombu does unset
    "socket_connect_timeout": BROKER_SOCKET_TIMEOUT or None,
    # How many times a publish reconnects before giving up (kombu's default_channel): none.
    "max_retries": 0,
}
# One message at a time per process: a poll batch should never sit in a busy worker's buffer.
# (Celery raises the prefetch for each ETA message it holds; MAX_COUNTDOWN bounds how many.)
# task_acks_late stays off by default and is set per task, only where running twice is safe
# (releases/tasks.py). task_reject_on_worker_lost stays off: a task that kills its worker would
# be redelivered forever; the PostgreSQL leases re-drive the work instead.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker started before Redis (or while it restarts) keeps trying instead of exiting.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # and so does a running one that lost it
# Each worker also consumes a queue of its own (<node name>.dq2): `manage.py worker_alive`
# sends its probe there, so the healthcheck proves *this* worker fetched and ran a task.
CELERY_WORKER_DIRECT = True
# Publishing from a web request or on_commit must not hang when Redis is down: give up
# quickly, the watchdog re-drives from PostgreSQL.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
CELERY_BROKER_CONNECTION_TIMEOUT = 2.0
# Runs tasks inside the caller, no broker: only for bench/time_to_rollback.py's inline floor.
CELERY_TASK_ALWAYS_EAGER = env_bool("GATEKEEPER_INLINE_TASKS", False)
# Celery's Django fixup closes every database connection before and after every task unless this
# is set, so each task paid for a new PostgreSQL connection (~10 ms, most of the alert-to-rollback
# time). gatekeeper/celery.py applies Django's own per-request hygiene instead: CONN_MAX_AGE and
# health checks, so a connection broken by a database restart is still replaced.
CELERY_DB_REUSE_MAX = 10**9
WATCHDOG_INTERVAL = env_float("WATCHDOG_INTERVAL", 15.0)
# How often Sentry's open metric-alert incidents are read, so an alert whose webhook was lost
# still rolls back (releases/workflows/reconcile_alerts.py); 0 turns it off.
SENTRY_RECONCILE_INTERVAL = env_float("SENTRY_RECONCILE_INTERVAL", 180.0)
# Polls are scheduled in PostgreSQL, not with broker countdowns (see releases/workflows/polls.py): beat
# runs the dispatcher this often, so a due poll waits at most this long for its message.
DISPATCH_INTERVAL = env_float("GATEKEEPER_DISPATCH_INTERVAL", 1.0)
# A dispatched poll is not sent again for this long; if its message was lost, it is due again after.
DISPATCH_LEASE = env_float("GATEKEEPER_DISPATCH_LEASE", 60.0)
DISPATCH_LIMIT = env_int("GATEKEEPER_DISPATCH_LIMIT", 5000)  # due releases taken per dispatch run
# Two beats may run: the one holding this PostgreSQL lease sends the schedule, and the other takes
# over within about a lease after it stops renewing (releases/scheduling/beat.py). `celery beat`
# and `worker --beat` both read the scheduler class from here.
CELERY_BEAT_SCHEDULER = "releases.scheduling.beat:LeasedScheduler"
BEAT_LEASE_NAME = env_str("GATEKEEPER_BEAT_LEASE_NAME", "beat")
BEAT_LEASE_SECONDS = env_float("GATEKEEPER_BEAT_LEASE", 10.0)
if BEAT_LEASE_SECONDS < 2:
    raise ImproperlyConfigured(f"GATEKEEPER_BEAT_LEASE={BEAT_LEASE_SECONDS:g} is too short: at least 2 s")
# No dispatch for this long is a stall: every worker checks every DISPATCH_STALL_CHECK seconds (0:
# never), and the first to see one pages and posts once (releases/scheduling/stall.py).
DISPATCH_STALL_SECONDS = env_float("DISPATCH_STALL_SECONDS", 60.0)
DISPATCH_STALL_CHECK = env_float("GATEKEEPER_DISPATCH_STALL_CHECK", 10.0)
# Where a stall is told. Unset, every project's PagerDuty routing key and Slack channel: a stalled
# dispatcher stops every project's gates, and those are the destinations a new install already has.
# Set them to send it to the team that runs Gatekeeper instead (the variable's name, as in
# gatekeeper.yaml's routing_key_env).
OPS_PAGERDUTY_ROUTING_KEY_ENV = env_str("OPS_PAGERDUTY_ROUTING_KEY_ENV")
OPS_SLACK_CHANNEL = env_str("OPS_SLACK_CHANNEL")
# The dispatcher and the watchdog have their own queue: behind a long queue of poll batches they
# would be late, and so would every poll after them. Workers consume every queue listed here
# unless told otherwise (-Q); kombu takes from the queues in turn, so a dispatch waits at most
# for the task being run.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = (Queue("celery"), Queue("schedule"))
# Off for a worker that runs only the `schedule` queue (docker-compose's `scheduler`): Flower turns
# task events on through remote control, and the dispatcher's run every second would bury the
# polls and actions people look for there.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = env_bool("GATEKEEPER_WORKER_REMOTE_CONTROL", True)
CELERY_TASK_ROUTES = {
    "releases.dispatch_due": {"queue": "schedule"},
    "releases.watchdog": {"queue": "schedule"},
    "releases.replay_spool": {"queue": "schedule"},
}
# Releases per Sentry sessions request (at most 100); 1 is one request per release (bench/scale.py).
POLL_BATCH = env_int("GATEKEEPER_POLL_BATCH", 100)
# A project's gate polls due within this many seconds go with those already due, so its releases
# share requests instead of drifting into many small ones. Polls run at most this much early.
# (30 s packed requests no better and made the load burstier: p99 lag 17 s against 9 s.)
POLL_COALESCE = env_float("GATEKEEPER_POLL_COALESCE", 10.0)

# --- Gatekeeper ------------------------------------------------------------------------------
GATEKEEPER_CONFIG = env_str("GATEKEEPER_CONFIG", str(BASE_DIR / "gatekeeper.yaml"))
# Where people reach the admin, for links in Slack and PagerDuty.
GATEKEEPER_PUBLIC_URL = env_str("GATEKEEPER_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Longest Celery countdown we ever ask for (a retry's backoff or a vendor's reset). A countdown
# is an ETA message held in a worker's memory, and Redis redelivers one still unacknowledged
# after the visibility timeout (kombu#337): capped this low, a vendor outage retried by
# thousands of actions holds at most half a minute of them, far below the 3600 s timeout. A
# longer wait lives only in PostgreSQL (next_attempt_at) and the watchdog sends it when due.
MAX_COUNTDOWN = env_float("GATEKEEPER_MAX_COUNTDOWN", 30.0)
# How long a worker owns a claimed action; past it, the watchdog takes the action back.
ACTION_LEASE = env_float("GATEKEEPER_ACTION_LEASE", 90.0)

VERCEL_API_URL = env_url("VERCEL_API_URL", "https://api.vercel.com")
VERCEL_TOKEN = env_str("VERCEL_TOKEN")
VERCEL_WEBHOOK_SECRET = env_str("VERCEL_WEBHOOK_SECRET")
SENTRY_API_URL = env_url("SENTRY_API_URL", "https://sentry.io/api/0")
SENTRY_AUTH_TOKEN = env_str("SENTRY_AUTH_TOKEN")
SENTRY_WEBHOOK_SECRET = env_str("SENTRY_WEBHOOK_SECRET")
# Where people open a Sentry release; by default https://<org>.sentry.io for sentry.io.
SENTRY_WEB_URL = env_str("SENTRY_WEB_URL")
SLACK_API_URL = env_url("SLACK_API_URL", "https://slack.com/api")
SLACK_BOT_TOKEN = env_str("SLACK_BOT_TOKEN")
PAGERDUTY_EVENTS_URL = env_url("PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com")
DATADOG_API_URL = env_url("DATADOG_API_URL", "https://api.datadoghq.com")
DD_API_KEY = env_str("DD_API_KEY")
DD_APP_KEY = env_str("DD_APP_KEY")
POSTHOG_API_URL = env_url("POSTHOG_API_URL", "https://us.posthog.com")
POSTHOG_API_KEY = env_str("POSTHOG_API_KEY")
POSTHOG_PROJECT_ID = env_str("POSTHOG_PROJECT_ID")  # for posthog_exceptions checks without project_id
# GET /api/slo/ measures with our provider credentials: it needs its bearer token, or SLO_PUBLIC
# set on purpose; without either it answers 403 and measures nothing.
SLO_AUTH_TOKEN = env_str("SLO_AUTH_TOKEN")
SLO_PUBLIC = env_bool("SLO_PUBLIC", False)
# One measurement per deployment serves every caller for this long (a cron storm costs one).
SLO_CACHE_SECONDS = env_float("SLO_CACHE_SECONDS", 15.0)
# GET /metrics wants `Authorization: Bearer <this>` when set; unset, it is open, for Prometheus on
# the internal network (releases/ops/metrics_api.py).
METRICS_AUTH_TOKEN = env_str("METRICS_AUTH_TOKEN")
PROVIDER_TIMEOUT = env_float("PROVIDER_TIMEOUT", 10.0)

# `text`: one readable line per record with its extra fields as key=value; `json`: one JSON object
# per line, for a log pipeline (gatekeeper/logs.py). Web, worker and beat all log through this.
LOG_FORMAT = env_str("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: expected text or json")
# Celery would otherwise replace the root logger's handlers with its own plain format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "gatekeeper.logs.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "gatekeeper.logs.JsonFormatter"},
    },
    # The dispatcher's per-second lines (beat's send, the worker's receipt and success) are
    # DEBUG, not INFO (gatekeeper/celery.py, RoutineAtDebug).
    "filters": {"routine_at_debug": {"()": "gatekeeper.celery.RoutineAtDebug"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "celery.beat": {"filters": ["routine_at_debug"]},
        "celery.worker.strategy": {"filters": ["routine_at_debug"]},
        "celery.app.trace": {"filters": ["routine_at_debug"]},
        # A task logger (celery.utils.log.get_task_logger) would otherwise get Celery's own format.
        "celery.task": {"handlers": ["console"], "propagate": False},
        # Django's default config already gave this logger a console handler; one is enough.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
