"""SLO checks: what each one is (parsed from ``canary.checks``) and whether a value passes.

Pure: no Django, no I/O, no clock. ``releases/workflows/canary/measuring.py`` measures the values
and calls ``judge``.

A check is scoped to one deployment: a Datadog query and a PostHog property value must name
the deployment (``$DEPLOYMENT_ID``) or its release (``$RELEASE``), so a check can never judge a
canary by the whole site's numbers; Sentry checks read the release's own sessions and errors; an
HTTP check's URL may use the placeholders (``$DEPLOYMENT_URL`` reaches the deployment itself)
and is always sent the deployment and release in ``X-Gatekeeper-Deployment`` and
``X-Gatekeeper-Release`` headers.

A ``sentry_crash_free`` check with ``min`` is judged by the gate's sequential test
(releases/domain/sequential.py) on the canary's cumulative sessions at its stage: it passes when
the evidence shows the canary at ``min + tolerance`` or better rather than ``min - tolerance``,
fails on the reverse, and otherwise is undecided: the stage holds (no advance, no failure) until
the evidence decides or the stage's ``max_hold`` passes. With ``relative_to_previous`` it also
compares the canary's crashes with the previous deployment's by a two-sample test
(``judge_relative_crash``). ``method: fixed`` keeps the plain comparison of the window's rate
with ``min``.

Thresholds, all of which must hold:

* ``max`` / ``min``: absolute bounds on the value.
* ``relative_to_previous: F``: the value may be at most ``F`` times the previous deployment's
  value over the same window. The stated rule for a previous value of zero (or tiny): the
  allowance is ``max(F x previous, floor)``, with ``floor`` 0 unless given. So with no floor a
  previous deployment without errors leaves the new one no errors at all.

No value (no data, no sessions, the provider unreachable or slow) never passes.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from releases.domain.evidence import Evidence, Outcome
from releases.domain.gate_policy import Method, Policy, validate_policy
from releases.domain.policy import GATE
from releases.domain.verdict import evaluate
from releases.domain.wording import odds

KINDS = ("sentry_error_rate", "sentry_crash_free", "datadog_query", "posthog_exceptions", "http")
PLACEHOLDERS = ("$DEPLOYMENT_ID", "$DEPLOYMENT_URL", "$RELEASE")
DEFAULT_WINDOW = 300.0
DEFAULT_TIMEOUT = 10.0
# The sequential crash-free check has no deadline of its own (the stage's max_hold is it); the
# verdict wants a finite one.
STAGE_MAX_WAIT = 10 * 365 * 86400.0
MIN_WINDOW, MAX_WINDOW = 60.0, 86400.0
MIN_TIMEOUT, MAX_TIMEOUT = 1.0, 60.0
POSTHOG_PROPERTY = re.compile(r"^\$?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
COMMON_KEYS = {"kind", "name", "window", "timeout", "max", "min", "relative_to_previous", "floor"}
KIND_KEYS: dict[str, set[str]] = {
    "sentry_error_rate": {"min_sessions"},
    "sentry_crash_free": {"min_sessions", "method", "tolerance", "false_promote", "false_rollback"},
    "datadog_query": {"query"},
    "posthog_exceptions": {"project_id", "property", "value"},
    "http": {"url"},
}

# A ratio to the previous deployment means something for counts and rates of bad things; for a
# crash-free rate (higher is better) or an HTTP status it does not.
NO_RELATIVE = {"http"}
FRACTIONS = {"sentry_error_rate", "sentry_crash_free"}


@dataclass(frozen=True)
class CheckSpec:
    kind: str
    name: str
    window: float = DEFAULT_WINDOW  # seconds
    timeout: float = DEFAULT_TIMEOUT  # seconds
    max: float | None = None
    min: float | None = None
    relative_to_previous: float | None = None
    floor: float = 0.0
    min_sessions: int = 1
    query: str = ""
    url: str = ""
    project_id: str = ""  # PostHog project; POSTHOG_PROJECT_ID when empty
    property: str = "$app_version"
    value: str = "$RELEASE"
    # sentry_crash_free only: "sequential" (the gate's test on the stage's sessions) or "fixed".
    method: str = "fixed"
    tolerance: float | None = None  # None: 60% of the crash rate min allows (0.003 at 0.995)
    false_promote: float = GATE.false_promote
    false_rollback: float = GATE.false_rollback

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckSpec:
        # A stored check from before the choice of method compared the window's rate: "fixed".
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    # A method, not a property: the field ``property`` above shadows the builtin in this body.
    def is_sequential(self) -> bool:
        return self.kind == "sentry_crash_free" and self.method == "sequential"

    def crash_free_policy(self) -> Policy:
        """The gate's sequential test around ``min``, for a canary's crash-free check."""
        threshold = self.min if self.min is not None else 0.0
        return Policy(
            method=Method.SEQUENTIAL,
            crash_free_threshold=threshold,
            max_wait=STAGE_MAX_WAIT,
            min_sessions=None,
            tolerance=self.tolerance if self.tolerance is not None else default_tolerance(threshold),
            false_promote=self.false_promote,
            false_rollback=self.false_rollback,
            no_traffic_after=None,
        )


@dataclass(frozen=True)
class Judgement:
    ok: bool
    threshold: str  # the bound that applied, in words, e.g. "<= 0.01" or "<= max(2 x 0.004, 0)"
    reason: str


def parse_duration_seconds(value: Any) -> float:
    """``90s``, ``5m``, ``2h``, ``1d``, ``500ms`` -> seconds."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("must be a duration such as 30s, 5m or 1h")
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", value)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m or 1h")
    number, unit = float(match.group(1)), match.group(2)
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("must be a number")
    return float(value)


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ValueError("must be a non-empty string")
    return str(value).strip()


