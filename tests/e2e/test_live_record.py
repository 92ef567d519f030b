"""What Gatekeeper records as live follows Vercel where a webhook leaves it in doubt: a rollback
done by hand in Vercel (``deployment.rollback`` is a request accepted, and nothing follows the
switch), with a real worker, the web and the simulator over HTTP."""

from __future__ import annotations

import httpx
import pytest

from releases.domain.lifecycle import ReleaseState
from releases.models import Action, Project, Release
from tests.conftest import Simulator, wait_for
from tests.e2e.conftest import BASELINE, E2E_PROJECT

pytestmark = pytest.mark.e2e
S = ReleaseState
NEW = "dpl_e2eLiveRecordNew000000001"


def live(project: Project) -> str:
    return Project.objects.filter(pk=project.pk).values_list("live_deployment_id", flat=True).get()


def test_a_rollback_done_by_hand_in_vercel_moves_live_once_vercel_serves_it(
    project: Project, e2e: Simulator
) -> None:
    wait_for(lambda: live(project) == BASELINE, what="the baseline to be live")
    e2e.control(
        "POST",
        "/vercel/deployments",
        json={
            "project_id": E2E_PROJECT,
            "id": NEW,
            "live": True,
            "target": "production",
            "webhooks": ["deployment.promoted"],
        },
    )
    wait_for(lambda: live(project) == NEW, what="the promoted deployment to be live")

    # Someone presses Instant Rollback in Vercel's dashboard; Vercel says it accepted it.
    with httpx.Client(base_url=f"{e2e.url}/vercel", headers={"Authorization": "Bearer t"}) as vercel:
        assert vercel.post(f"/v1/projects/{E2E_PROJECT}/rollback/{BASELINE}").status_code == 201
    e2e.control("POST", "/vercel/webhooks", json={"type": "deployment.rollback", "deployment_id": BASELINE})

    wait_for(lambda: live(project) == BASELINE, timeout=20, what="live to follow Vercel back to the baseline")
    # (The promote above, seconds after the baseline went live, was confirmed with Vercel too.)
    confirm = Action.objects.get(kind="learn", payload__then="confirm", payload__expect=BASELINE)
    assert confirm.status == "succeeded" and confirm.result["serving"] == BASELINE
    assert Release.objects.get(deployment_id=NEW).state == S.SUPERSEDED
    assert Release.objects.get(deployment_id=BASELINE).state == S.PROMOTED
