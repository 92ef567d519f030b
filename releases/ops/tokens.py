"""REST API tokens: how they are issued, and how a request carrying one is authenticated.

Clients send ``Authorization: Token <key>`` (the header DRF's authtoken used, so existing clients
need no change) or ``Authorization: Bearer <key>``. Only a digest of each key is stored
(releases.models.tokens); the key is shown once, by ``drf_create_token`` or the admin.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.db import transaction
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from releases.models import ApiToken
from releases.models.tokens import digest_of, prefix_of

KEYWORDS = (b"token", b"bearer")
# DRF's own wording (rest_framework.authentication.TokenAuthentication), which clients may match on.
INVALID = "Invalid token."
INACTIVE = "User inactive or deleted."


def issue(user: Any, name: str = "", *, reset: bool = False) -> tuple[ApiToken, str]:
    """A new token for ``user`` and its key; ``reset`` revokes the user's other tokens first."""
    with transaction.atomic():
        if reset:
            ApiToken.objects.filter(user=user).revoke()
        return ApiToken.issue(user, name=name)


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        words = get_authorization_header(request).split()
        if not words or words[0].lower() not in KEYWORDS:
            return None  # not ours: the session (or nobody) may still authenticate the request
        if len(words) != 2:
            raise AuthenticationFailed("Invalid token header. Send 'Token <key>' with no spaces in the key.")
        try:
            key = words[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("Invalid token header. The key contains invalid characters.") from exc
        return self.authenticate_credentials(key)

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        # The clear prefix finds the row; the digest is then compared in constant time.
        wanted = digest_of(key)
        candidates = ApiToken.objects.select_related("user").filter(prefix=prefix_of(key))
        token = next((t for t in candidates if hmac.compare_digest(t.digest, wanted)), None)
        if token is None or not token.is_usable():
            raise AuthenticationFailed(INVALID)
        if not token.user.is_active:
            raise AuthenticationFailed(INACTIVE)
        token.touch()
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes a refusal a 401 with WWW-Authenticate (a 403 without it), as DRF's token auth does.
        return "Token"


class ApiTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Documents the header in /api/schema/ under the name DRF's token auth had (tokenAuth)."""

    target_class = "releases.ops.tokens.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'A token from drf_create_token or the admin: "Token <key>" or "Bearer <key>"',
        }
