"""Gatekeeper: keeps a bad release from reaching, or staying on, production."""

from __future__ import annotations

from gatekeeper.celery import app as celery_app

__all__ = ["celery_app"]
