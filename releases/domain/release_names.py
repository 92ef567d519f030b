"""How a Vercel deployment names its Sentry release: the project's template, checked and rendered.

Pure: no Django.
"""

from __future__ import annotations

import re
import string
from typing import Any

TEMPLATE_FIELDS = {"id", "url", "name", "meta", "project_id", "target"}


def template_problems(template: str) -> list[str]:
    """Release-name templates may use deployment fields only, never attributes of them."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return [f"is not a valid template ({exc})"]
    problems = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if not name or root not in TEMPLATE_FIELDS:
            problems.append(f"unknown field {{{name}}} (use {', '.join(sorted(TEMPLATE_FIELDS))})")
        elif "." in name or (root != "meta" and "[" in name) or name.count("[") > 1:
            problems.append(f"{{{name}}}: only meta[key] lookups are allowed")
        if spec or conversion:
            problems.append(f"{{{name}}}: format specs and conversions are not allowed")
    if not any(name for _, name, _, _ in parsed) and not template.strip():
        problems.append("is empty")
    return problems


def render_release(template: str, deployment: dict[str, Any]) -> str:
    """The Sentry release name of a Vercel deployment. Raises KeyError naming a missing field."""
    values = {
        "id": deployment.get("id", ""),
        "url": deployment.get("url", ""),
        "name": deployment.get("name", ""),
        "project_id": deployment.get("project_id", ""),
        "target": deployment.get("target") or "",
        "meta": {str(k): str(v) for k, v in (deployment.get("meta") or {}).items()},
    }
    rendered = template.format_map(values)
    if not rendered.strip():
        raise KeyError("release name is empty")
    return rendered.strip()
