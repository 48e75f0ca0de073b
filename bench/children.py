"""What each measured fresh process does: ``python -m bench.children MODE [N]``; prints one JSON line.

Modes: ``import-functions`` (import azure.functions only), ``index`` (import function_app and index
its functions), ``first-send`` / ``first-send-sdk`` / ``first-send-floor`` (a fresh process's first
email: Key Vault read, token, sendMail; the floor is the mandated libraries alone; ``first-send-keyed``
sends it with an Idempotency-Key, so with its send record; ``first-send-floor-validated`` is the floor
plus the mandated pydantic validating the message), ``start`` (the interpreter and this module
alone, what every fresh process pays), ``cpu`` /
``cpu-sdk`` / ``cpu-floor`` (CPU time per send on a warm client, N sends).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from standins.examples import SEED_EXAMPLE

TEN_KB_BODY = "Lorem ipsum dolor sit amet. " * 366  # about 10 KB of text


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


_INDEXED: dict[str, Any] = {}


def _ours(reindex: bool = True, keyed: bool = False) -> Callable[[dict[str, Any]], None]:
    import azure.functions as func

    import function_app

    if reindex or not _INDEXED:  # the host indexes an app once: a second get_functions() refuses
        _INDEXED.update({str(f.get_function_name()): f for f in function_app.app.get_functions()})
    send = _INDEXED["send"].get_user_function()

    encoded: dict[int, bytes] = {}

    def post(message: dict[str, Any]) -> None:
        # The caller's own JSON encoding is not m365send's cost: encode each message once.
        body = encoded.setdefault(id(message), json.dumps(message).encode())
        headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
        response = send(func.HttpRequest("POST", "/api/send", body=body, headers=headers, params={}))
        if response.status_code != 202:
            raise RuntimeError(response.get_body().decode())

    return post


def _sdk() -> Callable[[dict[str, Any]], None]:
    """The same send with msgraph-sdk: secret from Key Vault, ClientSecretCredential, GraphServiceClient."""
    from azure.identity import DefaultAzureCredential
    from azure.identity.aio import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.importance import Importance
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.message import Message
    from msgraph.generated.models.recipient import Recipient
    from msgraph.generated.users.item.send_mail.send_mail_post_request_body import SendMailPostRequestBody

    env = os.environ
    authority = env["M365_AUTHORITY_HOST"]
    vault = SecretClient(
        vault_url=env["KEY_VAULT_URL"],
        credential=DefaultAzureCredential(authority=authority, disable_instance_discovery=True),
        verify_challenge_resource=False,
    )
    secret = vault.get_secret(env["M365_CLIENT_SECRET_NAME"]).value or ""
    graph_base = env["GRAPH_BASE_URL"]
    graph_origin = graph_base.removesuffix("/v1.0")
    loop = asyncio.new_event_loop()
    credential = ClientSecretCredential(
        env["M365_TENANT_ID"], env["M365_CLIENT_ID"], secret, authority=authority, disable_instance_discovery=True
    )
    provider = AzureIdentityAuthenticationProvider(
        credential, scopes=[f"{graph_origin}/.default"], allowed_hosts=[urlsplit(graph_origin).hostname or ""]
    )
    adapter = GraphRequestAdapter(provider)
    adapter.base_url = graph_base
    client = GraphServiceClient(request_adapter=adapter)
    atexit.register(lambda: loop.run_until_complete(credential.close()))

    def post(message: dict[str, Any]) -> None:
        body = SendMailPostRequestBody(
            message=Message(
                subject=message["Subject"],
                importance=Importance.Normal,
                body=ItemBody(content_type=BodyType.Text, content=message["Body"]),
                from_=Recipient(email_address=EmailAddress(address=message["From"]["Address"])),
                to_recipients=[Recipient(email_address=EmailAddress(address=a["Address"])) for a in message["To"]],
            ),
            save_to_sent_items=True,
        )
        loop.run_until_complete(client.users.by_user_id(env["M365_SENDER"]).send_mail.post(body))

    return post


def _floor() -> Callable[[dict[str, Any]], None]:
    """The least any client of this design does: the mandated libraries and round trips, nothing else.

    azure-identity + azure-keyvault-secrets read the secret, msal gets the Graph token, httpx posts
    a ``sendMail`` body built by hand: no trigger, no validation, no error handling, no telemetry.
    """
    import httpx
    import msal
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    env = os.environ
    authority = env["M365_AUTHORITY_HOST"]
    origin = env["GRAPH_BASE_URL"].removesuffix("/v1.0")
    http = httpx.Client()
    state: dict[str, Any] = {}

    def post(message: dict[str, Any]) -> None:
        if "app" not in state:
            vault = SecretClient(
                vault_url=env["KEY_VAULT_URL"],
                credential=DefaultAzureCredential(authority=authority, disable_instance_discovery=True),
                verify_challenge_resource=False,
            )
            secret = vault.get_secret(env["M365_CLIENT_SECRET_NAME"]).value
            state["app"] = msal.ConfidentialClientApplication(
                env["M365_CLIENT_ID"],
                client_credential=secret,
                authority=f"{authority}/{env['M365_TENANT_ID']}",
                instance_discovery=False,
            )
        token = state["app"].acquire_token_for_client([f"{origin}/.default"])["access_token"]
        body = {
            "message": {
                "subject": message["Subject"],
                "body": {"contentType": "text", "content": message["Body"]},
                "toRecipients": [{"emailAddress": {"address": a["Address"]}} for a in message["To"]],
                "from": {"emailAddress": {"address": message["From"]["Address"]}},
            }
        }
        response = http.post(
            f"{env['GRAPH_BASE_URL']}/users/{env['M365_SENDER']}/sendMail",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code != 202:
            raise RuntimeError(response.text)

    return post


def _floor_validated() -> Callable[[dict[str, Any]], None]:
    """The floor plus the other mandated library: pydantic v2 validates the message first."""
    from pydantic import BaseModel, Field

    class Address(BaseModel):
        address: str = Field(alias="Address", min_length=3, max_length=254, pattern="@")

    class Message(BaseModel):
        subject: str = Field(alias="Subject", max_length=255)
        body: str = Field(alias="Body")
        to: list[Address] = Field(alias="To", min_length=1, max_length=500)
        sender: Address = Field(alias="From")

    post = _floor()

    def send(message: dict[str, Any]) -> None:
        Message.model_validate(message)
        post(message)

    return send


def _after_warmup() -> dict[str, Any]:
    """A new instance the host warmed up: the warm-up, then the first send, then warm sends, each timed."""
    from azure.functions.warmup import WarmUpContext

    import function_app

    _INDEXED.update({str(f.get_function_name()): f for f in function_app.app.get_functions()})
    warmup = _INDEXED["warmup"]
    started = time.perf_counter()
    warmup.get_user_function()(WarmUpContext())
    warmed = time.perf_counter()
    post = _ours(reindex=False)
    post(SEED_EXAMPLE)
    first = time.perf_counter()
    warm = []
    for _ in range(21):
        begin = time.perf_counter()
        post(SEED_EXAMPLE)
        warm.append((time.perf_counter() - begin) * 1000)
    return {
        "rss_mb": _rss_mb(),
        "warmup_ms": (warmed - started) * 1000,
        "first_after_warmup_ms": (first - warmed) * 1000,
        "warm_send_ms": sorted(warm)[len(warm) // 2],
    }


def main(mode: str, count: int) -> dict[str, Any]:
    """Run one mode; the parent measures the process's wall time around it."""
    if mode == "import-functions":
        import azure.functions  # noqa: F401

        return {"rss_mb": _rss_mb()}
    if mode == "index":
        import function_app

        return {"functions": len(function_app.app.get_functions()), "rss_mb": _rss_mb()}
    if mode == "start":
        return {"rss_mb": _rss_mb()}
    if mode == "first-send-warmup":
        return _after_warmup()
    started = time.perf_counter()
    client = (
        _sdk()
        if mode.endswith("-sdk")
        else _floor()
        if mode.endswith("-floor")
        else _floor_validated()
        if mode.endswith("-floor-validated")
        else _ours(keyed=mode.endswith("-keyed"))
    )
    ready = time.perf_counter()
    if mode.startswith("first-send"):
        client(SEED_EXAMPLE)
        done = time.perf_counter()
        # setup: imports and client construction (the SDK's includes its Key Vault read);
        # first call: everything else up to Graph's 202.
        return {"rss_mb": _rss_mb(), "setup_ms": (ready - started) * 1000, "first_call_ms": (done - ready) * 1000}
    message = {**SEED_EXAMPLE, "Body": TEN_KB_BODY}
    for _ in range(50):  # warm: token cached, connections open, code paths loaded
        client(message)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    for _ in range(count):
        client(message)
    cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
    return {"cpu_ms_per_send": cpu / count * 1000, "wall_ms_per_send": wall / count * 1000, "rss_mb": _rss_mb()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)))
