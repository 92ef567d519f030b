"""How a vendor call failed, as every outbox handler reports it: permanent or transient, and
whether the request may have reached the vendor (so a retry could do it twice)."""

from __future__ import annotations


class ProviderError(Exception):
    """A failed call to an external service, classified for the caller."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        permanent: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        maybe_delivered: bool = False,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status
        self.maybe_delivered = maybe_delivered
        self.code = code

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.message}{status}"


class ProviderTimeout(ProviderError):
    """The service did not answer within the client's timeout."""
