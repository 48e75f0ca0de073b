"""The product's main job on its built-in local default: one email through the real HTTP function.

Starts the Entra ID, Key Vault, managed identity and Graph stand-ins, points the app settings at them,
sends the seed page's example message through the decorated ``send`` function, and prints what
happened. ``--credential`` picks how the app registration authenticates: a client secret or a
certificate from Key Vault, or ``federated``: its trust in the app's managed identity (no secret). With
``--attach-blob-mb N`` it also starts Azurite, uploads an N MB blob and attaches it by reference:
over 4 MB, that goes through a draft and an upload session.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import azure.functions as func

from standins.azurite import Azurite
from standins.cloud import SEED_EXAMPLE, LocalCloud


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit status 0 when the function answered 202 and Graph received the message."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--credential",
        choices=["secret", "certificate", "federated"],
        default="secret",
        help="client secret or certificate from Key Vault, or federated: the managed identity's token (no secret)",
    )
    parser.add_argument("--message", help="a JSON file with the email message (default: the seed's example)")
    parser.add_argument(
        "--attach-blob-mb", type=int, metavar="N", help="also attach an N MB blob from Azurite (by reference)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    message: Any = SEED_EXAMPLE
    if args.message:
        try:
            message = json.loads(Path(args.message).read_text(encoding="utf-8"))
        except OSError as exc:
            print(f"error: cannot read --message {args.message}: {exc.strerror}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"error: --message {args.message} is not JSON: {exc}", file=sys.stderr)
            return 2

    with LocalCloud() as cloud, contextlib.ExitStack() as stack:
        cloud.apply(args.credential)
        blob_sha256 = None
        if args.attach_blob_mb:
            message, blob_sha256 = _with_blob(message, args.attach_blob_mb, stack.enter_context(_azurite()))
        import function_app  # after the settings are in place, as in a Function App

        send = next(f for f in function_app.app.get_functions() if f.get_function_name() == "send")
        request = func.HttpRequest("POST", "/api/send", body=json.dumps(message).encode(), headers={}, params={})
        response = send.get_user_function()(request)

        print(f"Local stand-ins: Entra ID {cloud.entra.url}, Key Vault {cloud.vault.url}, Graph {cloud.graph.url}")
        print(f"Credential: {_CREDENTIAL[args.credential]}\n")
        print(f"POST /api/send -> HTTP {response.status_code}")
        print(json.dumps(json.loads(response.get_body()), indent=2))
        print("\nWhat Graph received:")
        if not cloud.graph.sent:
            print("nothing: the function refused the message before any request to Graph (see its answer above)")
        for sent in cloud.graph.sent:
            if sent.via_draft:
                print(f"a draft in {sent.mailbox} (app {sent.app_id}), then POST .../messages/{{id}}/send")
                print(json.dumps(sent.message, indent=2))
                for attachment in sent.attachments:
                    same = "matches the blob" if attachment.sha256() == blob_sha256 else "attached"
                    print(f"attachment {attachment.name}: {attachment.size:,} bytes, {same}")
                print(f"upload-session chunks: {len(cloud.graph.drafts.chunks)}")
                continue
            print(f"POST /v1.0/users/{sent.mailbox}/sendMail (app {sent.app_id})")
            print(json.dumps({"message": sent.message, "saveToSentItems": sent.save_to_sent_items}, indent=2))
        print(
            f"\nToken requests: {sum(cloud.entra.token_requests.values())}, "
            f"managed identity token requests: {sum(cloud.identity.requests.values())}, "
            f"Key Vault reads: {sum(cloud.vault.reads.values())}, Graph requests: {sum(cloud.graph.requests.values())}"
        )
        print(
            "\nNext: ./scripts/local serves the API on http://localhost:7071 until Ctrl-C, with a mailbox page to "
            "see each email as its recipient would (README, 'Run it locally and call it')."
        )
        return 0 if response.status_code == 202 and cloud.graph.sent else 1


_CREDENTIAL = {
    "secret": "client secret from Key Vault",
    "certificate": "certificate (PFX) from Key Vault",
    "federated": "federated: the managed identity's token is the client assertion; no secret, no Key Vault read",
}


@contextlib.contextmanager
def _azurite() -> Any:
    azurite = Azurite()
    try:
        yield azurite
    finally:
        azurite.close()


def _with_blob(message: dict[str, Any], megabytes: int, azurite: Azurite) -> tuple[dict[str, Any], str]:
    """Upload a blob of random bytes, allow its container, and attach it to ``message`` by reference."""
    from azure.storage.blob import BlobServiceClient

    data = os.urandom(megabytes * 1024 * 1024)
    name = f"demo-{megabytes}MB.bin"
    container = BlobServiceClient.from_connection_string(azurite.connection_string).create_container("attachments")
    container.upload_blob(name, data)
    os.environ.update({"M365Storage": azurite.connection_string, "M365_ATTACHMENT_CONTAINERS": "attachments"})
    attachments = [*message.get("Attachments", []), {"Blob": f"attachments/{name}"}]
    return {**message, "Attachments": attachments}, hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
