"""The email message model: what it accepts, and how each rejection names its field. Pure, no I/O."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from m365send.attachments import resolve_attachments
from m365send.errors import RequestInvalid
from m365send.models import BodyFormat, Priority, parse_message_json, parse_send_request
from standins.examples import SEED_EXAMPLE
from tests.conftest import fresh_python


def problems(message: Any, **kwargs: Any) -> list[tuple[str, str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        parse_send_request(message, **kwargs)
    return [(p.field, p.code, p.exception) for p in caught.value.problems]


def test_seed_message_is_accepted_with_normal_priority_and_text_body(seed_message: dict[str, Any]) -> None:
    request = parse_send_request(seed_message)

    assert request.message.priority is Priority.NORMAL
    assert request.message.body_format is BodyFormat.TEXT
    assert request.message.to[0].address == "recipient@outlook.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("High", Priority.HIGH), ("low", Priority.LOW), ("EmailMessagePriority.Normal", Priority.NORMAL)],
)
def test_priority_accepts_names_and_seed_enum_spelling(
    seed_message: dict[str, Any], value: str, expected: Priority
) -> None:
    seed_message["Priority"] = value

    assert parse_send_request(seed_message).message.priority is expected


@pytest.mark.parametrize(
    ("value", "expected"), [("Html", BodyFormat.HTML), ("EmailMessageBodyFormat.Text", BodyFormat.TEXT)]
)
def test_body_format_accepts_names_and_seed_enum_spelling(
    seed_message: dict[str, Any], value: str, expected: BodyFormat
) -> None:
    seed_message["BodyFormat"] = value

    assert parse_send_request(seed_message).message.body_format is expected


def test_camel_case_keys_are_accepted(seed_message: dict[str, Any]) -> None:
    camel = {key[0].lower() + key[1:]: value for key, value in seed_message.items()}

    assert parse_send_request(camel).message == parse_send_request(seed_message).message


def test_every_problem_is_reported_at_once(seed_message: dict[str, Any]) -> None:
    seed_message["To"] = []
    seed_message["From"] = None
    seed_message["Priority"] = 10

    assert problems(seed_message) == [
        ("To", "empty", "PropertyEmptyException"),
        ("From", "null", "PropertyNullException"),
        ("Priority", "argument", "ArgumentException"),
    ]


def test_missing_to_is_reported_as_null(seed_message: dict[str, Any]) -> None:
    del seed_message["To"]

    assert problems(seed_message) == [("To", "null", "PropertyNullException")]


def test_field_paths_use_the_seeds_spelling_for_camel_case_input(seed_message: dict[str, Any]) -> None:
    seed_message["Cc"] = [{"address": "ok@fabrikam.com"}, {"address": "broken"}]

    assert problems(seed_message) == [("Cc[1].Address", "invalid_address", "ServiceException")]


@pytest.mark.parametrize("field", ["Subject", "From.Name", "To.0.Address"])
def test_line_breaks_in_header_fields_are_rejected(seed_message: dict[str, Any], field: str) -> None:
    target: Any = seed_message
    *parents, last = [int(k) if k.isdigit() else k for k in field.split(".")]
    for key in parents:
        target = target[key]
    target[last] = "x@fabrikam.com\r\nBcc: victim@fabrikam.com"

    [(path, code, exception)] = problems(seed_message)
    assert path == field.replace(".0", "[0]")
    assert code == "control_characters"
    assert exception == "ArgumentException"


def test_unknown_field_is_rejected_by_name(seed_message: dict[str, Any]) -> None:
    seed_message["Colour"] = "blue"

    assert problems(seed_message) == [("Colour", "unknown_field", "ArgumentException")]


def test_attachment_with_invalid_base64_is_rejected(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"Name": "a.txt", "ContentBytes": "not base64!"}]

    assert problems(seed_message) == [("Attachments[0].ContentBytes", "invalid_base64", "ArgumentException")]


def test_attachment_base64_wrapped_at_76_columns_is_accepted(seed_message: dict[str, Any]) -> None:
    encoded = base64.encodebytes(b"x" * 200).decode()  # has line breaks
    seed_message["Attachments"] = [{"Name": "a.bin", "ContentBytes": encoded}]

    message = parse_send_request(seed_message).message
    [resolved] = resolve_attachments(message.attachments, containers=frozenset(), blobs=None)

    assert resolved.content.read(0, resolved.size) == b"x" * 200
    assert resolved.content_type == "application/octet-stream"


def test_attachment_content_type_must_be_a_mime_type(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"Name": "a", "ContentBytes": "", "ContentType": "pdf please"}]

    assert problems(seed_message) == [("Attachments[0].ContentType", "argument", "ArgumentException")]


def test_sender_must_be_an_object_id_or_address(seed_message: dict[str, Any]) -> None:
    assert problems(seed_message, sender="not a mailbox") == [("Sender", "invalid_address", "ServiceException")]


def test_json_array_body_is_rejected_as_not_an_object() -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse_message_json(b"[]")

    assert caught.value.problems[0].code == "type"


@settings(max_examples=2000, derandomize=True, database=None)
@given(text=st.text(alphabet="AQgw+/=aZ09 \n-_!", max_size=24))
def test_content_bytes_are_valid_exactly_when_base64_decodes_them(text: str) -> None:
    assume("".join(text.split()))  # empty content is a different rule (an attachment needs a source)
    compact = "".join(text.split())
    try:
        # RFC 4648 with padding, as .NET's decoder (Graph) reads it: Python alone also takes "AAAA=".
        decodes = len(compact) % 4 == 0 and base64.b64decode(compact, validate=True) is not None
    except (binascii.Error, ValueError):
        decodes = False
    message = {**SEED_EXAMPLE, "Attachments": [{"Name": "a.bin", "ContentBytes": text}]}

    codes = []
    try:
        parse_send_request(message)
    except RequestInvalid as error:
        codes = [p.code for p in error.problems]

    assert codes == ([] if decodes else ["invalid_base64"])


def test_recipients_may_be_one_string_separated_by_semicolons(seed_message: dict[str, Any]) -> None:
    seed_message.update(To="ann@fabrikam.com; bob@fabrikam.com;", Cc="carol@fabrikam.com, dan@fabrikam.com", Bcc="")

    message = parse_send_request(seed_message).message

    assert [r.address for r in message.to] == ["ann@fabrikam.com", "bob@fabrikam.com"]
    assert [r.address for r in message.cc] == ["carol@fabrikam.com", "dan@fabrikam.com"]
    assert message.bcc == []


def test_a_bad_address_in_a_recipient_string_is_named_by_its_place(seed_message: dict[str, Any]) -> None:
    seed_message["To"] = "ann@fabrikam.com; not-an-address"

    with pytest.raises(RequestInvalid) as caught:
        parse_send_request(seed_message)

    assert [p.field for p in caught.value.problems] == ["To[1].Address"]


def test_a_recipient_string_of_only_separators_is_an_empty_to(seed_message: dict[str, Any]) -> None:
    seed_message["To"] = " ; , "

    with pytest.raises(RequestInvalid) as caught:
        parse_send_request(seed_message)

    assert [(p.field, p.exception) for p in caught.value.problems] == [("To", "PropertyEmptyException")]


def test_a_request_builds_only_the_request_models_validator_on_first_use() -> None:
    # Validators are built on first use, not at import: a send validates the request model, which
    # holds the others, so neither theirs nor the queue envelope's is ever built in an HTTP worker.
    probe = (
        "from m365send.message import EmailMessage, SendRequest\n"
        "from m365send.envelope import Envelope\n"
        "from m365send.models import parse_send_request\n"
        "from standins.examples import SEED_EXAMPLE\n"
        "built = lambda: [m.__name__ for m in (EmailMessage, SendRequest, Envelope) if m.__pydantic_complete__]\n"
        "before = built()\n"
        "parse_send_request(SEED_EXAMPLE)\n"
        "print(before, built())\n"
    )
    assert fresh_python(probe) == "[] ['SendRequest']"
