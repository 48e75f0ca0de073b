"""Who may send as whom: the sender policy, one JSON document (``M365_SENDER_POLICY``). Pure.

::

    {
      "functionKeys": {"invoices-flow": "<SHA-256 of the key, hex>"},
      "callers": [
        {"name": "Invoices flow", "key": "invoices-flow", "senders": ["invoices@contoso.com"]},
        {"name": "HR flows", "role": "Mail.Send.HR", "senders": ["payroll@contoso.com"],
         "onBehalfOf": ["payroll@contoso.com>hr-director@contoso.com"]},
        {"name": "CRM", "objectId": "<Entra object id>", "senders": ["crm@contoso.com"]},
        {"name": "Billing service", "queue": "billing-outbox", "senders": ["billing@contoso.com"]}
      ],
      "default": {"senders": ["notifications@contoso.com"], "onBehalfOf": []}
    }

A caller gets every rule that names it (by app role, object id, key name or queue); a caller
that no rule names gets the default rule, which is ``M365_SENDER`` plus ``M365_ALLOWED_SENDERS``
and ``M365_ON_BEHALF_OF`` unless the document gives its own, so a deployment without a policy
works as it always did. An Entra ID caller must be named by a rule: any app in the tenant can get
a token for the API, so a token alone grants nothing.

The mailbox a request sends through (``sender``, else ``M365_SENDER``) and its From address must
be senders of the caller's rules, and an OnBehalfOf must be one of their ``delegate>principal``
pairs. A refusal names the caller and the sender, never a key or token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from m365send.addresses import fold_address, parse_pairs
from m365send.callers import KEY_NAME, Caller
from m365send.errors import SenderNotAllowed
from m365send.message import SendRequest
from m365send.names import is_object_id, is_queue_name

__all__ = ["Grant", "PolicyDocument", "SenderPolicy"]

_SHA256_HEX = r"^[0-9a-fA-F]{64}$"


class _Rights(BaseModel):
    # Built on first use: most deployments have no document, and a new instance's first send is
    # faster without building these validators.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    senders: tuple[str, ...] = ()
    on_behalf_of: tuple[str, ...] = Field(default=(), alias="onBehalfOf")

    @field_validator("on_behalf_of")
    @classmethod
    def _pairs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_pairs(value)
        return value

    @field_validator("senders")
    @classmethod
    def _senders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for sender in value:
            if not sender.strip() or (not is_object_id(sender) and "@" not in sender):
                raise ValueError(f"'{sender}' is not a mailbox address or object id")
        return value


class Rule(_Rights):
    """One rule: whom it names (exactly one of role, objectId, key, queue) and what they may send as."""

    name: str = Field(min_length=1, max_length=100)
    role: str | None = Field(default=None, min_length=1)
    object_id: str | None = Field(default=None, alias="objectId")
    key: str | None = Field(default=None, pattern=KEY_NAME.pattern)
    queue: str | None = None
    # A queue's producers may name only these completion queues in "notify" (else M365_COMPLETION_QUEUES),
    # so one service cannot put completions on another's.
    completion_queues: tuple[str, ...] | None = Field(default=None, alias="completionQueues")

    @model_validator(mode="after")
    def _one_matcher(self) -> Rule:
        if sum(x is not None for x in (self.role, self.object_id, self.key, self.queue)) != 1:
            raise ValueError(f"rule '{self.name}' must name exactly one of role, objectId, key or queue")
        if self.object_id is not None and not is_object_id(self.object_id):
            raise ValueError(f"rule '{self.name}': objectId '{self.object_id}' is not an Entra object id (a GUID)")
        if self.queue is not None and not is_queue_name(self.queue):
            raise ValueError(f"rule '{self.name}': '{self.queue}' is not a queue name")
        if self.completion_queues is not None and self.queue is None:
            raise ValueError(f"rule '{self.name}': completionQueues is for a queue rule")
        return self

    def names(self, caller: Caller) -> bool:
        """Whether this rule is about ``caller``."""
        if self.role is not None:
            return caller.identified and self.role in caller.roles
        if self.object_id is not None:
            return caller.identified and self.object_id.lower() == caller.id.lower()
        if self.key is not None:
            return caller.kind == "key" and caller.id == self.key
        return caller.kind == "queue" and caller.id == self.queue


class PolicyDocument(BaseModel):
    """The document as written in ``M365_SENDER_POLICY``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    function_keys: dict[str, str] = Field(default_factory=dict, alias="functionKeys")
    callers: tuple[Rule, ...] = ()
    default: _Rights | None = None

    @field_validator("function_keys")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            if not KEY_NAME.match(name):
                raise ValueError(f"key name '{name}' must be 1 to 64 letters, digits, '-' or '_'")
            if not _is_sha256(digest):
                raise ValueError(
                    f"key '{name}' must be given as the SHA-256 of the key (64 hex digits), never the key itself"
                )
        return value

    @model_validator(mode="after")
    def _keys_exist(self) -> PolicyDocument:
        for rule in self.callers:
            if rule.key is not None and rule.key not in self.function_keys:
                raise ValueError(f"rule '{rule.name}' names key '{rule.key}', which functionKeys does not list")
        return self


def _is_sha256(value: str) -> bool:
    return bool(re.match(_SHA256_HEX, value))


@dataclass(frozen=True)
class Grant:
    """What one caller may send as: the union of the rules that name it."""

    rules: tuple[str, ...]  # the rules' names ("default" for the default rule)
    senders: frozenset[str]
    pairs: frozenset[tuple[str, str]]


