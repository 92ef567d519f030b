"""The control API under ``/_sim/``: how tests and the demo drive the simulator.

JSON in, JSON out; a bad request is ``{"error": message}`` with a 4xx. Control requests are
never faulted and never appear in the vendor request log.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simulator import alerts, scenario, vercel_control
from simulator.wire import ControlError, Request, Response, as_number, as_object, json_response

if TYPE_CHECKING:
    from simulator.state import Simulator

Action = Callable[["Simulator", Request, dict[str, str]], tuple[int, Any]]


def _body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        return as_object(request.json(), "body")
    except (ValueError, UnicodeDecodeError):
        raise ControlError("body: not valid JSON") from None


def health(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, {"ok": True}


def reset(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    sim.reset()
    return 200, {"ok": True}


def get_config(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    options = sim.options
    return 200, {
        "gatekeeper_url": options.gatekeeper_url,
        "alias_delay": options.alias_delay,
        # Secrets are write-only: only whether one is set is ever shown.
        "vercel_webhook_secret_set": bool(options.vercel_webhook_secret),
        "sentry_webhook_secret_set": bool(options.sentry_webhook_secret),
        "required_tokens_for": sorted(options.required_tokens),
    }


def set_config(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    body = _body(request)
    unknown = set(body) - {"gatekeeper_url", "vercel_webhook_secret", "sentry_webhook_secret", "alias_delay"}
    if unknown:
        raise ControlError(f"unknown settings {sorted(unknown)}")
    with sim.lock:
        for key in ("gatekeeper_url", "vercel_webhook_secret", "sentry_webhook_secret"):
            if key in body:
                value = body[key]
                if value is not None and not isinstance(value, str):
                    raise ControlError(f"{key}: a string or null")
                setattr(sim.options, key, value or None)
        if "alias_delay" in body:
            delay = as_number(body, "alias_delay")
            if delay is None or delay < 0:
                raise ControlError("alias_delay: seconds, at least 0")
            sim.options.alias_delay = delay
    return get_config(sim, request, args)


def clock(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    if request.method == "POST":
        body = _body(request)
        with sim.lock:
            if "offset" in body:
                sim.clock_offset = as_number(body, "offset") or 0.0
            if "advance" in body:
                sim.clock_offset += as_number(body, "advance") or 0.0
    return 200, {"now": sim.now(), "offset": sim.clock_offset}


def create_project(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return vercel_control.create_project(sim.vercel, _body(request))


def project(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    if request.method == "PATCH":
        return 200, vercel_control.update_project(sim.vercel, args["id"], _body(request))
    return 200, vercel_control.project_view(sim.vercel, args["id"])


def create_deployment(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 201, vercel_control.create_deployment(sim.vercel, _body(request))


def vercel_token(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, sim.vercel.account.set_role(_body(request))


def vercel_webhooks(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, vercel_control.send_webhooks(sim.vercel, _body(request))


def traffic(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    if request.method == "GET":
        return 200, {"traffic": sim.traffic.list()}
    registered = sim.traffic.register(_body(request))
    return 201, registered.to_json(sim.now())


def traffic_phase(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    now = sim.now()
    return 201, {"traffic": [t.to_json(now) for t in sim.traffic.add_phase(_body(request))]}


def datadog_series(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    if request.method == "GET":
        return 200, {"series": sim.datadog.view()}
    registered = sim.datadog.add_phase(_body(request))
    return 201, registered.to_json(sim.now())


def posthog_exceptions(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    if request.method == "GET":
        return 200, {"exceptions": sim.posthog.view()}
    registered = sim.posthog.add_stream(_body(request))
    return 201, registered.to_json(sim.now())


def sentry_projects(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    if request.method == "GET":
        return 200, {"projects": sim.sentry_projects.list(), "scopes": sorted(sim.sentry_projects.scopes)}
    return 201, sim.sentry_projects.register(_body(request)).to_json()


def sentry_scopes(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, {"scopes": sim.sentry_projects.set_scopes(_body(request).get("scopes"))}


def sentry_webhooks(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, alerts.send_alert(sim, _body(request))


def faults(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    with sim.lock:
        if request.method == "POST":
            fault = sim.faults.add(_body(request))
            return 201, {"id": fault.id, "fault": fault.to_json()}
        if request.method == "DELETE":
            sim.faults.clear()
            return 200, {"ok": True}
        return 200, {"faults": sim.faults.list()}


def delete_fault(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    with sim.lock:
        if not sim.faults.delete(int(args["id"])):
            raise ControlError(f"no fault {args['id']}", 404)
    return 200, {"ok": True}


def requests(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    try:
        since = int(request.param("since_seq") or 0)
    except ValueError:
        raise ControlError("since_seq: an integer") from None
    with sim.lock:
        found = sim.log.select(
            service=request.param("service") or None,
            method=request.param("method") or None,
            path_contains=request.param("path_contains") or None,
            since_seq=since,
        )
    return 200, {"requests": found}


def deliveries(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, {"deliveries": sim.webhooks.list(request.param("type") or None)}


def slack_messages(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, {"messages": sim.slack.messages(request.param("channel") or None)}


def slack_channels(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 201, sim.slack.register_channel(_body(request))


def pagerduty_incidents(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 200, sim.pagerduty.view()


def load_scenario(sim: Simulator, request: Request, args: dict[str, str]) -> tuple[int, Any]:
    return 201, scenario.start(sim, scenario.from_request(_body(request)))


ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], Action]] = [
    (("GET",), re.compile(r"/health"), health),
    (("POST",), re.compile(r"/reset"), reset),
    (("GET",), re.compile(r"/config"), get_config),
    (("POST",), re.compile(r"/config"), set_config),
    (("GET", "POST"), re.compile(r"/clock"), clock),
    (("POST",), re.compile(r"/vercel/projects"), create_project),
    (("GET", "PATCH"), re.compile(r"/vercel/projects/(?P<id>[^/]+)"), project),
    (("POST",), re.compile(r"/vercel/deployments"), create_deployment),
    (("POST",), re.compile(r"/vercel/webhooks"), vercel_webhooks),
    (("POST",), re.compile(r"/vercel/token"), vercel_token),
    (("GET", "POST"), re.compile(r"/sentry/traffic"), traffic),
    (("POST",), re.compile(r"/sentry/traffic/phase"), traffic_phase),
    (("POST",), re.compile(r"/sentry/webhooks"), sentry_webhooks),
    (("GET", "POST"), re.compile(r"/sentry/projects"), sentry_projects),
    (("POST",), re.compile(r"/sentry/scopes"), sentry_scopes),
    (("GET", "POST"), re.compile(r"/datadog/series"), datadog_series),
    (("GET", "POST"), re.compile(r"/posthog/exceptions"), posthog_exceptions),
    (("GET", "POST", "DELETE"), re.compile(r"/faults"), faults),
    (("DELETE",), re.compile(r"/faults/(?P<id>\d+)"), delete_fault),
    (("GET",), re.compile(r"/requests"), requests),
    (("GET",), re.compile(r"/webhooks"), deliveries),
    (("GET",), re.compile(r"/slack/messages"), slack_messages),
    (("POST",), re.compile(r"/slack/channels"), slack_channels),
    (("GET",), re.compile(r"/pagerduty/incidents"), pagerduty_incidents),
    (("POST",), re.compile(r"/scenario"), load_scenario),
]


def dispatch(sim: Simulator, request: Request) -> Response:
    path = request.path.removeprefix("/_sim").rstrip("/") or "/"
    wrong_method = False
    for methods, pattern, action in ROUTES:
        found = pattern.fullmatch(path)
        if not found:
            continue
        if request.method not in methods:
            wrong_method = True
            continue
        try:
            status, payload = action(sim, request, found.groupdict())
        except ControlError as bad:
            return json_response(bad.status, {"error": bad.message})
        return json_response(status, payload)
    if wrong_method:
        return json_response(405, {"error": f"{request.method} not allowed on /_sim{path}"})
    return json_response(404, {"error": f"no control endpoint /_sim{path}"})
