"""The sender policy document: its rules, its default, and the one-line errors a bad document gets. No I/O."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from m365send.callers import DEFAULT_CALLER, entra_caller, key_caller, key_digest, queue_caller
from m365send.errors import ConfigurationInvalid, SenderNotAllowed
from m365send.parsing import parse_send_request
from m365send.policy import SenderPolicy
from m365send.settings import load_settings
from tests.conftest import fresh_python

APP = str(uuid.uuid4())
BASE = {
    "M365_TENANT_ID": "t",
    "M365_CLIENT_ID": "c",
    "KEY_VAULT_URL": "https://kv.vault.azure.net",
    "M365_CLIENT_SECRET_NAME": "s",
    "M365_SENDER": "notifications@contoso.com",
}


def request(sender: str, mailbox: str | None = None, on_behalf_of: str | None = None) -> Any:
    message: dict[str, Any] = {"To": [{"Address": "a@example.org"}], "From": {"Address": sender}, "Subject": "s"}
    if on_behalf_of:
        message["OnBehalfOf"] = {"Address": on_behalf_of}
    return parse_send_request(message, sender=mailbox)


def policy(document: dict[str, Any] | None = None, **lists: Any) -> SenderPolicy:
    return SenderPolicy.parse(
        json.dumps(document) if document is not None else None, default_sender="notifications@contoso.com", **lists
    )


def test_without_a_document_everyone_has_todays_allow_lists() -> None:
    rules = policy(allowed_senders=["ops@contoso.com"], on_behalf_of=[("ops@contoso.com", "boss@contoso.com")])

    assert rules.check(DEFAULT_CALLER, request("ops@contoso.com", "ops@contoso.com", "boss@contoso.com")) == (
        "ops@contoso.com"
    )
    assert rules.check(DEFAULT_CALLER, request("notifications@contoso.com")) == "notifications@contoso.com"


def test_the_document_can_give_its_own_default_rule() -> None:
    rules = policy({"default": {"senders": ["alerts@contoso.com"]}}, allowed_senders=["ops@contoso.com"])

    with pytest.raises(SenderNotAllowed):
        rules.check(DEFAULT_CALLER, request("ops@contoso.com", "ops@contoso.com"))
    assert rules.check(DEFAULT_CALLER, request("alerts@contoso.com", "alerts@contoso.com")) == "alerts@contoso.com"


def test_a_caller_named_by_several_rules_has_all_their_senders() -> None:
    rules = policy(
        {
            "callers": [
                {"name": "by role", "role": "A", "senders": ["a@contoso.com"]},
                {"name": "by id", "objectId": APP, "senders": ["b@contoso.com"]},
            ]
        }
    )
    caller = entra_caller("app", APP, frozenset({"A"}))

    grant = rules.grant_for(caller)

    assert grant is not None
    assert grant.senders == {"a@contoso.com", "b@contoso.com"}
    assert grant.rules == ("by role", "by id")


def test_addresses_compare_without_ascii_case() -> None:
    rules = policy({"callers": [{"name": "r", "objectId": APP, "senders": ["Payroll@Contoso.com"]}]})

    assert rules.check(entra_caller("app", APP, frozenset()), request("PAYROLL@contoso.com", "payroll@contoso.com"))


def test_a_role_rule_never_names_a_key_or_queue_caller() -> None:
    rules = policy({"callers": [{"name": "r", "queue": "billing-outbox", "senders": ["b@contoso.com"]}]})

    assert rules.grant_for(queue_caller("other-outbox", main=False)) == rules.default
    assert rules.grant_for(queue_caller("billing-outbox", main=False)).senders == {"b@contoso.com"}  # type: ignore[union-attr]


def test_a_key_is_named_by_its_digest_never_by_its_value() -> None:
    named = key_caller("s3cret-key", {"flow": key_digest("s3cret-key")})

    assert named is not None
    assert (named.kind, named.id, named.owner) == ("key", "flow", "key.flow")
    assert key_caller("another-key", {"flow": key_digest("s3cret-key")}) is None
    assert key_caller(None, {"flow": key_digest("s3cret-key")}) is None


def test_the_main_queue_keeps_the_default_key_namespace_and_others_get_their_own() -> None:
    assert queue_caller("email-outbox", main=True).owner == ""
    assert queue_caller("billing-outbox", main=False).owner == "queue.billing-outbox"


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ("{not json", "M365_SENDER_POLICY is not JSON (line 1, column 2"),
        ({"callers": [{"name": "r", "senders": []}]}, "must name exactly one of role, objectId, key or queue"),
        ({"callers": [{"name": "r", "role": "A", "key": "k", "senders": []}]}, "exactly one of"),
        ({"callers": [{"name": "r", "objectId": "not-a-guid", "senders": []}]}, "is not an Entra object id"),
        ({"callers": [{"name": "r", "key": "flow", "senders": []}]}, "names key 'flow', which functionKeys does not"),
        ({"functionKeys": {"flow": "the-key-itself"}}, "must be given as the SHA-256 of the key"),
        ({"callers": [{"name": "r", "role": "A", "senders": ["nobody"]}]}, "'nobody' is not a mailbox address"),
        ({"callers": [{"name": "r", "role": "A", "onBehalfOf": ["a@b.c"]}]}, "'a@b.c' is not delegate>principal"),
        ({"rules": []}, "rules: Extra inputs are not permitted"),
    ],
    ids=["json", "no-matcher", "two-matchers", "object-id", "unknown-key", "plain-key", "sender", "pair", "extra"],
)
def test_a_bad_policy_is_one_line_naming_the_setting(document: Any, says: str) -> None:
    text = document if isinstance(document, str) else json.dumps(document)

    with pytest.raises(ConfigurationInvalid) as refused:
        load_settings({**BASE, "M365_SENDER_POLICY": text})

    assert refused.value.settings == ("M365_SENDER_POLICY",)
    assert says in refused.value.detail
    assert "\n" not in refused.value.detail
    assert "the-key-itself" not in refused.value.detail


def test_the_api_audience_is_an_application_id_uri_or_a_client_id() -> None:
    settings = load_settings({**BASE, "M365_API_AUDIENCE": f"api://m365send, {APP}"})

    assert settings.api_audience == {"api://m365send", APP}
    with pytest.raises(ConfigurationInvalid, match="M365_API_AUDIENCE 'm365send' is neither"):
        load_settings({**BASE, "M365_API_AUDIENCE": "m365send"})


def test_an_extra_outbox_queue_may_not_be_the_main_queue() -> None:
    with pytest.raises(ConfigurationInvalid, match="M365_OUTBOX_QUEUES must not name the main outbox queue"):
        load_settings({**BASE, "M365_OUTBOX_QUEUES": "email-outbox"})


def test_without_a_policy_document_no_policy_validator_is_built() -> None:
    # Most deployments have none: a new instance's first send should not build the document's models.
    probe = (
        "from m365send.policy import PolicyDocument, Rule, SenderPolicy\n"
        "policy = SenderPolicy.parse(None, default_sender='notifications@contoso.com')\n"
        "print(PolicyDocument.__pydantic_complete__, Rule.__pydantic_complete__, sorted(policy.default.senders))\n"
    )
    assert fresh_python(probe) == "False False ['notifications@contoso.com']"
