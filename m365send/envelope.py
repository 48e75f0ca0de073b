"""The queue message format: a JSON envelope ``{"id", "message", "sender"}`` or a bare message. Pure.

``id`` is the caller's idempotency key; a bare message's key is its queue message id.

When m365send hands a message back to the queue (a transient failure, a key in flight), it
re-enqueues the producer's bytes untouched inside a small wrapper that counts the hand-backs and
keeps the key (a bare message's queue id changes with every enqueue)::

    {"m365send":{"attempt":2,"key":"invoice-1"},"original":<the producer's JSON, byte for byte>}

so a hand-back grows a message by a few dozen bytes, never by re-serialisation. A message scheduled
over HTTP (or the CLI) waits on the queue in the same wrapper with ``"scope":"http"``: its key is the
caller's HTTP key, so a repeat of the HTTP request and the queued copy are one key, sent once.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import math
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from m365send.errors import FieldProblem, RequestInvalid
from m365send.message import SendRequest
from m365send.parsing import parse_send_request, structure_problem
from m365send.sendlog import Scope, scoped_key

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_QUEUE_MESSAGE",
    "Envelope",
    "QueuedSend",
    "encoded_size",
    "envelope_schema",
    "handback_size",
    "idempotency_request_id",
    "key_of",
    "key_problem",
    "original_of",
    "parse_queue_message",
    "payload_hash",
    "queue_payload",
    "replayable",
    "wrap",
]

# client-request-ids derive from the key, so every attempt of one send shares Graph's correlation id.
_KEY_NAMESPACE = uuid.UUID("5d1f2c1e-8f0a-4e0b-9c47-6a1f3e2d9b10")
MAX_KEY_LENGTH = 256
# Azure Storage queue messages are at most 64 KiB, counted after base64 encoding.
MAX_QUEUE_MESSAGE = 64 * 1024


def encoded_size(length: int) -> int:
    """Bytes that ``length`` bytes take on the queue (base64, as host.json's ``messageEncoding`` says)."""
    return 4 * math.ceil(length / 3)


class Envelope(BaseModel):
    """What producers put on the outbox queue (JSON, base64-encoded as host.json expects)."""

    # Built when the first queue message arrives, not at import: an HTTP worker never needs it.
    model_config = ConfigDict(extra="forbid", title="m365send queue envelope", defer_build=True)

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
    notify: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        description=(
            "A queue (in the same storage account, listed in M365_COMPLETION_QUEUES) to be told on when the "
            "send finishes: sent or dead-lettered, in the shape of GET /api/messages/{key}."
        ),
    )

    @field_validator("notify")
    @classmethod
    def _queue_name(cls, value: str | None) -> str | None:
        if value is not None and "--" in value:
            raise ValueError("a queue name has no two hyphens in a row")
        return value


_HANDBACK = "m365send"
# An HTTP caller's key namespace as a hand-back names it (m365send.callers.Caller.owner).
_OWNER = re.compile(r"^(?:app|user)\.[0-9a-f-]{36}$|^key\.[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class QueuedSend:
    """A decoded queue message: its key, the validated request, its payload hash and the producer's bytes."""

    key: str
    request: SendRequest
    payload_hash: str
    attempt: int  # hand-backs so far
    original: bytes
    notify: str | None = None
    scope: Scope = Scope.QUEUE  # HTTP for a message an HTTP caller scheduled: its key is an HTTP key
    owner: str = ""  # the scheduling HTTP caller's key namespace (a queue's producers are the queue's)

    def handback(self, *, attempt: int) -> bytes:
        """The message to put back on the queue: the producer's bytes untouched, in the hand-back wrapper."""
        return wrap(self.original, key=self.key, attempt=attempt, scope=self.scope, owner=self.owner)


def wrap(original: bytes, *, key: str, attempt: int, scope: Scope = Scope.QUEUE, owner: str = "") -> bytes:
    """``original`` in the hand-back wrapper (``scope`` HTTP: a message scheduled by an HTTP caller,
    ``owner`` that caller's key namespace)."""
    fields: dict[str, Any] = {"attempt": attempt, "key": key}
    if scope is not Scope.QUEUE:
        fields["scope"] = scope.value
    if owner:
        fields["owner"] = owner
    header = json.dumps(fields, separators=(",", ":"))
    return b'{"' + _HANDBACK.encode() + b'":' + header.encode() + b',"original":' + original + b"}"


def handback_size(original: bytes, key: str, scope: Scope = Scope.QUEUE, owner: str = "") -> int:
    """Bytes of a hand-back of ``original`` late in its life (an attempt count of three digits)."""
    return len(wrap(original, key=key, attempt=999, scope=scope, owner=owner))


def key_problem(key: str) -> str | None:
    """What is wrong with an idempotency key, if anything (the rules for every key, however it came)."""
    if not key or len(key) > MAX_KEY_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in key):
        return f"must be 1 to {MAX_KEY_LENGTH} printable characters"
    return None


