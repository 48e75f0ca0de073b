"""Attachment blobs in Azure Storage, read with the app's own identity: properties first, then bytes by range.

Only containers allowed by ``M365_ATTACHMENT_CONTAINERS`` are ever opened (``resolve_attachments``
checks before this adapter is called), and each blob is read in ranges pinned to the ETag seen when
it was looked up, so a file that changes while it is being attached is never sent half old, half new.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from azure.core import MatchConditions

from m365send.azure_errors import azure_errors
from m365send.errors import AttachmentAccessDenied, AttachmentNotFound, DependencyUnavailable

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient

__all__ = ["BlobAttachments", "StoredBlob"]


def _blob_errors(field: str, what: str) -> AbstractContextManager[None]:
    """The blob adapter's meanings of the Azure SDK's errors (``m365send.azure_errors``)."""
    return azure_errors(
        f"Blob storage reading {what}",
        not_found=lambda: AttachmentNotFound(field, f"{what} does not exist (or its container does not)"),
        denied=lambda: AttachmentAccessDenied(
            field, f"the app's identity may not read {what}: it needs Storage Blob Data Reader on the container"
        ),
        modified=lambda: DependencyUnavailable(f"{what} changed while it was being attached; the send can be retried"),
    )


class StoredBlob:
    """One blob's size and type, and its bytes read by range (at the ETag it was opened at)."""

    def __init__(self, client: BlobClient, *, size: int, content_type: str | None, etag: str, field: str) -> None:
        self._client = client
        self._size = size
        self._content_type = content_type
        self._etag = etag
        self._field = field

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self._size

    @property
    def content_type(self) -> str | None:
        """The blob's stored ``Content-Type``."""
        return self._content_type

    def read(self, offset: int, length: int) -> bytes:
        """One ranged GET; ``DependencyUnavailable`` if the blob changed since it was opened."""
        with _blob_errors(self._field, f"blob '{self._client.container_name}/{self._client.blob_name}'"):
            return self._client.download_blob(
                offset=offset, length=length, etag=self._etag, match_condition=MatchConditions.IfNotModified
            ).readall()


class BlobAttachments:
    """Opens attachment blobs; one ``BlobServiceClient`` per storage account, created on first use."""

    def __init__(
        self, *, sources: Mapping[str, str | None], connect: Callable[[str | None], BlobServiceClient]
    ) -> None:
        """``sources``: allowed container → its account's blob URL (None: the app's data account)."""
        self._sources = dict(sources)
        self._connect = connect
        self._services: dict[str | None, BlobServiceClient] = {}
        self._lock = threading.Lock()

    def _service(self, container: str) -> BlobServiceClient:
        account = self._sources[container]
        with self._lock:
            if account not in self._services:
                self._services[account] = self._connect(account)
            return self._services[account]

    def open(self, container: str, name: str, *, field: str) -> StoredBlob:
        """Look the blob up (one HEAD request); its bytes are read later, range by range."""
        client = self._service(container).get_blob_client(container, name)
        with _blob_errors(field, f"blob '{container}/{name}'"):
            properties = client.get_blob_properties()
        return StoredBlob(
            client,
            size=int(properties.size),
            content_type=properties.content_settings.content_type,
            etag=str(properties.etag),
            field=field,
        )
