"""The HTTP API as an OpenAPI 2.0 (Swagger) document that imports as a Power Automate custom connector.

Generated from the pydantic models, so it cannot drift from what the API accepts; a copy is kept
in ``openapi/m365send.swagger.json`` (regenerate with ``python -m m365send.openapi``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from m365send.envelope import MAX_KEY_LENGTH
from m365send.models import CONTROL_CLASS, EmailMessage

__all__ = ["AcceptedAnswer", "FieldError", "Problem", "ValidAnswer", "swagger"]

VERSION = "0.1.0"
PLACEHOLDER_HOST = "func-m365send.azurewebsites.net"
# One part of an address as the query parameter's pattern states it: no @, space or control character.
_ADDRESS = f"[^@\\s{CONTROL_CLASS}]+"


class AcceptedAnswer(BaseModel):
    """202: Graph accepted the email for delivery."""

    status: Literal["accepted"] = Field(title="Status")
    requestId: str = Field(title="Request id", description="Quote it when asking about this email.")  # noqa: N815
    mailbox: str = Field(title="Mailbox", description="The mailbox the email was sent as.")
    graphRequestId: str | None = Field(default=None, title="Graph request id")  # noqa: N815
    idempotencyKey: str | None = Field(  # noqa: N815
        default=None, title="Idempotency key", description="The Idempotency-Key this send was made under, if any."
    )


class ValidAnswer(BaseModel):
    """200: the message is valid and may be sent as this mailbox (nothing was sent)."""

    status: Literal["valid"] = Field(title="Status")
    requestId: str = Field(title="Request id")  # noqa: N815
    mailbox: str = Field(title="Mailbox")


class FieldError(BaseModel):
    """One thing wrong with one field."""

    field: str = Field(title="Field", description="Path of the field, e.g. To[0].Address.")
    code: str = Field(title="Code")
    message: str = Field(title="Message")
    exception: str = Field(title="Exception", description="The original block's exception name for this case.")


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, and nothing was sent."""

    type: str = Field(title="Type", description="urn:m365send:problem:<kind>; see the README's error table.")
    title: str = Field(title="Title")
    status: int = Field(title="HTTP status")
    detail: str = Field(title="Detail", description="What was wrong and how to fix it.")
    instance: str = Field(title="Instance")
    requestId: str = Field(title="Request id")  # noqa: N815
    exception: str | None = Field(default=None, title="Exception")
    errors: list[FieldError] | None = Field(default=None, title="Field errors")
    graphCode: str | None = Field(default=None, title="Graph error code")  # noqa: N815
    graphStatus: int | None = Field(default=None, title="Graph HTTP status")  # noqa: N815
    retryAfter: int | None = Field(default=None, title="Retry after (seconds)")  # noqa: N815
    settings: list[str] | None = Field(default=None, title="Settings to fix")


# How the connector shows the enums: the names the seed uses (lower case is accepted too).
_ENUM_NAMES = {"Priority": ["Low", "Normal", "High"], "BodyFormat": ["Text", "Html"]}
# What a maker reads for each definition (the docstrings are written for developers).
_SUMMARIES = {
    "EmailMessage": ("Email message", "The email to send: recipients, sender, subject, body and attachments."),
    "EmailAddress": ("Email address", "A mailbox: an address and an optional display name."),
    "Attachment": ("Attachment", "A file: inline (base64) or a reference to a blob in an allowed container."),
    "Priority": ("Priority", "Low, Normal or High; empty means Normal."),
    "BodyFormat": ("Body format", "Text or Html; empty means Text."),
}


