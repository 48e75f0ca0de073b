"""The one error tree of m365send, and the table that says what each error means at the edges.

::

    M365SendError
    ├── RequestInvalid            400  dead-letter  the message or request failed validation
    │   ├── AttachmentNotAllowed  403  dead-letter  a blob outside M365_ATTACHMENT_CONTAINERS (checked before any read)
    │   ├── AttachmentNotFound    400  dead-letter  a referenced blob or its container does not exist
    │   └── AttachmentAccessDenied 403 dead-letter  the app's identity may not read a referenced blob
    ├── PayloadTooLarge           413  dead-letter  the Graph request would exceed Graph's 4 MB limit
    ├── Unauthenticated           401  dead-letter  no valid function key or Entra ID bearer token (RFC 6750)
    ├── SenderNotAllowed          403  dead-letter  the caller's sender rule does not allow the mailbox, From or pair
    ├── IdempotencyConflict       409  dead-letter  the idempotency key was used for a different message
    ├── SendNotFound              404  dead-letter  the status look-up knows no send with this key
    ├── SendInProgress            503  retry        a send with the same idempotency key is under way (Retry-After)
    │   └── LeaseLost                               another attempt took the key over while this one held it
    ├── ConfigurationInvalid      500  dead-letter  app settings missing or contradictory
    ├── CredentialError           500  dead-letter  the app's own credential cannot be used
    │   ├── SecretNotFound                          Key Vault has no such secret
    │   ├── KeyVaultAccessDenied                    the worker identity may not read the secret
    │   ├── CertificateInvalid                      not a PFX, wrong password, no private key
    │   └── CredentialRejected                      Entra ID refused tenant, client or secret
    ├── GraphRejected             422  dead-letter  Graph refused the request for another reason (a 4xx of Graph's)
    │   ├── RecipientsRejected    400  dead-letter  Graph could not resolve a recipient
    │   ├── SendAsDenied          403  dead-letter  the app may not send as this mailbox
    │   │   └── DraftsDenied      403  dead-letter  large attachments need a draft: Mail.ReadWrite is missing
    │   └── MailboxNotFound       404  dead-letter  no such mailbox, or not enabled for REST
    ├── DependencyUnavailable     503  retry        Graph, Entra ID, Key Vault or Storage unreachable or throttling
    │   └── UploadSessionLost                       an attachment upload session cannot go on: start a new one
    └── OutcomeUnknown            502  retry*       Graph's answer to a send was lost (504, 5xx without Retry-After,
                                                    timeout or reset after the request went out): the email may be out

``retry*``: never retried blindly. The send-once engine (``m365send.sendonce``) first asks the
mailbox in verified delivery mode, and flags the resend as a possible duplicate in standard mode.

Every error carries ``exception``: the name the original low-code block threw for the same case
(``PropertyNullException``, ``MsalServiceException`` ...), so its users recognise it.
Messages never contain secrets, tokens or message bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "AttachmentAccessDenied",
    "AttachmentNotAllowed",
    "AttachmentNotFound",
    "CertificateInvalid",
    "ConfigurationInvalid",
    "CredentialError",
    "CredentialRejected",
    "DependencyUnavailable",
    "Disposition",
    "DraftsDenied",
    "FieldProblem",
    "GraphRejected",
    "IdempotencyConflict",
    "KeyVaultAccessDenied",
    "LeaseLost",
    "M365SendError",
    "MailboxNotFound",
    "Outcome",
    "OutcomeUnknown",
    "PayloadTooLarge",
    "RecipientsRejected",
    "RequestInvalid",
    "SecretNotFound",
    "SendAsDenied",
    "SendInProgress",
    "SendNotFound",
    "SenderNotAllowed",
    "Unauthenticated",
    "UploadSessionLost",
    "outcome_of",
]


class Disposition(StrEnum):
    """What a queue trigger does with a message that failed this way."""

    RETRY = "retry"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True)
class Outcome:
    """How one kind of error shows at the edges: HTTP status, queue disposition, problem type."""

    status: int
    disposition: Disposition
    slug: str
    title: str


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of a request."""

    field: str
    code: str
    message: str
    exception: str