class SenderPolicy:
    """The deployment's sender policy, built once per worker from the settings."""

    def __init__(
        self,
        document: PolicyDocument,
        *,
        default_sender: str,
        allowed_senders: Iterable[str] = (),
        on_behalf_of: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.document = document
        self.default_sender = default_sender
        if document.default is not None:
            senders = frozenset(map(fold_address, document.default.senders))
            pairs = parse_pairs(document.default.on_behalf_of)
        else:
            senders = frozenset(map(fold_address, allowed_senders)) | {fold_address(default_sender)}
            pairs = frozenset((fold_address(d), fold_address(p)) for d, p in on_behalf_of)
        self.default = Grant(("default",), senders, pairs)
        # Each rule's rights, folded once: checks run on every send.
        self._grants = [
            (rule, Grant((rule.name,), frozenset(map(fold_address, rule.senders)), parse_pairs(rule.on_behalf_of)))
            for rule in document.callers
        ]

    @classmethod
    def parse(
        cls,
        text: str | None,
        *,
        default_sender: str,
        allowed_senders: Iterable[str] = (),
        on_behalf_of: Iterable[tuple[str, str]] = (),
    ) -> SenderPolicy:
        """The policy of a JSON document (None or blank: only the default rule); ``ValueError`` says what is wrong."""
        # An empty document needs no validation (nor its validator built).
        document = PolicyDocument.model_construct() if text is None or not text.strip() else _document(text)
        return cls(document, default_sender=default_sender, allowed_senders=allowed_senders, on_behalf_of=on_behalf_of)

    @property
    def named_keys(self) -> dict[str, str]:
        """Key name → SHA-256 of the key."""
        return dict(self.document.function_keys)

    def grant_for(self, caller: Caller) -> Grant | None:
        """The rights of ``caller``: its rules', else the default rule's (None for an Entra caller no rule names)."""
        grants = [grant for rule, grant in self._grants if rule.names(caller)]
        if not grants:
            return None if caller.identified else self.default
        return Grant(
            tuple(name for grant in grants for name in grant.rules),
            frozenset().union(*(grant.senders for grant in grants)),
            frozenset().union(*(grant.pairs for grant in grants)),
        )

    def check(self, caller: Caller, request: SendRequest) -> str:
        """The mailbox ``request`` sends through; ``SenderNotAllowed`` naming the caller and sender otherwise."""
        grant = self.grant_for(caller)
        if grant is None:
            raise SenderNotAllowed(
                f"{caller} is not named by any rule of the sender policy (M365_SENDER_POLICY): add a rule for "
                "its object id or one of its app roles",
                exception="UnauthorizedAccessException",
            )
        mailbox = request.sender or self.default_sender
        rules = ", ".join(grant.rules)
        # Without a default of the document's own, the settings are the default rule: say which to change.
        by_settings = grant is self.default and self.document.default is None
        if fold_address(mailbox) not in grant.senders:
            hint = "; add it to M365_ALLOWED_SENDERS" if by_settings else ""
            if request.sender is None and not by_settings:
                hint = "; name the mailbox with ?sender= or the envelope's sender"
            raise SenderNotAllowed(
                f"{caller} may not send as mailbox '{mailbox}' (its rules: {rules}){hint}",
                exception="ServiceException",
            )
        address = request.message.from_.address
        if fold_address(address) not in grant.senders:
            hint = "; add it to M365_ALLOWED_SENDERS" if by_settings else ""
            raise SenderNotAllowed(
                f"{caller} may not send From '{address}' (its rules: {rules}){hint}", exception="ServiceException"
            )
        principal = request.message.on_behalf_of
        if principal is not None and (fold_address(address), fold_address(principal.address)) not in grant.pairs:
            hint = f"; add '{address}>{principal.address}' to M365_ON_BEHALF_OF" if by_settings else ""
            raise SenderNotAllowed(
                f"{caller} may not send as '{address}' on behalf of '{principal.address}' (its rules: {rules}){hint}",
                exception="ServiceException",
            )
        return mailbox

    def completion_queues(self, caller: Caller, configured: frozenset[str]) -> frozenset[str]:
        """The queues ``caller``'s messages may name in ``notify``: its queue rules' lists, where they give
        one (each within ``M365_COMPLETION_QUEUES``), else every configured completion queue."""
        lists = [rule.completion_queues for rule in self.document.callers if rule.names(caller)]
        given = [frozenset(queues) for queues in lists if queues is not None]
        return configured & frozenset().union(*given) if given else configured

    def every_sender(self) -> frozenset[str]:
        """Every sender some rule allows (the service refuses any other, whoever calls)."""
        return self.default.senders.union(*(grant.senders for _, grant in self._grants))

    def every_pair(self) -> frozenset[tuple[str, str]]:
        """Every on-behalf-of pair some rule allows."""
        return self.default.pairs.union(*(grant.pairs for _, grant in self._grants))

    def describe(self) -> list[dict[str, Any]]:
        """The effective policy, rule by rule, for ``m365send check`` (key digests are not shown)."""
        rows: list[dict[str, Any]] = []
        for rule in self.document.callers:
            who = (
                f"app role '{rule.role}'"
                if rule.role is not None
                else f"object id {rule.object_id}"
                if rule.object_id is not None
                else f"function key '{rule.key}'"
                if rule.key is not None
                else f"queue '{rule.queue}'"
            )
            rows.append(
                {
                    "rule": rule.name,
                    "callers": who,
                    "senders": sorted(rule.senders),
                    "onBehalfOf": list(rule.on_behalf_of),
                }
            )
        rows.append(
            {
                "rule": "default",
                "callers": "unnamed function keys, the main outbox queue and the CLI (never an Entra ID caller)",
                "senders": sorted(self.default.senders),
                "onBehalfOf": sorted(f"{d}>{p}" for d, p in self.default.pairs),
            }
        )
        return rows


def _document(text: str) -> PolicyDocument:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ValueError(f"{where}: {message}{more}" if where else f"{message}{more}") from None
