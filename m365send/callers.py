"""Who is calling: an Entra ID app or user, a named function key, a queue, or the default caller. Pure.

Policy (``m365send.policy``) sees a caller's kind, id and app roles; send records see its
``owner``, the namespace of its idempotency keys. The default caller (an unnamed function key, the
main outbox queue, the CLI) owns the namespace every deployment had before callers had identities,
so existing keys and records keep their meaning.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from m365send.errors import Unauthenticated

__all__ = [
    "DEFAULT_CALLER",
    "KEY_NAME",
    "QUEUE_OWNER",
    "BearerTokens",
    "Caller",
    "authenticate",
    "entra_caller",
    "key_caller",
    "key_digest",
    "queue_caller",
]

# The namespace prefix of a producer queue's keys (``queue.<name>``).
QUEUE_OWNER = "queue."
CallerKind = Literal["default", "key", "app", "user", "queue"]
# A key caller's name, as the sender policy lists it (also part of its owner: no colon, no slash).
KEY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Caller:
    """One authenticated caller."""

    kind: CallerKind
    id: str = ""  # object id (app, user), key name, queue name
    roles: frozenset[str] = field(default_factory=frozenset)  # Entra app roles of the API granted to it
    owner: str = ""  # the namespace of its idempotency keys ("" for the default caller)

    def __str__(self) -> str:
        if self.kind == "default":
            return "the default caller (a function key the sender policy does not name)"
        if self.kind in ("app", "user"):
            return f"{self.kind} {self.id}"
        return f"{self.kind} '{self.id}'"

    @property
    def identified(self) -> bool:
        """Whether an Entra ID token proved who this is (only such callers need a rule of their own)."""
        return self.kind in ("app", "user")


DEFAULT_CALLER = Caller("default")


def entra_caller(kind: Literal["app", "user"], object_id: str, roles: frozenset[str]) -> Caller:
    """A caller that an Entra ID token identified, by its object id."""
    return Caller(kind, object_id, roles, owner=f"{kind}.{object_id.lower()}")


def queue_caller(name: str, *, main: bool) -> Caller:
    """The producers of queue ``name``; the main outbox queue's keep the default namespace."""
    return Caller("queue", name, owner="" if main else f"{QUEUE_OWNER}{name}")


def key_digest(key: str) -> str:
    """The SHA-256 (hex) of a function key, as the sender policy names a key caller (never the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_caller(presented: str | None, named_keys: Mapping[str, str]) -> Caller | None:
    """The named key caller whose digest matches ``presented`` (compared in constant time), else None."""
    if not presented:
        return None
    digest = key_digest(presented)
    found = None
    for name, expected in named_keys.items():
        # Every digest is compared, so the time taken says nothing about which name matched.
        if hmac.compare_digest(digest, expected.lower()):
            found = name
    return Caller("key", found, owner=f"key.{found}") if found else None


class BearerTokens(Protocol):
    """Validates ``Authorization: Bearer`` tokens (``m365send.bearer.EntraBearer``)."""

    def caller(self, authorization: str) -> Caller:
        """The caller the token proves; ``Unauthenticated`` otherwise."""
        ...


def authenticate(
    *,
    authorization: str | None,
    function_key: str | None,
    bearer: Callable[[], BearerTokens] | None,
    named_keys: Mapping[str, str],
    host_checks_keys: bool,
) -> Caller:
    """Who is calling: an Entra ID bearer token's caller, a named function key's, or the default caller.

    ``bearer`` is None when the deployment accepts no tokens (``M365_API_AUDIENCE`` unset): the host
    then checks function keys (auth level FUNCTION) and an ``Authorization`` header is not ours to
    read. With tokens accepted the functions are anonymous to the host (a caller with a token has no
    key), so only keys the sender policy names, by digest, are accepted here.
    """
    if bearer is not None and authorization is not None:
        scheme = authorization.partition(" ")[0]
        if scheme.lower() != "bearer":
            raise Unauthenticated(f"the Authorization scheme '{scheme[:20]}' is not Bearer", error="invalid_request")
        return bearer().caller(authorization)
    named = key_caller(function_key, named_keys)
    if named is not None:
        return named
    if host_checks_keys:
        return DEFAULT_CALLER
    if function_key:
        raise Unauthenticated(
            "this function key is not one the sender policy names (M365_SENDER_POLICY functionKeys): with "
            "M365_API_AUDIENCE set, m365send checks keys itself",
            error="",
        )
    raise Unauthenticated("send an Entra ID bearer token for this API, or a function key", error="")
