from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from releases.models import WebhookDelivery
from releases.ops.config import parse_duration


class Command(BaseCommand):
    # Housekeeping from a shell or a cron job: it needs the database, not the service's secrets.
    requires_system_checks: list[str] = []
    help = (
        "Delete recorded webhook deliveries older than --older-than (e.g. 30d). Safe because "
        "Vercel deliveries older than WEBHOOK_REPLAY_WINDOW are refused as replays, so a pruned "
        "delivery cannot be accepted again; the releases, their history and actions stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="e.g. 30d, 72h")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_duration(options["older_than"])
        except ValueError as exc:
            raise CommandError(f"--older-than: {exc}") from exc
        window = timedelta(seconds=settings.WEBHOOK_REPLAY_WINDOW)
        if age <= window:
            raise CommandError(
                f"--older-than must be longer than the replay window ({window.total_seconds() / 3600:g} h): "
                "a delivery pruned sooner could be replayed and taken as new"
            )
        old = WebhookDelivery.objects.filter(received_at__lt=timezone.now() - age)
        if options["dry_run"]:
            self.stdout.write(
                f"would delete {old.count():,} deliveries received more than {options['older_than']} ago"
            )
            return
        deleted, _ = old.delete()
        self.stdout.write(f"deleted {deleted:,} deliveries received more than {options['older_than']} ago")
