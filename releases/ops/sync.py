"""Apply a validated config to the database: create and update projects, never delete history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction

from releases.models import Project
from releases.ops.config import ConfigError


@dataclass
class Change:
    name: str
    kind: str  # created | updated | unchanged | kept
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.kind == "updated":
            diffs = ", ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, (a, b) in self.fields.items())
            return f"updated {self.name}: {diffs}"
        if self.kind == "kept":
            return f"kept {self.name} (not in the file; its history stays)"
        return f"{self.kind} {self.name}"


def _show(value: Any) -> str:
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g}s"
    return repr(value)


def apply(projects: list[dict[str, Any]], source: str) -> list[Change]:
    changes: list[Change] = []
    names = set()
    try:
        with transaction.atomic():
            for values in projects:
                names.add(values["name"])
                project = Project.objects.select_for_update().filter(name=values["name"]).first()
                if project is None:
                    Project.objects.create(**values, synced_from=source)
                    changes.append(Change(values["name"], "created"))
                    continue
                diffs = {k: (getattr(project, k), v) for k, v in values.items() if getattr(project, k) != v}
                if diffs:
                    for key, (_, new) in diffs.items():
                        setattr(project, key, new)
                    project.synced_from = source
                    project.save()
                    changes.append(Change(project.name, "updated", diffs))
                else:
                    changes.append(Change(project.name, "unchanged"))
    except IntegrityError as exc:
        raise ConfigError([f"conflicts with a project already in the database: {exc}"]) from exc
    for name in Project.objects.exclude(name__in=names).values_list("name", flat=True):
        changes.append(Change(name, "kept"))
    return changes
