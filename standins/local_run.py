"""Run m365send locally over real HTTP until Ctrl-C: ``./scripts/local`` (``python -m standins.local_run``).

Starts the Entra ID, Key Vault, managed identity and Graph stand-ins and Azurite, points the app settings at them,
serves the app's decorated HTTP functions on ``http://127.0.0.1:7071/api/...`` with a function key,
and runs the queue function over Azurite's outbox queue. It prints the key, the ``curl`` commands
and the settings for ``m365send enqueue``, then a line for each email the Graph stand-in receives.

This is not the Azure Functions host: it calls the same decorated functions the host would (in Azure,
or with Core Tools' ``func start``, the real host runs them), through ``standins.functions_host``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import socketserver
import sys
import threading
import time
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

ROOT = Path(__file__).resolve().parent.parent


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        print(f"  {self.command} {self.path.split('?')[0]} -> {args[1] if len(args) > 1 else ''}", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C (or until ``--seconds`` have passed, for tests)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071, as func start uses)")
    parser.add_argument("--key", help="the function key to require (default: a new random one)")
    parser.add_argument(
        "--env-file",
        type=Path,
        help="where to write the settings for m365send (default .local/env, .local/env-PORT for another --port)",
    )
    parser.add_argument(
        "--credential",
        choices=["secret", "certificate", "federated"],
        default="secret",
        help="how the app registration authenticates (federated: the managed identity's token, no secret)",
    )
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Ctrl-C stops it even when started from a shell that ignores SIGINT in the background; so does SIGTERM.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    print("Starting the Entra ID, Key Vault and Graph stand-ins and Azurite ...", flush=True)
    from standins.azurite import Azurite
    from standins.cloud import LocalCloud

    with LocalCloud() as cloud:
        azurite = Azurite()
        try:
            return _serve(cloud, azurite, args)
        finally:
            azurite.close()


def _storage_view(worker: Any) -> Any:
    """The local storage as the mailbox page shows it, read through the app's own adapters."""
    from standins.mailbox import StorageView

    return StorageView(
        records=lambda: worker.sends().recent(limit=200),
        dead_letters=lambda: worker.storage().dead_letters.list(limit=200),
        poison=lambda: worker.storage().outbox.poison().peek(limit=32),
    )


def _serve(cloud: Any, azurite: Any, args: argparse.Namespace) -> int:
    cloud.apply(args.credential)
    os.environ.update({"M365Storage": azurite.connection_string})
    import function_app
    from standins.functions_host import FunctionsHttpHost
    from standins.mailbox import PREFIX, MailboxPage
    from standins.queue_host import QueueHost

    functions = {str(f.get_function_name()): f for f in function_app.app.get_functions()}
    host = FunctionsHttpHost(functions.values(), key=args.key)
    mailbox = MailboxPage(cloud.graph, lambda: _storage_view(function_app.current_worker()))

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = str(environ.get("PATH_INFO") or "")
        if path == PREFIX or path.startswith(f"{PREFIX}/"):
            return mailbox(environ, start_response)
        return host(environ, start_response)

    try:
        server = make_server("127.0.0.1", args.port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); pass --port N", file=sys.stderr)
        return 2
    queue_name = os.environ.get("M365_QUEUE_NAME", "email-outbox")
    queue = QueueHost(azurite.connection_string, queue_name, function=functions["outbox"].get_user_function())
    stop = threading.Event()
    threads = [
        threading.Thread(target=server.serve_forever, name="http", daemon=True),
        threading.Thread(target=queue.serve, args=(stop,), kwargs={"parallel": 4}, name="queue", daemon=True),
    ]
    for thread in threads:
        thread.start()
    port = server.server_address[1]
    base = f"http://localhost:{port}/api"
    env_file: Path = args.env_file or ROOT / ".local" / ("env" if args.port == 7071 else f"env-{port}")
    env_file.parent.mkdir(parents=True, exist_ok=True)
    # Everything the app reads, so `m365send` in another terminal works against the same stand-ins. The
    # test CA goes in a variable of m365send's own: the standard TLS variables would replace the
    # system's CAs for every other tool in that shell (az, azd, pip).
    local = cloud.env(args.credential)
    settings = {
        **{k: v for k, v in local.items() if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")},
        "M365SEND_LOCAL_CA_BUNDLE": str(cloud.ca_bundle),
        "M365Storage": azurite.connection_string,
        "M365_QUEUE_NAME": queue_name,
    }
    env_file.write_text(
        f"# m365send's local run on port {port}: `source` it for the m365send command; removed when the run stops.\n"
        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in settings.items())
    )
    shown = env_file.relative_to(ROOT) if env_file.is_relative_to(ROOT) else env_file
    example = shlex.quote(
        json.dumps({"To": "someone@fabrikam.com", "From": {"Address": cloud.mailbox.upn}, "Subject": "Hello"})
    )
    print(
        f"""
m365send is running locally (the app's own functions, served by standins/functions_host.py).
  Function key:  {host.key}
  API:           {base}/send  {base}/validate  {base}/messages/<key>  {base}/health  {base}/openapi.json
  Mailbox page:  http://localhost:{port}{PREFIX}  (every email, as its recipient would see it)
  Mailbox:       {cloud.mailbox.upn} (the Graph stand-in; it records, nothing leaves this machine)
  Credential:    {args.credential}

Try, in another terminal:
  curl -s {base}/health
  curl -s -X POST "{base}/send?code={host.key}" -H 'Content-Type: application/json' -d {example}
  curl -s -X POST "{base}/validate?code={host.key}" -H 'Content-Type: application/json' -d '{{"To":[]}}'
  source {shown} && .venv/bin/m365send enqueue --to someone@fabrikam.com --subject Queued --body Hi
  (then watch this terminal: the queue function sends it within a few seconds)
  source {shown} && .venv/bin/m365send status <the key enqueue printed>

Power Automate: import {base}/openapi.json (or the connector/ folder) as a custom connector; a
cloud flow cannot reach localhost, so point it at a tunnel (e.g. dev tunnels) or at Azure.

Ctrl-C stops everything.
""",
        flush=True,
    )
    seen = 0
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
            for mail in cloud.graph.sent[seen:]:
                to = ", ".join(r["emailAddress"]["address"] for r in mail.message.get("toRecipients", []))
                print(f"  Graph stand-in: {mail.mailbox} sent '{mail.message.get('subject', '')}' to {to}", flush=True)
            seen = len(cloud.graph.sent)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        env_file.unlink(missing_ok=True)  # its CA and ports die with this run
    return 0


if __name__ == "__main__":
    sys.exit(main())
