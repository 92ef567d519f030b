"""``gatekeeper.yaml``: projects as code, validated whole before anything is applied.

A bad file is refused with every problem named by its path in the file
(``projects[0].gate.crash_free_threshold: ...``); nothing is written unless all of it is good.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from releases.domain.gate_policy import GATE_METHODS, Method, OnNoTraffic, OnTimeout, Policy, validate_policy
from releases.domain.policy import CANARY, DEFAULT_MAX_HOLD, GATE
from releases.domain.release_names import template_problems
from releases.domain.slo_rules import parse_check
from releases.models import NEEDS_CHECKS, Project
from releases.workflows.canary.traffic import ROUTERS

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# A PagerDuty routing key is 32 letters and digits; a long run of them with a digit and no
# underscore is a pasted key, not the name of the variable that holds one.
KEY_LIKE = re.compile(r"^(?=.*\d)[A-Za-z0-9]{20,}$")
ON_WARNING = ("notify", "page", "rollback", "ignore")
SCHEMA: dict[str, set[str]] = {
    "": {"name", "vercel", "sentry", "slack", "pagerduty", "gate", "canary", "allow_private_addresses"},
    "vercel": {"project_id", "team_id", "production_domains", "start_on"},
    "sentry": {"org", "project", "environment", "release", "on_warning"},
    "slack": {"channel"},
    "pagerduty": {"routing_key_env"},
    "gate": {
        "method",
        "tolerance",
        "false_promote",
        "false_rollback",
        "max_sessions",
        "min_sessions",
        "crash_free_threshold",
        "poll_interval",
        "max_wait",
        "on_timeout",
        "max_consecutive_errors",
        "fail_fast",
        "watch_after_promotion",
        "dry_run",
        "early_fail_confidence",
        "early_fail_min_sessions",
        "watch_threshold",
        "watch_false_alarm",
        "no_traffic_after",
        "on_no_traffic",
        "checks",
    },
    "canary": {
        "stages",
        "confirmations",
        "confirmation_interval",
        "abort_on_failure",
        "checks",
        "failures_to_abort",
        "router",
    },
}


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(value: Any) -> timedelta:
    """``90s``, ``10m``, ``2h``, ``1d`` (and ``500ms``) -> timedelta; anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("write durations with a unit, e.g. 90s, 10m, 2h")
    match = DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration (write e.g. 90s, 10m, 2h)")
    return timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])


