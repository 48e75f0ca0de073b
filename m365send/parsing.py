"""From JSON to a checked ``SendRequest``, or ``RequestInvalid`` naming each bad field. Pure.

Every rejection names the field in the seed block's spelling and the exception the block threw for
the same case; decoding refuses what ``json`` cannot safely take, before any field is validated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from m365send.addresses import fold_address
from m365send.errors import FieldProblem, RequestInvalid
from m365send.fields import ISO_TIME, MAX_DEPTH, MAX_RECIPIENTS, SURROGATE, BodyFormat
from m365send.message import EmailMessage, SendRequest

__all__ = ["decode_json", "parse_message_json", "parse_send_request", "problems_of", "structure_problem"]

# How each pydantic error type reads to a user of the original block.
_EXCEPTION_BY_TYPE = {
    "missing": ("PropertyNullException", "null", "is required and must not be null"),
    "property_null": ("PropertyNullException", "null", None),
    "property_empty": ("PropertyEmptyException", "empty", None),
    "invalid_address": ("ServiceException", "invalid_address", None),
    "invalid_base64": ("ArgumentException", "invalid_base64", None),
    "header_injection": ("ArgumentException", "control_characters", None),
    "header_name": ("ArgumentException", "invalid_header", None),
    "extra_forbidden": ("ArgumentException", "unknown_field", "is not a field of EmailMessage"),
    "too_long": ("ArgumentException", "too_many", None),
    "too_large": ("ArgumentException", "too_large", None),
    "invalid_blob": ("ArgumentException", "invalid_blob", None),
    "naive_time": ("ArgumentException", "invalid_time", None),
    "time_type": ("ArgumentException", "invalid_time", None),
    "datetime_from_date_parsing": ("ArgumentException", "invalid_time", ISO_TIME),
    "datetime_parsing": ("ArgumentException", "invalid_time", ISO_TIME),
}

_CID = re.compile(r"""cid:([^"'\s>)]+)""", re.IGNORECASE)


def _cross_field_problems(message: EmailMessage) -> list[FieldProblem]:
    """What no single field shows: duplicate ContentIds, and an HTML body showing a cid: nothing provides."""
    problems: list[FieldProblem] = []
    seen: dict[str, int] = {}
    for index, attachment in enumerate(message.attachments):
        if attachment.content_id is None:
            continue
        key = attachment.content_id.casefold()
        if key in seen:
            problems.append(
                FieldProblem(
                    f"Attachments[{index}].ContentId",
                    "duplicate",
                    f"ContentId '{attachment.content_id}' is already used by Attachments[{seen[key]}]",
                    "ArgumentException",
                )
            )
        seen.setdefault(key, index)
    if message.body_format is BodyFormat.HTML:
        for cid in dict.fromkeys(_CID.findall(message.body)):
            if cid.casefold() not in seen:
                problems.append(
                    FieldProblem(
                        "Body",
                        "missing_inline_attachment",
                        f"shows cid:{cid} but no attachment has ContentId '{cid}'",
                        "ArgumentException",
                    )
                )
    if message.on_behalf_of is not None and fold_address(message.on_behalf_of.address) == fold_address(
        message.from_.address
    ):
        problems.append(
            FieldProblem(
                "OnBehalfOf",
                "argument",
                "is From itself; leave OnBehalfOf out to send as From",
                "ArgumentException",
            )
        )
    return problems


def _path(loc: tuple[int | str, ...]) -> str:
    """``('to', 0, 'address')`` → ``To[0].Address``: the seed's spelling whatever case was sent."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = part.rstrip("_")
            path += ("." if path else "") + name[:1].upper() + name[1:]
    return path or "EmailMessage"


def _problem(error: ErrorDetails, prefix: tuple[int | str, ...]) -> FieldProblem:
    loc = tuple(error["loc"])
    if loc[: len(prefix)] == prefix:
        loc = loc[len(prefix) :]
    exception, code, message = _EXCEPTION_BY_TYPE.get(
        error["type"], ("ArgumentException", "argument" if error["type"] == "argument" else "type", None)
    )
    return FieldProblem(field=_path(loc), code=code, message=message or error["msg"], exception=exception)


def problems_of(error: ValidationError, *, prefix: tuple[int | str, ...] = ()) -> list[FieldProblem]:
    """Turn a pydantic ``ValidationError`` into one ``FieldProblem`` per bad field."""
    return [_problem(detail, prefix) for detail in error.errors(include_url=False, include_input=False)]


def _not_json(reason: str) -> RequestInvalid:
    return RequestInvalid(
        [FieldProblem("EmailMessage", "invalid_json", f"the body is not valid JSON: {reason}", "ArgumentException")]
    )


def decode_json(raw: bytes | str) -> Any:
    """JSON → Python, refusing what ``json`` itself cannot safely take (``RequestInvalid``, never a crash)."""
    try:
        decoded = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _not_json(str(exc)) from None
    except RecursionError:
        raise _not_json(f"it is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # Python's limit on integer digits (4300)
        raise _not_json("a number has more digits than Python converts (4300)") from None
    return decoded


def _recipients_problem(message: Mapping[str, Any]) -> FieldProblem | None:
    # Counted before any address is validated: 60,000 recipients would otherwise cost seconds of CPU.
    lists = [message.get(k) for k in ("To", "to", "Cc", "cc", "Bcc", "bcc")]
    count = sum(len(v) for v in lists if isinstance(v, list))
    count += sum(v.count(";") + v.count(",") + 1 for v in lists if isinstance(v, str))
    if count <= MAX_RECIPIENTS:
        return None
    return FieldProblem(
        "To",
        "too_many",
        f"To, Cc and Bcc hold {count} recipients; Exchange Online accepts at most {MAX_RECIPIENTS} per message",
        "ArgumentException",
    )


def structure_problem(value: Any) -> FieldProblem | None:
    """Decoded JSON too deep, or a string that is not Unicode text (a lone surrogate): the first such place, named."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            return FieldProblem(
                _path(loc[:4]), "too_deep", f"is nested deeper than {MAX_DEPTH} levels", "ArgumentException"
            )
        if isinstance(item, str):
            if SURROGATE.search(item):
                return FieldProblem(
                    _path(loc),
                    "invalid_text",
                    "holds a lone surrogate (\\ud800-\\udfff): not Unicode text",
                    "ArgumentException",
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if SURROGATE.search(key):
                    return FieldProblem(
                        _path(loc), "invalid_text", "has a key that is not Unicode text", "ArgumentException"
                    )
                stack.append((child, (*loc, key)))
        elif isinstance(item, list):
            stack.extend((child, (*loc, index)) for index, child in enumerate(item))
    return None


def parse_send_request(message: Any, *, sender: str | None = None, request_id: str | None = None) -> SendRequest:
    """Validate a decoded JSON message (and optional sender) into a ``SendRequest``.

    Raises ``RequestInvalid`` listing every problem; nothing is partially accepted.
    """
    if message is None:
        raise RequestInvalid([FieldProblem("EmailMessage", "null", "must not be null", "PropertyNullException")])
    if not isinstance(message, Mapping):
        raise RequestInvalid([FieldProblem("EmailMessage", "type", "must be a JSON object", "ArgumentException")])
    problem = structure_problem(message) or _recipients_problem(message)
    if problem:
        raise RequestInvalid([problem])
    fields: dict[str, Any] = {"message": message, "sender": sender}
    if request_id:
        fields["request_id"] = request_id
    try:
        request = SendRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestInvalid(problems_of(exc, prefix=("message",))) from None
    problems = _cross_field_problems(request.message)
    if problems:
        raise RequestInvalid(problems)
    return request


def parse_message_json(raw: bytes | str, *, sender: str | None = None, request_id: str | None = None) -> SendRequest:
    """Decode a JSON body and validate it as an email message; see ``parse_send_request``."""
    return parse_send_request(decode_json(raw), sender=sender, request_id=request_id)
