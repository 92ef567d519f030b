from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from releases.integrations.http_check.client import HttpCheckResult, http_check
from tests.http import Vendor

URL = "https://shop.acme.test/healthz"
SECRET_URL = "https://probe:s3cret-pass@shop.acme.test/healthz?token=sig-abc123#frag"


def public(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


def check(vendor: Vendor, url: str = URL, **kwargs: object) -> HttpCheckResult:
    kwargs.setdefault("resolve", public)
    return http_check(url, timeout=2.0, transport=httpx.MockTransport(vendor), **kwargs)  # type: ignore[arg-type]


def raising(exc_type: type[httpx.TransportError], text: str = "boom") -> Vendor:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(text, request=request)

    return Vendor(handler)


def assert_no_secrets(text: str) -> None:
    for secret in ("probe", "s3cret-pass", "token", "sig-abc123", "frag"):
        assert secret not in text


# --- healthy -------------------------------------------------------------------------------------


def test_a_200_is_healthy_with_no_error() -> None:
    vendor = Vendor(httpx.Response(200, text="ok"))
    result = check(vendor)
    assert result.healthy
    assert (result.url, result.status, result.error) == (URL, 200, "")
    assert vendor.last.method == "GET"
    assert vendor.last.url == URL


def test_it_sends_the_given_headers() -> None:
    vendor = Vendor(httpx.Response(200))
    check(vendor, headers={"Authorization": "Bearer probe-token", "X-Probe": "gatekeeper"})
    assert vendor.last.headers["Authorization"] == "Bearer probe-token"
    assert vendor.last.headers["X-Probe"] == "gatekeeper"


def test_elapsed_time_is_measured_in_milliseconds() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        time.sleep(0.05)
        return httpx.Response(200)

    result = check(Vendor(slow))
    assert 50 <= result.elapsed_ms < 5000


def test_the_body_is_never_downloaded() -> None:
    class Endless(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            raise AssertionError("the probe read the body")

    assert check(Vendor(httpx.Response(200, stream=Endless()))).healthy


# --- unhealthy answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (500, "HTTP 500 Internal Server Error"),
        (503, "HTTP 503 Service Unavailable"),
        (404, "HTTP 404 Not Found"),
        (204, "HTTP 204 No Content"),
        (599, "HTTP 599"),
    ],
)
def test_any_status_but_200_is_unhealthy(status: int, text: str) -> None:
    result = check(Vendor(httpx.Response(status)))
    assert not result.healthy
    assert result.status == status
    assert result.error == f"GET {URL}: {text}"


def test_a_redirect_is_not_followed_and_is_unhealthy() -> None:
    vendor = Vendor(httpx.Response(302, headers={"Location": "/login?next=%2Fhealthz&session=abc"}))
    result = check(vendor)
    assert len(vendor.requests) == 1
    assert not result.healthy
    assert result.status == 302
    assert result.error == f"GET {URL}: HTTP 302, redirect to https://shop.acme.test/login not followed"


def test_a_redirect_without_location_is_still_reported() -> None:
    result = check(Vendor(httpx.Response(301)))
    assert result.error == f"GET {URL}: HTTP 301, redirect not followed"


# --- failures become results ---------------------------------------------------------------------


@pytest.mark.parametrize("exc_type", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.PoolTimeout])
def test_a_timeout_is_a_result_not_an_exception(exc_type: type[httpx.TransportError]) -> None:
    result = check(raising(exc_type))
    assert result.status is None
    assert not result.healthy
    assert result.error.startswith(f"GET {URL}: timed out after 2s")


def test_a_refused_connection_is_a_result() -> None:
    result = check(raising(httpx.ConnectError, "[Errno 111] Connection refused"))
    assert result.status is None
    assert result.error == f"GET {URL}: cannot connect ([Errno 111] Connection refused)"


