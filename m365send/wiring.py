"""Composition root: settings → the real adapters (Key Vault, msal, httpx) → one ``EmailService`` per worker."""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from m365send.addresses import fold_address
from m365send.azure_errors import azure_errors
from m365send.blobs import BlobAttachments
from m365send.callers import Caller, authenticate, queue_caller
from m365send.credentials import AppCredentialSource, VaultCertificate, VaultClientSecret
from m365send.errors import ConfigurationInvalid
from m365send.graph import GraphMailClient
from m365send.keyvault import KeyVaultSecrets
from m365send.message import SendRequest
from m365send.names import is_object_id
from m365send.outbox import OutboxProcessor
from m365send.pacing import MailboxPacer, Pacer
from m365send.parsing import parse_send_request
from m365send.sendonce import DeliveryMode, SendOnce
from m365send.service import EmailService
from m365send.settings import DEFAULT_AUTHORITY_HOST, Settings, load_settings
from m365send.status import StatusBook
from m365send.storage_options import STORAGE_TIMEOUTS
from m365send.tokens import GraphTokens

if TYPE_CHECKING:  # storage clients are imported when first built: HTTP sends without a key never need them
    from azure.storage.blob import BlobServiceClient

    from m365send.bearer import EntraBearer
    from m365send.client import CompletionQueues, OutboxClient
    from m365send.policy import SenderPolicy
    from m365send.tables import TableDeadLetters, TableSendLog

__all__ = [
    "Parts",
    "Storage",
    "Worker",
    "build_blobs",
    "build_engine",
    "build_outbox",
    "build_parts",
    "build_secrets",
    "build_service",
    "build_storage",
]

log = logging.getLogger(__name__)
# Seconds one Key Vault request may take (see build_parts).
_VAULT_TIMEOUT = 10.0


def _vault_credential(settings: Settings) -> DefaultAzureCredential:
    """Managed identity in Azure (``AZURE_CLIENT_ID`` picks a user-assigned one); the usual chain locally."""
    custom_authority = urlsplit(settings.authority_host).netloc != urlsplit(DEFAULT_AUTHORITY_HOST).netloc
    return DefaultAzureCredential(
        authority=settings.authority_host,
        managed_identity_client_id=settings.managed_identity_client_id,
        # Instance discovery asks the public cloud to vouch for the authority: impossible for a
        # sovereign or local one, so only the public default keeps it.
        **({"disable_instance_discovery": True} if custom_authority else {}),
    )


def _app_credential(settings: Settings, secrets: KeyVaultSecrets | None) -> AppCredentialSource:
    if settings.federated_client_id:
        from azure.identity import ManagedIdentityCredential

        from m365send.federated import ManagedIdentityAssertion

        # The identity the app registration trusts; not DefaultAzureCredential, whose chain would
        # try a developer's own sign-in where no managed identity exists.
        identity = ManagedIdentityCredential(
            client_id=settings.federated_client_id,
            connection_timeout=settings.http_timeout,
            read_timeout=settings.http_timeout,
            retry_total=1,
        )
        return ManagedIdentityAssertion(
            identity=identity,
            identity_client_id=settings.federated_client_id,
            audience=settings.token_exchange_audience,
        )
    assert secrets is not None  # the secret and certificate modes require KEY_VAULT_URL
    if settings.certificate_name:
        return VaultCertificate(
            secrets=secrets, name=settings.certificate_name, password_name=settings.certificate_password_name
        )
    assert settings.client_secret_name  # settings guarantee exactly one of the two
    return VaultClientSecret(secrets=secrets, name=settings.client_secret_name)


def _storage_credential(settings: Settings) -> DefaultAzureCredential:
    """The app's identity for Storage (``M365Storage__clientId`` first)."""
    return DefaultAzureCredential(
        managed_identity_client_id=settings.storage_client_id or settings.managed_identity_client_id
    )


