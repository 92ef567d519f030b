import datetime
from datetime import timedelta

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models
from django.utils import timezone

GATE_PASSED = {"pass", "approved"}
GATE_FAILED = {"fail", "rejected"}
DAY = timedelta(days=1)


def _gate_policy(project, threshold=None, max_wait=None):
    return {
        "min_sessions": project.min_sessions,
        "crash_free_threshold": threshold if threshold is not None else project.crash_free_threshold,
        "max_wait": max_wait if max_wait is not None else project.max_wait.total_seconds(),
        "max_consecutive_errors": project.max_consecutive_errors,
        "on_timeout": project.on_timeout,
        "fail_fast": project.fail_fast,
        "early_fail_confidence": project.early_fail_confidence,
        "early_fail_min_sessions": project.early_fail_min_sessions,
    }


def _gate_phase(release):
    if release.state == "gating":
        return "running"
    if release.verdict in GATE_PASSED:
        return "passed"
    if release.verdict in GATE_FAILED:
        return "failed"
    if release.verdict == "inconclusive":
        return "inconclusive"
    return "stopped"


def split_analyses(apps, schema_editor):
    """Each release's gate, bake watch and canary stages become analyses of their own, with the
    counters and schedule the release row held, and every check is tied to the analysis it was for."""
    Release = apps.get_model("releases", "Release")
    Analysis = apps.get_model("releases", "Analysis")
    GateCheck = apps.get_model("releases", "GateCheck")
    RampCheck = apps.get_model("releases", "RampCheck")
    now = timezone.now()
    for release in Release.objects.select_related("project").iterator():
        project = release.project
        kinds = set(GateCheck.objects.filter(release=release).values_list("phase", flat=True))
        ramp_stages = set(RampCheck.objects.filter(release=release).values_list("stage", flat=True))
        if release.ramp_policy is None and (release.gating_started_at is not None or "gate" in kinds):
            gating = release.state == "gating"
            gate = Analysis.objects.create(
                release=release,
                kind="gate",
                phase=_gate_phase(release),
                policy=_gate_policy(project),
                generation=release.generation,
                next_check_at=release.next_poll_at if gating else None,
                started_at=release.gating_started_at or release.created_at,
                extra_wait=release.extra_wait,
                consecutive_errors=release.consecutive_errors if gating else 0,
                ended_at=None if gating else release.decided_at or release.updated_at,
                created_at=release.gating_started_at or release.created_at,
            )
            GateCheck.objects.filter(release=release, phase="gate").update(analysis=gate)
        watching = release.state == "promoted" and release.watch_until is not None
        if watching or "bake" in kinds:
            breached = GateCheck.objects.filter(release=release, phase="bake", outcome="fail").exists()
            watch = project.watch_after_promotion.total_seconds()
            bake = Analysis.objects.create(
                release=release,
                kind="bake",
                phase="running" if watching else "failed" if breached else "passed",
                policy=_gate_policy(
                    project, threshold=project.watch_threshold or None, max_wait=watch + DAY.total_seconds()
                ),
                generation=release.generation if watching else 0,
                next_check_at=release.next_poll_at if watching else None,
                started_at=release.promoted_at or release.updated_at,
                ends_at=release.watch_until,
                consecutive_errors=release.consecutive_errors if watching else 0,
                ended_at=None if watching else release.updated_at,
                created_at=release.promoted_at or release.updated_at,
            )
            GateCheck.objects.filter(release=release, phase="bake").update(analysis=bake)
        stray = GateCheck.objects.filter(release=release, analysis__isnull=True)
        if stray.exists():
            other = Analysis.objects.create(release=release, kind="gate", phase="stopped", ended_at=now)
            stray.update(analysis=other)
        if release.ramp_policy is None and not ramp_stages:
            continue
        ramping = release.state == "ramping"
        current = release.ramp_stage if release.ramp_stage is not None else 0
        for stage in sorted(ramp_stages | {current}):
            is_current = stage == current
            if ramping and is_current:
                phase = (
                    "waiting"
                    if release.ramp_stage is None
                    else "paused"
                    if release.ramp_paused
                    else "running"
                )
            elif stage < current or release.state == "promoted":
                phase = "passed"
            elif release.state in ("rolling_back", "rolled_back"):
                phase = "failed"
            else:
                phase = "stopped"
            live = ramping and is_current
            analysis = Analysis.objects.create(
                release=release,
                kind="canary",
                stage=stage,
                phase=phase,
                policy=release.ramp_policy or {},
                generation=release.generation if live else 0,
                next_check_at=release.next_poll_at if live and phase == "running" else None,
                started_at=release.ramp_stage_since if is_current else None,
                passes=release.ramp_passes if live else 0,
                failures=release.ramp_failures if live else 0,
                ended_at=None if live else release.updated_at,
            )
            RampCheck.objects.filter(release=release, stage=stage).update(analysis=analysis)


class Migration(migrations.Migration):
    dependencies = [
        ("releases", "0005_release_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="Analysis",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[("gate", "gate"), ("bake", "bake watch"), ("canary", "canary stage")],
                        max_length=10,
                    ),
                ),
                (
                    "stage",
                    models.SmallIntegerField(blank=True, help_text="canary: the stage's index", null=True),
                ),
                (
                    "phase",
                    models.CharField(
                        choices=[
                            ("waiting", "waiting for its traffic"),
                            ("running", "running"),
                            ("paused", "paused"),
                            ("passed", "passed"),
                            ("failed", "failed"),
                            ("inconclusive", "inconclusive"),
                            ("stopped", "stopped"),
                        ],
                        default="running",
                        max_length=20,
                    ),
                ),
                ("policy", models.JSONField(blank=True, default=dict)),
                ("generation", models.PositiveIntegerField(default=0)),
                ("next_check_at", models.DateTimeField(blank=True, null=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                (
                    "ends_at",
                    models.DateTimeField(blank=True, help_text="bake: when the watch ends", null=True),
                ),
                (
                    "extra_wait",
                    models.DurationField(default=datetime.timedelta(0), help_text="gate: added by a human"),
                ),
                ("consecutive_errors", models.PositiveIntegerField(default=0)),
                (
                    "passes",
                    models.PositiveSmallIntegerField(default=0, help_text="canary: passing checks in a row"),
                ),
                (
                    "failures",
                    models.PositiveSmallIntegerField(default=0, help_text="canary: failed checks in a row"),
                ),
                ("ended_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "release",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="analyses",
                        to="releases.release",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "analyses",
                "ordering": ["created_at", "id"],
            },
        ),
        migrations.AddField(
            model_name="gatecheck",
            name="analysis",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="checks",
                to="releases.analysis",
            ),
        ),
        migrations.AddField(
            model_name="rampcheck",
            name="analysis",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="ramp_checks",
                to="releases.analysis",
            ),
        ),
        migrations.RunPython(split_analyses, migrations.RunPython.noop),
    ]
