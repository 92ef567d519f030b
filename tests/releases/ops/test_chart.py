"""The release chart: plain SVG, bars inside the plot, and the test's boundaries where known."""

from __future__ import annotations

import re

from releases.ops.chart import Point, boundary_rate, render


def test_a_boundary_is_the_rate_that_many_crashes_would_make() -> None:
    assert boundary_rate(1000, 3) == 0.997
    assert boundary_rate(1000, -1) is None  # no number of crashes would promote yet
    assert boundary_rate(0, 0) is None


def test_the_chart_draws_rate_threshold_sessions_and_boundaries() -> None:
    points = [Point(60, 300, 0.9967, 0.99, 0.98), Point(120, 700, 0.9986, 0.995, 0.99)]

    svg = str(render(points, 0.995, title="shop-web <abc>"))

    assert svg.startswith('<svg id="release-chart"')
    assert '<title id="release-chart-title">shop-web &lt;abc&gt;</title>' in svg
    assert svg.count('class="sessions"') == 2
    assert 'class="threshold"' in svg and "threshold 99.50%" in svg
    assert 'class="promote-at"' in svg and 'class="rollback-at"' in svg
    for x, width in re.findall(r'class="sessions" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', svg):
        assert float(x) >= 60 and float(x) + float(width) <= 660


def test_a_chart_without_rates_still_shows_the_threshold() -> None:
    svg = str(render([Point(30, 0, None)], 0.995, title="no traffic"))

    assert 'class="threshold"' in svg
    assert 'class="crash-free"' not in svg
