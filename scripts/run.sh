#!/usr/bin/env bash
# `make run`: migrate, apply the config, start web + worker + beat. With no provider token set,
# also start the simulator with a demo project, so a newcomer sees a good release promoted and a
# bad one kept out of production within a couple of minutes.
#
# Settings come from the environment, then from .env (written here on the first run, read by
# manage.py and celery too), then from the defaults below. Ctrl-C stops everything.
# Overrides, mostly for tests: WEB_PORT, SIM_PORT, RUN_DIR (logs, beat's schedule),
# GATEKEEPER_ENV_FILE (instead of ./.env).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN_DIR="${RUN_DIR:-run}"
ENV_FILE="${GATEKEEPER_ENV_FILE:-.env}"
mkdir -p "$RUN_DIR"

# --- Settings: environment, then .env, then defaults ---------------------------------------
# gatekeeper/env.py parses .env (one parser for this script and for Django) and prints an
# `export` line for each variable the environment does not already have.
if [ -f "$ENV_FILE" ]; then
  exports="$($BIN/python -c 'import sys; from pathlib import Path; from gatekeeper.env import dotenv_exports
print(dotenv_exports(Path(sys.argv[1])), end="")' "$ENV_FILE")"
  eval "$exports"
fi

new_secret() { $BIN/python -c 'import secrets; print(secrets.token_urlsafe(32))'; }

export DEBUG="${DEBUG:-1}"
export DATABASE_URL="${DATABASE_URL:-sqlite:///db.sqlite3}"  # the same default as settings
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/0}"
for name in SECRET_KEY VERCEL_WEBHOOK_SECRET SENTRY_WEBHOOK_SECRET SLO_AUTH_TOKEN; do
  [ -n "${!name:-}" ] || export "$name=$(new_secret)"
done
WEB_PORT="${WEB_PORT:-8000}"
export SIM_PORT="${SIM_PORT:-8900}"
saved=(DATABASE_URL CELERY_BROKER_URL SECRET_KEY VERCEL_WEBHOOK_SECRET SENTRY_WEBHOOK_SECRET SLO_AUTH_TOKEN)

# Demo mode: no provider token. The simulator started below is then every provider; its URLs and
# placeholder tokens live in this run's environment only, never in .env, so nothing written
# here points a later `docker compose up` or a real run at it.
DEMO=0
if [ -z "${VERCEL_TOKEN:-}" ] && [ -z "${SENTRY_AUTH_TOKEN:-}" ]; then
  DEMO=1
  sim="http://127.0.0.1:${SIM_PORT}"
  export VERCEL_API_URL="$sim/vercel" SENTRY_API_URL="$sim/sentry/api/0" SLACK_API_URL="$sim/slack/api"
  export PAGERDUTY_EVENTS_URL="$sim/pagerduty"
  export VERCEL_TOKEN=demo-vercel-token SENTRY_AUTH_TOKEN=demo-sentry-token SLACK_BOT_TOKEN=xoxb-demo-token
  export GATEKEEPER_CONFIG="${GATEKEEPER_CONFIG:-simulator/scenarios/demo-gatekeeper.yaml}"
  export WATCHDOG_INTERVAL="${WATCHDOG_INTERVAL:-5}"
fi
export GATEKEEPER_PUBLIC_URL="${GATEKEEPER_PUBLIC_URL:-http://127.0.0.1:${WEB_PORT}}"

# --- .env: written once, then only appended to ---------------------------------------------
# A value is quoted unless plainly safe: single quotes are literal for gatekeeper/env.py and for
# compose (which expands $ in bare and double-quoted values).
safe_value='^[A-Za-z0-9_./:@%+=,?&~-]*$'
env_line() {
  local value="${!1}"
  if [[ "$value" =~ $safe_value ]]; then
    printf '%s=%s\n' "$1" "$value"
  elif [[ "$value" != *"'"* ]]; then
    printf "%s='%s'\n" "$1" "$value"
  else
    value="${value//\\/\\\\}"
    printf '%s="%s"\n' "$1" "${value//\"/\\\"}"
  fi
}
wrote=""
if [ ! -f "$ENV_FILE" ]; then
  wrote=1
  # Secrets: readable by this user only.
  (umask 077 && cat >"$ENV_FILE" <<'EOF'
# Gatekeeper settings for this checkout, written by the first `make run` (scripts/run.sh).
# manage.py, celery, `make run` and `docker compose` read it, so commands typed later (createsuperuser,
# drf_create_token, sync_config, gate_report) use the same database and secrets. A variable set in
# the environment wins over its line here. `make run` never rewrites this file; it only appends a
# line for a setting that is missing. It holds secrets: keep it out of git (.gitignore has it).
# To leave the demo, add the real services' tokens (VERCEL_TOKEN, SENTRY_AUTH_TOKEN, ...; see
# the README, "Pointing it at the real services").
EOF
  )
  echo "wrote $ENV_FILE (generated secrets; edit it to change settings)"
