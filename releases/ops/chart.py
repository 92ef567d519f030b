"""The release page's chart: crash-free rate and sessions over time against the threshold, as
inline SVG drawn on the server, so the page needs no script and no CDN."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 60, 60, 16, 36


@dataclass(frozen=True)
class Point:
    """One check: seconds since the gate started, its cumulative sessions, and what it measured."""

    seconds: float
    sessions: int
    rate: float | None
    # The crash-free rates the sequential test would promote at / roll back at, at these sessions.
    promote_at: float | None = None
    rollback_at: float | None = None


def boundary_rate(sessions: int, crashes: int | None) -> float | None:
    """The crash-free rate that ``crashes`` crashed sessions in ``sessions`` would be; None when the
    test has no such boundary (a negative count means no number of crashes would do)."""
    if crashes is None or crashes < 0 or sessions <= 0:
        return None
    return max(0.0, 1 - crashes / sessions)


def render(points: Sequence[Point], threshold: float, *, title: str) -> SafeString:
    """An <svg id="release-chart">; the sessions are grey bars on the right-hand scale."""
    rates = [p.rate for p in points if p.rate is not None]
    bounds = [b for p in points for b in (p.promote_at, p.rollback_at) if b is not None]
    low = min([threshold, *rates, *bounds]) if rates else threshold
    low = max(0.0, low - max((1 - low) * 0.2, 0.001))
    span_x = max([p.seconds for p in points] + [1.0])
    top_sessions = max([p.sessions for p in points] + [1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(seconds: float) -> float:
        return LEFT + plot_w * seconds / span_x

    def y(rate: float) -> float:
        return TOP + plot_h * (1 - (rate - low) / (1 - low or 1))

    parts: list[str] = [
        format_html(
            '<svg id="release-chart" role="img" aria-labelledby="release-chart-title" '
            'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="100%" '
            'style="max-width:{}px;font:11px sans-serif">'
            '<title id="release-chart-title">{}</title>',
            WIDTH,
            HEIGHT,
            WIDTH,
            title,
        ),
        format_html(
            '<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#ccc"/>',
            LEFT,
            TOP,
            plot_w,
            plot_h,
        ),
    ]
    bar = min(12.0, max(2.0, plot_w / max(len(points), 1) * 0.5))
    for point in points:
        height = plot_h * point.sessions / top_sessions
        parts.append(
            format_html(
                '<rect class="sessions" x="{}" y="{}" width="{}" height="{}" '
                'fill="#ddd"><title>{} sessions</title></rect>',
                _n(min(max(x(point.seconds) - bar / 2, LEFT), LEFT + plot_w - bar)),
                _n(TOP + plot_h - height),
                _n(bar),
                _n(height),
                f"{point.sessions:,}",
            )
        )
    parts.append(
        format_html(
            '<line class="threshold" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#c00" '
            'stroke-dasharray="6 3"/><text x="{}" y="{}" fill="#c00">threshold {}</text>',
            LEFT,
            LEFT + plot_w,
            _n(y(threshold)),
            _n(y(threshold)),
            LEFT + 4,
            _n(y(threshold) - 4),
            f"{threshold * 100:.2f}%",
        )
    )
    for name, colour, key in (("promote-at", "#2a2", "promote_at"), ("rollback-at", "#a22", "rollback_at")):
        line = [(p.seconds, getattr(p, key)) for p in points if getattr(p, key) is not None]
        if len(line) > 1:
            parts.append(_polyline(name, colour, [(x(s), y(r)) for s, r in line], dashed=True))
    line = [(x(p.seconds), y(p.rate)) for p in points if p.rate is not None]
    if line:
        parts.append(_polyline("crash-free", "#05a", line, dashed=False))
        for (cx, cy), point in zip(line, [p for p in points if p.rate is not None], strict=True):
            parts.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="2.5" fill="#05a"><title>{}: {} crash-free, {} '
                    "sessions</title></circle>",
                    _n(cx),
                    _n(cy),
                    _elapsed(point.seconds),
                    f"{(point.rate or 0) * 100:.2f}%",
                    f"{point.sessions:,}",
                )
            )
    parts.append(
        format_html(
            '<text x="{}" y="{}" text-anchor="end">{}</text>'
            '<text x="{}" y="{}" text-anchor="end">100.00%</text>'
            '<text x="{}" y="{}">0s</text><text x="{}" y="{}" text-anchor="end">{}</text>'
            '<text x="{}" y="{}">{} sessions</text>',
            LEFT - 4,
            TOP + plot_h,
            f"{low * 100:.2f}%",
            LEFT - 4,
            TOP + 10,
            LEFT,
            HEIGHT - BOTTOM + 14,
            LEFT + plot_w,
            HEIGHT - BOTTOM + 14,
            _elapsed(span_x),
            LEFT + plot_w + 4,
            TOP + 10,
            f"{top_sessions:,}",
        )
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every value above went through format_html


def _n(value: float) -> str:
    # format_html escapes its arguments into strings first, so numbers are formatted here.
    return f"{value:.1f}"


def _polyline(name: str, colour: str, points: list[tuple[float, float]], *, dashed: bool) -> str:
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
    dash = ' stroke-dasharray="2 3"' if dashed else ""
    return (
        f'<polyline class="{escape(name)}" fill="none" stroke="{escape(colour)}" stroke-width="1.5"'
        f'{dash} points="{coords}"/>'
    )


def _elapsed(seconds: float) -> str:
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"
