"""Names of Azure and Entra things: queue names and object ids. Pure."""

from __future__ import annotations

import re

__all__ = ["is_object_id", "is_queue_name"]

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")


def is_queue_name(value: str) -> bool:
    """Whether ``value`` is a valid Azure Storage queue name."""
    return bool(_QUEUE_NAME.match(value))


def is_object_id(value: str) -> bool:
    """Whether ``value`` is an Entra object id (a GUID) rather than a UPN or address."""
    return bool(_GUID.match(value))