def queue_payload(text: bytes) -> bytes:
    """The envelope's bytes in a queue message as the host hands it over (``messageEncoding: none``).

    Producers write either: the Azure SDKs for Python, .NET and JavaScript send the text as it is by
    default, and m365send's own client, the Functions host's output binding and the SDKs' base64
    policies send base64. JSON text starts with a brace (or a BOM, or whitespace before it), which
    base64 never does; anything else that is valid base64 is decoded, and the rest is left as it
    is, for the JSON decoder to name the problem.
    """
    stripped = text.strip()
    if not stripped or stripped[:1] in (b"{", b"[", b'"') or not stripped.isascii():
        return text
    try:
        return base64.b64decode(stripped, validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return text


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@dataclass(frozen=True)
class _Unwrapped:
    message: Any  # the producer's message
    original: bytes  # its bytes
    attempt: int = 0  # hand-backs so far
    key: str | None = None  # the key the hand-back kept
    scope: Scope = Scope.QUEUE
    owner: str = ""


def _unwrap(decoded: Any, body: bytes) -> _Unwrapped:
    """The producer's message inside a hand-back wrapper, or ``decoded`` itself when it is none."""
    if not (isinstance(decoded, dict) and set(decoded) == {_HANDBACK, "original"}):
        if body.startswith(codecs.BOM_UTF8) or not _is_utf8(body):
            # JSON in another encoding (RFC 8259 allows the BOM-less UTF-16/32 forms json.loads reads):
            # a hand-back embeds it as UTF-8.
            body = json.dumps(decoded, ensure_ascii=True).encode()
        return _Unwrapped(decoded, body)
    header = decoded[_HANDBACK]
    attempt = header.get("attempt") if isinstance(header, dict) else None
    key = header.get("key") if isinstance(header, dict) else None
    scope = header.get("scope", Scope.QUEUE.value) if isinstance(header, dict) else None
    if not isinstance(attempt, int) or attempt < 0 or not isinstance(key, str) or not key:
        raise _invalid("handback", "the hand-back header must hold a non-negative attempt and a key")
    if key_problem(key) is not None:  # a wrapper may be written by hand: its key keeps the same rules
        raise _invalid("handback", f"the hand-back key {key_problem(key)}")
    if scope not in {s.value for s in Scope}:
        raise _invalid("handback", "the hand-back scope must be http or queue")
    owner = header.get("owner", "")
    if not isinstance(owner, str) or (owner and (scope != Scope.HTTP.value or not _OWNER.match(owner))):
        raise _invalid("handback", "the hand-back owner must be an HTTP caller's (app.<id>, user.<id> or key.<name>)")
    # The original sits verbatim between the header and the closing brace (see ``QueuedSend.handback``);
    # a wrapper written some other way (by hand, say) gives its original re-serialised.
    ours = body.startswith(b'{"' + _HANDBACK.encode() + b'":')
    marker = body.find(b',"original":') if ours else -1
    original = body[marker + len(b',"original":') : body.rindex(b"}")] if marker >= 0 else b""
    if marker < 0 or not original.strip():
        original = json.dumps(decoded["original"]).encode()
    return _Unwrapped(decoded["original"], original, attempt, key, Scope(scope), owner)


def idempotency_request_id(key: str) -> str:
    """A stable GUID for ``key`` (Graph's client-request-id must be a GUID)."""
    return str(uuid.uuid5(_KEY_NAMESPACE, key))


def payload_hash(request: SendRequest) -> str:
    """SHA-256 of the normalised message and sender: PascalCase and camelCase spellings hash alike."""
    canonical = {"message": request.message.model_dump(mode="json"), "sender": request.sender}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _invalid(code: str, message: str, field: str = "QueueMessage") -> RequestInvalid:
    return RequestInvalid([FieldProblem(field, code, message, "ArgumentException")])


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise _invalid(
            "invalid_json", f"the queue message is neither JSON nor base64-encoded JSON: {type(exc).__name__}"
        ) from None


def key_of(body: bytes, *, queue_message_id: str) -> str:
    """The idempotency key of a queue message, even when the rest of it is invalid."""
    try:
        unwrapped = _unwrap(_decode(body), body)
    except RequestInvalid:
        return queue_message_id
    if unwrapped.key:
        return unwrapped.key
    decoded = unwrapped.message
    key = decoded.get("id") if isinstance(decoded, dict) and "message" in decoded else None
    return key if isinstance(key, str) and key else queue_message_id


def original_of(body: bytes) -> bytes:
    """The producer's bytes of a queue message (itself, unless m365send handed it back)."""
    try:
        return _unwrap(_decode(body), body).original
    except RequestInvalid:
        return body


def replayable(body: bytes, *, key: str) -> bytes:
    """A dead or poisoned message made ready to enqueue again: the producer's message under ``key``, attempt 0."""
    decoded = _unwrap(_decode(body), body).message
    if isinstance(decoded, dict) and "message" in decoded:
        return json.dumps({**decoded, "id": key}).encode()
    return json.dumps({"id": key, "message": decoded}).encode()


def parse_queue_message(body: bytes, *, queue_message_id: str) -> QueuedSend:
    """Decode and validate a queue message; ``RequestInvalid`` names what is wrong."""
    unwrapped = _unwrap(_decode(body), body)
    decoded = unwrapped.message
    if isinstance(decoded, dict) and "message" in decoded:
        # The envelope's own fields; the message itself is checked once, by parse_send_request.
        problem = structure_problem({k: v for k, v in decoded.items() if k != "message"})
        if problem is not None:
            raise RequestInvalid([replace(problem, field=f"QueueMessage.{problem.field}")])
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
    key = unwrapped.key or envelope.id or queue_message_id
    scoped = scoped_key(unwrapped.scope, key, unwrapped.owner)
    request_id = idempotency_request_id(key if unwrapped.scope is Scope.QUEUE else scoped)
    request = parse_send_request(envelope.message, sender=envelope.sender, request_id=request_id)
    return QueuedSend(
        key=key,
        request=request,
        payload_hash=payload_hash(request),
        attempt=unwrapped.attempt,
        original=unwrapped.original,
        notify=envelope.notify,
        scope=unwrapped.scope,
        owner=unwrapped.owner,
    )


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
