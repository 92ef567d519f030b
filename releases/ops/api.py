"""REST API: releases with their figures and decisions, and the same overrides as the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, UserRateThrottle

from releases.inbound.schema import CONFLICT, INVALID, NOT_FOUND, REFUSED, UNSUPPORTED
from releases.models import Action, Analysis, GateCheck, RampCheck, Release, ReleaseEvent
from releases.ops.access import may_override, visible_releases
from releases.ops.config import parse_duration
from releases.ops.overrides import OverrideRefused, approve, extend_wait, pause, reject, resume


class GateCheckSerializer(serializers.ModelSerializer):
    phase = serializers.CharField(source="analysis.kind", help_text="gate or bake: the analysis it was for")

    class Meta:
        model = GateCheck
        fields = (
            "checked_at",
            "phase",
            "sessions",
            "crashed",
            "crash_free_rate",
            "upper_bound",
            "outcome",
            "rule",
            "reasons",
            "error",
            "duration_ms",
        )


class RampCheckSerializer(serializers.ModelSerializer):
    class Meta:
        model = RampCheck
        fields = ("checked_at", "stage", "percent", "confirmation", "ok", "checks", "reasons", "duration_ms")


class AnalysisSerializer(serializers.ModelSerializer):
    class Meta:
        model = Analysis
        fields = (
            "id",
            "kind",
            "stage",
            "phase",
            "policy",
            "started_at",
            "ends_at",
            "next_check_at",
            "consecutive_errors",
            "passes",
            "failures",
            "extra_wait",
            "ended_at",
        )


class ReleaseEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReleaseEvent
        fields = ("created_at", "kind", "from_state", "to_state", "actor", "reason", "data")


class ActionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Action
        fields = (
            "kind",
            "key",
            "status",
            "attempts",
            "next_attempt_at",
            "last_error",
            "result",
            "created_at",
            "finished_at",
        )


class ReleaseSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.name")
    threshold = serializers.FloatField(source="project.crash_free_threshold")
    # From the release's analyses (prefetched): when it is next checked and where a ramp is.
    next_poll_at = serializers.SerializerMethodField()
    ramp_stage = serializers.SerializerMethodField()
    ramp_stage_since = serializers.SerializerMethodField()
    ramp_paused = serializers.SerializerMethodField()

    @staticmethod
    def _open(obj: Release) -> Analysis | None:
        return next((a for a in obj.analyses.all() if a.is_open), None)

    @staticmethod
    def _in_place(obj: Release) -> Analysis | None:
        stages = [a for a in obj.analyses.all() if a.kind == Analysis.Kind.CANARY and a.started_at]
        return max(stages, key=lambda a: a.pk, default=None)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_poll_at(self, obj: Release) -> Any:
        analysis = self._open(obj)
        return (
            serializers.DateTimeField().to_representation(analysis.next_check_at)
            if analysis and analysis.next_check_at
            else None
        )

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_ramp_stage(self, obj: Release) -> int | None:
        analysis = self._in_place(obj)
        return analysis.stage if analysis else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_ramp_stage_since(self, obj: Release) -> Any:
        analysis = self._in_place(obj)
        return (
            serializers.DateTimeField().to_representation(analysis.started_at)
            if analysis and analysis.started_at
            else None
        )

    @extend_schema_field(serializers.BooleanField())
    def get_ramp_paused(self, obj: Release) -> bool:
        analysis = self._open(obj)
        return analysis is not None and analysis.phase == Analysis.Phase.PAUSED

    class Meta:
        model = Release
        fields: tuple[str, ...] = (
            "id",
            "project",
            "deployment_id",
            "version",
            "state",
            "target",
            "deployment_url",
            "inspector_url",
            "sessions",
            "crashed",
            "crash_free_rate",
            "threshold",
            "verdict",
            "verdict_rule",
            "verdict_reasons",
            "decided_at",
            "gating_started_at",
            "next_poll_at",
            "promoted_at",
            "rolled_back_at",
            "rollback_target",
            "ramp_stage",
            "ramp_stage_since",
            "ramp_paused",
            "created_at",
            "updated_at",
        )


class ReleaseDetailSerializer(ReleaseSerializer):
    analyses = AnalysisSerializer(many=True, read_only=True)
    checks = GateCheckSerializer(many=True, read_only=True)
    events = ReleaseEventSerializer(many=True, read_only=True)
    actions = ActionSerializer(many=True, read_only=True)
    ramp_checks = RampCheckSerializer(many=True, read_only=True)

    class Meta(ReleaseSerializer.Meta):
        fields = (*ReleaseSerializer.Meta.fields, "analyses", "checks", "ramp_checks", "events", "actions")


class OverrideSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class ExtendSerializer(OverrideSerializer):
    by = serializers.CharField(help_text="a duration such as 30m or 2h")

    def validate_by(self, value: str) -> Any:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from exc


OVERRIDE_RESPONSES = {
    200: ReleaseSerializer,
    400: INVALID,
    **REFUSED,
    403: REFUSED[403],  # also: without releases.override_release
    **NOT_FOUND,
    **CONFLICT,
    **UNSUPPORTED,
    429: INVALID,  # too many overrides from this user (OVERRIDE_RATE)
}
OVERRIDES = frozenset({"approve", "reject", "pause", "resume", "extend"})


class OverrideThrottle(UserRateThrottle):
    scope = "override"


class ReleasePagination(LimitOffsetPagination):
    # Without a cap, ?limit=10**30 reached PostgreSQL as a LIMIT beyond bigint: a 500.
    max_limit = 500


@extend_schema(
    parameters=[
        OpenApiParameter("project", str, description="project name"),
        OpenApiParameter("state", str, description="release state"),
        OpenApiParameter("deployment", str, description="Vercel deployment id"),
    ]
)
@extend_schema_view(
    list=extend_schema(responses={200: ReleaseSerializer(many=True), 400: INVALID, **REFUSED}),
    retrieve=extend_schema(responses={200: ReleaseDetailSerializer, 400: INVALID, **REFUSED, **NOT_FOUND}),
)
class ReleaseViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = (
        Release.objects.select_related("project").prefetch_related("analyses").order_by("-created_at", "-id")
    )
    pagination_class = ReleasePagination

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return ReleaseDetailSerializer if self.action == "retrieve" else ReleaseSerializer

    def get_throttles(self) -> list[BaseThrottle]:
        return [OverrideThrottle()] if self.action in OVERRIDES else super().get_throttles()

    def get_queryset(self) -> QuerySet[Release]:
        # Only the projects the user operates: another project's release is a 404, as if absent.
        queryset = visible_releases(self.request.user, super().get_queryset())
        params = self.request.query_params
        for name in ("project", "state", "deployment"):
            if "\x00" in params.get(name, ""):  # PostgreSQL refuses NUL in text: a 400, not a 500
                raise serializers.ValidationError({name: "must not contain a NUL character"})
        if params.get("project"):
            queryset = queryset.filter(project__name=params["project"])
        if params.get("state"):
            queryset = queryset.filter(state=params["state"])
        if params.get("deployment"):
            queryset = queryset.filter(deployment_id=params["deployment"])
        if self.action == "retrieve":
            checks = Prefetch("checks", GateCheck.objects.select_related("analysis"))
            queryset = queryset.prefetch_related(checks, "ramp_checks", "events", "actions")
        return queryset

    def _refused(self, request: Request, release: Release) -> Response | None:
        if may_override(request.user, release):
            return None
        return Response(
            {"detail": "overriding a release needs the releases.override_release permission"},
            status=status.HTTP_403_FORBIDDEN,
        )

    def _override(self, request: Request, run: Any) -> Response:
        release = self.get_object()
        if refused := self._refused(request, release):
            return refused
        body = OverrideSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            run(release.pk, request.user.get_username(), body.validated_data["note"])
        except OverrideRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        release.refresh_from_db()
        return Response(ReleaseSerializer(release).data)

    @extend_schema(request=OverrideSerializer, responses=OVERRIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        return self._override(request, approve)

    @extend_schema(request=OverrideSerializer, responses=OVERRIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        return self._override(request, reject)

    @extend_schema(request=OverrideSerializer, responses=OVERRIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._override(request, pause)

    @extend_schema(request=OverrideSerializer, responses=OVERRIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._override(request, resume)

    @extend_schema(request=ExtendSerializer, responses=OVERRIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def extend(self, request: Request, pk: str | None = None) -> Response:
        release = self.get_object()
        if refused := self._refused(request, release):
            return refused
        body = ExtendSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            extend_wait(
                release.pk,
                request.user.get_username(),
                body.validated_data["by"],
                body.validated_data["note"],
            )
        except OverrideRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        release.refresh_from_db()
        return Response(ReleaseSerializer(release).data)
