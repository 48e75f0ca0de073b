"""The HTTP API as an OpenAPI 2.0 (Swagger) document that imports as a Power Automate custom connector.

Generated from the pydantic models, so it cannot drift from what the API accepts. The connector
package in ``connector/`` (PowerPlatformConnectors layout) holds it as ``apiDefinition.swagger.json``
with ``apiProperties.json``; regenerate both with ``python -m connector_openapi --connector connector``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from m365send.envelope import MAX_KEY_LENGTH
from m365send.fields import CONTROL_CLASS, TEXT_PATTERN
from m365send.message import EmailMessage

__all__ = [
    "AcceptedAnswer",
    "FieldError",
    "Problem",
    "Publisher",
    "StatusAnswer",
    "ValidAnswer",
    "connector_properties",
    "swagger",
    "title_case",
    "write_connector",
]

VERSION = "0.1.0"
PLACEHOLDER_HOST = "func-m365send.azurewebsites.net"
# One part of an address as the query parameter's pattern states it: no @, space or control character.
_ADDRESS = f"[^@\\s{CONTROL_CLASS}]+"


class AcceptedAnswer(BaseModel):
    """202: Graph accepted the email for delivery, or it waits on the queue for its SendAt."""

    status: Literal["accepted", "scheduled"] = Field(
        title="Status", description="accepted: Graph took the email; scheduled: it waits for its Send At."
    )
    requestId: str = Field(  # noqa: N815
        title="Request ID", description="This request's id; quote it when asking about this email."
    )
    mailbox: str = Field(title="Mailbox", description="The mailbox the email was sent as.")
    graphRequestId: str | None = Field(  # noqa: N815
        default=None, title="Graph Request ID", description="Microsoft Graph's id for its request, when it gave one."
    )
    idempotencyKey: str | None = Field(  # noqa: N815
        default=None,
        title="Idempotency Key",
        description="The key this send was made under (for a scheduled send, the one to ask its status with).",
    )
    internetMessageId: str | None = Field(  # noqa: N815
        default=None, title="Internet Message ID", description="The email's Message-ID header, when Graph gave it."
    )
    sendAt: str | None = Field(  # noqa: N815
        default=None,
        title="Send At",
        description="When a scheduled email will be sent (UTC).",
        json_schema_extra={"format": "date-time"},
    )
    statusUrl: str | None = Field(  # noqa: N815
        default=None, title="Status URL", description="Where to ask what became of a scheduled email."
    )


class StatusAnswer(BaseModel):
    """200: what became of a send made with an idempotency key."""

    idempotencyKey: str = Field(title="Idempotency Key", description="The key asked about.")  # noqa: N815
    via: Literal["http", "queue"] = Field(title="Via", description="How the send came: HTTP or the outbox queue.")
    status: Literal["pending", "scheduled", "sent", "failed", "dead-lettered"] = Field(
        title="Status",
        description="pending (being sent or to be retried), scheduled, sent, failed or dead-lettered.",
    )
    detail: str = Field(title="Detail", description="The status in words.")
    attempts: int = Field(title="Attempts", description="Attempts to send so far.")
    firstSeen: str | None = Field(  # noqa: N815
        default=None,
        title="First Seen",
        description="When the key was first seen (UTC).",
        json_schema_extra={"format": "date-time"},
    )
    updated: str | None = Field(
        default=None,
        title="Updated",
        description="When the status last changed (UTC).",
        json_schema_extra={"format": "date-time"},
    )
    sendAt: str | None = Field(  # noqa: N815
        default=None,
        title="Send At",
        description="A scheduled email's time (UTC).",
        json_schema_extra={"format": "date-time"},
    )
    graphRequestId: str | None = Field(  # noqa: N815
        default=None, title="Graph Request ID", description="Microsoft Graph's id for the request that sent it."
    )
    internetMessageId: str | None = Field(  # noqa: N815
        default=None, title="Internet Message ID", description="The email's Message-ID header, where known."
    )
    possibleDuplicate: bool | None = Field(  # noqa: N815
        default=None, title="Possible Duplicate", description="An earlier attempt's outcome was unknown."
    )


class ValidAnswer(BaseModel):
    """200: the message is valid and may be sent as this mailbox (nothing was sent)."""

    status: Literal["valid"] = Field(title="Status", description="Always valid: the email could be sent as it is.")
    requestId: str = Field(title="Request ID", description="This request's id.")  # noqa: N815
    mailbox: str = Field(title="Mailbox", description="The mailbox the email would be sent as.")


class FieldError(BaseModel):
    """One thing wrong with one field."""

    field: str = Field(title="Field", description="Path of the field, e.g. To[0].Address.")
    code: str = Field(title="Code", description="What kind of problem, e.g. empty or invalid.")
    message: str = Field(title="Message", description="What was wrong, for a person to read.")
    exception: str = Field(
        title="Exception", description="The Send Email Using Microsoft 365 block's exception name for this case."
    )


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, and nothing was sent (the body of every error answer)."""

    type: str = Field(title="Type", description="urn:m365send:problem:<kind>; see docs/api.md's error table.")
    title: str = Field(title="Title", description="The kind of problem, in words.")
    status: int = Field(title="HTTP Status", description="The HTTP status of the answer.")
    detail: str = Field(title="Detail", description="What was wrong and how to fix it.")
    instance: str = Field(title="Instance", description="This occurrence, as a URN.")
    requestId: str = Field(title="Request ID", description="This request's id.")  # noqa: N815
    exception: str | None = Field(default=None, title="Exception", description="The block's exception name.")
    errors: list[FieldError] | None = Field(default=None, title="Field Errors", description="One per bad field.")
    graphCode: str | None = Field(default=None, title="Graph Error Code", description="Graph's own code.")  # noqa: N815
    graphStatus: int | None = Field(  # noqa: N815
        default=None, title="Graph HTTP Status", description="Graph's own status."
    )
    retryAfter: int | None = Field(  # noqa: N815
        default=None, title="Retry After", description="Seconds to wait before trying again."
    )
    settings: list[str] | None = Field(default=None, title="Settings to Fix", description="App settings to fix.")


