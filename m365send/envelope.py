"""The queue message format: a JSON envelope ``{"id", "message", "sender"}`` or a bare message. Pure.

``id`` is the caller's idempotency key; a bare message's key is its queue message id. ``attempt``
counts hand-backs after transient failures and is written only by m365send itself.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from m365send.errors import FieldProblem, RequestInvalid
from m365send.models import SendRequest, parse_send_request

__all__ = ["Envelope", "QueuedSend", "envelope_schema", "idempotency_request_id", "parse_queue_message", "payload_hash"]

# client-request-ids derive from the key, so every attempt of one send shares Graph's correlation id.
_KEY_NAMESPACE = uuid.UUID("5d1f2c1e-8f0a-4e0b-9c47-6a1f3e2d9b10")
MAX_KEY_LENGTH = 256


class Envelope(BaseModel):
    """What producers put on the outbox queue (JSON, base64-encoded as host.json expects)."""

    model_config = ConfigDict(extra="forbid", title="m365send queue envelope")

    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The caller's idempotency key: the same key is sent at most once. Default: the queue message id.",
    )
    message: dict[str, Any] = Field(
        description="The email message, exactly as POST /api/send takes it (the seed's EmailMessage)."
    )
    sender: str | None = Field(default=None, description="Mailbox to send as (UPN or object id). Default: M365_SENDER.")
    attempt: int = Field(default=0, ge=0, description="Set by m365send when it hands a message back; leave it out.")


@dataclass(frozen=True)
class QueuedSend:
    """A decoded queue message: its key, the validated request, and the hash that identifies its payload."""

    key: str
    request: SendRequest
    payload_hash: str
    attempt: int

    def envelope_json(self, *, attempt: int) -> str:
        """The message as an envelope again (for handing it back to the queue)."""
        return json.dumps(
            {
                "id": self.key,
                "message": self.request.message.model_dump(mode="json", by_alias=False),
                "sender": self.request.sender,
                "attempt": attempt,
            }
        )


def idempotency_request_id(key: str) -> str:
    """A stable GUID for ``key`` (Graph's client-request-id must be a GUID)."""
    return str(uuid.uuid5(_KEY_NAMESPACE, key))


def payload_hash(request: SendRequest) -> str:
    """SHA-256 of the normalised message and sender: PascalCase and camelCase spellings hash alike."""
    canonical = {"message": request.message.model_dump(mode="json"), "sender": request.sender}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _invalid(code: str, message: str, field: str = "QueueMessage") -> RequestInvalid:
    return RequestInvalid([FieldProblem(field, code, message, "ArgumentException")])


def key_of(body: bytes, *, queue_message_id: str) -> str:
    """The idempotency key of a queue message, even when the rest of it is invalid."""
    try:
        decoded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return queue_message_id
    key = decoded.get("id") if isinstance(decoded, dict) and "message" in decoded else None
    return key if isinstance(key, str) and key else queue_message_id


def parse_queue_message(body: bytes, *, queue_message_id: str) -> QueuedSend:
    """Decode and validate a queue message; ``RequestInvalid`` names what is wrong."""
    try:
        decoded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid("invalid_json", f"the queue message is not JSON: {exc}") from None
    if not isinstance(decoded, dict):
        raise _invalid("type", "the queue message must be a JSON object (an envelope or an email message)")
    if "message" not in decoded:  # a bare EmailMessage: it has no "message" key
        decoded = {"message": decoded}
    try:
        envelope = Envelope.model_validate(decoded)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in error["loc"]) or "QueueMessage"
        raise _invalid("envelope", error["msg"], field=f"Envelope.{field}") from None
    key = envelope.id or queue_message_id
    request = parse_send_request(envelope.message, sender=envelope.sender, request_id=idempotency_request_id(key))
    return QueuedSend(key=key, request=request, payload_hash=payload_hash(request), attempt=envelope.attempt)


def envelope_schema() -> dict[str, Any]:
    """The envelope's JSON Schema, as published in ``schemas/queue-envelope.schema.json``."""
    schema = Envelope.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["description"] = (
        "A send request on the m365send outbox queue. A bare email message (no 'message' key) is accepted too; "
        "its queue message id is then the idempotency key."
    )
    return schema


if __name__ == "__main__":
    print(json.dumps(envelope_schema(), indent=2))
