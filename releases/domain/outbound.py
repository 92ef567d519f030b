"""What webhook data may become in an outbound request: a host a check may reach, a tag value a
Datadog query may hold.

A deployment's URL comes from a Vercel webhook, and a release name from the deployment's
metadata, which whoever pushes a commit controls. Put in a check's URL as it is,
``evil@127.0.0.1:18556/x`` sends the probe to a loopback address; put in a Datadog query,
``web}`` rewrites the query. So a deployment host must be a plain host name of the project
(its ``*.vercel.app`` deployment host or one of its production domains), and a value in a
Datadog query is reduced to Datadog's own tag alphabet, as Datadog reduces tags on intake.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

VERCEL_DEPLOYMENT_SUFFIX = ".vercel.app"
# Dot-separated labels of letters, digits and inner hyphens, ending in a label that starts with
# a letter: a host name, never an IP literal, a port or user info.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$)(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?$")
# Datadog keeps letters, digits, _ - : . / in a tag, lower-cased, and turns anything else into _.
_NOT_DATADOG_TAG = re.compile(r"[^a-z0-9_:./-]")
DATADOG_TAG_MAX = 200


def deployment_host(url: str, production_domains: Iterable[str]) -> str:
    """The host name of a deployment URL (with or without scheme) when a check may reach it:
    a ``*.vercel.app`` host or one of ``production_domains``; ``""`` otherwise."""
    host = url.strip().split("://", 1)[-1].split("/", 1)[0].lower().rstrip(".")
    if not HOST_NAME.match(host):
        return ""
    domains = {d.strip().lower().rstrip(".") for d in production_domains}
    if host.endswith(VERCEL_DEPLOYMENT_SUFFIX) or host in domains:
        return host
    return ""


def datadog_tag(value: str) -> str:
    """``value`` as Datadog stores it as a tag value, so it matches what was sent and cannot
    change the query it is put in."""
    return _NOT_DATADOG_TAG.sub("_", value.lower())[:DATADOG_TAG_MAX]
