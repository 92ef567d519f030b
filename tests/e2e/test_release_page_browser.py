"""The release page and an override in a real browser: Debian's Chromium, headless, through
Selenium, against the live server. What a release manager sees and does: read the verdict and
the chart, approve with a note, find the note in the history."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from releases.domain.lifecycle import ReleaseState
from releases.models import Analysis, GateCheck, Release
from tests.factories import gating_release, make_project

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.e2e,
    # .ci/run installs both (Debian's chromium and chromium-driver).
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromedriver"),
]
PASSWORD = "a-long-browser-test-password"


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # A first start of Chromium on a cold machine is slow: lookups wait for the page this long.
    driver.implicitly_wait(20)
    yield driver
    driver.quit()


def held_with_evidence() -> Release:
    """A gate 8 minutes in: 400 sessions at 98.75% crash-free, below the 500-session floor."""
    release = gating_release(make_project(), version="abc1234")
    analysis = release.analyses.get(kind=Analysis.Kind.GATE)
    start = timezone.now() - timedelta(minutes=8)
    for minute, (sessions, crashed) in enumerate(((100, 1), (200, 3), (400, 5)), start=1):
        GateCheck.objects.create(
            release=release,
            analysis=analysis,
            generation=1,
            checked_at=start + timedelta(minutes=minute),
            sessions=sessions,
            crashed=crashed,
            crash_free_rate=1 - crashed / sessions,
            outcome="wait",
            rule="waiting",
        )
    Release.objects.filter(pk=release.pk).update(
        gating_started_at=start, sessions=400, crashed=5, crash_free_rate=1 - 5 / 400
    )
    # Next checked in an hour: the e2e tests' worker shares this database and would poll a gate
    # due now, replacing these figures with the simulator's.
    Analysis.objects.filter(pk=analysis.pk).update(next_check_at=timezone.now() + timedelta(hours=1))
    return release


def test_a_release_manager_reads_the_verdict_and_chart_and_approves_with_a_note(
    live_server: Any, browser: Any, no_broker: list[Any]
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    def arrived(condition: Any) -> None:
        WebDriverWait(browser, 20).until(condition)

    User.objects.create_superuser("alice", email="alice@example.com", password=PASSWORD)
    release = held_with_evidence()
    page = f"{live_server.url}/admin/releases/release/{release.pk}/change/"

    browser.get(f"{live_server.url}/admin/login/?next=/admin/releases/release/{release.pk}/change/")
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    arrived(until.url_contains(f"/release/{release.pk}/change/"))

    verdict = browser.find_element(By.ID, "verdict").text
    assert "400 sessions" in verdict and "98.75%" in verdict, verdict
    chart = browser.find_element(By.ID, "release-chart")
    assert chart.tag_name == "svg" and chart.size["width"] > 200 and chart.size["height"] > 100
    assert "Save" not in browser.find_element(By.ID, "content-main").text

    browser.find_element(By.XPATH, "//button[starts-with(normalize-space(.), 'Approve')]").click()
    arrived(until.presence_of_element_located((By.ID, "confirm-override")))
    evidence = browser.find_element(By.ID, "confirm-override").text
    assert "400 sessions" in evidence and "below the 500-session minimum" in evidence, evidence
    note = browser.find_element(By.ID, "id_note")
    note.send_keys("checked the logs by hand: ship it")
    browser.find_element(By.CSS_SELECTOR, "#confirm-override [type=submit]").click()
    arrived(until.staleness_of(note))  # the confirmation page is gone: the override was posted

    browser.get(page)
    history = browser.find_element(By.ID, "history").text
    assert "checked the logs by hand: ship it" in history and "alice" in history, history
    release.refresh_from_db()
    assert release.state in (ReleaseState.PASSED, ReleaseState.PROMOTING)
    assert release.verdict_rule == "override:approve"