# How the connector shows the enums: the names the block uses (lower case is accepted too).
_ENUM_NAMES = {"Priority": ["Low", "Normal", "High"], "BodyFormat": ["Text", "Html"]}
# What a maker reads for each definition (the docstrings are written for developers).
_SUMMARIES = {
    "EmailMessage": ("Email Message", "The email to send: recipients, sender, subject, body and attachments."),
    "Attachment": ("Attachment", "A file: inline (base64) or a reference to a blob in an allowed container."),
    "AcceptedAnswer": ("Accepted", "Microsoft Graph accepted the email for delivery."),
    "ValidAnswer": ("Valid", "The email is valid and may be sent as this mailbox; nothing was sent."),
    "StatusAnswer": ("Send Status", "What became of an email sent with an idempotency key."),
}
# Words Title Case leaves in lower case unless they come first.
_SMALL_WORDS = {"a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "via"}
# Text (no control characters) with at least one character that is not a separator.
_TEXT_CHAR = f"[^{CONTROL_CLASS}]"
_RECIPIENT_LIST = f"^{_TEXT_CHAR}*[^\\s;,{CONTROL_CLASS}]{_TEXT_CHAR}*$"
_WHO = {"Cc": "Copy recipients'", "Bcc": "Blind copy recipients'", "ReplyTo": "Reply-to"}
_RECIPIENTS = "Email addresses separated by semicolons, e.g. ann@contoso.com; bob@contoso.com."


def title_case(text: str) -> str:
    """``"Graph request id"`` → ``"Graph Request ID"``: how the designer's field labels are written."""
    words = []
    for index, word in enumerate(text.split(" ")):
        if word.lower() == "id":
            words.append("ID")
        elif index and word.lower() in _SMALL_WORDS:
            words.append(word.lower())
        else:
            words.append(word[:1].upper() + word[1:])
    return " ".join(words)


@dataclass(frozen=True)
class Publisher:
    """Who publishes the connector: certification asks for a contact, a website and a privacy policy."""

    name: str = "Contoso IT"
    website: str = "https://www.contoso.com"
    privacy_policy: str = "https://www.contoso.com/privacy"
    email: str = "it@contoso.com"


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
            converted["title"] = converted["x-ms-summary"] = title_case(value)
    return converted


def _message_for_makers(definitions: dict[str, Any]) -> None:
    """The designer's view of the message: fields a maker meets first, the rest under advanced options.

    A ``$ref`` cannot carry a label or a visibility, so From, Priority and BodyFormat are inlined;
    recipients are one semicolon-separated text each, as Outlook's "Send an email (V2)" takes them
    (the app accepts lists too).
    """
    message = definitions["EmailMessage"]["properties"]
    address = definitions.pop("EmailAddress")
    for name, visibility in (("To", "important"), ("Cc", "advanced"), ("Bcc", "advanced"), ("ReplyTo", "advanced")):
        summary = message[name]["x-ms-summary"]
        message[name] = {
            "type": "string",
            "title": summary,
            "x-ms-summary": summary,
            "description": _RECIPIENTS if name == "To" else _RECIPIENTS.replace("Email", _WHO[name]),
            "x-ms-visibility": visibility,
        }
    # No control characters (as in every text field), and To holds at least one address.
    for name in ("To", "Cc", "Bcc", "ReplyTo"):
        message[name]["pattern"] = TEXT_PATTERN
    message["To"]["minLength"] = 1
    message["To"]["pattern"] = _RECIPIENT_LIST
    message["From"] = {
        **address,
        "title": "From",
        "x-ms-summary": "From",
        "description": "The sender: the mailbox, or an address it may send as.",
        "x-ms-visibility": "important",
    }
    message["OnBehalfOf"] = {
        **address,
        "title": "On Behalf of",
        "x-ms-summary": "On Behalf of",
        "description": message["OnBehalfOf"]["description"],
        "x-ms-visibility": "advanced",
    }
    for name, visibility, default in (("Priority", "advanced", "Normal"), ("BodyFormat", "advanced", "Html")):
        enum = definitions.pop(name)
        message[name] = {
            **enum,
            "enum": _ENUM_NAMES[name],
            "default": default,
            "x-nullable": True,
            "title": message[name].get("title", title_case(name)),
            "x-ms-summary": "Body Format" if name == "BodyFormat" else "Priority",
            "x-ms-visibility": visibility,
        }
    message["BodyFormat"]["description"] = "Html (the designer's rich text) or Text; the API alone defaults to Text."
    message["Body"].update({"format": "html", "x-ms-visibility": "important"})
    message["Subject"]["x-ms-visibility"] = "important"
    for name in (
        "Attachments",
        "Headers",
        "Categories",
        "RequestReadReceipt",
        "RequestDeliveryReceipt",
        "SaveToSentItems",
        "SendAt",
    ):
        message[name]["x-ms-visibility"] = "advanced"


def _definitions() -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    for model in (EmailMessage, AcceptedAnswer, ValidAnswer, StatusAnswer):
        schema = model.model_json_schema(by_alias=True, ref_template="#/definitions/{model}")
        for name, nested in schema.pop("$defs", {}).items():
            definitions[name] = _swagger_schema(nested)
        definitions[model.__name__] = _swagger_schema(schema)
    for name, (summary, description) in _SUMMARIES.items():
        definitions[name].update({"title": summary, "x-ms-summary": summary, "description": description})
    _message_for_makers(definitions)
    # What the designer shows as a sample, and what an API tester sends first.
    definitions["EmailMessage"]["example"] = {
        "To": "recipient@outlook.com",
        "From": {"Address": "notifications@contoso.com"},
        "Subject": "Example email subject",
        "Body": "<p>Example email body</p>",
        "BodyFormat": "Html",
    }
    return dict(sorted(definitions.items()))


def _problem_responses() -> dict[str, Any]:
    meanings = {
        "400": "The message is not valid, or Graph refused a recipient.",
        "403": "Not allowed to send as this mailbox.",
        "404": "The sending mailbox does not exist.",
        "409": "The idempotency key was used for another message.",
        "413": "The message is larger than Graph accepts.",
        "422": "Microsoft Graph refused the email.",
        "500": "The service is misconfigured or its Microsoft 365 credential cannot be used.",
        "502": "Microsoft Graph's answer was lost: repeat with the same Idempotency-Key.",
        "503": "Busy or unavailable (the key in use, or a dependency down): try again after Retry-After.",
    }
    # Only a success answer has a schema (certification rule); every error body is a Problem (docs/api.md).
    return {code: {"description": text} for code, text in meanings.items()}


def swagger(*, host: str = PLACEHOLDER_HOST, publisher: Publisher = Publisher()) -> dict[str, Any]:
    """The OpenAPI 2.0 document for ``host``: the connector's apiDefinition.swagger.json."""
    body = {
        "name": "message",
        "in": "body",
        "required": True,
        "x-ms-summary": "Email Message",
        "description": "The email to send.",
        "schema": {"$ref": "#/definitions/EmailMessage"},
    }
    sender = {
        "name": "sender",
        "in": "query",
        "required": False,
        "type": "string",
        "x-ms-summary": "Send as Mailbox",
        "x-ms-visibility": "advanced",
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
        "x-ms-summary": "Idempotency Key",
        "x-ms-visibility": "important",
        "description": (
            "Put guid() here: it is evaluated once per run of the action and kept across its retries, so a "
            "retried send goes out once. The same key again never sends twice."
        ),
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": "^[^\\u0000-\\u001f\\u007f]+$",
    }
    return {
        "swagger": "2.0",
        "info": {
            "title": "m365send",
            "version": VERSION,
            "description": (
                "Send email as a Microsoft 365 mailbox through Microsoft Graph from your own Azure Function App: "
                "validated messages, attachments up to 150 MB, and at most one email per idempotency key."
            ),
            "contact": {"name": publisher.name, "url": publisher.website, "email": publisher.email},
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
            },
            "entraId": {
                "type": "oauth2",
                "flow": "accessCode",
                "authorizationUrl": "https://login.microsoftonline.com/common/oauth2/authorize",
                "tokenUrl": "https://login.microsoftonline.com/common/oauth2/token",
                "scopes": {},
                "description": "A Microsoft Entra ID token for the m365send API (M365_API_AUDIENCE).",
            },
        },
        "security": [{"functionKey": []}, {"entraId": []}],
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
                            "description": "Accepted for delivery.",
                            "schema": {"$ref": "#/definitions/AcceptedAnswer"},
                        },
                        **_problem_responses(),
                    },
                }
            },
            "/messages/{key}": {
                "get": {
                    "operationId": "GetSendStatus",
                    "summary": "Get the status of an email",
                    "description": (
                        "What became of an email sent or scheduled with an idempotency key: pending, scheduled, "
                        "sent, failed or dead-lettered, with its times and Microsoft Graph's ids."
                    ),
                    "x-ms-visibility": "important",
                    "parameters": [
                        {
                            "name": "key",
                            "in": "path",
                            "required": True,
                            "type": "string",
                            "x-ms-summary": "Idempotency Key",
                            "x-ms-visibility": "important",
                            "x-ms-url-encoding": "single",
                            "description": "The send's Idempotency Key, or the key a scheduled send answered with.",
                            "minLength": 1,
                            "maxLength": MAX_KEY_LENGTH,
                        },
                        {
                            "name": "via",
                            "in": "query",
                            "required": False,
                            "type": "string",
                            "enum": ["http", "queue"],
                            "x-ms-summary": "Via",
                            "x-ms-visibility": "advanced",
                            "description": "Only sends that came this way; empty means either.",
                        },
                    ],
                    "responses": {
                        "200": {"description": "The send's status.", "schema": {"$ref": "#/definitions/StatusAnswer"}},
                        "400": {"description": "The key or via is not valid."},
                        "404": {"description": "No send with this key is known."},
                        "500": {"description": "The service's storage is not configured."},
                        "503": {"description": "Storage is unavailable: try again after Retry-After."},
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
                        "200": {"description": "The email is valid.", "schema": {"$ref": "#/definitions/ValidAnswer"}},
                        **{k: v for k, v in _problem_responses().items() if k in ("400", "403", "413", "500")},
                    },
                }
            },
        },
        "definitions": _definitions(),
        "x-ms-connector-metadata": [
            {"propertyName": "Website", "propertyValue": publisher.website},
            {"propertyName": "Privacy policy", "propertyValue": publisher.privacy_policy},
            {"propertyName": "Categories", "propertyValue": "Communication;IT Operations"},
        ],
    }


