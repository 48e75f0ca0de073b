"""The product's main job on its built-in local default: one email through the real HTTP function.

Starts the Entra ID, Key Vault and Graph stand-ins, points the app settings at them, sends the seed
page's example message through the decorated ``send`` function, and prints what happened.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import azure.functions as func

from standins.cloud import SEED_EXAMPLE, LocalCloud


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit status 0 when the function answered 202 and Graph received the message."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--credential", choices=["secret", "certificate"], default="secret")
    parser.add_argument("--message", help="a JSON file with the email message (default: the seed's example)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    message = json.loads(Path(args.message).read_text(encoding="utf-8")) if args.message else SEED_EXAMPLE

    with LocalCloud() as cloud:
        cloud.apply(args.credential)
        import function_app  # after the settings are in place, as in a Function App

        send = next(f for f in function_app.app.get_functions() if f.get_function_name() == "send")
        request = func.HttpRequest("POST", "/api/send", body=json.dumps(message).encode(), headers={}, params={})
        response = send.get_user_function()(request)

        print(f"Local stand-ins: Entra ID {cloud.entra.url}, Key Vault {cloud.vault.url}, Graph {cloud.graph.url}")
        print(f"Credential: {args.credential} from Key Vault\n")
        print(f"POST /api/send -> HTTP {response.status_code}")
        print(json.dumps(json.loads(response.get_body()), indent=2))
        print("\nWhat Graph received:")
        for sent in cloud.graph.sent:
            print(f"POST /v1.0/users/{sent.mailbox}/sendMail (app {sent.app_id})")
            print(json.dumps({"message": sent.message, "saveToSentItems": sent.save_to_sent_items}, indent=2))
        print(
            f"\nToken requests: {sum(cloud.entra.token_requests.values())}, "
            f"Key Vault reads: {sum(cloud.vault.reads.values())}, Graph requests: {sum(cloud.graph.requests.values())}"
        )
        return 0 if response.status_code == 202 and cloud.graph.sent else 1


if __name__ == "__main__":
    sys.exit(main())
