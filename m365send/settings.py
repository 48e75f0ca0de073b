"""App settings (environment variables) → typed ``Settings``, validated once, naming what is wrong.

The environment is the only source, so the settings are a plain pydantic model validated from
``os.environ`` (names are the fields' aliases): pydantic-settings would add its other sources'
imports (CLI, dotenv, cloud secret stores, asyncio) to every cold start, for nothing the app reads.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from m365send.addresses import fold_address, parse_pairs
from m365send.attachments import is_container_name
from m365send.errors import ConfigurationInvalid
from m365send.names import is_object_id, is_queue_name

if TYPE_CHECKING:
    from m365send.policy import SenderPolicy

__all__ = ["CredentialMode", "Settings", "load_settings"]

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
# The audience Entra ID expects of a federated credential's token in the public cloud (the US Government
# and China clouds use api://AzureADTokenExchangeUSGov and api://AzureADTokenExchangeChina).
DEFAULT_TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 (an audience, not a password)

CredentialMode = Literal["secret", "certificate", "federated"]
_PLACEHOLDER = re.compile(r"<[^<>]+>")


def _entries(value: str) -> tuple[str, ...]:
    """A list setting's entries: separated by commas or semicolons, blanks dropped."""
    return tuple(part.strip() for part in value.replace(";", ",").split(",") if part.strip())


def _checked_entries(value: Any, valid: Callable[[str], bool], problem: str) -> Any:
    """A list setting's entries as a set, each passing ``valid`` (else ``problem`` naming the first that fails)."""
    if not isinstance(value, str):
        return value
    entries = frozenset(_entries(value))
    for entry in sorted(entries):
        if not valid(entry):
            raise ValueError(problem.format(entry))
    return entries


