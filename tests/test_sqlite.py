"""`make run` uses SQLite unless DATABASE_URL says otherwise: the claims and locks must work there too.

The suite runs on PostgreSQL, so this runs the paths whose queries lean on the database (the
dispatcher's SKIP LOCKED claim, the outbox claim and insert, the poll claim, the alert's project
and live-release lookups, the beat lease's date arithmetic) in a child process on a fresh SQLite
file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import django
    django.setup()
    from datetime import timedelta
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone
    from releases.core import outbox, production
    from releases.inbound import sentry
    from releases.scheduling import dispatcher
    from releases.workflows import alert_rollback, polls
    from releases import tasks
    from releases.models import Action, Analysis, Project, Release
    from releases.core.outbox import ActionSpec

    assert connection.vendor == "sqlite"
    call_command("migrate", verbosity=0)
    now = timezone.now()
    project = Project.objects.create(
        name="shop-web", vercel_project_id="prj_1", sentry_org="acme", sentry_project="shop-web",
        sentry_project_id=4507, sentry_environment="production",
    )
    good = Release.objects.create(project=project, deployment_id="dpl_good", version="v1",
                                  state="promoted", promoted_at=now - timedelta(days=1))
    live = Release.objects.create(project=project, deployment_id="dpl_live", version="v2",
                                  state="promoted", promoted_at=now)
    Project.objects.filter(pk=project.pk).update(live_deployment_id="dpl_live")
    project.refresh_from_db()

    found, target = production.live_and_known_good(project)
    assert (found.pk, target.pk) == (live.pk, good.pk), (found, target)

    alert = sentry.read_metric_alert({
        "action": "critical",
        "data": {"metric_alert": {"id": "1", "projects": ["shop-web", "other"],
                                  "alert_rule": {"environment": "production"}}},
    })
    assert alert_rollback._project_for(alert).pk == project.pk

    spec = ActionSpec(kind="slack", key="slack:1:1", payload={"text": "x"})
    (written,) = outbox.write_actions(live, [spec])
    assert outbox.write_actions(live, [spec]) == []
    claimed = outbox.claim(written.pk)
    assert claimed.status == "running" and claimed.release.project.name == "shop-web"
    assert outbox.claim(written.pk) is None

    sent = []
    tasks.poll_batch.apply_async = lambda args, **kwargs: sent.append(args)
    def gate(deployment_id, version, due):
        release = Release.objects.create(project=project, deployment_id=deployment_id, version=version,
                                         state="gating")
        return Analysis.objects.create(release=release, kind="gate", policy=project.policy().to_json(),
                                       generation=0, next_check_at=due, started_at=now)

    gating = gate("dpl_new", "v3", now)
    soon = gate("dpl_soon", "v4", now + timedelta(seconds=3))
    gate("dpl_later", "v5", now + timedelta(minutes=5))
    assert dispatcher.dispatch_due(now)["due"] == 2  # topped up with the one due next
    assert [[item[:2] for item in args[0]] for args in sent] == [
        [(gating.pk, gating.generation), (soon.pk, soon.generation)]
    ]
    assert dispatcher.dispatch_due(now)["due"] == 0

    from releases.integrations import clients
    from releases.integrations.sentry.client import SessionTotals

    class FakeSentry:
        def release_sessions(self, *args, **kwargs):
            return {"v3": SessionTotals(sessions=5, crashed=0)}

    clients.sentry = lambda timeout=None: FakeSentry()
    assert polls.poll_batch([(gating.pk, gating.generation)], now) == {gating.pk: "wait"}
    assert polls.poll_batch([(gating.pk, gating.generation)], now) == {}  # claimed once
    gating.refresh_from_db()
    assert (gating.generation, gating.release.sessions) == (1, 5)

    from releases.scheduling import lease
    assert lease.hold("beat", "a", 10) and not lease.hold("beat", "b", 10) and lease.hold("beat", "a", 10)
    assert lease.give_up("beat", "a") and lease.hold("beat", "b", 10)
    assert lease.read("beat").held_by() == "b"
    print("sqlite ok")
    """
)


def test_the_claims_and_lookups_run_on_sqlite(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gatekeeper.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DEBUG": "1",
        "VERCEL_WEBHOOK_SECRET": "x",
        "SENTRY_WEBHOOK_SECRET": "x",
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # never reached: publishing is replaced
    }
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the assertion below shows stderr
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("sqlite ok")
