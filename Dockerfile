# Gatekeeper: one image for every process (web, worker, beat, flower, migrate, simulator).
# docker-compose.yml chooses the command; the default is the web process under gunicorn.
# No secret is baked in: SECRET_KEY, webhook secrets and provider tokens come from the
# environment at run time (see DESIGN.md, "Settings").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DJANGO_SETTINGS_MODULE=gatekeeper.settings \
    SPOOL_DIR=/var/lib/gatekeeper/spool

WORKDIR /app

# Dependencies in their own layer, before the code: editing the code does not reinstall them.
# Every pin has a manylinux wheel (psycopg-binary included), so no compiler is needed.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# The process runs unprivileged. The code stays owned by root, so it cannot rewrite itself;
# what processes write is beat's schedule file, under /tmp, and the webhook spool (SPOOL_DIR).
# The spool's directory exists in the image, owned by that user, so the named volume compose
# mounts there starts out writable by it (Docker copies the owner into a new volume).
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin gatekeeper \
    && install -d -o gatekeeper -g gatekeeper -m 0700 /var/lib/gatekeeper/spool

COPY . .

# Static files (admin, DRF's browsable API) collected once, at build time, into /app/staticfiles.
# collectstatic runs only the `staticfiles`-tagged system checks (Django's
# requires_system_checks = [Tags.staticfiles]), so gatekeeper.E001/E003 (missing webhook secret,
# missing SECRET_KEY) do not run here and settings import needs no secret. The dummy values
# below are belt and braces in case that ever changes: they exist for this one command only,
# never in the image's environment.
RUN SECRET_KEY=collectstatic-build-only VERCEL_WEBHOOK_SECRET=collectstatic-build-only \
    python manage.py collectstatic --noinput --verbosity 0

USER gatekeeper

EXPOSE 8000

# `sh -c` so WEB_CONCURRENCY is read when the container starts; `exec` so gunicorn is PID 1
# and gets SIGTERM directly (graceful stop). Requests answer fast by design (no outbound call
# inside a request), so 30 s is generous; /dev/shm keeps the worker heartbeat off the overlay fs.
CMD ["sh", "-c", "exec gunicorn gatekeeper.wsgi:application --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-4} --timeout 30 --graceful-timeout 30 --access-logfile - --worker-tmp-dir /dev/shm"]
