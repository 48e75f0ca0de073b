"""The ``m365send`` command (also ``python -m m365send``): send, check, enqueue, deadletters.

It reads the same app settings as the Function App, from the environment. Exit status: 0 done,
1 failed (the problem is printed; ``--json`` prints it as JSON), 2 wrong usage.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import mimetypes
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from m365send.addresses import fold_address
from m365send.answers import problem
from m365send.attachments import chunk_ranges
from m365send.callers import queue_caller
from m365send.envelope import key_of, replayable
from m365send.errors import ConfigurationInvalid, M365SendError, SenderNotAllowed, outcome_of
from m365send.federated import FederatedTrust, ManagedIdentityAssertion
from m365send.graph_message import attachment_item, file_attachment, graph_message, send_mail_body
from m365send.http_api import handle_status
from m365send.message import SendRequest
from m365send.parsing import parse_send_request
from m365send.scheduling import is_ahead, schedule
from m365send.sendlog import Scope, SendStatus, letter_queue, scoped_key
from m365send.sendonce import Failed, Scheduled, SendCommand, Sent, schedule_problem
from m365send.service import SendPlan
from m365send.settings import Settings
from m365send.tables import DeadLetter
from m365send.wiring import Parts, Storage, Worker, build_parts, build_service

__all__ = ["main"]


def _summary(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "recordedAt": letter.recorded_at.isoformat(),
        "kind": letter.kind,
        "key": letter.key,
        "reason": letter.reason,
    }


def _list(worker: Worker, args: argparse.Namespace) -> int:
    storage = worker.storage()
    letters = storage.dead_letters.list(limit=args.limit)
    if args.json:
        print(json.dumps([_summary(letter) for letter in letters], indent=2))
        return 0
    if not letters:
        print("no dead letters")
        return 0
    width = max(len(letter.id) for letter in letters)
    print(f"{'ID':<{width}}  {'RECORDED (UTC)':<19}  {'KIND':<9}  KEY  REASON")
    for letter in letters:
        recorded = f"{letter.recorded_at:%Y-%m-%d %H:%M:%S}"
        print(f"{letter.id:<{width}}  {recorded:<19}  {letter.kind:<9}  {letter.key}  {letter.reason}")
    return 0


def _show(worker: Worker, args: argparse.Namespace) -> int:
    storage = worker.storage()
    letter = storage.dead_letters.get(args.id)
    if letter is None:
        print(f"no dead letter {args.id}", file=sys.stderr)
        return 1
    # The payload is the caller's message: shown to the operator who asked, never logged.
    print(
        json.dumps(
            {**_summary(letter), "problem": letter.problem, "payload": letter.payload.decode(errors="replace")},
            indent=2,
        )
    )
    return 0


def _replay_one(storage: Storage, letter: DeadLetter, force: bool) -> str | None:
    """Re-enqueue one dead letter; returns why it was not replayed, or None."""
    if letter.kind == "conflict":
        return "its key was already used for a different message; enqueue it again under a new id"
    queue, caller_key = letter_queue(letter.key)
    key = scoped_key(Scope.QUEUE, caller_key, queue_caller(queue, main=False).owner if queue else "")
    record = storage.sends.get(key)
    if record is not None and record.status is SendStatus.SENT:
        if not force:
            return "its key is recorded as sent; --force would send it again"
        storage.sends.forget(key)
    elif record is not None and record.status is SendStatus.FAILED:
        storage.sends.forget(key)  # the cause is fixed: let the key be sent
    # An unknown outcome keeps its record: the engine decides on it (verified delivery asks the mailbox).
    # Back to the queue it came from: a producer queue's rule, not the main queue's, decides on it.
    storage.queue(queue).requeue(replayable(letter.payload, key=caller_key), delay=0)
    storage.dead_letters.remove(letter.id)
    return None


def _replay(worker: Worker, args: argparse.Namespace) -> int:
    storage = worker.storage()
    letters = storage.dead_letters.list(limit=10_000) if args.all else [storage.dead_letters.get(args.id)]
    failed = 0
    for letter in letters:
        if letter is None:
            print(f"no dead letter {args.id}", file=sys.stderr)
            return 1
        why = _replay_one(storage, letter, args.force)
        if why:
            failed += 1
            print(f"{letter.id}: not replayed: {why}", file=sys.stderr)
        else:
            print(f"{letter.id}: re-enqueued (key {letter.key})")
    return 1 if failed else 0


def _poison_list(worker: Worker, args: argparse.Namespace) -> int:
    poison = worker.storage().outbox.poison()
    messages = poison.peek(limit=args.limit)
    rows = [
        {
            "id": m.id,
            "insertedOn": m.inserted_on.isoformat() if m.inserted_on else None,
            "dequeueCount": m.dequeue_count,
            "key": key_of(m.body, queue_message_id=m.id),
            "bytes": len(m.body),
        }
        for m in messages
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no messages on {poison.queue_name}")
    if rows and not args.json:
        width = max(len(str(row["id"])) for row in rows)
        print(f"{'ID':<{width}}  {'INSERTED (UTC)':<32}  KEY  (SIZE)")
        for row in rows:
            print(f"{row['id']:<{width}}  {row['insertedOn'] or '':<32}  {row['key']}  ({row['bytes']:,} bytes)")
    return 0


def _poison_replay(worker: Worker, args: argparse.Namespace) -> int:
    storage = worker.storage()
    poison = storage.outbox.poison()

    def fresh(body: bytes) -> bytes:
        # The key survives (a bare message's was its first queue id); the attempt count starts again.
        return replayable(body, key=key_of(body, queue_message_id=str(uuid.uuid4())))

    moved = poison.move_to(storage.outbox, body_for=fresh, only=None if args.all else args.id)
    print(f"re-enqueued {moved} message(s) from {poison.queue_name} on {storage.outbox.queue_name}")
    return 0 if moved or args.all else 1


# --- messages from files or flags ------------------------------------------------------------------


class UsageError(Exception):
    """A mistake in the command line or its files: one line on standard error, exit 2."""


def _read(path: str, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror or type(exc).__name__}") from None


def _message(args: argparse.Namespace, default_from: Callable[[], str]) -> dict[str, Any]:
    message = _message_from(args, default_from)
    if args.send_at:
        message = {**message, "SendAt": args.send_at}
    return message


def _message_from(args: argparse.Namespace, default_from: Callable[[], str]) -> dict[str, Any]:
    if args.file:
        raw = _read(args.file, "message file")
        try:
            loaded = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            reason = str(exc).splitlines()[0] if isinstance(exc, ValueError) else "nested too deep"
            raise UsageError(f"the message file {args.file} is not JSON: {reason}") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"the message file {args.file} must hold a JSON object (the email message)")
        return loaded
    if not args.to:
        raise UsageError("give a message file, or at least --to (see --help)")
    attachments: list[dict[str, Any]] = [{"Blob": reference} for reference in args.attach_blob or []]
    for path in args.attach or []:
        data = _read(path, "attachment")
        attachments.append(
            {
                "Name": Path(path).name,
                "ContentBytes": base64.b64encode(data).decode(),
                "ContentType": mimetypes.guess_type(path)[0] or "application/octet-stream",
            }
        )
    message: dict[str, Any] = {
        "To": [{"Address": a} for a in args.to],
        "Cc": [{"Address": a} for a in args.cc or []],
        "Bcc": [{"Address": a} for a in args.bcc or []],
        "From": {"Address": args.from_ or default_from()},
        "Subject": args.subject or "",
        "Body": args.html if args.html is not None else (args.body or ""),
        "BodyFormat": "Html" if args.html is not None else "Text",
        "Priority": args.priority,
        "Attachments": attachments,
    }
    if args.reply_to:
        message["ReplyTo"] = [{"Address": a} for a in args.reply_to]
    if args.category:
        message["Categories"] = list(args.category)
    if args.header:
        message["Headers"] = dict(_header(h) for h in args.header)
    return message


def _header(given: str) -> tuple[str, str]:
    name, colon, value = given.partition(":")
    if not colon or not name.strip():
        raise UsageError(f"--header {given!r} must be NAME:VALUE, e.g. --header 'X-Ticket: INC-42'")
    return name.strip(), value.strip()


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _dry_run(plan: SendPlan, request: SendRequest, graph_base_url: str) -> dict[str, Any]:
    """The Graph request a send would make (or, for a draft, each step); file contents shown as their size."""
    users = f"{graph_base_url}/users/{plan.mailbox}"
    if plan.fits_one_request:
        files = [file_attachment(a, f"<{a.size:,} bytes>") for a in plan.attachments]
        return {"method": "POST", "url": f"{users}/sendMail", "body": send_mail_body(request.message, files)}
    steps: list[dict[str, Any]] = [
        {"method": "POST", "url": f"{users}/messages", "body": graph_message(request.message)}
    ]
    for a in plan.attachments:
        if a.needs_upload_session:
            steps.append(
                {
                    "method": "POST",
                    "url": f"{users}/messages/{{id}}/attachments/createUploadSession",
                    "body": attachment_item(a),
                    "chunks": len(list(chunk_ranges(a.size))),
                }
            )
        else:
            steps.append(
                {
                    "method": "POST",
                    "url": f"{users}/messages/{{id}}/attachments",
                    "body": file_attachment(a, f"<{a.size:,} bytes>"),
                }
            )
    steps.append({"method": "POST", "url": f"{users}/messages/{{id}}/send"})
    return {"draft": steps}


def _offline_settings(args: argparse.Namespace) -> Settings:
    """Settings for a dry run on a machine without the app settings: only the sending mailbox matters."""
    sender = os.environ.get("M365_SENDER") or args.sender or args.from_
    if not sender and args.file:
        given = _message(args, lambda: "").get("From") or {}
        sender = given.get("Address") if isinstance(given, dict) else None
    if not sender:
        raise UsageError("--dry-run without the app settings needs the sending mailbox: pass --sender or --from")
    # Nothing is contacted: the credential settings only have to be well-formed; the rest (allowed
    # senders, on-behalf-of pairs) still comes from the environment.
    dry_run = {
        "M365_TENANT_ID": "dry-run",
        "M365_CLIENT_ID": "dry-run",
        "KEY_VAULT_URL": "https://dry-run.invalid",
        "M365_CLIENT_SECRET_NAME": "dry-run",
        "M365_CERTIFICATE_NAME": "",
        "M365_CERTIFICATE_PASSWORD_NAME": "",
        "M365_FEDERATED_CLIENT_ID": "",
        "M365_SENDER": sender,
    }
    return Settings.model_validate({**os.environ, **dry_run})


def _dry_run_command(worker: Worker, args: argparse.Namespace) -> int:
    try:
        settings, service = worker.settings(), worker.service()
    except ConfigurationInvalid:
        settings = _offline_settings(args)
        service = build_service(settings)
    request = parse_send_request(_message(args, lambda: settings.sender), sender=args.sender)
    too_far = schedule_problem(request, datetime.now(UTC))
    if too_far is not None:
        raise too_far
    plan = _dry_run(service.plan(request), request, settings.graph_base_url)
    if is_ahead(request) and request.message.send_at is not None:
        when = request.message.send_at.isoformat().replace("+00:00", "Z")
        plan = {"scheduled": f"waits on the outbox queue until {when}, then sends this", **plan}
    print(json.dumps(plan, indent=2))
    return 0


def _send(worker: Worker, args: argparse.Namespace) -> int:
    if args.dry_run:
        return _dry_run_command(worker, args)
    settings = worker.settings()
    message = _message(args, lambda: settings.sender)
    request = parse_send_request(message, sender=args.sender)
    if is_ahead(request):
        key = args.key or request.request_id
        outcome = schedule(request, message, key=key, engine=worker.engine(), outbox=worker.storage().outbox)
    else:
        outcome = worker.engine(args.key is not None).handle(SendCommand(request, Scope.HTTP, args.key))
    if isinstance(outcome, Failed):
        raise outcome.error
    if isinstance(outcome, Scheduled):
        _print(args, outcome.answer().body, f"scheduled for {outcome.send_at:%Y-%m-%d %H:%M:%S} UTC as {outcome.key}")
        return 0
    if not isinstance(outcome, Sent):
        print(f"already {outcome.status.value} under key {args.key}: not sent again", file=sys.stderr)
        _print(args, outcome.stored["body"], json.dumps(outcome.stored["body"]))
        return 0 if outcome.status is SendStatus.SENT else 1
    _print(
        args,
        outcome.answer().body,
        f"sent as {outcome.mailbox} (request id {request.request_id})"
        + (" - possibly a duplicate" if outcome.possible_duplicate else "")
        + (f"; warning: {outcome.warning}" if outcome.warning else ""),
    )
    return 0


def _enqueue(worker: Worker, args: argparse.Namespace) -> int:
    settings = worker.settings()
    message = _message(args, lambda: settings.sender)
    outbox = worker.storage().outbox
    if args.create_queue:
        outbox.create_queue()
    key = outbox.enqueue(message, key=args.key, sender=args.sender)
    _print(
        args,
        {"status": "enqueued", "key": key, "queue": settings.queue_name},
        f"enqueued on {settings.queue_name} as {key}",
    )
    return 0


def _status(worker: Worker, args: argparse.Namespace) -> int:
    result = handle_status(args.key, via=args.via, book=worker.status)
    body = result.body
    if args.json:
        print(json.dumps(body, indent=2))
        return 0 if result.status == 200 else 1
    if result.status != 200:
        print(f"error: {body.get('detail', body.get('title'))}", file=sys.stderr)
        if "M365_TENANT_ID" in (body.get("settings") or ()):
            print(f"  hint: {_SETTINGS_HINT}", file=sys.stderr)
        return 1
    lines = [f"{body['idempotencyKey']} ({body['via']}): {body['status']} - {body['detail']}"]
    for name, label in (
        ("sendAt", "send at"),
        ("firstSeen", "first seen"),
        ("updated", "updated"),
        ("attempts", "attempts"),
        ("graphRequestId", "Graph request id"),
        ("internetMessageId", "Message-ID"),
    ):
        if name in body:
            lines.append(f"  {label}: {body[name]}")
    if body.get("possibleDuplicate"):
        lines.append("  possibly a duplicate: an earlier attempt's outcome was unknown")
    print("\n".join(lines))
    return 0


# --- check -----------------------------------------------------------------------------------------

_FIXES = {
    "configuration": "set the app settings named above (see docs/settings.md)",
    "credential": "check the secret or certificate in Key Vault and the app registration (docs/deploy.md, step 4b)",
    "dependency-unavailable": "the service is unreachable from here: check the network, then try again",
    "sender-not-allowed": "add the mailbox to M365_ALLOWED_SENDERS",
}
_IDENTITY_FIX = (
    "give the Function App the user-assigned identity that M365_FEDERATED_CLIENT_ID names "
    "(docs/deploy.md, federated credential)"
)

Step = Callable[..., bool]


def _check_federated(settings: Settings, assertion: ManagedIdentityAssertion, parts: Parts, step: Step) -> bool:
    """The federated trust, step by step: the identity's token, then Entra ID's exchange of it."""
    trust: FederatedTrust | None = None

    def identity() -> str:
        nonlocal trust
        trust = assertion.trust()
        return trust.identity_step()

    if not step("managed identity", identity, fix=_IDENTITY_FIX) or trust is None:
        return False
    needed = trust.credential(settings.client_id)
    fix = f"add {needed} (docs/deploy.md, federated credential)"
    return step(
        "token", lambda: (parts.tokens.token(), f"Graph token obtained: Entra ID accepted {needed}")[1], fix=fix
    )


def _check(worker: Worker, args: argparse.Namespace) -> int:
    steps: list[dict[str, Any]] = []

    def step(name: str, run: Callable[[], str], *, fix: str | None = None) -> bool:
        try:
            detail = run()
        except M365SendError as error:
            slug = outcome_of(error).slug
            found = fix if fix and slug == "credential" else _FIXES.get(slug, "")
            steps.append({"step": name, "ok": False, "detail": error.detail, "fix": found})
            return False
        warning = detail.startswith("warning: ")
        steps.append({"step": name, "ok": True, "warning": warning, "detail": detail.removeprefix("warning: ")})
        return True

    ok = step("settings", lambda: f"{len(worker.settings().model_fields_set)} settings read")
    if ok:
        settings = worker.settings()
        parts = build_parts(settings)

        def credential() -> str:
            current = parts.credential.current()
            if current.expires_on is None:
                return f"{current.kind} readable, no expiry date in Key Vault"
            left = current.expires_on - datetime.now(UTC)
            when = f"{current.kind} readable, expires {current.expires_on:%Y-%m-%d}"
            if left < timedelta(days=30):
                return f"warning: {when}, in {max(left.days, 0)} days: rotate it"
            return when

        if isinstance(parts.credential, ManagedIdentityAssertion):
            ok = _check_federated(settings, parts.credential, parts, step)
        else:
            ok = step("key vault", credential) and step(
                "token", lambda: (parts.tokens.token(), "Graph token obtained")[1]
            )
        sender = args.sender or settings.sender

        def allowed() -> str:
            if fold_address(sender) not in settings.senders:
                raise SenderNotAllowed(f"'{sender}' is not in M365_SENDER or M365_ALLOWED_SENDERS")
            return f"may send as {sender}"

        ok = step("sender", allowed) and ok
        policy = worker.policy()
        rules = policy.describe()
        ok = step("sender policy", lambda: f"{len(rules) - 1} caller rule(s) and the default rule; see below") and ok
        if settings.api_audience:

            def tokens() -> str:
                count = worker.bearer().key_count()
                return f"Entra ID tokens for {', '.join(sorted(settings.api_audience))}: {count} signing key(s) read"

            ok = step("api tokens", tokens) and ok
    else:
        rules = []
    for entry in steps:
        mark = "✓" if entry["ok"] else "✗"
        if args.json:
            continue
        note = " (!)" if entry.get("warning") else ""
        print(f"{mark} {entry['step']}: {entry['detail']}{note}")
        if not entry["ok"] and entry["fix"]:
            print(f"  fix: {entry['fix']}")
    if args.json:
        print(json.dumps({"ok": all(e["ok"] for e in steps), "steps": steps, "policy": rules}, indent=2))
    else:
        _print_policy(rules)
    return 0 if all(e["ok"] for e in steps) else 1


def _print_policy(rules: list[dict[str, Any]]) -> None:
    """The effective sender policy, one rule per paragraph."""
    if rules:
        print("\nsender policy (who may send as whom):")
    for rule in rules:
        print(f"  {rule['rule']}: {rule['callers']}")
        print(f"    senders: {', '.join(rule['senders']) or '(none)'}")
        if rule["onBehalfOf"]:
            print(f"    on behalf of: {', '.join(rule['onBehalfOf'])}")


def _message_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="a JSON file with the email message (- for standard input)")
    parser.add_argument("--to", action="append", metavar="ADDRESS", help="recipient (repeatable)")
    parser.add_argument("--cc", action="append", metavar="ADDRESS")
    parser.add_argument("--bcc", action="append", metavar="ADDRESS")
    parser.add_argument("--from", dest="from_", metavar="ADDRESS", help="From (default M365_SENDER)")
    parser.add_argument("--subject")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--body", help="a text body")
    body.add_argument("--html", help="an HTML body")
    parser.add_argument("--priority", choices=["Low", "Normal", "High"])
    parser.add_argument("--reply-to", action="append", metavar="ADDRESS", help="where replies go (repeatable)")
    parser.add_argument("--category", action="append", metavar="NAME", help="an Outlook category (repeatable)")
    parser.add_argument(
        "--header", action="append", metavar="NAME:VALUE", help="a custom x- internet header (repeatable, at most 5)"
    )
    parser.add_argument("--attach", action="append", metavar="FILE", help="attach a file (repeatable)")
    parser.add_argument(
        "--attach-blob",
        action="append",
        metavar="CONTAINER/PATH",
        help="attach a blob from a container in M365_ATTACHMENT_CONTAINERS (repeatable)",
    )
    parser.add_argument("--sender", help="mailbox to send as (default M365_SENDER)")
    parser.add_argument(
        "--send-at", metavar="TIME", help="send later, at this ISO 8601 time with its zone (2026-12-01T08:00:00Z)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m365send",
        description="Send email as a Microsoft 365 mailbox through Microsoft Graph, with the Function App's settings.",
        epilog="Exit status: 0 done, 1 failed, 2 wrong usage.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    send = commands.add_parser("send", help="send a message from a JSON file or from flags")
    _message_arguments(send)
    send.add_argument(
        "--dry-run", action="store_true", help="print the Graph request instead of sending (needs no credential)"
    )
    send.add_argument(
        "--key", help="idempotency key, shared with the HTTP API's Idempotency-Key (needs storage settings)"
    )
    send.set_defaults(run=_send)
    check = commands.add_parser("check", help="check settings, Key Vault, token and sender, step by step")
    check.add_argument("--sender", help="also check that this mailbox is allowed")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(run=_check)
    enqueue = commands.add_parser("enqueue", help="put a message on the outbox queue")
    _message_arguments(enqueue)
    enqueue.add_argument("--key", help="idempotency key (default: a new GUID)")
    enqueue.add_argument(
        "--create-queue", action="store_true", help="create the queue first if it does not exist (local storage)"
    )
    enqueue.set_defaults(run=_enqueue)
    status = commands.add_parser("status", help="what became of a send with an idempotency key")
    status.add_argument("key", help="the idempotency key (Idempotency-Key header, --key, or the envelope's id)")
    status.add_argument("--via", choices=["http", "queue"], help="only the sends that came this way")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)
    dead = commands.add_parser("deadletters", help="list, show and replay outbox messages that were set aside")
    actions = dead.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the newest dead letters")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_list)
    show = actions.add_parser("show", help="one dead letter with its problem and payload")
    show.add_argument("id")
    show.set_defaults(run=_show)
    replay = actions.add_parser("replay", help="enqueue dead letters again once the cause is fixed")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?")
    which.add_argument("--all", action="store_true")
    replay.add_argument("--force", action="store_true", help="replay even if the key is recorded as sent")
    replay.set_defaults(run=_replay)
    poison = commands.add_parser("poison", help="list and replay messages the host moved to <queue>-poison")
    poison_actions = poison.add_subparsers(dest="action", required=True)
    poison_listing = poison_actions.add_parser("list", help="the oldest poisoned messages (up to 32)")
    poison_listing.add_argument("--limit", type=int, default=32)
    poison_listing.add_argument("--json", action="store_true", help="machine-readable output")
    poison_listing.set_defaults(run=_poison_list)
    poison_replay = poison_actions.add_parser("replay", help="move poisoned messages back to the outbox queue")
    poison_which = poison_replay.add_mutually_exclusive_group(required=True)
    poison_which.add_argument("id", nargs="?")
    poison_which.add_argument("--all", action="store_true")
    poison_replay.set_defaults(run=_poison_replay)
    return parser


# The local run's settings file names its test CA here rather than in SSL_CERT_FILE and
# REQUESTS_CA_BUNDLE, which would replace the system's CAs for every tool in the user's shell.
LOCAL_CA_VARIABLE = "M365SEND_LOCAL_CA_BUNDLE"
_SETTINGS_HINT = (
    "set the app settings (docs/settings.md); with ./scripts/local running, `source .local/env` (the file it "
    "prints) in this shell first"
)


def _trust_local_ca() -> None:
    """Trust the local stand-ins' CA in this process only, or say plainly that the local run has stopped."""
    bundle = os.environ.get(LOCAL_CA_VARIABLE)
    if not bundle:
        return
    if not Path(bundle).is_file():
        raise UsageError(
            f"the local run these settings came from has stopped ({LOCAL_CA_VARIABLE} names {bundle}, which is "
            "gone): start ./scripts/local again and source the settings file it prints"
        )
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["SSL_CERT_FILE"] = bundle


def main(argv: Sequence[str] | None = None, *, worker: Worker | None = None) -> int:
    """Run a command with the app settings from the environment; exit 0 on success, 1 on failure, 2 on usage."""
    args = _parser().parse_args(argv)
    # azure-identity logs each failed token attempt as a warning; the command's own line says what failed.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    try:
        _trust_local_ca()
        return int(args.run(worker or Worker(), args))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except M365SendError as error:
        if getattr(args, "json", False):
            print(json.dumps(problem(error, request_id="cli").body, indent=2))
        else:
            print(f"error: {error.detail}", file=sys.stderr)
            problems = getattr(error, "problems", ())
            for field in problems if len(problems) > 1 else ():  # one problem is the detail itself
                print(f"  {field.field}: {field.message}", file=sys.stderr)
            if isinstance(error, ConfigurationInvalid) and "M365_TENANT_ID" in error.settings:
                print(f"  hint: {_SETTINGS_HINT}", file=sys.stderr)
        return 1