def _blob_connector(settings: Settings) -> Callable[[str | None], BlobServiceClient]:
    def connect(account: str | None) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        # The SDK's default retry waits 15 s, then 18 s more: too long to hold a send. Fail fast
        # instead; the queue hands the message back for a later try.
        options: dict[str, Any] = {
            # The SDK reads each ranged GET with list() over a stream whose len() is its byte count,
            # so it briefly allocates 8 bytes per byte fetched (24 MB for one 2.8 MiB upload chunk).
            # 512 KiB GETs bound that to 4 MB (docs/performance.md, table 5).
            "max_single_get_size": 512 * 1024,
            "max_chunk_get_size": 512 * 1024,
            "retry_total": 2,
            "initial_backoff": 1,
            "increment_base": 2,
            "connection_timeout": settings.http_timeout,
            "read_timeout": settings.http_timeout,
        }
        if account is None and settings.storage_connection:
            return BlobServiceClient.from_connection_string(settings.storage_connection, **options)
        url = account or settings.blob_service_uri
        assert url  # settings require a blob endpoint for the data account's containers
        return BlobServiceClient(account_url=url, credential=_storage_credential(settings), **options)

    return connect


def build_blobs(settings: Settings) -> BlobAttachments | None:
    """The attachment blob reader, when ``M365_ATTACHMENT_CONTAINERS`` allows any container."""
    sources = settings.attachment_sources
    return BlobAttachments(sources=sources, connect=_blob_connector(settings)) if sources else None


@dataclass(frozen=True)
class Parts:
    """The adapters one service is made of (the CLI's ``check`` tests them one by one)."""

    secrets: KeyVaultSecrets | None  # None in the federated mode: no secret, so no vault
    credential: AppCredentialSource
    tokens: GraphTokens
    mail: GraphMailClient


