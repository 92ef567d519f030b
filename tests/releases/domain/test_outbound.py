"""What webhook data may become in an outbound request (releases/domain/outbound.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from releases.domain.outbound import HOST_NAME, datadog_tag, deployment_host

DOMAINS = ["shop.example.com"]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("shop-web-k3x9p2a7-acme.vercel.app", "shop-web-k3x9p2a7-acme.vercel.app"),
        ("https://Shop-Web-K3X9.vercel.app/", "shop-web-k3x9.vercel.app"),
        ("shop.example.com", "shop.example.com"),
        ("SHOP.example.com.", "shop.example.com"),
        ("evil@127.0.0.1:18556/x", ""),  # user info and a loopback address
        ("shop-web.vercel.app@evil.test", ""),
        ("shop-web.vercel.app:8443", ""),  # a port
        ("127.0.0.1", ""),
        ("[::1]", ""),
        ("attacker.test", ""),  # a host name, but not the project's
        ("vercel.app", ""),
        ("x.vercel.app.evil.test", ""),
        ("", ""),
    ],
)
def test_only_the_projects_own_host_names_may_be_reached(url: str, host: str) -> None:
    assert deployment_host(url, DOMAINS) == host


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("web@1.4.2", "web_1.4.2"),
        ("dpl_7Hq2Rt9Ws4", "dpl_7hq2rt9ws4"),
        ("web} OR {*", "web__or___"),
        ("a,b", "a_b"),
        ("sha:4e1b/main", "sha:4e1b/main"),
    ],
)
def test_datadog_values_are_reduced_to_datadogs_tag_alphabet(value: str, tag: str) -> None:
    assert datadog_tag(value) == tag


@given(st.text(max_size=300))
def test_no_datadog_value_can_leave_its_scope(value: str) -> None:
    tag = datadog_tag(value)
    assert not set(tag) & set("{}, ()\"'!*") and len(tag) <= 200


@given(st.text(max_size=80))
def test_an_accepted_host_is_always_a_plain_host_name(url: str) -> None:
    host = deployment_host(url, DOMAINS)
    assert host == "" or (HOST_NAME.match(host) and "@" not in host and ":" not in host)
