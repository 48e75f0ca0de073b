"""The connector package in connector/ passes the checks a certified Power Platform connector must pass.

Sources of the rules (recorded in docs/api.md):
- the JSON schemas of microsoft/PowerPlatformConnectors (schemas/, vendored in connector/schemas/);
- its certified-connector templates (templates/certified-connectors/: info.contact,
  x-ms-connector-metadata with Website, Privacy policy and Categories, the readme's sections) and
  the 230 x 230 PNG icons every certified connector there ships;
- Microsoft Learn, "Learn best practices for string fields" (connector-string-guidance: title at most
  30 characters without "API", summaries in sentence case without '/', at most 80 characters, not
  ending in punctuation, x-ms-summary in Title case) and "Follow coding standards" (PascalCase
  operationId, a summary and description on every operation);
- the issue's review of the designer: only a success response has a schema, every response field
  has a description, Body is HTML, file content is bytes, rarely used inputs are advanced.
"""

from __future__ import annotations

import copy
import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, Draft7Validator

from connector_openapi import ICON_BRAND_COLOR, title_case

CONNECTOR = Path(__file__).resolve().parent.parent / "connector"


def _jsonc(path: Path) -> Any:
    """The vendored schemas carry // comments (JSONC): drop them, outside strings, and parse."""
    text, out, in_string, i = path.read_text(), [], False, 0
    while i < len(text):
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\":
                out.append(text[i + 1])
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        else:
            out.append(char)
        i += 1
    return json.loads("".join(out))


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONNECTOR / "apiDefinition.swagger.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def properties() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONNECTOR / "apiProperties.json").read_text())
    return loaded


