"""Whose fault a failed exchange is: the member's (counted toward its ejection and retried
on another member when allowed) or the client's (nobody is blamed)."""

from __future__ import annotations

from typing import Final

from servicepool_proxy.http.body import BodyTooLarge
from servicepool_proxy.http.exchange import ClientGone, RequestRejected
from servicepool_proxy.http.upstream import ClientStalled, UpstreamError

# A member answered 401/403 to the credential the pool sent it (spec.upstreamAuth): the pool's
# problem, never the client's; the member is AuthFailed and the request tried elsewhere.
CREDENTIAL_REFUSED: Final = "credential-refused"


class AttemptFailed(Exception):
    """One try on one member failed before the client saw a byte (`answered`: after the
    member's answer began, when its body could not be read)."""

    def __init__(self, kind: str, detail: str, answered: bool = False) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.answered = answered


class ClientFault(Exception):
    """The client ended the exchange: it left, sent a bad or oversized body, or stalled.

    `reason` names it in metrics; `status` is the answer, if the client is still there.
    """

    def __init__(self, reason: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


def classify(exc: BaseException) -> AttemptFailed:
    """Name the failure the way retryOn does: connect-failure, reset or timeout."""
    if isinstance(exc, UpstreamError):
        return AttemptFailed(exc.kind, str(exc) or type(exc).__name__)
    if isinstance(exc, TimeoutError):
        return AttemptFailed("timeout", "no answer in time")
    if isinstance(exc, ConnectionError):
        return AttemptFailed("reset", str(exc) or type(exc).__name__)
    return AttemptFailed("reset", f"{type(exc).__name__}: {exc}")


def client_fault(exc: BaseException) -> ClientFault | None:
    """The client's failure behind `exc` (or what it was raised from), if that is what it is."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, BodyTooLarge):
            return ClientFault("body-too-large", 413, str(seen))
        if isinstance(seen, RequestRejected):
            return ClientFault("bad-body", seen.status, str(seen))
        if isinstance(seen, ClientGone):
            return ClientFault("client-gone", 499, str(seen))
        if isinstance(seen, ClientStalled):
            return ClientFault("client-stalled", 408, str(seen))
        seen = seen.__cause__ or seen.__context__
    return None


def attribute(exc: BaseException) -> ClientFault | AttemptFailed:
    """The client's fault when it is one, otherwise the member's failure, classified."""
    return client_fault(exc) or classify(exc)