def _scoped(text: str) -> bool:
    return any(p in text for p in PLACEHOLDERS)


def parse_check(raw: Any, where: str) -> tuple[CheckSpec | None, list[str]]:
    """One entry of ``canary.checks`` -> (spec, problems). Problems name the field and the reason."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        return None, [f"{where}: must be a mapping with a kind"]
    kind = raw.get("kind")
    if kind not in KINDS:
        return None, [f"{where}.kind: must be one of {', '.join(KINDS)}"]
    allowed = COMMON_KEYS | KIND_KEYS[kind]
    for key in raw:
        if key not in allowed:
            problems.append(f"{where}.{key}: not a setting of a {kind} check")
    values: dict[str, Any] = {"kind": kind}

    def read(key: str, convert: Any) -> Any:
        if raw.get(key) is None:
            return None
        try:
            return convert(raw[key])
        except ValueError as exc:
            problems.append(f"{where}.{key}: {exc}")
            return None

    for key in ("max", "min", "relative_to_previous", "floor"):
        number = read(key, _number)
        if number is not None:
            values[key] = number
    for key, low, high in (("window", MIN_WINDOW, MAX_WINDOW), ("timeout", MIN_TIMEOUT, MAX_TIMEOUT)):
        seconds = read(key, parse_duration_seconds)
        if seconds is not None:
            if not low <= seconds <= high:
                problems.append(f"{where}.{key}: must be between {low:g}s and {high:g}s")
            values[key] = seconds
    for key in ("name", "query", "url", "project_id", "property", "value"):
        text = read(key, _text)
        if text is not None:
            values[key] = text
    for key in ("tolerance", "false_promote", "false_rollback"):
        number = read(key, _number)
        if number is not None:
            values[key] = number
    if kind == "sentry_crash_free":
        method = read("method", _text) or "sequential"
        if method not in {"sequential", "fixed"}:
            problems.append(f"{where}.method: must be sequential or fixed")
        values["method"] = method
    min_sessions = read("min_sessions", _number)
    if min_sessions is not None:
        if min_sessions < 1 or not float(min_sessions).is_integer():
            problems.append(f"{where}.min_sessions: must be a whole number, at least 1")
        else:
            values["min_sessions"] = int(min_sessions)

    bounds = [k for k in ("max", "min", "relative_to_previous") if k in values]
    if kind == "http":
        if bounds:
            problems.append(f"{where}: an http check passes on 200 only; max/min do not apply")
    elif not bounds:
        problems.append(f"{where}: needs a threshold: max, min or relative_to_previous")
    if kind in NO_RELATIVE and "relative_to_previous" in values:
        problems.append(f"{where}.relative_to_previous: not meaningful for a {kind} check")
    if kind == "sentry_crash_free" and values.get("method") == "fixed" and "relative_to_previous" in values:
        problems.append(
            f"{where}.relative_to_previous: a ratio of crash-free rates means nothing; the sequential "
            f"method compares crash rates with a two-sample test"
        )
    if kind == "sentry_crash_free" and "floor" in values:
        problems.append(f"{where}.floor: not a setting of a sentry_crash_free check")
    if "relative_to_previous" in values and values["relative_to_previous"] <= 0:
        problems.append(f"{where}.relative_to_previous: must be more than 0 (e.g. 2.0 = at most twice)")
    if values.get("floor", 0) < 0:
        problems.append(f"{where}.floor: must not be negative")
    if "floor" in values and "relative_to_previous" not in values:
        problems.append(f"{where}.floor: only applies with relative_to_previous")
    if "max" in values and "min" in values and values["min"] > values["max"]:
        problems.append(f"{where}: min is above max, so nothing could pass")
    if kind in FRACTIONS:
        for key in ("max", "min"):
            if key in values and not 0 <= values[key] <= 1:
                problems.append(f"{where}.{key}: rates are fractions 0-1 (write 0.01 for 1%)")

    if values.get("method") == "sequential" and not problems:
        problems.extend(_sequential_problems(values, where))

    if kind == "datadog_query":
        query = values.get("query")
        if not query:
            problems.append(f"{where}.query: is required")
        elif not _scoped(query):
            problems.append(f"{where}.query: must name the deployment ($DEPLOYMENT_ID) or release ($RELEASE)")
    if kind == "http":
        url = values.get("url")
        if not url:
            problems.append(f"{where}.url: is required")
        else:
            parts = urlsplit(url.replace("$", "x"))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(f"{where}.url: must be an http:// or https:// URL")
    if kind == "posthog_exceptions":
        prop = values.get("property", CheckSpec.property)
        if not POSTHOG_PROPERTY.match(prop):
            problems.append(f"{where}.property: must be a property name such as $app_version")
        if not _scoped(values.get("value", CheckSpec.value)):
            problems.append(f"{where}.value: must name the deployment ($DEPLOYMENT_ID) or release ($RELEASE)")
    if problems:
        return None, problems
    values.setdefault("name", default_name(values))
    return CheckSpec(**values), []


def default_tolerance(threshold: float) -> float:
    """A canary check's tolerance when unset: 60% of the crash rate the bar allows.

    The gate's default (0.003 around 0.995) scaled, so a check at 0.9 tells 96% from 84% rather
    than asking for tens of thousands of sessions to tell 90.3% from 89.7%."""
    return round(0.6 * (1 - threshold), 6)


def _sequential_problems(values: dict[str, Any], where: str) -> list[str]:
    if "max" in values or not ("min" in values or "relative_to_previous" in values):
        return [
            f"{where}: a sequential crash-free check needs min (the crash-free bar) or "
            f"relative_to_previous, and no max"
        ]
    if "relative_to_previous" in values and values["relative_to_previous"] <= 1:
        return [
            f"{where}.relative_to_previous: must be above 1 (e.g. 2.0: at most twice production's crash rate)"
        ]
    if "min" not in values:
        return []
    spec = CheckSpec(**{**values, "name": "check"})
    policy = spec.crash_free_policy()
    # The test judges the stage's sessions with no deadline of its own: the stage's max_hold is it.
    problems = validate_policy(policy)
    out = []
    for problem in problems:
        name, rest = problem.split(" ", 1)
        name = "min" if name == "crash_free_threshold" else name
        out.append(f"{where}.{name}: {rest}")
    return out


def judge_crash_free(spec: CheckSpec, sessions: int, crashed: int) -> tuple[Outcome, str]:
    """The sequential test on a canary's sessions at its stage: pass, fail, or wait (undecided)."""
    verdict = evaluate(spec.crash_free_policy(), Evidence(sessions, crashed, elapsed=0.0))
    return verdict.outcome, "; ".join(verdict.reasons)