ICON_BRAND_COLOR = "#0F6CBD"  # the background of connector/icon.png


# Placeholders for the Entra ID connection, until `--client-id` and `--resource-uri` name the real ones.
PLACEHOLDER_CLIENT_ID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_RESOURCE_URI = "api://m365send"
# Power Platform's redirect URI for a custom connector's OAuth sign-in (one shared by every connector).
REDIRECT_URL = "https://global.consent.azure-apim.net/redirect"


def _host_parameter() -> dict[str, Any]:
    return {
        "type": "string",
        "uiDefinition": {
            "displayName": "Function App Host",
            "description": "Host name of your m365send Function App, e.g. func-m365send.azurewebsites.net.",
            "tooltip": "The Function App's default domain, without https://",
            "constraints": {"required": "true", "tabIndex": 1},
        },
    }


def connector_properties(
    publisher: Publisher = Publisher(),
    *,
    client_id: str = PLACEHOLDER_CLIENT_ID,
    resource_uri: str = PLACEHOLDER_RESOURCE_URI,
) -> dict[str, Any]:
    """The connector's apiProperties.json: two connection types (multi-auth), each asking for the host.

    Microsoft Entra ID: each maker signs in, so a connection is its maker's identity (the sender policy
    names it by object id or app role); ``client_id`` is the connector's app registration, ``resource_uri``
    the m365send API's application ID URI. API key: a function key, for simple set-ups.
    (https://learn.microsoft.com/connectors/custom-connectors/multi-auth)
    """
    entra = {
        "name": "oauth",
        "uiDefinition": {
            "displayName": "Microsoft Entra ID",
            "description": "Sign in: the connection sends as you, with the senders m365send's policy gives you.",
        },
        "parameters": {
            "hostName": _host_parameter(),
            "token": {
                "type": "oauthSetting",
                "oAuthSettings": {
                    "identityProvider": "aad",
                    "clientId": client_id,
                    "scopes": [],
                    "redirectMode": "Global",
                    "redirectUrl": REDIRECT_URL,
                    "properties": {"IsFirstParty": "False", "AzureActiveDirectoryResourceId": resource_uri},
                    "customParameters": {
                        "resourceUri": {"value": resource_uri},
                        "loginUri": {"value": "https://login.microsoftonline.com"},
                        "tenantId": {"value": "common"},
                    },
                },
                "uiDefinition": {
                    "displayName": "Sign in with Microsoft Entra ID",
                    "description": "The work account whose identity the connection uses.",
                    "tooltip": "m365send sees your object id and app roles",
                    "constraints": {"required": "true", "hidden": "false"},
                },
            },
        },
    }
    key = {
        "name": "apiKey",
        "uiDefinition": {
            "displayName": "Function key",
            "description": "A function key of the Function App: shared by everyone who holds it.",
        },
        "parameters": {
            "hostName": _host_parameter(),
            "api_key": {
                "type": "securestring",
                "uiDefinition": {
                    "displayName": "Function Key",
                    "description": "A function key of that Function App (Azure portal: the app's App keys).",
                    "tooltip": "The key is sent as the x-functions-key header",
                    "constraints": {"required": "true", "clearText": False, "tabIndex": 2},
                },
            },
        },
    }
    return {
        "properties": {
            "connectionParameterSets": {
                "uiDefinition": {
                    "displayName": "Authentication type",
                    "description": "How the connection proves who it is to m365send.",
                },
                "values": [entra, key],
            },
            "iconBrandColor": ICON_BRAND_COLOR,
            "capabilities": ["actions"],
            "publisher": publisher.name,
            "stackOwner": publisher.name,
            "policyTemplateInstances": [
                {
                    "templateId": "dynamichosturl",
                    "title": "Function App host",
                    "parameters": {
                        "x-ms-apimTemplateParameter.urlTemplate": "https://@connectionParameters('hostName')/api"
                    },
                }
            ],
        }
    }