def _schema_errors(validator: Any, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_definition_passes_the_power_platform_swagger_schema(definition: dict[str, Any]) -> None:
    schema = _jsonc(CONNECTOR / "schemas" / "apiDefinition.swagger.schema.json")

    assert _schema_errors(Draft4Validator(schema), definition) == []


def test_the_schema_check_catches_a_broken_definition(definition: dict[str, Any]) -> None:
    schema = _jsonc(CONNECTOR / "schemas" / "apiDefinition.swagger.schema.json")
    broken = {**definition, "info": {**definition["info"], "title": 42}}

    assert _schema_errors(Draft4Validator(schema), broken) != []


def _as_single_auth(properties: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """The properties with one connection type's parameters as ``connectionParameters``.

    The vendored paconn schema predates multi-auth (``connectionParameterSets``): Microsoft's multi-auth
    page says each set's ``parameters`` take the form of ``connectionParameters``, so each set is
    checked as that, with everything else as the schema has it.
    (https://learn.microsoft.com/connectors/custom-connectors/multi-auth)
    """
    single = {k: v for k, v in properties["properties"].items() if k != "connectionParameterSets"}
    return {**properties, "properties": {**single, "connectionParameters": parameters}}


def _parameter_sets(properties: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v["parameters"] for v in properties["properties"]["connectionParameterSets"]["values"]}


@pytest.mark.parametrize("connection", ["oauth", "apiKey"])
def test_each_connection_type_passes_the_paconn_schema(properties: dict[str, Any], connection: str) -> None:
    schema = _jsonc(CONNECTOR / "schemas" / "paconn-apiProperties.schema.json")
    single = _as_single_auth(properties, _parameter_sets(properties)[connection])

    assert _schema_errors(Draft7Validator(schema), single) == []


def test_the_schema_check_catches_a_broken_connection_type(properties: dict[str, Any]) -> None:
    schema = _jsonc(CONNECTOR / "schemas" / "paconn-apiProperties.schema.json")
    token = copy.deepcopy(_parameter_sets(properties)["oauth"])
    del token["token"]["oAuthSettings"]["customParameters"]["resourceUri"]  # aad needs its resource

    assert _schema_errors(Draft7Validator(schema), _as_single_auth(properties, token)) != []


def test_the_connection_types_follow_the_multi_auth_shape(properties: dict[str, Any]) -> None:
    sets = properties["properties"]["connectionParameterSets"]

    assert "connectionParameters" not in properties["properties"]
    assert sets["uiDefinition"]["displayName"]
    assert sets["uiDefinition"]["description"]
    assert [v["name"] for v in sets["values"]] == ["oauth", "apiKey"]
    assert all(v["uiDefinition"]["displayName"] and v["uiDefinition"]["description"] for v in sets["values"])


def test_the_entra_connection_signs_in_to_the_m365send_api(properties: dict[str, Any]) -> None:
    token = _parameter_sets(properties)["oauth"]["token"]["oAuthSettings"]

    assert token["identityProvider"] == "aad"
    assert token["customParameters"]["resourceUri"]["value"].startswith("api://")
    assert token["redirectUrl"] == "https://global.consent.azure-apim.net/redirect"


@pytest.mark.parametrize("connection", ["oauth", "apiKey"])
def test_each_connection_asks_for_the_host(properties: dict[str, Any], connection: str) -> None:
    parameters = _parameter_sets(properties)[connection]
    [policy] = properties["properties"]["policyTemplateInstances"]

    assert parameters["hostName"]["type"] == "string"
    assert policy["templateId"] == "dynamichosturl"
    assert "@connectionParameters('hostName')" in policy["parameters"]["x-ms-apimTemplateParameter.urlTemplate"]


def test_the_key_connection_asks_for_the_function_key(properties: dict[str, Any]) -> None:
    parameters = _parameter_sets(properties)["apiKey"]

    assert parameters["api_key"]["type"] == "securestring"
    assert properties["properties"]["publisher"]
    assert properties["properties"]["stackOwner"]


def test_the_title_and_description_follow_the_string_guidance(definition: dict[str, Any]) -> None:
    info = definition["info"]

    assert len(info["title"]) <= 30
    assert not re.search(r"\bAPI\b", info["title"] + " " + info["description"])
    assert 30 <= len(info["description"]) <= 500
    assert set(info["contact"]) == {"name", "url", "email"}


def test_the_connector_metadata_names_website_privacy_policy_and_categories(definition: dict[str, Any]) -> None:
    metadata = {item["propertyName"]: item["propertyValue"] for item in definition["x-ms-connector-metadata"]}

    assert set(metadata) == {"Website", "Privacy policy", "Categories"}
    assert all(metadata.values())


def _operations(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, verbs in definition["paths"].items():
        for verb, operation in verbs.items():
            yield f"{verb.upper()} {path}", operation


def _reads_as_a_name(text: str) -> bool:
    return bool(text) and len(text) <= 80 and "/" not in text and text[-1].isalnum()


def test_operations_have_pascal_case_ids_and_sentence_case_summaries(definition: dict[str, Any]) -> None:
    for name, operation in _operations(definition):
        summary = operation["summary"]
        assert re.fullmatch(r"(?:[A-Z][a-z0-9]*)+", operation["operationId"]), name
        assert _reads_as_a_name(summary), name
        assert summary[0].isupper(), name
        # Sentence case: no word after the first is capitalized, but names (Microsoft 365).
        assert all(w[0].islower() or w in ("Microsoft", "365") for w in summary.split()[1:]), name
        assert operation["description"].endswith("."), name


def test_only_success_responses_have_a_schema(definition: dict[str, Any]) -> None:
    for name, operation in _operations(definition):
        for status, response in operation["responses"].items():
            assert ("schema" in response) == status.startswith("2"), f"{name} {status}"
            assert response["description"].endswith("."), f"{name} {status}"


def _fields(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for name, prop in node.get("properties", {}).items():
            yield f"{where}.{name}", prop
            yield from _fields(prop, f"{where}.{name}")
        if "items" in node:
            yield from _fields(node["items"], f"{where}[]")


def _labelled(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, schema in definition["definitions"].items():
        yield name, schema
        yield from _fields(schema, name)
    for operation_name, operation in _operations(definition):
        for parameter in operation["parameters"]:
            yield f"{operation_name} {parameter['name']}", parameter


def test_every_field_and_parameter_has_a_title_case_label_and_a_description(definition: dict[str, Any]) -> None:
    for name, field in _labelled(definition):
        if "$ref" in field and len(field) == 1:
            continue  # a reference is labelled where it is defined
        summary = field.get("x-ms-summary", "")
        assert _reads_as_a_name(summary), name
        assert summary == title_case(summary), f"{name}: {summary!r} is not Title Case"
        assert field.get("description", "").endswith("."), f"{name} has no description ending in a period"


def test_the_designer_shows_html_bytes_and_labels_from(definition: dict[str, Any]) -> None:
    message = definition["definitions"]["EmailMessage"]["properties"]
    attachment = definition["definitions"]["Attachment"]["properties"]

    assert message["Body"]["format"] == "html"
    assert attachment["ContentBytes"]["format"] == "byte"
    assert message["From"]["x-ms-summary"] == "From"
    assert message["To"]["type"] == "string"
    assert message["To"]["minLength"] == 1
    assert message["From"]["properties"]["Address"]["minLength"] == 1


def test_rarely_used_inputs_are_under_advanced(definition: dict[str, Any]) -> None:
    message = definition["definitions"]["EmailMessage"]["properties"]
    visibility = {name: prop.get("x-ms-visibility") for name, prop in message.items()}

    assert {visibility[n] for n in ("To", "From", "Subject", "Body")} == {"important"}
    rare = ("Cc", "Bcc", "Priority", "BodyFormat", "Attachments", "OnBehalfOf", "SendAt", "Headers")
    assert {visibility[n] for n in rare} == {"advanced"}
    for _, operation in _operations(definition):
        for parameter in operation["parameters"]:
            if parameter["in"] != "body":
                # The key is optional but is what makes a retried send go out once: shown with the fields.
                wanted = parameter["required"] or parameter["name"] == "Idempotency-Key"
                expected = "important" if wanted else "advanced"
                assert parameter["x-ms-visibility"] == expected, parameter["name"]


def _png(path: Path) -> tuple[int, int, int, bytes]:
    """Width, height, colour type and the first pixel's RGB of an 8-bit PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert depth == 8
    chunks, offset = b"", 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"IDAT":
            chunks += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    pixels = zlib.decompress(chunks)
    channels = {2: 3, 6: 4}[colour]
    return width, height, colour, pixels[1 : 1 + channels][:3]  # after the first row's filter byte


def test_the_icon_is_an_opaque_230_pixel_png_on_the_brand_colour() -> None:
    icon = CONNECTOR / "icon.png"
    width, height, colour, corner = _png(icon)

    assert (width, height) == (230, 230)
    assert colour == 2, "no alpha channel: the background must not be transparent"
    assert icon.stat().st_size < 100 * 1024
    assert "#" + corner.hex().upper() == ICON_BRAND_COLOR.upper()
    assert corner != b"\xff\xff\xff", "the background must not be white"


def test_the_readme_has_the_certified_templates_required_sections() -> None:
    headings = re.findall(r"^##+ (.+)$", (CONNECTOR / "readme.md").read_text(), flags=re.MULTILINE)
    required = [
        "Prerequisites",
        "Supported Operations",
        "Obtaining Credentials",
        "Known Issues and Limitations",
        "Deployment Instructions",
    ]

    assert any(h.startswith("Publisher: ") for h in headings)
    assert [h for h in required if h not in headings] == []


def test_title_case_capitalises_words_but_small_ones_and_writes_id_in_capitals() -> None:
    assert title_case("graph request id") == "Graph Request ID"
    assert title_case("settings to fix") == "Settings to Fix"
