import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """The release row's counters, schedule and ramp fields now live in its analyses."""

    dependencies = [
        ("releases", "0006_analyses"),
    ]

    operations = [
        migrations.AlterField(
            model_name="gatecheck",
            name="analysis",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="checks", to="releases.analysis"
            ),
        ),
        migrations.AlterField(
            model_name="rampcheck",
            name="analysis",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="ramp_checks",
                to="releases.analysis",
            ),
        ),
        migrations.RemoveIndex(
            model_name="release",
            name="release_due_polls",
        ),
        migrations.RemoveField(
            model_name="gatecheck",
            name="phase",
        ),
        migrations.RemoveField(
            model_name="release",
            name="consecutive_errors",
        ),
        migrations.RemoveField(
            model_name="release",
            name="extra_wait",
        ),
        migrations.RemoveField(
            model_name="release",
            name="generation",
        ),
        migrations.RemoveField(
            model_name="release",
            name="next_poll_at",
        ),
        migrations.RemoveField(
            model_name="release",
            name="ramp_failures",
        ),
        migrations.RemoveField(
            model_name="release",
            name="ramp_passes",
        ),
        migrations.RemoveField(
            model_name="release",
            name="ramp_paused",
        ),
        migrations.RemoveField(
            model_name="release",
            name="ramp_policy",
        ),
        migrations.RemoveField(
            model_name="release",
            name="ramp_stage",
        ),
        migrations.RemoveField(
            model_name="release",
            name="ramp_stage_since",
        ),
        migrations.RemoveField(
            model_name="release",
            name="watch_until",
        ),
        migrations.AddIndex(
            model_name="analysis",
            index=models.Index(fields=["phase", "next_check_at"], name="analysis_due"),
        ),
        migrations.AddConstraint(
            model_name="analysis",
            constraint=models.UniqueConstraint(
                condition=models.Q(("phase__in", ["waiting", "running", "paused"])),
                fields=("release",),
                name="one_open_analysis_per_release",
            ),
        ),
    ]
