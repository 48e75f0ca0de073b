"""How long m365send waits for Azure Storage: every storage client gives up in seconds, not minutes.

azure-core's defaults (a 300 s read timeout, then 3 retries with backoff) would hold a send for as
long as storage hangs, and the worker's lease renewals with it; Power Automate gives up on a request
after 120 s. With these, a storage call that hangs fails within about 10 s (two reads of 5 s), and
the send-once engine decides what that means (docs/delivery.md): 503 before Graph took the message,
202 with a warning after it. Conditional writes to send records are never retried blindly at all
(``m365send.tables``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["STORAGE_TIMEOUTS"]

STORAGE_TIMEOUTS: dict[str, Any] = {"connection_timeout": 2, "read_timeout": 5, "retry_total": 1}
