#!/usr/bin/env bash
# `make run`: migrate, apply the config, start web + worker + beat. With no provider token set,
# also start the simulator with a demo project, so a newcomer sees a good release promoted and a
# bad one kept out of production within a couple of minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
mkdir -p run
export DEBUG="${DEBUG:-1}"
WEB_PORT="${WEB_PORT:-8000}"
SIM_PORT="${SIM_PORT:-8900}"
DEMO=0
if [ -z "${VERCEL_TOKEN:-}" ] && [ -z "${SENTRY_AUTH_TOKEN:-}" ]; then
  DEMO=1
  sim="http://127.0.0.1:${SIM_PORT}"
  export VERCEL_API_URL="$sim/vercel" SENTRY_API_URL="$sim/sentry/api/0" SLACK_API_URL="$sim/slack/api"
  export PAGERDUTY_EVENTS_URL="$sim/pagerduty"
  export VERCEL_TOKEN=demo-vercel-token SENTRY_AUTH_TOKEN=demo-sentry-token SLACK_BOT_TOKEN=xoxb-demo-token
  export VERCEL_WEBHOOK_SECRET="${VERCEL_WEBHOOK_SECRET:-demo-vercel-webhook-secret}"
  export SENTRY_WEBHOOK_SECRET="${SENTRY_WEBHOOK_SECRET:-demo-sentry-webhook-secret}"
  export GATEKEEPER_CONFIG="${GATEKEEPER_CONFIG:-simulator/scenarios/demo-gatekeeper.yaml}"
  export WATCHDOG_INTERVAL="${WATCHDOG_INTERVAL:-5}"
fi
export GATEKEEPER_PUBLIC_URL="${GATEKEEPER_PUBLIC_URL:-http://127.0.0.1:${WEB_PORT}}"

broker="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/0}"
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

$BIN/python manage.py migrate --noinput
if [ -f "${GATEKEEPER_CONFIG:-gatekeeper.yaml}" ]; then
  $BIN/python manage.py sync_config
else
  echo "no config file at ${GATEKEEPER_CONFIG:-gatekeeper.yaml}: copy gatekeeper.example.yaml and edit it"
fi
if [ "$DEMO" = 1 ]; then
  DJANGO_SUPERUSER_PASSWORD=admin $BIN/python manage.py createsuperuser --noinput \
    --username admin --email admin@example.com >/dev/null 2>&1 || true
fi

pids=()
cleanup() { trap - EXIT INT TERM; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

$BIN/python manage.py runserver "127.0.0.1:${WEB_PORT}" --noreload > run/web.log 2>&1 & pids+=($!)
$BIN/celery -A gatekeeper worker --loglevel INFO --concurrency 2 > run/worker.log 2>&1 & pids+=($!)
$BIN/celery -A gatekeeper beat --loglevel INFO --schedule run/celerybeat-schedule > run/beat.log 2>&1 & pids+=($!)
for _ in $(seq 1 50); do
  $BIN/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${WEB_PORT}/healthz', timeout=1)" \
    2>/dev/null && break
  sleep 0.2
done

echo
echo "Gatekeeper:  http://127.0.0.1:${WEB_PORT}/admin/   (logs in run/)"
if [ "$DEMO" = 1 ]; then
  $BIN/python -m simulator --host 127.0.0.1 --port "$SIM_PORT" --gatekeeper-url "http://127.0.0.1:${WEB_PORT}" \
    --scenario simulator/scenarios/demo.yaml > run/simulator.log 2>&1 & pids+=($!)
  echo "Demo mode (no VERCEL_TOKEN/SENTRY_AUTH_TOKEN set): the simulator plays simulator/scenarios/demo.yaml."
  echo "  admin login:       admin / admin"
  echo "  simulator log:     http://127.0.0.1:${SIM_PORT}/_sim/requests"
  echo "  Slack messages:    http://127.0.0.1:${SIM_PORT}/_sim/slack/messages"
  echo "  decisions so far:  .venv/bin/python manage.py gate_report"
fi
echo "Ctrl-C stops everything."
wait -n "${pids[@]}" || true
echo "a process stopped; see run/*.log" >&2