def judge_relative_crash(
    spec: CheckSpec, canary: tuple[int, int], previous: tuple[int, int]
) -> tuple[Outcome, str]:
    """Is the canary crashing ``relative_to_previous`` times as often as production, or no more?

    A two-sample test on the crashes themselves, not a ratio of two noisy rates. With the two
    deployments' sessions ``n1`` and ``n2`` over the same stretch, each crash is the canary's with
    chance ``pi(r) = r n1 / (r n1 + n2)`` when the canary crashes ``r`` times as often (sessions
    rare to crash: a Poisson split). So the crashes' owners are a coin sequence, and the
    likelihood ratio of ``r = F`` against ``r = 1`` on it is a martingale under either: by Ville's
    inequality the check fails a canary that crashes no more than production at most
    ``false_rollback`` of the time, and passes one that crashes ``F`` times as often at most
    ``false_promote`` of the time, however often it is looked at. With no crash on either side
    there is nothing to compare: undecided.
    """
    factor = spec.relative_to_previous
    assert factor is not None
    (n1, c1), (n2, c2) = canary, previous
    if n1 == 0 or n2 == 0:
        return Outcome.WAIT, f"{n1:,} canary and {n2:,} production sessions: nothing to compare yet"
    same, worse = n1 / (n1 + n2), factor * n1 / (factor * n1 + n2)
    crashes = c1 + c2
    evidence = c1 * math.log(worse / same) + (crashes - c1) * (math.log1p(-worse) - math.log1p(-same))
    counts = (
        f"canary {c1:,} crashed of {n1:,} sessions, production {c2:,} of {n2:,} "
        f"({c1:,} of {crashes:,} crashes the canary's, {same:.1%} expected if it crashed as often)"
    )
    if evidence >= math.log(1 / spec.false_rollback):
        return Outcome.FAIL, (
            f"{counts}: evidence {odds(evidence)} that the canary crashes {factor:g}x as often as "
            f"production or more (fails at {odds(math.log(1 / spec.false_rollback))})"
        )
    if -evidence >= math.log(1 / spec.false_promote):
        return Outcome.PASS, (
            f"{counts}: evidence {odds(-evidence)} that the canary crashes no more often than production "
            f"rather than {factor:g}x as often (passes at {odds(math.log(1 / spec.false_promote))})"
        )
    return Outcome.WAIT, f"{counts}: not yet enough crashes to tell"


