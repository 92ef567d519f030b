"""A recording httpx.MockTransport shared by the provider client tests."""

from __future__ import annotations

from collections.abc import Callable

import httpx


class Vendor:
    """A MockTransport that records every request and answers from a queue."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]
