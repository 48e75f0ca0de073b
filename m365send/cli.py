"""``python -m m365send``: operator commands. ``deadletters list|show|replay`` work on the outbox's dead letters."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from m365send.envelope import key_of
from m365send.errors import M365SendError
from m365send.sendlog import SendStatus
from m365send.tables import DeadLetter
from m365send.wiring import Storage, Worker

__all__ = ["main"]


def _summary(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "recordedAt": letter.recorded_at.isoformat(),
        "kind": letter.kind,
        "key": letter.key,
        "reason": letter.reason,
    }


def _list(storage: Storage, args: argparse.Namespace) -> int:
    letters = storage.dead_letters.list(limit=args.limit)
    if args.json:
        print(json.dumps([_summary(letter) for letter in letters], indent=2))
        return 0
    if not letters:
        print("no dead letters")
    for letter in letters:
        print(f"{letter.id}  {letter.recorded_at:%Y-%m-%d %H:%M:%S}  {letter.kind:<9}  {letter.key}  {letter.reason}")
    return 0


def _show(storage: Storage, args: argparse.Namespace) -> int:
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
    key = key_of(letter.payload, queue_message_id=letter.queue_message_id)
    record = storage.sends.get(key)
    if record is not None and record.status is SendStatus.SENT and not force:
        return "its key is recorded as sent; --force would send it again"
    storage.sends.forget(key)
    body = letter.payload.decode()
    if key == letter.queue_message_id and '"message"' not in body:
        # A bare message's key was its queue message id: keep it by wrapping it in an envelope.
        body = json.dumps({"id": key, "message": json.loads(body)})
    storage.outbox.requeue(body, delay=0)
    storage.dead_letters.remove(letter.id)
    return None


def _replay(storage: Storage, args: argparse.Namespace) -> int:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m365send", description="m365send operator commands")
    commands = parser.add_subparsers(dest="command", required=True)
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
    return parser


def main(argv: Sequence[str] | None = None, *, worker: Worker | None = None) -> int:
    """Run a command with the app settings from the environment; exit 0 on success, 1 on failure, 2 on usage."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run((worker or Worker()).storage(), args))
    except M365SendError as error:
        print(f"error: {error.detail}", file=sys.stderr)
        return 1