def write_connector(
    directory: Path,
    *,
    host: str = PLACEHOLDER_HOST,
    publisher: Publisher = Publisher(),
    client_id: str = PLACEHOLDER_CLIENT_ID,
    resource_uri: str = PLACEHOLDER_RESOURCE_URI,
) -> None:
    """Write apiDefinition.swagger.json and apiProperties.json (the icon and readme.md are kept by hand)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, document in (
        ("apiDefinition.swagger.json", swagger(host=host, publisher=publisher)),
        ("apiProperties.json", connector_properties(publisher, client_id=client_id, resource_uri=resource_uri)),
    ):
        (directory / name).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Print the document, or write the connector package with ``--connector DIR``."""
    parser = argparse.ArgumentParser(prog="python -m connector_openapi", description=main.__doc__)
    parser.add_argument("--connector", type=Path, metavar="DIR", help="write the connector package into DIR")
    parser.add_argument("--host", default=PLACEHOLDER_HOST, help="the Function App's host name")
    parser.add_argument("--publisher", default=Publisher.name, help="your organization")
    parser.add_argument("--website", default=Publisher.website)
    parser.add_argument("--privacy-policy", default=Publisher.privacy_policy)
    parser.add_argument("--email", default=Publisher.email, help="the connector's contact address")
    parser.add_argument("--client-id", default=PLACEHOLDER_CLIENT_ID, help="the connector's app registration")
    parser.add_argument("--resource-uri", default=PLACEHOLDER_RESOURCE_URI, help="the m365send API's ID URI")
    args = parser.parse_args(argv)
    publisher = Publisher(args.publisher, args.website, args.privacy_policy, args.email)
    if args.connector:
        write_connector(
            args.connector,
            host=args.host,
            publisher=publisher,
            client_id=args.client_id,
            resource_uri=args.resource_uri,
        )
        print(f"wrote {args.connector}/apiDefinition.swagger.json and apiProperties.json")
        return 0
    print(json.dumps(swagger(host=args.host, publisher=publisher), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
