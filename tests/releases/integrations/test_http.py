from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from releases.core.errors import ProviderError, ProviderTimeout
from releases.integrations.http import (
    MAX_RETRY_AFTER,
    HttpClient,
    MalformedAnswer,
    as_int,
    opt_str,
    parse_float,
    req_str,
)

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> HttpClient:
    return HttpClient("https://vendor.test/", transport=httpx.MockTransport(handler))


def answer(status: int, **kwargs: object) -> Handler:
    return lambda request: httpx.Response(status, **kwargs)  # type: ignore[arg-type]


def raising(exc_type: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return handler


def test_it_returns_the_response_on_an_expected_status() -> None:
    response = client(answer(201, json={"a": 1})).request("POST", "/x", expect=(201,))
    assert response.json() == {"a": 1}


def test_it_marks_404_permanent_and_not_delivered() -> None:
    with pytest.raises(ProviderError) as caught:
        client(answer(404, text="nope")).request("GET", "/x")
    assert caught.value.permanent
    assert not caught.value.maybe_delivered
    assert caught.value.status == 404
    assert str(caught.value) == "http: GET /x: nope (HTTP 404)"


def test_it_marks_5xx_transient_and_maybe_delivered() -> None:
    with pytest.raises(ProviderError) as caught:
        client(answer(503, headers={"Retry-After": "7"})).request("POST", "/x")
    assert not caught.value.permanent
    assert caught.value.maybe_delivered
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("status", [408, 409, 425, 429])
def test_it_treats_conflicts_and_throttling_as_transient(status: int) -> None:
    with pytest.raises(ProviderError) as caught:
        client(answer(status)).request("GET", "/x")
    assert not caught.value.permanent


def test_it_caps_a_huge_retry_after() -> None:
    with pytest.raises(ProviderError) as caught:
        client(answer(429, headers={"Retry-After": "999999"})).request("GET", "/x")
    assert caught.value.retry_after == MAX_RETRY_AFTER
    assert caught.value.message.startswith("GET /x: rate limited")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "soon", ""])
def test_it_ignores_a_retry_after_that_is_not_a_finite_number(value: str) -> None:
    with pytest.raises(ProviderError) as caught:
        client(answer(429, headers={"Retry-After": value})).request("GET", "/x")
    assert caught.value.retry_after is None


def test_an_unexpected_2xx_is_transient_and_maybe_delivered() -> None:
    # The vendor accepted the request, so it may have acted on it.
    with pytest.raises(ProviderError) as caught:
        client(answer(200)).request("POST", "/x", expect=(201, 202))
    assert not caught.value.permanent
    assert caught.value.maybe_delivered
    assert "unexpected status 200" in caught.value.message


@pytest.mark.parametrize(
    ("exc_type", "maybe_delivered"),
    [
        (httpx.ConnectTimeout, False),
        (httpx.PoolTimeout, False),
        (httpx.ReadTimeout, True),
        (httpx.WriteTimeout, True),
    ],
)
def test_a_timeout_says_whether_the_request_may_have_arrived(
    exc_type: type[httpx.TransportError], maybe_delivered: bool
) -> None:
    with pytest.raises(ProviderTimeout) as caught:
        client(raising(exc_type)).request("POST", "/x")
    assert not caught.value.permanent
    assert caught.value.maybe_delivered is maybe_delivered


def test_a_refused_connection_is_transient_and_not_delivered() -> None:
    with pytest.raises(ProviderError) as caught:
        client(raising(httpx.ConnectError)).request("POST", "/x")
    assert not caught.value.permanent
    assert not caught.value.maybe_delivered


def test_a_connection_dropped_mid_exchange_may_have_delivered() -> None:
    with pytest.raises(ProviderError) as caught:
        client(raising(httpx.RemoteProtocolError)).request("POST", "/x")
    assert caught.value.maybe_delivered


def test_json_of_a_non_json_answer_is_a_transient_provider_error() -> None:
    http = client(answer(200, text="<html>gateway</html>"))
    with pytest.raises(ProviderError) as caught:
        http.json_of(http.request("GET", "/x"))
    assert not caught.value.permanent
    assert "not JSON" in caught.value.message


def test_parse_names_the_malformed_field() -> None:
    http = client(answer(200, json={"id": None}))

    def parser(data: object) -> str:
        assert isinstance(data, dict)
        return req_str(data, "id", "thing")

    with pytest.raises(ProviderError) as caught:
        http.parse(http.request("GET", "/x"), parser)
    assert caught.value.message == "GET /x: malformed answer: thing.id: expected a non-empty string, got null"
    assert not caught.value.permanent


def test_readers_reject_booleans_and_fractions_as_counts() -> None:
    assert as_int(5.0, "n") == 5
    with pytest.raises(MalformedAnswer):
        as_int(True, "n")
    with pytest.raises(MalformedAnswer):
        as_int(1.5, "n")
    with pytest.raises(MalformedAnswer):
        opt_str({"k": 3}, "k", "w")


def test_parse_float_accepts_surrounding_spaces() -> None:
    assert parse_float(" 12.5 ") == 12.5
    assert parse_float(None) is None


def test_it_works_as_a_context_manager() -> None:
    with client(answer(200)) as http:
        assert http.request("GET", "/x").status_code == 200