def default_name(values: dict[str, Any]) -> str:
    bounds = []
    for key, word in (("max", "max"), ("min", "min"), ("relative_to_previous", "x previous")):
        if key in values:
            bounds.append(
                f"{values[key]:g} {word}" if key == "relative_to_previous" else f"{word} {values[key]:g}"
            )
    suffix = f" ({', '.join(bounds)})" if bounds else ""
    return f"{values['kind']}{suffix}"


def substitute(template: str, *, deployment_id: str, deployment_url: str, release: str) -> str:
    """Fill the placeholders; ``$DEPLOYMENT_URL`` is the deployment's own host name."""
    return (
        template.replace("$DEPLOYMENT_ID", deployment_id)
        .replace("$DEPLOYMENT_URL", deployment_url)
        .replace("$RELEASE", release)
    )


def judge(spec: CheckSpec, value: float | None, baseline: float | None = None) -> Judgement:
    """Whether ``value`` passes ``spec``'s thresholds; ``baseline`` is the previous deployment's value."""
    if spec.kind == "http":
        ok = value == 200
        return Judgement(ok, "== 200", "answered 200" if ok else _http_reason(value))
    parts: list[str] = []
    failures: list[str] = []
    if spec.max is None and spec.min is None and spec.relative_to_previous is None:
        return Judgement(False, "", "no threshold set: never passes")
    if value is None:
        return Judgement(False, _bounds_text(spec, baseline), "no data: never passes")
    if spec.max is not None:
        parts.append(f"<= {spec.max:g}")
        if value > spec.max:
            failures.append(f"{value:g} is above the maximum {spec.max:g}")
    if spec.min is not None:
        parts.append(f">= {spec.min:g}")
        if value < spec.min:
            failures.append(f"{value:g} is below the minimum {spec.min:g}")
    if spec.relative_to_previous is not None:
        if baseline is None:
            parts.append(f"<= {spec.relative_to_previous:g} x previous")
            failures.append("no value for the previous deployment to compare with")
        else:
            allowed = max(spec.relative_to_previous * baseline, spec.floor)
            parts.append(
                f"<= max({spec.relative_to_previous:g} x {baseline:g}, {spec.floor:g}) = {allowed:g}"
            )
            if value > allowed:
                failures.append(
                    f"{value:g} is more than {spec.relative_to_previous:g} x the previous deployment's "
                    f"{baseline:g} (allowed {allowed:g})"
                )
    threshold = " and ".join(parts)
    if failures:
        return Judgement(False, threshold, "; ".join(failures))
    return Judgement(True, threshold, f"{value:g} within {threshold}")


def _bounds_text(spec: CheckSpec, baseline: float | None) -> str:
    parts = []
    if spec.max is not None:
        parts.append(f"<= {spec.max:g}")
    if spec.min is not None:
        parts.append(f">= {spec.min:g}")
    if spec.relative_to_previous is not None:
        parts.append(f"<= {spec.relative_to_previous:g} x previous")
    return " and ".join(parts)


def _http_reason(status: float | None) -> str:
    if status is None:
        return "no answer (timeout or connection error)"
    return f"answered {status:g}, not 200"
