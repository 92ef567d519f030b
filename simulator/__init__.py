"""Local stand-in for the SaaS APIs Gatekeeper talks to (Vercel, Sentry, Slack, PagerDuty,
Datadog, PostHog).

Run it with ``python -m simulator``. It follows the wire contracts in ``docs/vendor-apis.md``
closely enough that Gatekeeper can be tested against it and against independent
implementations of the same contracts. Standard library only (plus PyYAML for scenarios),
and nothing here imports Gatekeeper itself.
"""

from __future__ import annotations
