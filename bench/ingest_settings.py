"""Gatekeeper's settings with one more route (bench/ingest_urls.py) for bench/ingest.py's bare view.

Everything else (middleware, database options such as CONN_MAX_AGE and prepared statements,
logging) is production's, so the bare view and the webhook are served alike.
"""

from __future__ import annotations

from gatekeeper.settings import *  # noqa: F403 - the production settings, unchanged

ROOT_URLCONF = "bench.ingest_urls"
