"""Which Sentry organisations, projects and environments exist, as Sentry's API sees them.

Sentry's data endpoints take numeric project ids only, refuse a slug with a 400, an id outside
the organisation with a 403 and an unknown organisation or environment with a 404
(docs/vendor-apis.md §3.2). A simulator that answered those with zeros would hide the very
mistakes a first install makes, so every answer here follows Sentry's.

Projects are registered through ``/_sim/sentry/projects``, and also come into being where a
test already names them: a Vercel project's ``sentry`` mapping and a traffic registration.
Renaming a project (registering its id under a new slug) keeps the old slug as a redirect, as
Sentry's ``ProjectRedirect`` does.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.wire import ControlError, as_text, require_text

if TYPE_CHECKING:
    from simulator.state import Simulator

# Every scope a token could hold that these endpoints look at. A token is all of them unless a
# test narrows it to show what a token without ``project:read`` can and cannot do.
SCOPES = ("org:read", "project:read", "event:read")
ORG_ID_BASE = 100


@dataclass
class SentryProject:
    org: str
    id: int
    slug: str
    name: str
    environments: set[str] = field(default_factory=set)
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "org": self.org,
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "environments": sorted(self.environments),
        }


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str


NOT_FOUND = Refusal(404, "The requested resource does not exist")
FORBIDDEN = Refusal(403, "You do not have permission to perform this action.")


class SentryDirectory:
    """Callers need not hold the lock: every method takes it."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._projects: dict[tuple[str, int], SentryProject] = {}
        self._redirects: dict[tuple[str, str], int] = {}  # (org, old slug) -> project id
        self.scopes: set[str] = set(SCOPES)

    # --- registering ------------------------------------------------------------------------

    def register(self, body: dict[str, Any]) -> SentryProject:
        org, slug = require_text(body, "org"), require_text(body, "slug")
        raw_id = body.get("id")
        if raw_id is not None and (isinstance(raw_id, bool) or not str(raw_id).isdigit()):
            raise ControlError("id: a numeric Sentry project id")
        environments = body.get("environments", [])
        if not isinstance(environments, list) or not all(isinstance(e, str) and e for e in environments):
            raise ControlError("environments: a list of names")
        return self.add(
            org, slug, int(raw_id) if raw_id is not None else None, environments, as_text(body, "name")
        )

    def add(
        self,
        org: str,
        slug: str,
        project_id: int | None = None,
        environments: list[str] | tuple[str, ...] = (),
        name: str | None = None,
    ) -> SentryProject:
        """Register (or extend) a project; the same id under a new slug is a rename."""
        with self.sim.lock:
            existing = self._by_slug(org, slug)
            if project_id is None:
                project_id = existing.id if existing else default_project_id(org, slug)
            project = self._projects.get((org, project_id))
            if project is None:
                if existing is not None and existing.id != project_id:
                    raise ControlError(f"slug {slug!r} already names project {existing.id} in {org}", 409)
                project = SentryProject(org, project_id, slug, name or slug, created_at=self.sim.now())
                self._projects[(org, project_id)] = project
            elif project.slug != slug:
                if existing is not None:
                    raise ControlError(f"slug {slug!r} already names project {existing.id} in {org}", 409)
                self._redirects[(org, project.slug)] = project.id
                project.slug = slug
            self._redirects.pop((org, slug), None)
            if name:
                project.name = name
            project.environments.update(environments)
            return project

    def _by_slug(self, org: str, slug: str) -> SentryProject | None:
        return next((p for (o, _), p in self._projects.items() if o == org and p.slug == slug), None)

    def _sync_derived(self) -> None:
        """Projects named by registered traffic and by Vercel projects' ``sentry`` mappings."""
        for traffic in self.sim.traffic.entries():
            known = self._projects.get((traffic.org, traffic.project_id))
            if known is None and self._by_slug(traffic.org, traffic.project) is not None:
                continue  # the slug belongs to a registered project under another id; that one wins
            if known is None or traffic.environment not in known.environments:
                self.add(traffic.org, traffic.project, traffic.project_id, [traffic.environment])
        for vercel_project in list(self.sim.vercel.projects.values()):
            mapping = vercel_project.sentry
            org, slug = mapping.get("org"), mapping.get("project")
            if not (isinstance(org, str) and isinstance(slug, str) and org and slug):
                continue
            environment = str(mapping.get("environment") or "production")
            given = _as_id(mapping.get("project_id"))
            known = self._by_slug(org, slug)
            if known is not None and given in (None, known.id):
                known.environments.add(environment)
            elif known is None and (given is None or (org, given) not in self._projects):
                self.add(org, slug, given, [environment])

    def id_for(self, org: str, slug: str) -> int:
        """The id of a slug: the registered one, so traffic named by slug agrees with the
        directory, else a stable one of its own."""
        with self.sim.lock:
            self._sync_derived()
            project = self._by_slug(org, slug)
            return project.id if project else default_project_id(org, slug)

    # --- what Sentry's endpoints ask ---------------------------------------------------------

    def knows_org(self, org: str) -> bool:
        with self.sim.lock:
            self._sync_derived()
            return any(o == org for o, _ in self._projects)

    def organization(self, org: str) -> dict[str, Any] | None:
        if not self.knows_org(org):
            return None
        orgs = sorted({o for o, _ in self._projects})
        return {"id": str(ORG_ID_BASE + orgs.index(org)), "slug": org, "name": org.replace("-", " ").title()}

    def lookup(self, org: str, id_or_slug: str) -> tuple[SentryProject | None, bool]:
        """(project, moved): ``moved`` when ``id_or_slug`` is a slug the project no longer has."""
        with self.sim.lock:
            self._sync_derived()
            if id_or_slug.isdigit():
                return self._projects.get((org, int(id_or_slug))), False
            project = self._by_slug(org, id_or_slug)
            if project is not None:
                return project, False
            moved = self._redirects.get((org, id_or_slug))
            return (self._projects.get((org, moved)), True) if moved is not None else (None, False)

    def check_scope(self, org: str, projects: list[str], environments: list[str]) -> Refusal | None:
        """Sentry's order of refusals for an organisation data query (§3.2)."""
        with self.sim.lock:
            self._sync_derived()
            if not any(o == org for o, _ in self._projects):
                return NOT_FOUND
            if "org:read" not in self.scopes:
                return FORBIDDEN
            for value in projects:
                if value == "-1":
                    continue
                if not value.lstrip("-").isdigit():
                    return Refusal(400, "Invalid project parameter. Values must be numbers.")
                if (org, int(value)) not in self._projects:
                    return FORBIDDEN
            known = {e for (o, _), p in self._projects.items() if o == org for e in p.environments}
            if any(e not in known for e in environments):
                return NOT_FOUND
        return None

    def list(self) -> list[dict[str, Any]]:
        with self.sim.lock:
            self._sync_derived()
            return [p.to_json() for p in sorted(self._projects.values(), key=lambda p: (p.org, p.id))]

    def set_scopes(self, scopes: Any) -> list[str]:
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ControlError("scopes: a list of scope names such as org:read")
        with self.sim.lock:
            self.scopes = set(scopes)
            return sorted(self.scopes)

    def clear(self) -> None:
        with self.sim.lock:
            self._projects.clear()
            self._redirects.clear()
            self.scopes = set(SCOPES)


def _as_id(value: Any) -> int | None:
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return int(text) if text.isdigit() else None


def default_project_id(org: str, project: str) -> int:
    """A stable numeric id for a project registered by slug only."""
    return 1_000_000 + zlib.crc32(f"{org}/{project}".encode()) % 9_000_000
