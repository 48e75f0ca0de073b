"""The message model's public names in one place, for callers that want them together.

Each is defined by the module of what it models: ``fields`` (text rules, limits, enums),
``addresses``, ``attachment_model``, ``message`` (the email and the send request), ``names`` (queue
names, object ids) and ``parsing`` (JSON to a checked request). The core imports those directly.
"""

from __future__ import annotations

from m365send.addresses import EmailAddress, address_problem, fold_address, split_recipients
from m365send.attachment_model import Attachment
from m365send.fields import MAX_RECIPIENTS, BodyFormat, Priority
from m365send.message import EmailMessage, SendRequest
from m365send.names import is_object_id, is_queue_name
from m365send.parsing import decode_json, parse_message_json, parse_send_request, problems_of, structure_problem

__all__ = [
    "MAX_RECIPIENTS",
    "Attachment",
    "BodyFormat",
    "EmailAddress",
    "EmailMessage",
    "Priority",
    "SendRequest",
    "address_problem",
    "decode_json",
    "fold_address",
    "is_object_id",
    "is_queue_name",
    "parse_message_json",
    "parse_send_request",
    "problems_of",
    "split_recipients",
    "structure_problem",
]