fi
appended=()
for name in "${saved[@]}"; do
  grep -Eq "^[[:space:]]*(export[[:space:]]+)?${name}[[:space:]]*=" "$ENV_FILE" && continue
  [ -z "$(tail -c1 "$ENV_FILE")" ] || echo >>"$ENV_FILE"  # never glue a line onto the last one
  env_line "$name" >>"$ENV_FILE"
  appended+=("$name")
done
[ -n "$wrote" ] || [ ${#appended[@]} -eq 0 ] || echo "added to $ENV_FILE: ${appended[*]}"

# --- Services: Redis, the database ------------------------------------------------------
broker="$CELERY_BROKER_URL"
if [[ "$broker" == redis://127.0.0.1* || "$broker" == redis://localhost* ]] && ! redis-cli ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null; then
    echo "starting a local Redis (keeps nothing on disk)"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    sleep 0.5
  else
    echo "Redis is not running at $broker and redis-server is not installed." >&2
    echo "Install it (apt-get install redis-server) or set CELERY_BROKER_URL." >&2
    exit 1
  fi
fi

# A PostgreSQL DATABASE_URL naming a database that does not exist yet: create it (migrate would
# only fail with a traceback). The check asks the server's `postgres` database whether it exists,
# so it does not depend on the wording of the server's error messages.
pg_status=0
pg_target="$($BIN/python - <<'PY'
import os
import sys
from pathlib import Path

import psycopg

from gatekeeper.env import database_from_url

db = database_from_url(os.environ["DATABASE_URL"], Path.cwd())
if db["ENGINE"] != "django.db.backends.postgresql":
    sys.exit(0)
options = {k: v for k, v in db["OPTIONS"].items() if k not in ("server_side_binding", "prepare_threshold")}
params = {k: v for k, v in (("host", db["HOST"]), ("port", db["PORT"]), ("user", db["USER"])) if v}
auth = {"password": db["PASSWORD"]} if db["PASSWORD"] else {}
try:
    psycopg.connect(dbname=db["NAME"], connect_timeout=5, **params, **auth, **options).close()
    sys.exit(0)
except psycopg.OperationalError as exc:
    error = exc
try:
    with psycopg.connect(dbname="postgres", connect_timeout=5, **params, **auth, **options) as conn:
        missing = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]).fetchone() is None
except psycopg.OperationalError:
    missing = False
if not missing:
    print(f"cannot connect to the PostgreSQL database in DATABASE_URL: {error}", file=sys.stderr)
    sys.exit(2)
# createdb's arguments, one a line (the password goes by PGPASSWORD, never on a command line)
for flag, value in (("-h", db["HOST"]), ("-p", db["PORT"]), ("-U", db["USER"])):
    if value:
        print(flag, value, sep="\n")
print(db["NAME"])
sys.exit(3)
PY
)" || pg_status=$?
if [ "$pg_status" = 3 ]; then
  mapfile -t createdb_args <<<"$pg_target"
  pg_password="$($BIN/python -c 'import os, pathlib; from gatekeeper.env import database_from_url
print(database_from_url(os.environ["DATABASE_URL"], pathlib.Path.cwd())["PASSWORD"])')"
  if command -v createdb >/dev/null && PGPASSWORD="$pg_password" createdb "${createdb_args[@]}"; then
    echo "created the PostgreSQL database: createdb ${createdb_args[*]}"
  else
    echo "The PostgreSQL database in DATABASE_URL does not exist. Create it, then run again:" >&2
    echo "  createdb ${createdb_args[*]}" >&2
    exit 1
  fi
elif [ "$pg_status" != 0 ]; then
  exit 1
fi

# --- Schema, config, demo user ----------------------------------------------------------
$BIN/python manage.py migrate --noinput
if [ -f "${GATEKEEPER_CONFIG:-gatekeeper.yaml}" ]; then
  if [ "$DEMO" = 1 ]; then
    # The simulator that answers for Sentry and Vercel starts below: the first poll resolves
    # the Sentry project's id instead.
    $BIN/python manage.py sync_config --offline
  else
    $BIN/python manage.py sync_config
  fi
else
  echo "no config file at ${GATEKEEPER_CONFIG:-gatekeeper.yaml}: copy gatekeeper.example.yaml and edit it"
fi
if [ "$DEMO" = 1 ]; then
  # Fails when the user exists already, which is fine.
  DJANGO_SUPERUSER_PASSWORD=admin $BIN/python manage.py createsuperuser --noinput \
    --username admin --email admin@example.com >/dev/null 2>&1 || true
fi

# --- Processes --------------------------------------------------------------------------
names=()    # web, worker, beat, simulator
pids=()     # their pids, each also the id of its own process group
watchers=() # the log watchers' process groups
stopping=0

# Stop everything this script started: TERM to each process (celery's warm shutdown stops its
# pool children), then KILL to whatever is left of each process group after 10 s, or at once
# on a second Ctrl-C.
stop_all() {
  trap 'stopping=2' INT TERM HUP
  stopping=1
  local pid group
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for group in "${watchers[@]}"; do kill -TERM -- "-$group" 2>/dev/null || true; done
  for _ in $(seq 1 100); do
    [ "$stopping" = 2 ] && break
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for group in "${pids[@]}" "${watchers[@]}"; do kill -KILL -- "-$group" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
on_signal() {
  trap - EXIT
  stop_all
  echo "stopped"
  exit 0
}
on_exit() {
  local status=$?
  trap - EXIT
  stop_all
  exit "$status"
}
trap on_signal INT TERM HUP
trap on_exit EXIT

# Job control gives each background process its own process group, so stop_all can take down
# a process together with its children (celery's pool, a watcher's tail). The terminal's
# Ctrl-C then reaches only this script, which stops the rest in order.
set -m
start() { # start NAME COMMAND...: run COMMAND in the background, output in $RUN_DIR/NAME.log
  local name=$1
  shift
  "$@" </dev/null >"$RUN_DIR/$name.log" 2>&1 &
  names+=("$name")
  pids+=($!)
}
# Show what went wrong in a log on the terminal as it happens: ERROR and CRITICAL lines, 5xx
# answers, and of each traceback its first line and its exceptions (the whole one is in the log).
watch_log() {
  (tail -n +1 -F "$RUN_DIR/$1.log" 2>/dev/null | awk -v name="$1" -v file="$RUN_DIR/$1.log" '
    function show(line) { print "[" name "] " line; fflush() }
    /^Traceback / { if (!chained) show($0 "  (the whole traceback is in " file ")"); in_tb = 1; next }
    in_tb && /^[^ \t]/ { show($0); in_tb = 0; chained = 0; after = 1; next }
    in_tb { next }
    after && /^(During handling|The above exception)/ { chained = 1; next }
    after && /^$/ { next }
    { after = 0; chained = 0 }
    /(^|[^A-Za-z_])(ERROR|CRITICAL)([^A-Za-z_]|$)/ || /HTTP\/[0-9.]+" 5[0-9][0-9] / { show($0) }
  ') </dev/null &
  watchers+=($!)
}
start web $BIN/python manage.py runserver "127.0.0.1:${WEB_PORT}" --noreload
start worker $BIN/celery -A gatekeeper worker --loglevel INFO --concurrency 2
start beat $BIN/celery -A gatekeeper beat --loglevel INFO --schedule "$RUN_DIR/celerybeat-schedule"
for name in web worker beat; do watch_log "$name"; done
set +m

# Report a process that has exited with the end of its log, and fail. $1: its exit status when
# `wait -n` has collected it already.
check_alive() {
  local i status
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      status="${1:-}"
      [ -n "$status" ] || { wait "${pids[$i]}" 2>/dev/null && status=0 || status=$?; }
      echo >&2
      echo "${names[$i]} exited (status $status). Last 20 lines of $RUN_DIR/${names[$i]}.log:" >&2
      tail -n 20 "$RUN_DIR/${names[$i]}.log" | sed 's/^/    /' >&2
      exit 1
    fi
  done
}

healthz="http://127.0.0.1:${WEB_PORT}/healthz"
deadline=$((SECONDS + 30))
until $BIN/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$healthz" \
  2>/dev/null; do
  check_alive
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "web did not answer $healthz within 30 s (/healthz also checks the database and Redis)." >&2
    echo "Last 20 lines of $RUN_DIR/web.log:" >&2
    tail -n 20 "$RUN_DIR/web.log" | sed 's/^/    /' >&2
    exit 1
  fi
  sleep 0.2
done

echo
echo "Gatekeeper:  http://127.0.0.1:${WEB_PORT}/admin/   (logs in $RUN_DIR/)"
if [ "$DEMO" = 1 ]; then
  set -m
  start simulator $BIN/python -m simulator --host 127.0.0.1 --port "$SIM_PORT" \
    --gatekeeper-url "http://127.0.0.1:${WEB_PORT}" --scenario simulator/scenarios/demo.yaml
  watch_log simulator
  set +m
  echo "Demo mode (no VERCEL_TOKEN/SENTRY_AUTH_TOKEN set): the simulator plays simulator/scenarios/demo.yaml."
  echo "  admin login:       admin / admin"
  echo "  simulator log:     http://127.0.0.1:${SIM_PORT}/_sim/requests"
  echo "  Slack messages:    http://127.0.0.1:${SIM_PORT}/_sim/slack/messages"
  echo "  decisions so far:  .venv/bin/python manage.py gate_report"
fi
echo "Errors, tracebacks and 5xx answers from the logs are shown here. Ctrl-C stops everything."

# Until Ctrl-C (on_signal) or a process exits (check_alive reports it and fails).
while true; do
  status=0
  wait -n "${pids[@]}" 2>/dev/null || status=$?
  check_alive "$status"
done
