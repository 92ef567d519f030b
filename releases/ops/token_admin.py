"""The admin's API tokens: issued here with the key shown once, revoked here, never displayed again.

Django's model permissions decide who may see, add, change or delete tokens at all; on top of
them a superuser sees everyone's tokens and anyone else only their own, and may issue tokens
only for themselves (choosing the user would let a staff login mint a superuser's token).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from releases.models import ApiToken

# Never "digest": without the key it opens nothing, but nothing needs to read it either.
SHOWN = ("user", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic only in django-stubs
    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix", "user__username")
    list_select_related = ("user",)
    actions = ["revoke"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        queryset = super().get_queryset(request)
        return queryset if request.user.is_superuser else queryset.filter(user=request.user)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("user", "name", "expires_at") if request.user.is_superuser else ("name", "expires_at")
        return SHOWN

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("user", "prefix", "created_at", "last_used_at", "revoked_at")

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        key = ""
        if not change:
            if not request.user.is_superuser:
                obj.user = request.user  # type: ignore[assignment]
            key = obj.set_new_key()
        super().save_model(request, obj, form, change)
        if key:
            # The one time the key is readable: it is not stored, so it cannot be shown again.
            messages.success(
                request,
                f"The key of token {obj.prefix}… for {obj.user.get_username()} is {key} — copy it "
                "now: it will not be shown again.",
            )

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = queryset.revoke(timezone.now())  # type: ignore[attr-defined]
        self.message_user(request, f"{revoked} token(s) revoked", messages.SUCCESS)
