"""Two fewer indexes written per gate start: the deployment id's LIKE index that unique=True
builds (nothing queries it with LIKE), and the project's own index (release_known_good starts
with the project). The new constraint comes first, so the id is never without one."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("releases", "0004_poll_lag"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="release",
            constraint=models.UniqueConstraint(fields=("deployment_id",), name="unique_release_deployment"),
        ),
        migrations.AlterField(
            model_name="release",
            name="deployment_id",
            field=models.CharField(max_length=100),
        ),
        migrations.AlterField(
            model_name="release",
            name="project",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="releases",
                to="releases.project",
            ),
        ),
    ]
