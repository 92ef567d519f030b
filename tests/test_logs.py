from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.logs import JsonFormatter, TextFormatter

ROOT = Path(__file__).resolve().parent.parent


class Unprintable:
    def __repr__(self) -> str:
        return "<Unprintable>"


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def logger_with(formatter: logging.Formatter, stream: io.StringIO) -> Iterator[logging.Logger]:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    logger.removeHandler(handler)
    logger.propagate = True


@pytest.fixture
def json_logger(stream: io.StringIO) -> Iterator[logging.Logger]:
    yield from logger_with(JsonFormatter(), stream)


@pytest.fixture
def text_logger(stream: io.StringIO) -> Iterator[logging.Logger]:
    yield from logger_with(TextFormatter(), stream)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_carries_the_event_its_extras_and_the_release_id(
    json_logger: logging.Logger, stream: io.StringIO
) -> None:
    json_logger.info("gate.decided", extra={"release_id": 42, "outcome": "pass", "sessions": 1200})
    [line] = lines(stream)
    assert line["message"] == "gate.decided"
    assert line["level"] == "INFO"
    assert line["logger"] == "tests.logs"
    assert line["release_id"] == 42
    assert line["outcome"] == "pass"
    assert line["sessions"] == 1200
    assert str(line["timestamp"]).endswith("+00:00")


def test_a_release_given_as_release_is_its_release_id(
    json_logger: logging.Logger, stream: io.StringIO
) -> None:
    json_logger.info("poll.stored", extra={"release": 7})
    assert lines(stream)[0]["release_id"] == 7


def test_a_json_line_carries_the_exception(json_logger: logging.Logger, stream: io.StringIO) -> None:
    try:
        raise RuntimeError("vendor exploded")
    except RuntimeError:
        json_logger.exception("poll.failed")
    [line] = lines(stream)
    assert "RuntimeError: vendor exploded" in str(line["exception"])
    assert "\n" not in stream.getvalue().rstrip("\n")


def test_a_non_serialisable_extra_is_written_as_its_repr(
    json_logger: logging.Logger, stream: io.StringIO
) -> None:
    circular: dict[str, object] = {}
    circular["self"] = circular
    json_logger.info("odd", extra={"thing": Unprintable(), "keys": {1: Unprintable()}, "loop": circular})
    [line] = lines(stream)
    assert line["thing"] == "<Unprintable>"
    assert "Unprintable" in str(line["keys"])
    assert "self" in str(line["loop"])


def test_credentials_and_requests_are_not_written(json_logger: logging.Logger, stream: io.StringIO) -> None:
    json_logger.info("call", extra={"auth_token": "sk_live_abc", "request": object(), "path": "/x"})
    [line] = lines(stream)
    assert line["auth_token"] == "[redacted]"
    assert "request" not in line
    assert line["path"] == "/x"


def test_an_extra_named_like_a_field_does_not_replace_it(
    json_logger: logging.Logger, stream: io.StringIO
) -> None:
    json_logger.info("event", extra={"level": "custom"})
    [line] = lines(stream)
    assert line["level"] == "INFO"
    assert line["extra.level"] == "custom"


def test_a_text_line_shows_the_extras_as_key_value(text_logger: logging.Logger, stream: io.StringIO) -> None:
    text_logger.info(
        "sentry.webhook.received",
        extra={"resource": "metric_alert", "action": "critical", "outcome": "accepted", "note": "two words"},
    )
    line = stream.getvalue().strip()
    assert line.endswith(
        'sentry.webhook.received resource=metric_alert action=critical outcome=accepted note="two words"'
    )
    assert " INFO tests.logs " in line


def test_a_text_line_survives_a_non_serialisable_extra(
    text_logger: logging.Logger, stream: io.StringIO
) -> None:
    text_logger.warning("odd", extra={"thing": Unprintable()})
    assert stream.getvalue().strip().endswith('odd thing="<Unprintable>"')


def test_celerys_repeated_arguments_are_not_written_twice(
    text_logger: logging.Logger, stream: io.StringIO
) -> None:
    context = {"name": "releases.poll", "id": "abc"}
    text_logger.info("Task %(name)s[%(id)s] received", context, extra={"data": context})
    assert stream.getvalue().strip().endswith("Task releases.poll[abc] received")


def configured_process(log_format: str) -> subprocess.CompletedProcess[str]:
    """A process that loads the settings as web and worker do, and logs one event."""
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('releases.test')"
        ".warning('gate.decided', extra={'release_id': 9, 'outcome': 'fail'})"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    env.update(
        GATEKEEPER_DOTENV="0", DEBUG="1", DJANGO_SETTINGS_MODULE="gatekeeper.settings", LOG_FORMAT=log_format
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_with_log_format_json_the_settings_log_json_lines() -> None:
    result = configured_process("json")
    assert result.returncode == 0, result.stderr
    [line] = [json.loads(text) for text in result.stderr.splitlines() if "gate.decided" in text]
    assert line["release_id"] == 9
    assert line["outcome"] == "fail"


def test_by_default_the_settings_log_text_with_extras() -> None:
    result = configured_process("text")
    assert result.returncode == 0, result.stderr
    assert "WARNING releases.test gate.decided release_id=9 outcome=fail" in result.stderr


def test_an_unknown_log_format_refuses_to_load() -> None:
    result = configured_process("xml")
    assert result.returncode != 0
    assert "LOG_FORMAT='xml': expected text or json" in result.stderr
