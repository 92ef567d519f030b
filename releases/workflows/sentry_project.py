"""From the Sentry project users write (a slug, as Sentry's UI shows it) to what Sentry needs.

Sentry's data endpoints take numeric project ids only and answer a slug with a 400, while
metric alerts name projects by slug (docs/vendor-apis.md §3.2, §3.5). So a project keeps both,
resolved through Sentry's project lookup: by ``sync_config`` and the admin when a project is
saved, and by the first poll when neither could reach Sentry.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from releases.core.errors import ProviderError
from releases.integrations import clients
from releases.integrations.sentry.client import SentryProject
from releases.models import Project


@dataclass(frozen=True)
class Resolved:
    project: SentryProject
    note: str = ""  # what a user should know: a rename, or an old slug still in the config


class Unresolvable(Exception):
    """Sentry answered, and the answer means the configured project cannot be used."""


def explain(error: ProviderError, org: str, configured: str) -> str:
    """What a refused lookup means for the person who wrote the config."""
    if error.status == 404:
        return (
            f"Sentry has no project {configured!r} in organisation {org!r} (or no such organisation): "
            "write the project's slug as Sentry's project settings show it"
        )
    if error.status == 403:
        return (
            f"the Sentry token may not read project {configured!r} in {org!r}: "
            "give SENTRY_AUTH_TOKEN the project:read scope"
        )
    if error.status == 401:
        return "Sentry refused SENTRY_AUTH_TOKEN (401): check the token"
    return f"could not ask Sentry about project {configured!r} in {org!r}: {error}"


def refused(error: ProviderError) -> bool:
    """A definite no from Sentry, as against Sentry being slow, down or rate limiting."""
    return error.status in (400, 401, 403, 404)


def resolve(org: str, configured: str, known_id: int | None = None) -> Resolved:
    """Ask Sentry which project ``configured`` is.

    Raises Unresolvable when Sentry says no, ProviderError when it could not be asked. A slug
    Sentry no longer knows, on a project whose id we resolved before, is looked up by that id:
    the config then names a slug Sentry has dropped, which the note says."""
    client = clients.sentry()
    try:
        found = client.project(org, configured)
    except ProviderError as error:
        if not refused(error):
            raise
        if error.status == 404 and known_id is not None and str(known_id) != configured:
            try:
                by_id = client.project(org, str(known_id))
            except ProviderError:
                raise Unresolvable(explain(error, org, configured)) from error
            return Resolved(by_id, f"Sentry project {configured!r} is now {by_id.slug!r}: update the config")
        raise Unresolvable(explain(error, org, configured)) from error
    note = ""
    if found.moved_from is not None:
        note = f"Sentry project {configured!r} was renamed {found.slug!r}: update the config"
    return Resolved(found, note)


def store(project: Project, found: SentryProject) -> list[str]:
    """Set the resolved fields on ``project`` (not saved); the names of those that changed."""
    changed = []
    for name, value in (("sentry_project_id", found.id), ("sentry_project_slug", found.slug)):
        if getattr(project, name) != value:
            setattr(project, name, value)
            changed.append(name)
    project.sentry_resolved_at = timezone.now()
    return [*changed, "sentry_resolved_at"]


def query_id(project: Project) -> str:
    """The numeric id a data query sends. Resolved (and stored) now if it never was; a numeric
    ``sentry_project`` is used as it is. Raises ProviderError when Sentry cannot say."""
    if project.sentry_project_id is not None:
        return str(project.sentry_project_id)
    if project.sentry_project.isdigit():
        return project.sentry_project
    try:
        found = resolve(project.sentry_org, project.sentry_project).project
    except Unresolvable as exc:
        raise ProviderError(str(exc), provider="sentry", permanent=True, code="unknown_project") from exc
    fields = store(project, found)
    Project.objects.filter(pk=project.pk).update(**{name: getattr(project, name) for name in fields})
    return str(found.id)
