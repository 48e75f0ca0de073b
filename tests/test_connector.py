"""What Power Automate makers meet: the Swagger 2.0 connector, validate-only sends, and the health endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

from connector_openapi import Problem, connector_properties, swagger
from m365send.models import EmailMessage
from standins.cloud import LocalCloud
from tests.conftest import Configure, SendApi, indexed_functions, invoke

CONNECTOR = Path(__file__).resolve().parent.parent / "connector"


def _nullable(node: Any) -> Any:
    """Swagger's ``x-nullable`` as JSON Schema draft 4 says it, so a standard validator can check answers."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable(value) for key, value in node.items()}
    if converted.get("x-nullable"):
        if "type" in converted:
            converted["type"] = [converted["type"], "null"]
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
    return converted


def problem_conforms(body: dict[str, Any]) -> list[str]:
    """Errors of an error answer against the Problem model's JSON Schema (docs/api.md documents it)."""
    return [error.message for error in Draft202012Validator(Problem.model_json_schema()).iter_errors(body)]


def conforms(body: dict[str, Any], definition: str) -> list[str]:
    """Errors of ``body`` against a definition of the served document (empty when it conforms)."""
    document = swagger()
    schema = {"$ref": f"#/definitions/{definition}", "definitions": _nullable(document["definitions"])}
    return [error.message for error in Draft4Validator(schema).iter_errors(body)]


def test_the_document_is_valid_swagger_2() -> None:
    validate(swagger(), cls=OpenAPIV2SpecValidator)


def test_the_connector_package_holds_the_generated_documents() -> None:
    hint = "regenerate: python -m connector_openapi --connector connector"

    assert json.loads((CONNECTOR / "apiDefinition.swagger.json").read_text()) == swagger(), hint
    assert json.loads((CONNECTOR / "apiProperties.json").read_text()) == connector_properties(), hint


def test_it_is_served_anonymously_with_the_callers_host(api: SendApi) -> None:
    answer = invoke("openapi", "GET", url="https://func-contoso.azurewebsites.net/api/")

    assert answer.status == 200
    assert answer.body["host"] == "func-contoso.azurewebsites.net"
    [trigger] = [b for b in indexed_functions()["openapi"].get_bindings() if b.type == "httpTrigger"]
    assert str(getattr(trigger.auth_level, "value", trigger.auth_level)).lower() == "anonymous"


def test_the_send_operation_reads_well_and_uses_the_function_key() -> None:
    document = swagger()
    operation = document["paths"]["/send"]["post"]

    assert operation["operationId"] == "SendEmail"
    assert operation["summary"] == "Send email as a Microsoft 365 mailbox"
    assert document["securityDefinitions"]["functionKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": "The Function App's function key.",
    }


def test_every_message_field_is_in_the_schema_with_a_summary() -> None:
    definitions = swagger()["definitions"]
    properties = definitions["EmailMessage"]["properties"]

    for field in EmailMessage.model_fields.values():
        name = field.validation_alias.choices[0]  # type: ignore[union-attr]
        assert name in properties
        assert properties[name]["x-ms-summary"]
    assert properties["Priority"]["enum"] == ["Low", "Normal", "High"]


def test_the_seed_example_with_recipients_as_the_designer_sends_them_conforms(seed_message: dict[str, Any]) -> None:
    for name in ("To", "Cc", "Bcc"):
        seed_message[name] = "; ".join(r["Address"] for r in seed_message[name])
    seed_message["Cc"] = seed_message["Cc"] or None

    assert conforms({k: v for k, v in seed_message.items() if v is not None}, "EmailMessage") == []


def test_the_designers_example_is_sent(api: SendApi, cloud: LocalCloud) -> None:
    example = swagger()["definitions"]["EmailMessage"]["example"]

    answer = api.post(example)

    assert answer.status == 202
    assert cloud.graph.sent[0].message["body"]["contentType"] == "html"


def test_real_answers_conform_to_the_response_schemas(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    accepted = api.post(seed_message)
    invalid = api.post({**seed_message, "To": []})
    valid = api.post(seed_message, function="validate")

    assert conforms(accepted.body, "AcceptedAnswer") == []
    assert problem_conforms(invalid.body) == []
    assert conforms(valid.body, "ValidAnswer") == []


@pytest.mark.parametrize("how", ["query", "route"])
def test_validate_only_checks_everything_and_sends_nothing(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any], how: str
) -> None:
    def post(message: dict[str, Any]) -> Any:
        if how == "query":
            return api.post(message, params={"validate": "true"})
        return api.post(message, function="validate")

    ok = post(seed_message)
    refused = post({**seed_message, "From": {"Address": "ceo@contoso.com"}})
    invalid = post({**seed_message, "Priority": 10})

    assert (ok.status, ok.body["status"], ok.body["mailbox"]) == (200, "valid", cloud.mailbox.upn)
    assert refused.status == 403
    assert invalid.status == 400
    assert sum(cloud.graph.requests.values()) == 0
    assert sum(cloud.entra.token_requests.values()) == 0


def test_health_is_healthy_with_settings_and_storage(configure: Configure, storage_settings: dict[str, str]) -> None:
    configure(**storage_settings)

    answer = invoke("health", "GET")

    assert answer.status == 200
    assert answer.body["status"] == "healthy"


def test_health_is_degraded_without_storage(configure: Configure) -> None:
    configure()

    answer = invoke("health", "GET")

    assert answer.status == 200
    assert answer.body["status"] == "degraded"


def test_health_names_bad_settings_without_their_values(configure: Configure) -> None:
    configure(M365_QUEUE_NAME="Secret_Looking_Value_42", M365_CLIENT_ID=None)

    answer = invoke("health", "GET")

    assert answer.status == 503
    assert set(answer.body["problems"][0]["settings"]) == {"M365_QUEUE_NAME", "M365_CLIENT_ID"}
    assert "Secret_Looking_Value_42" not in json.dumps(answer.body)


def test_health_names_settings_left_at_the_examples_placeholders(configure: Configure) -> None:
    configure(M365_TENANT_ID="<tenant id>", M365_CLIENT_ID="<app registration client id>")

    answer = invoke("health", "GET")

    assert answer.status == 503
    assert set(answer.body["problems"][0]["settings"]) == {"M365_TENANT_ID", "M365_CLIENT_ID"}