class M365SendError(Exception):
    """Base of every error m365send raises on purpose."""

    def __init__(self, detail: str, *, exception: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.exception = exception


class RequestInvalid(M365SendError):
    """The request or its email message failed validation; ``problems`` names each field."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(f"{first.field}: {first.message}{more}", exception=first.exception)


class _AttachmentProblem(RequestInvalid):
    """A referenced attachment cannot be used; names the attachment's field."""

    code = "attachment"
    seed_exception = "ArgumentException"

    def __init__(self, field: str, message: str) -> None:
        super().__init__([FieldProblem(field, self.code, message, self.seed_exception)])


class AttachmentNotAllowed(_AttachmentProblem):
    """The blob is in a container this deployment does not read attachments from."""

    code = "not_allowed"
    seed_exception = "UnauthorizedAccessException"


class AttachmentNotFound(_AttachmentProblem):
    """The referenced blob (or its container) does not exist."""

    code = "not_found"
    seed_exception = "FileNotFoundException"


class AttachmentAccessDenied(_AttachmentProblem):
    """The app's identity may not read the referenced blob."""

    code = "access_denied"
    seed_exception = "UnauthorizedAccessException"


class PayloadTooLarge(M365SendError):
    """The Graph request would be larger than Graph accepts in one call."""


class SenderNotAllowed(M365SendError):
    """The mailbox, From address or on-behalf-of pair is not one this caller may send as."""


class Unauthenticated(M365SendError):
    """The HTTP caller proved no identity: no usable function key, or a bearer token that is not valid.

    ``error`` is RFC 6750's code for ``WWW-Authenticate`` (``invalid_token``, or empty when no token came).
    """

    def __init__(self, detail: str, *, error: str = "invalid_token") -> None:
        super().__init__(detail, exception="UnauthorizedAccessException")
        self.error = error


class IdempotencyConflict(M365SendError):
    """The idempotency key was first used for a different payload; nothing is sent."""


class SendNotFound(M365SendError):
    """The status look-up knows no send with this idempotency key."""


class SendInProgress(M365SendError):
    """Another attempt holds the key's reservation; ``retry_after`` is when its lease ends."""

    def __init__(self, detail: str, *, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class LeaseLost(SendInProgress):
    """This attempt's lease on the key lapsed and another attempt holds it now: this one must stop."""

    def __init__(self, detail: str = "another attempt took over this idempotency key") -> None:
        super().__init__(detail, retry_after=1.0)


class ConfigurationInvalid(M365SendError):
    """App settings are missing or contradict each other; ``settings`` names them."""

    def __init__(self, detail: str, *, settings: Sequence[str] = (), exception: str = "ArgumentException") -> None:
        super().__init__(detail, exception=exception)
        self.settings = tuple(settings)


class CredentialError(M365SendError):
    """The app registration's credential could not be loaded or was refused."""


class SecretNotFound(CredentialError):
    """The Key Vault secret named by a setting does not exist."""


class KeyVaultAccessDenied(CredentialError):
    """The worker's identity is not allowed to read the secret."""


class CertificateInvalid(CredentialError):
    """The certificate secret is not a usable PFX (wrong password, not PKCS#12, no key)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, exception="CryptographicException")


class CredentialRejected(CredentialError):
    """Entra ID refused the tenant, client id, secret or certificate."""

    def __init__(self, detail: str, *, aadsts: str | None = None) -> None:
        super().__init__(detail, exception="MsalServiceException")
        self.aadsts = aadsts


class GraphRejected(M365SendError):
    """Microsoft Graph refused the send; ``code`` is Graph's ``error.code``."""

    def __init__(self, detail: str, *, code: str, graph_status: int) -> None:
        super().__init__(detail, exception="ServiceException")
        self.code = code
        self.graph_status = graph_status


class RecipientsRejected(GraphRejected):
    """Graph could not resolve at least one recipient."""


class SendAsDenied(GraphRejected):
    """The app has no right to send as this mailbox (Mail.Send or an access policy)."""


class DraftsDenied(SendAsDenied):
    """Graph refused to create a draft: sending large attachments needs ``Mail.ReadWrite`` too."""


class MailboxNotFound(GraphRejected):
    """The sending mailbox does not exist or has no Exchange Online mailbox."""


class DependencyUnavailable(M365SendError):
    """A dependency is unreachable or throttling, and certainly did not act; ``retry_after`` is a hint in seconds."""

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail, exception="IOException")
        self.retry_after = retry_after


class UploadSessionLost(DependencyUnavailable):
    """An attachment upload session expired or no longer says where it stands: a new session starts over."""


class OutcomeUnknown(M365SendError):
    """A request that may deliver mail went out, and its answer was lost: Graph may have sent the email."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, exception="IOException")


_DL = Disposition.DEAD_LETTER

# The one table: each error kind's HTTP status, queue disposition and problem type.
OUTCOMES: dict[type[M365SendError], Outcome] = {
    M365SendError: Outcome(500, _DL, "internal", "The email could not be sent"),
    RequestInvalid: Outcome(400, _DL, "validation", "The email message is not valid"),
    AttachmentNotAllowed: Outcome(
        403, _DL, "attachment-not-allowed", "The attachment is in a container this service may not read"
    ),
    AttachmentNotFound: Outcome(400, _DL, "attachment-not-found", "An attachment was not found"),
    AttachmentAccessDenied: Outcome(403, _DL, "attachment-access-denied", "An attachment could not be read"),
    PayloadTooLarge: Outcome(413, _DL, "payload-too-large", "The email message is too large"),
    SenderNotAllowed: Outcome(403, _DL, "sender-not-allowed", "Sending as this mailbox is not allowed"),
    Unauthenticated: Outcome(401, _DL, "unauthenticated", "The caller is not authenticated"),
    IdempotencyConflict: Outcome(
        409, _DL, "idempotency-key-conflict", "The idempotency key was already used for a different message"
    ),
    SendNotFound: Outcome(404, _DL, "send-not-found", "No send with this idempotency key is known"),
    SendInProgress: Outcome(
        503, Disposition.RETRY, "idempotency-key-in-flight", "A send with this idempotency key is in progress"
    ),
    ConfigurationInvalid: Outcome(500, _DL, "configuration", "The service is not configured correctly"),
    CredentialError: Outcome(500, _DL, "credential", "The service's Microsoft 365 credential cannot be used"),
    GraphRejected: Outcome(422, _DL, "graph-rejected", "Microsoft Graph refused the email"),
    RecipientsRejected: Outcome(400, _DL, "recipients-rejected", "Microsoft Graph refused a recipient"),
    SendAsDenied: Outcome(403, _DL, "send-as-denied", "The app may not send as this mailbox"),
    DraftsDenied: Outcome(
        403, _DL, "drafts-denied", "The app may not create drafts (Mail.ReadWrite), which large attachments need"
    ),
    MailboxNotFound: Outcome(404, _DL, "mailbox-not-found", "The sending mailbox was not found"),
    DependencyUnavailable: Outcome(
        503, Disposition.RETRY, "dependency-unavailable", "A dependency is unavailable; try again later"
    ),
    OutcomeUnknown: Outcome(
        502, Disposition.RETRY, "outcome-unknown", "Microsoft Graph's answer was lost: the email may have been sent"
    ),
}


def outcome_of(error: M365SendError) -> Outcome:
    """The table row of ``error``'s own class, or of its nearest listed ancestor."""
    return next(OUTCOMES[cls] for cls in type(error).__mro__ if cls in OUTCOMES)