def build_parts(settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> Parts:
    """Create every I/O client once (``clock`` paces the Key Vault cache; benchmarks simulate it)."""
    # The federated mode has no secret, so no vault to read.
    secrets = None if settings.federated_client_id else build_secrets(settings, clock=clock)
    credential = _app_credential(settings, secrets)
    tokens = GraphTokens(
        credentials=credential,
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        authority_host=settings.authority_host,
        scope=settings.graph_scope,
        timeout=settings.http_timeout,
    )
    mail = GraphMailClient(
        http=httpx.Client(timeout=settings.http_timeout),
        base_url=settings.graph_base_url,
        max_attempts=settings.graph_max_attempts,
        max_retry_wait=settings.graph_max_retry_wait,
        pacer=build_pacer(settings),
    )
    return Parts(secrets=secrets, credential=credential, tokens=tokens, mail=mail)


def build_secrets(settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> KeyVaultSecrets:
    """The Key Vault reader of the secret and certificate modes, cached per worker."""
    assert settings.key_vault_url  # required by the settings in these modes
    secret_client = SecretClient(
        vault_url=settings.key_vault_url,
        credential=_vault_credential(settings),
        # The challenge names vault.azure.net; a loopback stand-in cannot be a subdomain of it.
        verify_challenge_resource=not settings.vault_is_loopback,
        # azure-core's defaults (300 s to read, 3 retries with backoff) would hold a send for minutes:
        # two reads of at most 10 s leave a cold send room to answer within 30 s when the vault hangs.
        connection_timeout=min(settings.http_timeout, _VAULT_TIMEOUT),
        read_timeout=min(settings.http_timeout, _VAULT_TIMEOUT),
        retry_total=1,
        retry_backoff_factor=0.5,
    )
    return KeyVaultSecrets(
        client=secret_client,
        ttl_seconds=settings.secret_cache_seconds,
        max_stale_seconds=settings.secret_max_stale_seconds,
        clock=clock,
    )


def build_pacer(settings: Settings) -> Pacer:
    """Graph's per-mailbox limits: shared by all instances when storage is configured, else per worker."""
    local = MailboxPacer(
        concurrency=settings.mailbox_concurrency,
        rate=settings.mailbox_rate,
        window=settings.mailbox_window,
        max_wait=settings.graph_max_retry_wait,
    )
    shares_storage = settings.storage_connection or settings.table_service_uri
    if settings.graph_pacing == "worker" or not shares_storage:
        return local  # asked for, or no storage (a local HTTP-only run): nothing to share with
    # Imported here, and only with storage to share.
    from azure.data.tables import TableClient

    from m365send.shared_pacing import STORAGE_OPTIONS, SharedMailboxLimiter

    limits: dict[str, Any] = {
        "app_id": settings.client_id,
        "concurrency": settings.mailbox_concurrency,
        "rate": settings.mailbox_rate,
        "window": settings.mailbox_window,
        "lease_seconds": settings.pacing_lease_seconds,
        "max_wait": settings.graph_max_retry_wait,
        "local": local,
    }
    try:
        if settings.storage_connection:
            return SharedMailboxLimiter.from_connection_string(
                settings.storage_connection,
                table=settings.pacing_table,
                create_missing=True,  # local storage (Azurite) starts empty; in Azure the Bicep creates it
                **limits,
            )
        if settings.table_service_uri:
            table = TableClient(
                settings.table_service_uri,
                settings.pacing_table,
                credential=_storage_credential(settings),
                **STORAGE_OPTIONS,
            )
            return SharedMailboxLimiter(table=table, **limits)
    except ValueError as exc:
        # A connection string without a table endpoint (e.g. a SAS for one service only).
        log.warning("shared mailbox pacing needs a table endpoint (%s); each worker paces itself", exc)
    return local  # no storage (a local HTTP-only run): nothing to share with


def build_service(settings: Settings, parts: Parts | None = None) -> EmailService:
    """Wire the adapters into the service (which refuses any sender no rule of the policy allows)."""
    parts = parts or build_parts(settings)
    policy = settings.sender_policy
    return EmailService(
        tokens=parts.tokens,
        mail=parts.mail,
        default_sender=settings.sender,
        allowed_senders=policy.every_sender(),
        blobs=build_blobs(settings),
        attachment_containers=settings.attachment_sources,
        max_message_bytes=settings.message_max_bytes,
        on_behalf_of=policy.every_pair(),
    )


class Storage:
    """The worker's Table adapters, and its Queue adapters built on first use.

    Sends read and write Table storage; the queue clients are needed only to hand a message back,
    schedule one or send a completion, and the Queue SDK takes about 130 ms to import. ``Storage``
    is itself the outbox processor's ``Requeue`` and ``Completions``.
    """

    def __init__(
        self,
        *,
        sends: TableSendLog,
        dead_letters: TableDeadLetters,
        outbox: Callable[[str | None], OutboxClient],
        completions: Callable[[], CompletionQueues],
    ) -> None:
        self.sends = sends
        self.dead_letters = dead_letters
        self._connect_outbox = outbox
        self._connect_completions = completions
        self._outboxes: dict[str | None, OutboxClient] = {}
        self._completions: CompletionQueues | None = None
        self._lock = threading.Lock()

    @property
    def outbox(self) -> OutboxClient:
        """The main outbox queue's client, built once."""
        return self.queue(None)

    def queue(self, name: str | None) -> OutboxClient:
        """An outbox queue's client (None: the main one), built once."""
        with self._lock:
            if name not in self._outboxes:
                self._outboxes[name] = self._connect_outbox(name)
            return self._outboxes[name]

    @property
    def completions(self) -> CompletionQueues:
        """The completion queues' client, built once."""
        with self._lock:
            if self._completions is None:
                self._completions = self._connect_completions()
            return self._completions

    def requeue(self, body: bytes, *, delay: float) -> None:
        """Hand a message back to the outbox queue."""
        self.outbox.requeue(body, delay=delay)

    def notify(self, queue: str, body: bytes) -> None:
        """Put a completion message on a producer's queue."""
        self.completions.notify(queue, body)


class _QueueRequeue:
    """Hands messages back to the queue they came from."""

    def __init__(self, storage: Storage, name: str | None) -> None:
        self._storage = storage
        self._name = name

    def requeue(self, body: bytes, *, delay: float) -> None:
        self._storage.queue(self._name).requeue(body, delay=delay)


def _queue_clients(
    settings: Settings,
) -> tuple[Callable[[str | None], OutboxClient], Callable[[], CompletionQueues]]:
    """How to build the outbox and completion clients (imports the Queue SDK when called)."""

    def outbox(name: str | None) -> OutboxClient:
        from m365send.client import OutboxClient

        queue = name or settings.queue_name
        if settings.storage_connection:
            return OutboxClient.from_connection_string(settings.storage_connection, queue)
        assert settings.queue_service_uri  # build_storage checked
        url = f"{settings.queue_service_uri.rstrip('/')}/{queue}"
        return OutboxClient.from_queue_url(url, credential=_storage_credential(settings))

    def completions() -> CompletionQueues:
        from azure.storage.queue import QueueServiceClient

        from m365send.client import CompletionQueues

        if settings.storage_connection:
            service = QueueServiceClient.from_connection_string(settings.storage_connection, **STORAGE_TIMEOUTS)
        else:
            assert settings.queue_service_uri  # build_storage checked
            service = QueueServiceClient(
                settings.queue_service_uri, credential=_storage_credential(settings), **STORAGE_TIMEOUTS
            )
        return CompletionQueues(service=service, create_missing=bool(settings.storage_connection))

    return outbox, completions


def build_storage(settings: Settings) -> Storage:
    """Table clients from the app's data account, M365Storage (created once); queue clients on first use."""
    from azure.data.tables import TableServiceClient

    from m365send.tables import TableDeadLetters, TableSendLog

    if not settings.storage_configured:
        raise ConfigurationInvalid(
            "set M365Storage (a connection string) or M365Storage__queueServiceUri and "
            "M365Storage__tableServiceUri (identity-based) for queued and idempotent sends",
            settings=["M365Storage"],
            exception="PropertyNullException",
        )
    if settings.storage_connection:
        tables = TableServiceClient.from_connection_string(settings.storage_connection, **STORAGE_TIMEOUTS)
    else:
        assert settings.table_service_uri  # storage_configured
        tables = TableServiceClient(
            endpoint=settings.table_service_uri, credential=_storage_credential(settings), **STORAGE_TIMEOUTS
        )
    table = tables.get_table_client(settings.send_table)
    outbox, completions = _queue_clients(settings)
    if settings.storage_connection:
        # Local storage (Azurite) starts empty; in Azure the Bicep creates the table, and the app's
        # role is scoped to that one table, so it could not create tables anyway.
        with azure_errors("Table storage", where=tables.url):
            tables.create_table_if_not_exists(settings.send_table)
    return Storage(
        sends=TableSendLog(
            table=table,
            lease=timedelta(seconds=settings.send_lease_seconds),
            retention=timedelta(hours=settings.idempotency_hours),
        ),
        dead_letters=TableDeadLetters(table=table),
        outbox=outbox,
        completions=completions,
    )


def build_engine(settings: Settings, service: EmailService, storage: Storage | None) -> SendOnce:
    """The send-once engine over the worker's service, with send records when storage is configured."""
    return SendOnce(
        service=service,
        sends=storage.sends if storage is not None else None,
        mode=DeliveryMode(settings.delivery_mode),
        lease=timedelta(seconds=settings.send_lease_seconds),
        draft_settle=timedelta(seconds=settings.draft_settle_seconds),
    )


def build_outbox(settings: Settings, engine: SendOnce, storage: Storage, queue: str | None = None) -> OutboxProcessor:
    """The translator of one outbox queue (None: the main one) over the worker's engine and storage;
    the queue's producers are its caller in the sender policy."""
    return OutboxProcessor(
        engine=engine,
        dead_letters=storage.dead_letters,
        requeue=storage if queue is None else _QueueRequeue(storage, queue),
        caller=queue_caller(queue or settings.queue_name, main=queue is None),
        policy=settings.sender_policy,
        max_attempts=settings.queue_max_attempts,
        retry_base=settings.queue_retry_base,
        max_delay=settings.queue_max_delay,
        completions=storage,
        completion_queues=settings.completion_queues,
    )


def _warm_up_request(settings: Settings) -> SendRequest:
    """A message from the default sender to itself: validating and planning it loads the send path."""
    sender = next(iter(sorted(settings.senders - {fold_address(settings.sender)})), settings.sender)
    address = settings.sender if not is_object_id(settings.sender) else sender
    message = {"To": [{"Address": address}], "From": {"Address": address}, "Subject": "warm-up", "Body": "warm-up"}
    return parse_send_request(message)


class Worker:
    """Builds the service on first use and keeps it for the worker's life (the warm-instance caches live in it).

    Settings are read on first use, not at import, so a misconfigured app still indexes its functions
    and answers each request with a problem that names the bad setting.
    """

    def __init__(
        self,
        *,
        settings: Callable[[], Settings] = load_settings,
        build: Callable[[Settings, Parts], EmailService] = build_service,
    ) -> None:
        self._load_settings = settings
        self._build = build
        self._settings: Settings | None = None
        self._service: EmailService | None = None
        self._storage: Storage | None = None
        self._engines: dict[bool, SendOnce] = {}
        self._parts: Parts | None = None
        self._outboxes: dict[str | None, OutboxProcessor] = {}
        self._bearer: EntraBearer | None = None
        self._lock = threading.RLock()

    def settings(self) -> Settings:
        """The worker's settings, read once."""
        with self._lock:
            if self._settings is None:
                self._settings = self._load_settings()
            return self._settings

    def parts(self) -> Parts:
        """The worker's I/O clients, built once."""
        with self._lock:
            if self._parts is None:
                self._parts = build_parts(self.settings())
            return self._parts

    def service(self) -> EmailService:
        """The worker's service, built once."""
        with self._lock:
            if self._service is None:
                self._service = self._build(self.settings(), self.parts())
            return self._service

    def warm_up(self) -> dict[str, float]:
        """Pay a new instance's first-send costs now: settings, clients, the credential, a token, Graph's
        connection and, with storage, the send records' client. Milliseconds per step; raises the first
        ``M365SendError``, after the steps before it."""
        timings: dict[str, float] = {}

        def step(name: str, run: Callable[[], object]) -> None:
            started = time.perf_counter()
            run()
            timings[name] = (time.perf_counter() - started) * 1000

        step("clients", lambda: self.engine(keyed=False))
        # One validation of a sample message loads what the first send would (pydantic's validators,
        # the address checker and its caches, the HTTP translator); it sends nothing.
        step("validation", lambda: self.service().check(_warm_up_request(self.settings())))
        step("http translator", lambda: importlib.import_module("m365send.http_api"))
        parts = self.parts()
        # The secret or certificate from Key Vault (the federated mode's identity token comes with the token).
        step("credential", parts.credential.current)
        step("token", parts.tokens.token)
        step("graph connection", parts.mail.connect)
        pacer = parts.mail.pacer
        if pacer is not None:
            step("pacing", lambda: pacer.prepare(self.settings().sender))
        settings = self.settings()
        if settings.storage_configured:
            # Last: storage that is down must not keep the steps above from being paid. Queue sends and
            # keyed HTTP sends then find their send records' client (and, locally, the table) ready.
            step("send records", lambda: self.engine(keyed=True))
        return timings

    def storage(self) -> Storage:
        """The worker's Table and Queue adapters, built once."""
        with self._lock:
            if self._storage is None:
                self._storage = build_storage(self.settings())
            return self._storage

    def purge(self) -> tuple[int, int]:
        """Delete send records and dead letters whose idempotency window has passed; how many of each."""
        storage = self.storage()
        window = timedelta(hours=self.settings().idempotency_hours)
        return storage.sends.purge_expired(), storage.dead_letters.purge_older_than(window)

    def status(self) -> StatusBook:
        """The status look-up over send records and dead letters."""
        storage = self.storage()
        return StatusBook(records=storage.sends, dead_letters=storage.dead_letters)

    def sends(self) -> TableSendLog:
        """Send records, for idempotent HTTP sends."""
        return self.storage().sends

    def engine(self, keyed: bool = True) -> SendOnce:
        """The send-once engine, built once; ``keyed`` sends need send records, so storage settings."""
        with self._lock:
            if keyed not in self._engines:
                self._engines[keyed] = build_engine(self.settings(), self.service(), self.storage() if keyed else None)
            return self._engines[keyed]

    def outbox(self, queue: str | None = None) -> OutboxProcessor:
        """The processor of an outbox queue (None: the main one), built once."""
        with self._lock:
            if queue not in self._outboxes:
                self._outboxes[queue] = build_outbox(self.settings(), self.engine(), self.storage(), queue)
            return self._outboxes[queue]

    def policy(self) -> SenderPolicy:
        """The sender policy (the settings checked it when they were read, and keep it parsed)."""
        return self.settings().sender_policy

    def bearer(self) -> EntraBearer:
        """The validator of Entra ID bearer tokens for the app's API, built once (keys fetched on first use)."""
        with self._lock:
            if self._bearer is None:
                from m365send.bearer import EntraBearer

                settings = self.settings()
                self._bearer = EntraBearer(
                    http=httpx.Client(timeout=settings.http_timeout),
                    authority_host=settings.authority_host,
                    tenant_id=settings.tenant_id,
                    audiences=settings.api_audience,
                )
            return self._bearer

    def authenticate(self, authorization: str | None, function_key: str | None) -> Caller:
        """The HTTP caller of a request (``m365send.http_api.authenticate``); ``Unauthenticated`` when none."""
        settings = self.settings()
        return authenticate(
            authorization=authorization,
            function_key=function_key,
            bearer=self.bearer if settings.api_audience else None,
            named_keys=self.policy().named_keys,
            host_checks_keys=not settings.api_audience,
        )
