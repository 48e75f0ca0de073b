"""The seed page's example message and the seeded mailbox: plain data, cheap to import."""

from __future__ import annotations

from typing import Any

__all__ = ["SEED_EXAMPLE", "SENDER"]

SENDER = "notifications@contoso.com"

# The seed page's first example message, word for word, from the seeded mailbox.
SEED_EXAMPLE: dict[str, Any] = {
    "To": [{"Name": None, "Address": "recipient@outlook.com"}],
    "From": {"Name": None, "Address": SENDER},
    "Cc": [],
    "Bcc": [],
    "Priority": None,
    "Subject": "Example email subject",
    "BodyFormat": None,
    "Body": "Example email body",
    "Attachments": [],
}