class Settings(BaseModel):
    """Everything the service reads from its app settings. Field aliases are the setting names."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    tenant_id: str = Field(validation_alias="M365_TENANT_ID", min_length=1)
    client_id: str = Field(validation_alias="M365_CLIENT_ID", min_length=1)
    # Federated credential: the client id of the user-assigned managed identity the app registration
    # trusts; its token is the client assertion, so there is no secret (and no Key Vault) at all.
    federated_client_id: str | None = Field(default=None, validation_alias="M365_FEDERATED_CLIENT_ID")
    token_exchange_audience: str = Field(
        default=DEFAULT_TOKEN_EXCHANGE_AUDIENCE, min_length=1, validation_alias="M365_TOKEN_EXCHANGE_AUDIENCE"
    )
    # Required for the secret and certificate modes only (checked below, once the mode is known).
    key_vault_url: str | None = Field(default=None, validate_default=True, validation_alias="KEY_VAULT_URL")
    client_secret_name: str | None = Field(default=None, validation_alias="M365_CLIENT_SECRET_NAME")
    certificate_name: str | None = Field(default=None, validation_alias="M365_CERTIFICATE_NAME")
    certificate_password_name: str | None = Field(default=None, validation_alias="M365_CERTIFICATE_PASSWORD_NAME")
    sender: str = Field(validation_alias="M365_SENDER", min_length=1)
    allowed_senders: frozenset[str] = Field(default=frozenset(), validation_alias="M365_ALLOWED_SENDERS")
    # "delegate>principal" pairs: From may send on behalf of OnBehalfOf (Exchange's Send on Behalf).
    on_behalf_of: frozenset[tuple[str, str]] = Field(default=frozenset(), validation_alias="M365_ON_BEHALF_OF")
    # Who may send as whom, per caller (m365send.policy); without it, the lists above are everyone's rule.
    sender_policy_document: str | None = Field(default=None, validation_alias="M365_SENDER_POLICY")
    # The app's own API in Entra ID (its application ID URI and/or client id): bearer tokens for it are
    # accepted beside function keys, and the HTTP functions check every caller themselves.
    api_audience: frozenset[str] = Field(default=frozenset(), validation_alias="M365_API_AUDIENCE")
    # More outbox queues, one per producing service; each queue is its producers' identity in the policy.
    outbox_queues: frozenset[str] = Field(default=frozenset(), validation_alias="M365_OUTBOX_QUEUES")
    # Queues a queue producer may name for completion messages (its envelope's "notify").
    completion_queues: frozenset[str] = Field(default=frozenset(), validation_alias="M365_COMPLETION_QUEUES")
    managed_identity_client_id: str | None = Field(default=None, validation_alias="AZURE_CLIENT_ID")
    authority_host: str = Field(default=DEFAULT_AUTHORITY_HOST, validation_alias="M365_AUTHORITY_HOST")
    graph_base_url: str = Field(default=DEFAULT_GRAPH_BASE_URL, validation_alias="GRAPH_BASE_URL")
    secret_cache_seconds: float = Field(default=3600.0, ge=0, validation_alias="M365_SECRET_CACHE_SECONDS")
    # How long a cached secret is still served while Key Vault is unavailable.
    secret_max_stale_seconds: float = Field(default=86_400.0, ge=0, validation_alias="M365_SECRET_MAX_STALE_SECONDS")
    graph_max_attempts: int = Field(default=4, ge=1, le=10, validation_alias="M365_GRAPH_MAX_ATTEMPTS")
    graph_max_retry_wait: float = Field(default=30.0, ge=0, validation_alias="M365_GRAPH_MAX_RETRY_WAIT")
    http_timeout: float = Field(default=30.0, gt=0, validation_alias="M365_HTTP_TIMEOUT")
    # Graph's per-mailbox limits, which each worker paces itself to.
    mailbox_concurrency: int = Field(default=4, ge=1, validation_alias="M365_GRAPH_MAILBOX_CONCURRENCY")
    mailbox_rate: int = Field(default=10_000, ge=1, validation_alias="M365_GRAPH_MAILBOX_RATE")
    mailbox_window: float = Field(default=600.0, gt=0, validation_alias="M365_GRAPH_MAILBOX_WINDOW_SECONDS")
    # shared: those limits hold across every instance (one Table entity per mailbox in the data
    # storage); worker: each worker paces itself, as when the shared limiter's storage is down.
    graph_pacing: Literal["shared", "worker"] = Field(default="shared", validation_alias="M365_GRAPH_PACING")
    pacing_table: str = Field(
        default="mailboxpacing", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$", validation_alias="M365_PACING_TABLE"
    )
    # How long a request counts as in flight if its worker never writes it off (a crash): longer than
    # one Graph request (M365_HTTP_TIMEOUT), so a slow request still counts while it runs.
    pacing_lease_seconds: int = Field(default=30, ge=15, le=60, validation_alias="M365_PACING_LEASE_SECONDS")
    # The app's data account ("M365Storage", also the queue trigger's connection), as a connection string
    # (Azurite) or identity-based. The Functions host's AzureWebJobsStorage is another account in Azure.
    storage_connection: str | None = Field(default=None, validation_alias="M365Storage")
    queue_service_uri: str | None = Field(default=None, validation_alias="M365Storage__queueServiceUri")
    table_service_uri: str | None = Field(default=None, validation_alias="M365Storage__tableServiceUri")
    blob_service_uri: str | None = Field(default=None, validation_alias="M365Storage__blobServiceUri")
    storage_client_id: str | None = Field(default=None, validation_alias="M365Storage__clientId")
    # Containers attachments may be read from: a name (in the data account) or a container URL.
    attachment_containers: tuple[str, ...] = Field(default=(), validation_alias="M365_ATTACHMENT_CONTAINERS")
    message_max_mb: int = Field(default=150, ge=1, le=150, validation_alias="M365_MESSAGE_MAX_MB")
    queue_name: str = Field(
        default="email-outbox", pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", validation_alias="M365_QUEUE_NAME"
    )
    send_table: str = Field(
        default="emailsends", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$", validation_alias="M365_SEND_TABLE"
    )
    send_lease_seconds: float = Field(default=300.0, gt=0, validation_alias="M365_SEND_LEASE_SECONDS")
    # Verified delivery: how long after an attempt's send may have reached Graph a draft it finds is
    # still taken for "on its way" (Exchange sends asynchronously) rather than sent again.
    draft_settle_seconds: float = Field(default=60.0, ge=0, le=600, validation_alias="M365_DRAFT_SETTLE_SECONDS")
    # standard: at most once per key, a lost Graph answer resent flagged; verified: drafts tagged with the
    # key and looked up before any resend (exactly once; needs Mail.ReadWrite).
    delivery_mode: Literal["standard", "verified"] = Field(default="standard", validation_alias="M365_DELIVERY_MODE")
    idempotency_hours: float = Field(default=168.0, ge=24, validation_alias="M365_IDEMPOTENCY_HOURS")
    queue_max_attempts: int = Field(default=12, ge=1, validation_alias="M365_QUEUE_MAX_ATTEMPTS")
    queue_retry_base: float = Field(default=30.0, ge=0, validation_alias="M365_QUEUE_RETRY_BASE_SECONDS")
    queue_max_delay: float = Field(
        default=3600.0, ge=0, le=7 * 24 * 3600, validation_alias="M365_QUEUE_MAX_DELAY_SECONDS"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_placeholder(cls, value: Any) -> Any:
        # local.settings.example.json's "<tenant id>" and the like would otherwise pass as real values.
        if isinstance(value, str) and _PLACEHOLDER.search(value):
            raise ValueError("still holds a placeholder of the example settings (<...>): put the real value in")
        return value

    @field_validator(
        "federated_client_id",
        "client_secret_name",
        "certificate_name",
        "certificate_password_name",
        "managed_identity_client_id",
        "storage_connection",
        "queue_service_uri",
        "table_service_uri",
        "blob_service_uri",
        "storage_client_id",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_senders", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(map(fold_address, _entries(value)))
        return value

    @field_validator("on_behalf_of", mode="before")
    @classmethod
    def _split_pairs(cls, value: Any) -> Any:
        return parse_pairs(_entries(value)) if isinstance(value, str) else value

    @field_validator("api_audience", mode="before")
    @classmethod
    def _split_audiences(cls, value: Any) -> Any:
        return _checked_entries(
            value,
            lambda audience: is_object_id(audience) or "://" in audience,
            "'{}' is neither an application ID URI (api://...) nor a client id",
        )

    @field_validator("sender_policy_document")
    @classmethod
    def _policy(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from m365send.policy import SenderPolicy  # the message model: only for deployments with a policy

        SenderPolicy.parse(value, default_sender="default@policy.invalid")  # ValueError says what is wrong
        return value

    @field_validator("completion_queues", "outbox_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: Any) -> Any:
        return _checked_entries(
            value, is_queue_name, "'{}' is not a queue name (3 to 63 lowercase letters, digits and single hyphens)"
        )

    @field_validator("attachment_containers", mode="before")
    @classmethod
    def _split_containers(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        entries = _entries(value)
        containers: dict[str, str] = {}
        for entry in entries:
            account, container = container_location(entry)
            if container in containers and containers[container] != (account or ""):
                raise ValueError(f"container '{container}' is listed twice, in different storage accounts")
            containers[container] = account or ""
        return entries

    @field_validator("key_vault_url", mode="before")
    @classmethod
    def _vault_unless_federated(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None and not info.data.get("federated_client_id"):
            # Named like any missing setting, beside the others that are missing.
            raise PydanticCustomError("missing", "Field required")
        return value

    @field_validator("key_vault_url", "authority_host", "graph_base_url")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError("must be an https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if sum(map(bool, (self.client_secret_name, self.certificate_name, self.federated_client_id))) != 1:
            raise ValueError(
                "set exactly one of M365_CLIENT_SECRET_NAME (client secret), M365_CERTIFICATE_NAME (certificate) "
                "or M365_FEDERATED_CLIENT_ID (federated credential: the managed identity the app registration trusts)"
            )
        if self.certificate_password_name and not self.certificate_name:
            raise ValueError("M365_CERTIFICATE_PASSWORD_NAME is set but M365_CERTIFICATE_NAME is not")
        own_account = None in self.attachment_sources.values()
        if own_account and not (self.storage_connection or self.blob_service_uri):
            raise ValueError(
                "M365_ATTACHMENT_CONTAINERS names containers of the app's own storage account, so set "
                "M365Storage or M365Storage__blobServiceUri"
            )
        if self.queue_name in self.completion_queues or f"{self.queue_name}-poison" in self.completion_queues:
            raise ValueError("M365_COMPLETION_QUEUES must not name the outbox queue or its poison queue")
        overlap = self.outbox_queues & (self.completion_queues | {self.queue_name})
        if overlap:
            raise ValueError(
                "M365_OUTBOX_QUEUES must not name the main outbox queue or a completion queue: "
                + ", ".join(sorted(overlap))
            )
        if is_object_id(self.sender) and not self.allowed_senders:
            raise ValueError(
                "M365_SENDER is an object id, so M365_ALLOWED_SENDERS must list the address(es) it sends as"
            )
        return self

    @property
    def credential_mode(self) -> CredentialMode:
        """How the app registration authenticates: a client secret, a certificate, or a federated credential."""
        if self.federated_client_id:
            return "federated"
        return "certificate" if self.certificate_name else "secret"

    @cached_property
    def sender_policy(self) -> SenderPolicy:
        """The sender policy: ``M365_SENDER_POLICY``'s rules, with today's allow-lists as the default rule
        (parsed once per settings: the service, each queue and the HTTP edge share it)."""
        from m365send.policy import SenderPolicy

        return SenderPolicy.parse(
            self.sender_policy_document,
            default_sender=self.sender,
            allowed_senders=self.allowed_senders,
            on_behalf_of=self.on_behalf_of,
        )

    @property
    def storage_configured(self) -> bool:
        """Whether queued and idempotent sends have storage: a connection string, or queue and table endpoints."""
        return bool(self.storage_connection or (self.queue_service_uri and self.table_service_uri))

    @property
    def senders(self) -> frozenset[str]:
        """Mailboxes and From addresses a request may use (ASCII case-insensitive); always includes ``M365_SENDER``."""
        return self.allowed_senders | {fold_address(self.sender)}

    @property
    def attachment_sources(self) -> dict[str, str | None]:
        """Allowed attachment containers → their storage account's blob URL (None: the data account)."""
        return {container: account for account, container in map(container_location, self.attachment_containers)}

    @property
    def message_max_bytes(self) -> int:
        """``M365_MESSAGE_MAX_MB`` in bytes: the most all attachments of one message may add up to."""
        return self.message_max_mb * 1024 * 1024

    @property
    def graph_scope(self) -> str:
        """The client-credentials scope of the Graph instance at ``graph_base_url``."""
        parts = urlsplit(self.graph_base_url)
        return f"{parts.scheme}://{parts.netloc}/.default"

    @property
    def vault_is_loopback(self) -> bool:
        """Whether the vault is a local stand-in (its host cannot be a subdomain of a vault domain)."""
        return _is_loopback(urlsplit(self.key_vault_url or "").hostname or "")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def container_location(entry: str) -> tuple[str | None, str]:
    """``"attachments"`` → ``(None, "attachments")``; a container URL → ``(account blob URL, container)``.

    A URL is ``https://<account>.blob.core.windows.net/<container>`` (or path-style for a local emulator).
    """
    account: str | None = None
    container = entry
    if "://" in entry:
        parts = urlsplit(entry.rstrip("/"))
        if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
            raise ValueError(f"'{entry}' must be an https:// container URL")
        prefix, _, container = parts.path.rpartition("/")
        account = f"{parts.scheme}://{parts.netloc}{prefix}"
    if not is_container_name(container):
        raise ValueError(f"'{container}' is not a storage container name (3-63 lowercase letters, digits, hyphens)")
    return account, container


_NAMES = {name: str(field.validation_alias) for name, field in Settings.model_fields.items()}


# The seed block's names for a missing (null) or empty credential property.
_SEED_EXCEPTION = {"missing": "PropertyNullException", "string_too_short": "PropertyEmptyException"}


def load_settings(environment: Mapping[str, str] | None = None) -> Settings:
    """Read and check the settings from the environment; ``ConfigurationInvalid`` names each bad one."""
    try:
        return Settings.model_validate(dict(os.environ if environment is None else environment))
    except ValidationError as exc:
        problems: list[str] = []
        names: list[str] = []
        exceptions: list[str] = []
        for error in exc.errors(include_url=False, include_input=False):
            exceptions.append(_SEED_EXCEPTION.get(error["type"], "ArgumentException"))
            field = str(error["loc"][0]) if error["loc"] else ""
            name = _NAMES.get(field, field)
            message = "is required" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
            problems.append(f"{name} {message}" if name else message)
            if name:
                names.append(name)
        raise ConfigurationInvalid("; ".join(problems), settings=names, exception=exceptions[0]) from None