@dataclass
class _Reader:
    problems: list[str] = field(default_factory=list)

    def keys(self, where: str, section: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problems.append(f"{where}: must be a mapping")
            return {}
        for key in value:
            if key not in SCHEMA[section]:
                close = difflib.get_close_matches(str(key), SCHEMA[section], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.problems.append(f"{where}.{key}: unknown key{hint}")
        return value

    def get(
        self,
        where: str,
        data: dict[str, Any],
        key: str,
        kind: str,
        default: Any = None,
        *,
        required: bool = False,
    ) -> Any:
        path = f"{where}.{key}"
        if key not in data or data[key] is None:
            if required:
                self.problems.append(f"{path}: is required")
            return default
        value = data[key]
        try:
            return _convert(kind, value)
        except ValueError as exc:
            self.problems.append(f"{path}: {exc}")
            return default


def _convert(kind: str, value: Any) -> Any:
    if kind == "str":
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise ValueError("must be a non-empty string")
        return str(value).strip()
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        if value < 1:
            raise ValueError("must be at least 1")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind == "duration":
        return parse_duration(value)
    if kind == "crash_free":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if value > 1:
            # 99.5 is a percentage written as such; 1.5 is no plausible crash-free percentage,
            # and "write 0.015" would set a bar that nearly any release passes.
            if value >= 50:
                raise ValueError(
                    f"is the crash-free fraction: write {value / 100:g} for {value:g}% crash-free"
                )
            raise ValueError(f"is the crash-free fraction, e.g. 0.995 for 99.5% crash-free (got {value:g})")
        kind = "fraction"
    if kind == "fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if value > 1:
            raise ValueError(f"rates are fractions: write {value / 100:g} for {value:g}%")
        if value <= 0:
            raise ValueError("must be more than 0")
        return float(value)
    if kind == "str_list":
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError("must be a list of strings")
        return [v.strip() for v in value]
    raise AssertionError(kind)


def _project(reader: _Reader, where: str, raw: Any) -> dict[str, Any]:
    data = reader.keys(where, "", raw)
    out: dict[str, Any] = {"name": reader.get(where, data, "name", "str", required=True)}
    if out["name"] and not re.fullmatch(r"[-a-zA-Z0-9_]+", out["name"]):
        reader.problems.append(f"{where}.name: use letters, digits, - and _ only")
    vercel = reader.keys(f"{where}.vercel", "vercel", data.get("vercel", {}))
    out["vercel_project_id"] = reader.get(f"{where}.vercel", vercel, "project_id", "str", required=True)
    out["vercel_team_id"] = reader.get(f"{where}.vercel", vercel, "team_id", "str", "")
    out["production_domains"] = reader.get(f"{where}.vercel", vercel, "production_domains", "str_list", [])
    start_on = reader.get(f"{where}.vercel", vercel, "start_on", "str", "deployment.succeeded")
    if start_on not in ("deployment.succeeded", "deployment.ready"):
        reader.problems.append(f"{where}.vercel.start_on: must be deployment.succeeded or deployment.ready")
    out["start_on"] = start_on
    sentry = reader.keys(f"{where}.sentry", "sentry", data.get("sentry", {}))
    out["sentry_org"] = reader.get(f"{where}.sentry", sentry, "org", "str", required=True)
    out["sentry_project"] = reader.get(f"{where}.sentry", sentry, "project", "str", required=True)
    out["sentry_environment"] = reader.get(f"{where}.sentry", sentry, "environment", "str", "")
    out["on_warning"] = reader.get(f"{where}.sentry", sentry, "on_warning", "str", "notify")
    if out["on_warning"] not in ON_WARNING:
        reader.problems.append(f"{where}.sentry.on_warning: must be one of {', '.join(ON_WARNING)}")
    template = reader.get(f"{where}.sentry", sentry, "release", "str", "{meta[githubCommitSha]}")
    for problem in template_problems(template or ""):
        reader.problems.append(f"{where}.sentry.release: {problem}")
    out["release_template"] = template
    slack = reader.keys(f"{where}.slack", "slack", data.get("slack") or {})
    out["slack_channel"] = reader.get(f"{where}.slack", slack, "channel", "str", "")
    pagerduty = reader.keys(f"{where}.pagerduty", "pagerduty", data.get("pagerduty") or {})
    key_env = reader.get(f"{where}.pagerduty", pagerduty, "routing_key_env", "str", "")
    if key_env and (not ENV_NAME.match(key_env) or KEY_LIKE.match(key_env)):
        reader.problems.append(
            f"{where}.pagerduty.routing_key_env: must name an environment variable, never hold the key itself"
        )
    out["pagerduty_routing_key_env"] = key_env
    out.update(_gate(reader, f"{where}.gate", data.get("gate") or {}))
    out["canary"] = _canary(reader, f"{where}.canary", data["canary"]) if data.get("canary") else None
    out["allow_private_addresses"] = reader.get(where, data, "allow_private_addresses", "bool", False)
    return out


def _gate(reader: _Reader, where: str, raw: Any) -> dict[str, Any]:
    gate = reader.keys(where, "gate", raw)
    known_problems = len(reader.problems)
    out = {
        "gate_method": reader.get(where, gate, "method", "str", GATE.method),
        "tolerance": reader.get(where, gate, "tolerance", "fraction", GATE.tolerance),
        "false_promote": reader.get(where, gate, "false_promote", "fraction", GATE.false_promote),
        "false_rollback": reader.get(where, gate, "false_rollback", "fraction", GATE.false_rollback),
        "max_sessions": reader.get(where, gate, "max_sessions", "int", GATE.max_sessions),
        "min_sessions": reader.get(where, gate, "min_sessions", "int", GATE.min_sessions),
        "crash_free_threshold": reader.get(
            where, gate, "crash_free_threshold", "crash_free", GATE.crash_free_threshold
        ),
        "poll_interval": reader.get(where, gate, "poll_interval", "duration", GATE.poll_interval),
        "max_wait": reader.get(where, gate, "max_wait", "duration", GATE.max_wait),
        "on_timeout": reader.get(where, gate, "on_timeout", "str", GATE.on_timeout),
        "no_traffic_after": _no_traffic_after(reader, where, gate),
        "on_no_traffic": reader.get(where, gate, "on_no_traffic", "str", GATE.on_no_traffic),
        "max_consecutive_errors": reader.get(
            where, gate, "max_consecutive_errors", "int", GATE.max_consecutive_errors
        ),
        "fail_fast": reader.get(where, gate, "fail_fast", "bool", GATE.fail_fast),
        "watch_after_promotion": reader.get(
            where, gate, "watch_after_promotion", "duration", GATE.watch_after_promotion
        ),
        "dry_run": reader.get(where, gate, "dry_run", "bool", GATE.dry_run),
        "early_fail_confidence": reader.get(
            where, gate, "early_fail_confidence", "fraction", GATE.early_fail_confidence
        ),
        "early_fail_min_sessions": reader.get(
            where, gate, "early_fail_min_sessions", "int", GATE.early_fail_min_sessions
        ),
        "watch_threshold": reader.get(where, gate, "watch_threshold", "crash_free", GATE.watch_threshold),
        "watch_false_alarm": reader.get(where, gate, "watch_false_alarm", "fraction", GATE.watch_false_alarm),
    }
    if out["on_timeout"] not in {o.value for o in OnTimeout}:
        reader.problems.append(f"{where}.on_timeout: must be hold or rollback")
    if out["on_no_traffic"] not in {o.value for o in OnNoTraffic}:
        reader.problems.append(f"{where}.on_no_traffic: must be hold, rollback or promote_after_checks")
    out["gate_checks"] = _gate_checks(reader, where, gate)
    if out["on_no_traffic"] == OnNoTraffic.PROMOTE_AFTER_CHECKS and not out["gate_checks"]:
        reader.problems.append(f"{where}.on_no_traffic: {NEEDS_CHECKS} (gate.checks)")
    if out["poll_interval"] < timedelta(seconds=1):
        reader.problems.append(f"{where}.poll_interval: must be at least 1s")
    if out["max_wait"] <= out["poll_interval"]:
        reader.problems.append(f"{where}.max_wait: must be longer than poll_interval")
    if out["early_fail_confidence"] is not None and out["early_fail_confidence"] >= 1:
        reader.problems.append(f"{where}.early_fail_confidence: must be below 1 (e.g. 0.99)")
    if not 0 < out["watch_false_alarm"] < 0.5:
        reader.problems.append(f"{where}.watch_false_alarm: must be above 0 and below 0.5 (e.g. 0.01)")
    if out["gate_method"] not in {m.value for m in GATE_METHODS}:
        reader.problems.append(f"{where}.method: must be sequential or fixed")
    elif len(reader.problems) == known_problems:
        # What only the whole policy can say (a tolerance that leaves no room around the threshold,
        # max_sessions below the floor, an option of the other method), in the verdict's own words.
        policy = Policy(
            method=Method(out["gate_method"]),
            crash_free_threshold=out["crash_free_threshold"],
            max_wait=out["max_wait"].total_seconds(),
            on_timeout=OnTimeout(out["on_timeout"]),
            on_no_traffic=OnNoTraffic(out["on_no_traffic"]),
            min_sessions=out["min_sessions"],
            tolerance=out["tolerance"],
            false_promote=out["false_promote"],
            false_rollback=out["false_rollback"],
            max_sessions=out["max_sessions"],
            early_fail_confidence=out["early_fail_confidence"],
        )
        for problem in validate_policy(policy):
            name, rest = problem.split(" ", 1)
            reader.problems.append(f"{where}.{name}: {rest}")
    return out


def _gate_checks(reader: _Reader, where: str, gate: dict[str, Any]) -> list[dict[str, Any]]:
    """The SLO checks promote_after_checks runs, in the canary checks' grammar."""
    raw = gate.get("checks")
    if raw is None:
        return []
    if not isinstance(raw, list):
        reader.problems.append(f"{where}.checks: must be a list of SLO checks")
        return []
    return _checks(reader, where, raw)


def _checks(reader: _Reader, where: str, checks: list[Any]) -> list[dict[str, Any]]:
    """Each entry parsed as an SLO check, its problems named by its path; the good ones stored."""
    specs = []
    for i, check in enumerate(checks):
        spec, problems = parse_check(check, f"{where}.checks[{i}]")
        reader.problems.extend(problems)
        if spec is not None:
            specs.append(spec.to_json())
    return specs


def _no_traffic_after(reader: _Reader, where: str, gate: dict[str, Any]) -> timedelta | None:
    """A duration, or 0s / off for never."""
    if gate.get("no_traffic_after") in {"off", 0, "0", "0s"}:
        return None
    after: timedelta = reader.get(where, gate, "no_traffic_after", "duration", GATE.no_traffic_after)
    return after


def _canary(reader: _Reader, where: str, raw: Any) -> dict[str, Any]:
    """Kept as data for the canary ramp; its shape is checked here so a typo fails the sync."""
    canary = reader.keys(where, "canary", raw)
    stages = canary.get("stages")
    if not isinstance(stages, list) or not stages:
        reader.problems.append(f"{where}.stages: must be a non-empty list")
        stages = []
    out_stages = []
    last = 0
    for i, stage in enumerate(stages):
        path = f"{where}.stages[{i}]"
        if not isinstance(stage, dict) or not isinstance(stage.get("percent"), (int, float)):
            reader.problems.append(f"{path}.percent: is required (1-100)")
            continue
        percent = stage["percent"]
        if not last < percent <= 100:
            reader.problems.append(f"{path}.percent: must rise stage by stage, at most 100")
        last = percent
        hold = reader.get(path, stage, "hold", "duration", timedelta(0))
        max_hold = reader.get(path, stage, "max_hold", "duration", timedelta(seconds=DEFAULT_MAX_HOLD))
        if max_hold < hold:
            reader.problems.append(f"{path}.max_hold: must be at least the stage's hold")
        out_stages.append(
            {"percent": percent, "hold": hold.total_seconds(), "max_hold": max_hold.total_seconds()}
        )
    if out_stages and out_stages[-1]["percent"] != 100:
        reader.problems.append(f"{where}.stages: the last stage must be 100")
    checks = canary.get("checks")
    if not isinstance(checks, list) or not checks:
        # Nothing to judge a canary by would mean advancing blind: refused, not defaulted.
        reader.problems.append(f"{where}.checks: must list at least one SLO check")
        checks = []
    specs = _checks(reader, where, checks)
    interval = reader.get(
        where, canary, "confirmation_interval", "duration", timedelta(seconds=CANARY.confirmation_interval)
    )
    router = reader.get(where, canary, "router", "str", CANARY.router)
    if router not in ROUTERS:
        reader.problems.append(f"{where}.router: must be one of {', '.join(sorted(ROUTERS))}")
    return {
        "router": router,
        "stages": out_stages,
        "confirmations": reader.get(where, canary, "confirmations", "int", CANARY.confirmations),
        "confirmation_interval": interval.total_seconds(),
        "abort_on_failure": reader.get(where, canary, "abort_on_failure", "bool", CANARY.abort_on_failure),
        "failures_to_abort": reader.get(where, canary, "failures_to_abort", "int", CANARY.failures_to_abort),
        "checks": specs,
    }


# Where each stored field is written in the file, to name it in a refusal.
FIELD_PATHS = {
    "vercel_project_id": "vercel.project_id",
    "vercel_team_id": "vercel.team_id",
    "sentry_org": "sentry.org",
    "sentry_project": "sentry.project",
    "sentry_environment": "sentry.environment",
    "release_template": "sentry.release",
    "slack_channel": "slack.channel",
    "pagerduty_routing_key_env": "pagerduty.routing_key_env",
}


def _too_long(projects: list[dict[str, Any]]) -> list[str]:
    """Values the columns cannot hold: refused here, not as a DataError halfway through a sync."""
    problems = []
    for i, project in enumerate(projects):
        for key, value in project.items():
            limit = getattr(Project._meta.get_field(key), "max_length", None)
            if isinstance(value, str) and limit and len(value) > limit:
                path = FIELD_PATHS.get(key, key)
                problems.append(f"projects[{i}].{path}: at most {limit} characters, got {len(value)}")
    return problems


def parse(text: str) -> list[dict[str, Any]]:
    """Validate a whole config file; returns project field dicts or raises ConfigError."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"]) from exc
    if not isinstance(document, dict) or not isinstance(document.get("projects"), list):
        raise ConfigError(["projects: the file must have a top-level list 'projects:'"])
    extra = set(document) - {"projects"}
    reader = _Reader()
    reader.problems.extend(f"{key}: unknown top-level key" for key in sorted(map(str, extra)))
    projects = [_project(reader, f"projects[{i}]", raw) for i, raw in enumerate(document["projects"])]
    for key, label in (("name", "name"), ("vercel_project_id", "vercel.project_id")):
        seen: dict[Any, int] = {}
        for i, project in enumerate(projects):
            if project.get(key) in seen:
                reader.problems.append(f"projects[{i}].{label}: same as projects[{seen[project[key]]}]")
            seen.setdefault(project.get(key), i)
    reader.problems.extend(_too_long(projects))
    if reader.problems:
        raise ConfigError(reader.problems)
    return projects


def load(path: str | Path) -> list[dict[str, Any]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from exc
    return parse(text)
