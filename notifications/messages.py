"""What Gatekeeper says in Slack: the verdict, its numbers, what was done, and where to look.

Messages are built when the decision is recorded and stored in the outbox row, so what is
posted is exactly what was decided, even if it is posted minutes later after a Slack outage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from django.conf import settings

from releases.domain.wording import odds

EMOJI = {
    "pass": ":white_check_mark:",
    "fail": ":x:",
    "inconclusive": ":hourglass:",
    "info": ":information_source:",
}


@dataclass(frozen=True)
class Facts:
    """The numbers and names a message shows; plain values, easy to test."""

    project: str
    release: str
    deployment_id: str
    outcome: str  # pass | fail | inconclusive | info
    headline: str  # what happened, e.g. "promoting to production"
    reasons: tuple[str, ...] = ()
    sessions: int | None = None
    crashed: int | None = None
    crash_free_rate: float | None = None
    threshold: float | None = None
    elapsed: float | None = None
    evidence: str = ""  # what the sequential test found, in words; empty for the fixed rule
    sentry_url: str = ""
    vercel_url: str = ""
    admin_url: str = ""
    dry_run: bool = False


def percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.2f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def count(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def verdict_message(facts: Facts) -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, Block Kit blocks) for a verdict."""
    prefix = "[dry run] " if facts.dry_run else ""
    word = {"pass": "passed", "fail": "failed", "inconclusive": "inconclusive"}.get(facts.outcome, "")
    title = f"{prefix}{facts.project} {facts.release}: {word + ', ' if word else ''}{facts.headline}"
    rate_line = f"{percent(facts.crash_free_rate)} (threshold {percent(facts.threshold)})"
    text = (
        f"{EMOJI.get(facts.outcome, '')} {title}. Crash-free {rate_line}, "
        f"{count(facts.sessions)} sessions, {count(facts.crashed)} crashed, after {duration(facts.elapsed)}."
    )
    if facts.evidence:
        text += f" {facts.evidence[0].upper()}{facts.evidence[1:]}."
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {
            "type": "section",
            "fields": [
                {
                    "type": "mrkdwn",
                    "text": f"*Verdict*\n{EMOJI.get(facts.outcome, '')} {word or facts.outcome}",
                },
                {"type": "mrkdwn", "text": f"*Crash-free rate*\n{rate_line}"},
                {"type": "mrkdwn", "text": f"*Sessions*\n{count(facts.sessions)}"},
                {"type": "mrkdwn", "text": f"*Crashed*\n{count(facts.crashed)}"},
                {"type": "mrkdwn", "text": f"*Time taken*\n{duration(facts.elapsed)}"},
                {"type": "mrkdwn", "text": f"*Deployment*\n`{facts.deployment_id}`"},
            ],
        },
    ]
    if facts.evidence:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence*\n{facts.evidence}"}}
        )
    if facts.reasons:
        reasons = "\n".join(f"• {reason}" for reason in facts.reasons)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": reasons[:2900]}})
    links = [
        f"<{url}|{label}>"
        for label, url in (
            ("Sentry release", facts.sentry_url),
            ("Vercel deployment", facts.vercel_url),
            ("Gatekeeper", facts.admin_url),
        )
        if url
    ]
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    return text, blocks


def sentry_release_url(org: str, version: str, project: str = "") -> str:
    """Where a person opens the release in Sentry (not the API)."""
    if not version:
        return ""
    suffix = f"?project={quote(project, safe='')}" if project.isdigit() else ""
    return sentry_web_url(org, f"releases/{quote(version, safe='')}/{suffix}")


def sentry_web_url(org: str, path: str) -> str:
    """A page of the organisation in Sentry's web app: ``path`` after the organisation part."""
    base = settings.SENTRY_WEB_URL.rstrip("/")
    if base:
        return f"{base}/organizations/{quote(org)}/{path}"
    host = urlsplit(settings.SENTRY_API_URL).netloc
    if host == "sentry.io" or host.endswith(".sentry.io"):
        return f"https://{quote(org)}.sentry.io/{path}"
    scheme = urlsplit(settings.SENTRY_API_URL).scheme
    return f"{scheme}://{host}/organizations/{quote(org)}/{path}"


def admin_url(release_id: int) -> str:
    return f"{settings.GATEKEEPER_PUBLIC_URL}/admin/releases/release/{release_id}/change/"


def evidence(figures: dict[str, Any], outcome: str) -> str:
    """What the sequential test found, in a sentence a release manager reads; "" for the fixed rule."""
    method = figures.get("method")
    if method not in {"sequential", "watch"} or figures.get("bad_crash_rate") is None:
        return ""
    good, bad = percent(1 - figures["good_crash_rate"]), percent(1 - figures["bad_crash_rate"])
    if outcome == "fail" or method == "watch":
        return (
            f"evidence {odds(figures['rollback_statistic'] or 0.0)} that the crash-free rate is {bad} "
            f"or worse rather than {good} (rolls back at {odds(figures['rollback_level'])})"
        )
    if outcome == "pass":
        return (
            f"evidence {odds(figures['promote_statistic'] or 0.0)} that the crash-free rate is {good} "
            f"or better rather than {bad} (promotes at {odds(figures['promote_level'])})"
        )
    clean, crashes = figures.get("clean_to_promote"), figures.get("crashes_to_rollback")
    promote = (
        f"{clean:,} more crash-free sessions would promote" if clean else "no crash-free run would promote"
    )
    return f"no verdict yet: {promote}, {crashes or 0:,} more crashed would roll back"
