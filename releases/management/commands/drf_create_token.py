from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from releases.ops.tokens import issue


class Command(BaseCommand):
    # The name and -r/--reset are DRF's (rest_framework.authtoken), which scripts already call.
    help = (
        "Issue a REST API token for USER and print its key once: only a digest is stored, so it "
        "cannot be shown again. Each run adds a token; --reset revokes the user's others first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "-r",
            "--reset",
            action="store_true",
            help="revoke the user's existing tokens before issuing the new one",
        )
        parser.add_argument("--name", default="", help="what the token is for (shown in the admin)")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        model = get_user_model()
        try:
            user = model._default_manager.get_by_natural_key(username)
        except model.DoesNotExist as exc:
            raise CommandError(f"Cannot create a token for user {username!r}: no such user") from exc
        if not user.is_active:
            raise CommandError(f"Cannot create a token for user {username!r}: the user is inactive")
        token, key = issue(user, options["name"], reset=options["reset"])
        self.stdout.write(f"Generated token {key} for user {username}")
        self.stdout.write(
            f"It is stored only as a digest and will not be shown again (prefix {token.prefix} in the admin)."
        )
