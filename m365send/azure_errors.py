"""One translator from Azure SDK errors to m365send's, used by every Azure adapter (Key Vault, Tables, Queues, Blobs).

Modelled on httpx's ``map_httpcore_exceptions``: an adapter wraps its SDK call in ``azure_errors(...)``
and says what "not found", "denied" and "refused" mean for it; everything else is decided here once::

    ResourceNotFoundError                         → not_found()            (else unavailable)
    ClientAuthenticationError, HTTP 401 / 403     → denied()               (else unavailable)
    ResourceModifiedError                         → modified()             (else unavailable)
    ServiceRequestError / ServiceResponseError    → DependencyUnavailable  (never reached, or no answer)
    HTTP 408, 429, 5xx                            → DependencyUnavailable
    any other HTTP status                         → refused(exc)           (else unavailable)

The SDK's exception stays the ``__cause__`` (so its reason reaches the logs) unless its text could
hold a secret: a SAS signature, an account key or a bearer token in a URL or a header.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from m365send.errors import DependencyUnavailable, M365SendError

__all__ = ["azure_errors", "first_line", "safe_cause"]

_SECRET_LOOKING = re.compile(r"sig=|accountkey|authtoken|bearer |sharedaccesssignature|client_secret", re.IGNORECASE)
_TRANSIENT = {408, 429}


def safe_cause(exc: BaseException) -> BaseException | None:
    """``exc``, unless its text could carry a secret (then None: the chain stops here)."""
    return None if _SECRET_LOOKING.search(str(exc)) else exc


def first_line(exc: BaseException) -> str:
    """The first line of an SDK error's text (they run to many lines of headers)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextmanager
def azure_errors(
    what: str,
    *,
    not_found: Callable[[], M365SendError] | None = None,
    denied: Callable[[], M365SendError] | None = None,
    modified: Callable[[], M365SendError] | None = None,
    refused: Callable[[HttpResponseError], M365SendError] | None = None,
    where: str | None = None,
) -> Iterator[None]:
    """Raise ``AzureError``s from the block as m365send errors.

    ``what`` names the resource in the message; ``where`` (its endpoint) is named too when it is
    unreachable, with what to check, so a wrong setting or a stopped Azurite reads as such.
    """
    try:
        yield
    except AzureError as exc:
        raise _map(exc, what, where, not_found, denied, modified, refused) from safe_cause(exc)


def _map(
    exc: AzureError,
    what: str,
    where: str | None,
    not_found: Callable[[], M365SendError] | None,
    denied: Callable[[], M365SendError] | None,
    modified: Callable[[], M365SendError] | None,
    refused: Callable[[HttpResponseError], M365SendError] | None,
) -> M365SendError:
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ResourceNotFoundError) and not_found is not None:
        return not_found()
    if isinstance(exc, ResourceModifiedError) and modified is not None:
        return modified()
    if (isinstance(exc, ClientAuthenticationError) or status in (401, 403)) and denied is not None:
        return denied()
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        if where is None:
            return DependencyUnavailable(f"{what} is unreachable: {type(exc).__name__}")
        reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
        return DependencyUnavailable(
            f"{what} at {where} is unreachable ({reason}): check M365Storage, and that the "
            "storage account (or, locally, Azurite: ./scripts/local) is running"
        )
    permanent = status is not None and status not in _TRANSIENT and status < 500
    if isinstance(exc, HttpResponseError) and permanent and refused is not None:
        return refused(exc)
    if status is not None:
        return DependencyUnavailable(f"{what} answered HTTP {status}")
    return DependencyUnavailable(f"{what} is unavailable: {type(exc).__name__}")