def test_a_dropped_connection_is_a_result() -> None:
    result = check(raising(httpx.RemoteProtocolError, "Server disconnected without sending a response."))
    assert result.status is None
    assert "RemoteProtocolError: Server disconnected" in result.error


def test_the_real_timeout_is_applied() -> None:
    seen: list[dict[str, float | None]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200)

    http_check(URL, timeout=1.5, transport=httpx.MockTransport(record), resolve=public)
    assert seen == [{"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5}]


# --- secrets stay out of error texts -------------------------------------------------------------


def test_userinfo_and_query_are_stripped_from_an_error_status() -> None:
    result = check(Vendor(httpx.Response(503)), url=SECRET_URL)
    assert result.error == "GET https://shop.acme.test/healthz: HTTP 503 Service Unavailable"
    assert result.url == SECRET_URL  # the caller's own value, untouched


def test_secrets_quoted_by_the_exception_are_scrubbed() -> None:
    result = check(raising(httpx.ConnectError, f"cannot reach {SECRET_URL} (s3cret-pass)"), url=SECRET_URL)
    assert result.status is None
    assert result.error.startswith("GET https://shop.acme.test/healthz: cannot connect")
    assert_no_secrets(result.error)


def test_a_redirect_location_loses_its_secrets() -> None:
    response = httpx.Response(307, headers={"Location": "https://u:p4ss@other.test/x?sig=zzz"})
    result = check(Vendor(response), url=SECRET_URL)
    assert "https://other.test/x not followed" in result.error
    assert "p4ss" not in result.error
    assert "sig=zzz" not in result.error
    assert_no_secrets(result.error)


# --- only web URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://shop.acme.test/healthz", "file:///etc/passwd", "shop.acme.test/healthz", "http://", "https:///x"],
)
def test_only_http_and_https_urls_are_checked(url: str) -> None:
    vendor = Vendor()
    with pytest.raises(ValueError, match="http"):
        check(vendor, url=url)
    assert vendor.requests == []


def test_an_unparseable_url_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a URL"):
        check(Vendor(), url="http://[::1")


def test_plain_http_is_accepted() -> None:
    vendor = Vendor(httpx.Response(200))
    assert check(vendor, url="http://10.0.0.5:8080/health").healthy
    assert vendor.last.url.port == 8080


# --- only public addresses, unless the project allows more ------------------------------------


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "192.168.0.7", "169.254.169.254", "::1", "fe80::1", "0.0.0.0", "224.0.0.1"],  # noqa: S104,
)
def test_a_host_that_resolves_to_a_private_address_is_not_asked(address: str) -> None:
    vendor = Vendor(httpx.Response(200))

    result = check(vendor, "https://evil@shop.acme.test:18556/x", resolve=lambda host, port: [address])

    assert result.status is None and not result.healthy
    assert f"resolves to {address}, not a public address: not asked" in result.error
    assert "allow_private_addresses" in result.error and "evil" not in result.error
    assert vendor.requests == []


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    vendor = Vendor(httpx.Response(200))

    result = check(vendor, resolve=lambda host, port: ["93.184.215.14", "10.0.0.5"])

    assert "10.0.0.5" in result.error and vendor.requests == []


def test_an_ip_literal_is_looked_at_as_the_address_it_is() -> None:
    vendor = Vendor(httpx.Response(200))

    result = http_check("http://127.0.0.1:9/x", timeout=1.0, transport=httpx.MockTransport(vendor))

    assert "resolves to 127.0.0.1" in result.error and vendor.requests == []


def test_a_project_that_allows_private_addresses_is_asked() -> None:
    vendor = Vendor(httpx.Response(200))

    result = check(vendor, resolve=lambda host, port: ["10.0.0.5"], allow_private=True)

    assert result.healthy and len(vendor.requests) == 1


def test_a_host_that_does_not_resolve_fails_the_check_without_asking() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    vendor = Vendor(httpx.Response(200))
    result = check(vendor, resolve=nowhere)

    assert "cannot resolve shop.acme.test" in result.error and vendor.requests == []
