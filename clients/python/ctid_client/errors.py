"""Errors of the client library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Event


class ClientError(Exception):
    """Base class of every error this library raises."""


class CtidError(ClientError):
    """ctid answered a request with EventError (docs/protocol.md section 8).

    ``code`` is the ErrorCode (e.g. 41 not registered, 53 invalid attribute, 1161 the switch
    refused for the object's state), ``message`` the one-line ErrorMessage and ``event`` the whole
    EventError (its ``Extensions`` may carry ``CSTAError``).
    """

    def __init__(self, code: int, message: str, event: Event | None = None, request: str = "") -> None:
        self.code = code
        self.message = message
        self.event = event
        self.request = request
        where = f"{request}: " if request else ""
        super().__init__(f"{where}EventError {code}: {message}")

    @property
    def csta_error(self) -> Any:
        """``Extensions.CSTAError`` (``<family>/<value>``) when the switch refused, else None."""
        ext = getattr(self.event, "Extensions", None) if self.event is not None else None
        return ext.get("CSTAError") if ext is not None else None


class RequestTimeout(ClientError, TimeoutError):
    """No answer carrying the request's ReferenceID arrived in time."""

    def __init__(self, request: str, reference_id: int, timeout: float) -> None:
        self.request = request
        self.reference_id = reference_id
        self.timeout = timeout
        super().__init__(f"no answer to {request} (ReferenceID {reference_id}) within {timeout:g} s")


class ConnectError(ClientError):
    """No server of the list served (docs/protocol.md section 6.10) or one can never work."""

    def __init__(self, urls: list[str], reason: str) -> None:
        self.urls = urls
        self.reason = reason
        super().__init__(f"cannot connect to {', '.join(urls)}: {reason}")


class Disconnected(ClientError):
    """The client is no longer connected and will not reconnect: it was closed, it gave up
    resuming its session (docs/protocol.md section 6.9), or the session moved to another
    connection (close code 4001)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SessionLost(ClientError):
    """ctid refused to resume the session (EventError 1901-1905): the request was sent on the
    old session and its answer is gone. The client goes on with a fresh session (it registers its
    DNs again); send the request again if it still makes sense."""

    def __init__(self, request: str, refusal: str) -> None:
        self.request = request
        self.refusal = refusal
        super().__init__(f"{request}: the session was not resumed ({refusal}); its answer is lost")
