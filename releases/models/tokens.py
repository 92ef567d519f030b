"""REST API tokens, kept as a SHA-256 digest: the key itself exists only in the answer that issued it.

A key is 40 hex characters (160 random bits), the same shape as the keys DRF's authtoken issued,
so keys carried over from ``authtoken_token`` and new ones are read the same way. Its first
``PREFIX_LENGTH`` characters are stored in clear: too short to authenticate with, long enough to
find the row and to tell tokens apart in the admin.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

PREFIX_LENGTH = 8
KEY_BYTES = 20
# How stale last_used_at may be: it answers "is this token still in use?", which a minute's
# precision answers as well as a write on every request would.
LAST_USED_PRECISION = timedelta(minutes=1)


def digest_of(key: str) -> str:
    """What is stored instead of the key. A plain hash is enough: the key is random, not a password."""
    return hashlib.sha256(key.encode()).hexdigest()


def prefix_of(key: str) -> str:
    return key[:PREFIX_LENGTH]


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def revoke(self, now: datetime | None = None) -> int:
        """Revoke the tokens not revoked yet; an earlier revocation keeps its time."""
        return self.filter(revoked_at__isnull=True).update(revoked_at=now or timezone.now())


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text="what this token is for")
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="empty: never expires")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        label = f" ({self.name})" if self.name else ""
        return f"{self.prefix}…{label}"

    def set_new_key(self) -> str:
        """Give this token a fresh key and return it: the only time the key is readable."""
        key = secrets.token_hex(KEY_BYTES)
        self.prefix = prefix_of(key)
        self.digest = digest_of(key)
        return key

    @classmethod
    def issue(cls, user: Any, name: str = "", expires_at: datetime | None = None) -> tuple[ApiToken, str]:
        token = cls(user=user, name=name, expires_at=expires_at)
        key = token.set_new_key()
        token.save()
        return token, key

    def is_usable(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    def touch(self, now: datetime | None = None) -> None:
        """Record a use, at most once per LAST_USED_PRECISION, and as one compare-and-set update."""
        now = now or timezone.now()
        stale = now - LAST_USED_PRECISION
        if self.last_used_at is not None and self.last_used_at > stale:
            return
        ApiToken.objects.filter(pk=self.pk).filter(
            models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lte=stale)
        ).update(last_used_at=now)
        self.last_used_at = now
