"""Hostile deliveries to both webhook endpoints, each knowing whether it must be refused.

A delivery is refused when it is unsigned, badly signed, stale (Sentry), replayed, oversized or
sent with a method other than POST: such a request must change no row at all. Everything else is
signed and may be accepted, but must never be a 5xx, and a 4xx must change nothing either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.factories import SENTRY_SECRET, VERCEL_SECRET, deployment_event
from tests.fuzz import strategies as hs

PAYLOADS = Path(__file__).resolve().parent.parent / "payloads"
LIMIT = 1024 * 1024  # settings.WEBHOOK_MAX_BODY

PROJECT_IDS = ["prj_Lm3Np5Qr7St9Uv1Wx3Yz5Ab7", "prj_fuzzCanary0000000000000", "prj_unknown"]
DEPLOYMENT_IDS = ["dpl_fuzzLive000000000000000", "dpl_fuzzGood000000000000000", "dpl_fuzzA", "dpl_fuzzB"]
VERCEL_TYPES = [
    "deployment.succeeded",
    "deployment.ready",
    "deployment.promoted",
    "deployment.error",
    "deployment.canceled",
    "deployment.created",
    "project.rolling-release.started",
    "deployment.unknown",
]
SENTRY_RESOURCES = ["metric_alert"] * 4 + ["installation", "issue", "event_alert", "alert", "", "métrique"]
SENTRY_FILES = ["metric_alert_critical.json", "metric_alert_warning.json", "metric_alert_resolved.json"]
REFUSALS = ["unsigned", "bad_signature", "other_body", "other_secret", "oversized", "method", "replay"]


@dataclass
class Delivery:
    kind: str
    method: str
    body: bytes
    headers: dict[str, str]
    content_type: str
    refused: bool
    # Sent first and left to change what it will: the replay is the delivery after it.
    prime: Delivery | None = field(default=None, repr=False)


def _load(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- signatures ----------------------------------------------------------------------------------

BAD_SIGNATURES = st.one_of(
    st.just(""),
    st.text(max_size=80),
    st.binary(min_size=20, max_size=20).map(bytes.hex),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
    # Latin-1 text is what a WSGI server hands over for any non-ASCII header byte.
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=64),
    st.sampled_from(["sha1=", "sha256=0", "\u00e9" * 40, "0" * 40, "0" * 64]),
)


def _sign(body: bytes, secret: str, algorithm: Any) -> str:
    return hmac.new(secret.encode(), body, algorithm).hexdigest()


def _signature_for(draw: st.DrawFn, kind: str, body: bytes, secret: str, algorithm: Any) -> str | None:
    if kind == "unsigned":
        return None
    if kind == "bad_signature":
        return draw(BAD_SIGNATURES)
    if kind == "other_body":
        return _sign(body + b" ", secret, algorithm)
    if kind == "other_secret":
        return _sign(body, secret + "x", algorithm)
    good = _sign(body, secret, algorithm)
    # Case and surrounding blanks do not change a hex digest; both are accepted.
    return draw(st.sampled_from([good, good, good.upper(), f" {good} "]))


def _oversized(draw: st.DrawFn) -> bytes:
    extra = draw(st.integers(1, 4096))
    return b'{"id":"' + b"x" * (LIMIT + extra) + b'"}'


# --- Vercel --------------------------------------------------------------------------------------


@st.composite
def vercel_document(draw: st.DrawFn) -> Any:
    event_type = draw(st.sampled_from(VERCEL_TYPES))
    if event_type == "project.rolling-release.started":
        event = _load("vercel/project_rolling_release_started.json")
        event["id"] = "evt_" + secrets.token_hex(6)
    else:
        event = deployment_event(
            event_type if event_type != "deployment.unknown" else "deployment.succeeded",
            event_id=draw(st.sampled_from(["evt_fuzz1", "evt_fuzz2", None, None, None])),
            deployment_id=draw(st.sampled_from(DEPLOYMENT_IDS))
            + draw(st.sampled_from(["", "", "_" + secrets.token_hex(3)])),
            project_id=draw(st.sampled_from(PROJECT_IDS)),
            target=draw(st.sampled_from(["production", "production", "preview", None])),
        )
        event["type"] = event_type
    if draw(st.booleans()):
        return draw(hs.mutated(event))
    return event


@st.composite
def vercel_delivery(draw: st.DrawFn) -> Delivery:
    kind = draw(st.sampled_from(["valid"] * 3 + ["mutated"] * 3 + ["random"] + REFUSALS))
    method = draw(hs.ODD_METHODS) if kind == "method" else "POST"
    if kind == "random":
        body = draw(hs.RANDOM_BODY)
    elif kind == "oversized":
        body = _oversized(draw)
    else:
        document = draw(vercel_document()) if kind != "valid" else draw(vercel_document().filter(_is_dict))
        body = hs.encode(document, draw(hs.ENCODINGS) if kind == "mutated" else "plain")
    signing = kind if kind in ("unsigned", "bad_signature", "other_body", "other_secret") else "signed"
    if kind == "oversized":
        signing = draw(st.sampled_from(["signed", "unsigned", "bad_signature"]))
    signature = _signature_for(draw, signing, body, VERCEL_SECRET, hashlib.sha1)
    headers = {} if signature is None else {"HTTP_X_VERCEL_SIGNATURE": signature}
    delivery = Delivery(
        kind,
        method,
        body,
        headers,
        draw(hs.CONTENT_TYPES),
        refused=kind in REFUSALS,
    )
    if kind == "replay":
        delivery.prime = Delivery("valid", "POST", body, dict(headers), "application/json", refused=False)
    return delivery


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


# --- Sentry --------------------------------------------------------------------------------------


@st.composite
def sentry_document(draw: st.DrawFn, resource: str) -> Any:
    if resource == "installation":
        document = _load("sentry/installation.json")
    else:
        document = _load("sentry/" + draw(st.sampled_from(SENTRY_FILES)))
        incident = document["data"]["metric_alert"]
        started = draw(st.sampled_from([timedelta(minutes=5), timedelta(hours=3), timedelta(days=-1)]))
        incident["date_started"] = iso(datetime.now(UTC) - started)
        incident["id"] = draw(st.sampled_from(["812", "813", "814", secrets.token_hex(4)]))
        incident["projects"] = [draw(st.sampled_from(["shop-web", "canary-web", "nobody"]))]
        incident["alert_rule"]["environment"] = draw(st.sampled_from(["production", "staging", None]))
        incident["alert_rule"]["query"] = draw(st.sampled_from(["", "release:web@1.4.2", "release:other"]))
    if draw(st.booleans()):
        return draw(hs.mutated(document))
    return document


TIMESTAMPS = st.sampled_from(
    ["now", "now", "now", "old", "future", "nan", "inf", "-inf", "", "abc", "1e400", None]
)


def _timestamp(choice: str | None) -> str | None:
    now = time.time()
    return {
        "now": str(int(now)),
        "old": str(int(now - 301)),
        "future": str(int(now + 301)),
    }.get(choice or "", choice)


@st.composite
def sentry_delivery(draw: st.DrawFn) -> Delivery:
    kind = draw(st.sampled_from(["valid"] * 3 + ["mutated"] * 3 + ["random", "stale"] + REFUSALS))
    method = draw(hs.ODD_METHODS) if kind == "method" else "POST"
    resource = draw(st.sampled_from(SENTRY_RESOURCES)) if kind != "valid" else "metric_alert"
    if kind == "random":
        body = draw(hs.RANDOM_BODY)
    elif kind == "oversized":
        body = _oversized(draw)
    else:
        document = draw(sentry_document(resource))
        if kind == "valid":
            document = draw(sentry_document(resource).filter(_is_dict))
        body = hs.encode(document, draw(hs.ENCODINGS) if kind == "mutated" else "plain")
    signing = kind if kind in ("unsigned", "bad_signature", "other_body", "other_secret") else "signed"
    signature = _signature_for(draw, signing, body, SENTRY_SECRET, hashlib.sha256)
    stamp = _timestamp(draw(TIMESTAMPS)) if kind in ("stale", "mutated", "random") else _timestamp("now")
    if kind == "stale":
        stamp = _timestamp(draw(st.sampled_from(["old", "future", "nan", "inf", "", "abc", None])))
    headers = {
        "HTTP_SENTRY_HOOK_RESOURCE": resource,
        "HTTP_SENTRY_HOOK_SIGNATURE": signature,
        "HTTP_SENTRY_HOOK_TIMESTAMP": stamp,
        "HTTP_REQUEST_ID": draw(
            st.sampled_from([secrets.token_hex(16), "", "r" * 300, "\u00e9t\u00e9", None])
        ),
    }
    headers = {name: value for name, value in headers.items() if value is not None}
    delivery = Delivery(
        kind,
        method,
        body,
        headers,
        draw(hs.CONTENT_TYPES),
        refused=kind in REFUSALS or kind == "stale",
    )
    if kind == "replay":
        # Sentry's own retry carries a fresh Request-ID; a captured delivery replayed keeps its own.
        first = dict(headers)
        if draw(st.booleans()):
            headers["HTTP_REQUEST_ID"] = secrets.token_hex(16)
        delivery.prime = Delivery("valid", "POST", body, first, "application/json", refused=False)
    return delivery