def _swagger_schema(schema: Any) -> Any:
    """JSON Schema (draft 2020-12, as pydantic writes it) → Swagger 2.0 schema objects."""
    if isinstance(schema, list):
        return [_swagger_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return {"$ref": schema["$ref"]}  # Swagger ignores a $ref's siblings
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "anyOf":
            kinds = [v for v in value if v.get("type") != "null"]
            if len(kinds) == 1:
                converted.update(_swagger_schema(kinds[0]))
                converted["x-nullable"] = True
                continue
        if key == "const":
            converted["enum"] = [value]
            continue
        if key == "default" and value is None:
            continue
        converted[key] = _swagger_schema(value) if key in ("properties", "items") or isinstance(value, dict) else value
        if key == "properties":
            converted[key] = {name: _swagger_schema(prop) for name, prop in value.items()}
        if key == "title":
            converted["x-ms-summary"] = value
    return converted


def _definitions() -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    for model in (EmailMessage, AcceptedAnswer, ValidAnswer, Problem):
        schema = model.model_json_schema(by_alias=True, ref_template="#/definitions/{model}")
        for name, nested in schema.pop("$defs", {}).items():
            definitions[name] = _swagger_schema(nested)
        definitions[model.__name__] = _swagger_schema(schema)
    for name, values in _ENUM_NAMES.items():
        definitions[name].update(enum=values, default=values[1] if name == "Priority" else values[0])
        definitions[name]["x-nullable"] = True
    for name, (summary, description) in _SUMMARIES.items():
        definitions[name].update({"title": summary, "x-ms-summary": summary, "description": description})
    # What the designer shows as a sample, and what an API tester sends first.
    definitions["EmailMessage"]["example"] = {
        "To": [{"Address": "recipient@outlook.com"}],
        "From": {"Address": "notifications@contoso.com"},
        "Subject": "Example email subject",
        "Body": "Example email body",
    }
    return dict(sorted(definitions.items()))


def _problem_responses() -> dict[str, Any]:
    meanings = {
        "400": "The message is not valid, or Graph refused a recipient",
        "403": "Not allowed to send as this mailbox",
        "404": "The sending mailbox does not exist",
        "409": "The idempotency key was used for another message",
        "413": "The message is larger than Graph accepts",
        "422": "Microsoft Graph refused the email",
        "500": "The service is misconfigured or its Microsoft 365 credential cannot be used",
        "502": "Microsoft Graph's answer was lost: repeat with the same Idempotency-Key",
        "503": "Busy or unavailable (the key in use, or a dependency down): try again after Retry-After",
    }
    return {code: {"description": text, "schema": {"$ref": "#/definitions/Problem"}} for code, text in meanings.items()}


def swagger(*, host: str = PLACEHOLDER_HOST) -> dict[str, Any]:
    """The OpenAPI 2.0 document for ``host``."""
    body = {
        "name": "message",
        "in": "body",
        "required": True,
        "x-ms-summary": "Email message",
        "description": "The email to send.",
        "schema": {"$ref": "#/definitions/EmailMessage"},
    }
    sender = {
        "name": "sender",
        "in": "query",
        "required": False,
        "type": "string",
        "x-ms-summary": "Send as mailbox",
        "description": "Mailbox to send as (address or object id); empty means the service's default mailbox.",
        # An object id (GUID) or an address; the app checks the address fully (RFC 5321).
        "pattern": f"^(?:[0-9a-fA-F]{{8}}-(?:[0-9a-fA-F]{{4}}-){{3}}[0-9a-fA-F]{{12}}|{_ADDRESS}@{_ADDRESS})$",
        "maxLength": 254,
    }
    idempotency = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "type": "string",
        "x-ms-summary": "Idempotency key",
        "description": "Send the same key again to retry safely: the email goes out at most once.",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": "^[^\\u0000-\\u001f\\u007f]+$",
    }
    return {
        "swagger": "2.0",
        "info": {
            "title": "m365send",
            "version": VERSION,
            "description": "Send email as a Microsoft 365 mailbox through Microsoft Graph.",
        },
        "host": host,
        "basePath": "/api",
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json", "application/problem+json"],
        "securityDefinitions": {
            "functionKey": {
                "type": "apiKey",
                "in": "header",
                "name": "x-functions-key",
                "description": "The Function App's function key.",
            }
        },
        "security": [{"functionKey": []}],
        "paths": {
            "/send": {
                "post": {
                    "operationId": "SendEmail",
                    "summary": "Send email as a Microsoft 365 mailbox",
                    "description": "Validates the email and sends it through Microsoft Graph as the mailbox.",
                    "x-ms-visibility": "important",
                    "parameters": [body, sender, idempotency],
                    "responses": {
                        "202": {
                            "description": "Accepted for delivery",
                            "schema": {"$ref": "#/definitions/AcceptedAnswer"},
                        },
                        **_problem_responses(),
                    },
                }
            },
            "/validate": {
                "post": {
                    "operationId": "ValidateEmail",
                    "summary": "Check an email without sending it",
                    "description": "Validates the email and the permission to send as the mailbox; sends nothing.",
                    "x-ms-visibility": "advanced",
                    "parameters": [body, sender],
                    "responses": {
                        "200": {"description": "The email is valid", "schema": {"$ref": "#/definitions/ValidAnswer"}},
                        **{k: v for k, v in _problem_responses().items() if k in ("400", "403", "413", "500")},
                    },
                }
            },
        },
        "definitions": _definitions(),
    }


if __name__ == "__main__":
    print(json.dumps(swagger(), indent=2))
