"""Send records and dead letters in one Azure Table (Azurite locally), via azure-data-tables.

Rows: send records in partitions ``send-XX`` (``XX`` from the key's hash, spreading load), row key
the SHA-256 of the key; dead letters in partition ``deadletter``, newest first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from m365send.azure_errors import azure_errors
from m365send.errors import DependencyUnavailable, LeaseLost
from m365send.sendlog import Decision, Reservation, SendRecord, SendStatus, decide, successor
from m365send.service_time import ServiceTime

__all__ = ["DeadLetter", "TableDeadLetters", "TableSendLog"]

log = logging.getLogger(__name__)
_DEAD_LETTER_PARTITION = "deadletter"
_INDEX_PARTITION = "deadletter-key"
# Conditional writes are never retried blindly by the SDK: a retry after a lost answer meets its own
# write, which ``_write`` recognises by its holder token; the callers decide on any further try.
_NO_BLIND_RETRY: dict[str, Any] = {"retry_total": 0}


def _now() -> datetime:
    return datetime.now(UTC)


def _address(key: str) -> tuple[str, str]:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"send-{digest[:2]}", digest


def _entity(record: SendRecord) -> dict[str, Any]:
    partition, row = _address(record.key)
    return {
        "PartitionKey": partition,
        "RowKey": row,
        "Key": record.key,
        "Status": record.status.value,
        "PayloadHash": record.payload_hash,
        "LeaseUntil": record.lease_until,
        "ExpiresAt": record.expires_at,
        "Attempts": record.attempts,
        "PossibleDuplicate": record.possible_duplicate,
        "Answer": json.dumps(record.answer) if record.answer is not None else "",
        "GraphRequestId": record.graph_request_id or "",
        "InternetMessageId": record.internet_message_id or "",
        "Holder": record.holder,
        **({"MaybeSentAt": record.maybe_sent_at} if record.maybe_sent_at else {}),
        # Table storage has no null: an absent time is simply not written.
        **({"CreatedAt": record.created_at} if record.created_at else {}),
        **({"UpdatedAt": record.updated_at} if record.updated_at else {}),
        **({"SendAt": record.send_at} if record.send_at else {}),
    }


def _record(entity: Any) -> SendRecord:
    return SendRecord(
        key=entity["Key"],
        status=SendStatus(entity["Status"]),
        payload_hash=entity["PayloadHash"],
        lease_until=entity["LeaseUntil"],
        expires_at=entity["ExpiresAt"],
        attempts=int(entity.get("Attempts", 1)),
        possible_duplicate=bool(entity.get("PossibleDuplicate", False)),
        answer=json.loads(entity["Answer"]) if entity.get("Answer") else None,
        graph_request_id=entity.get("GraphRequestId") or None,
        etag=entity.metadata.get("etag"),
        created_at=entity.get("CreatedAt"),
        updated_at=entity.get("UpdatedAt"),
        send_at=entity.get("SendAt"),
        internet_message_id=entity.get("InternetMessageId") or None,
        holder=entity.get("Holder", ""),
        maybe_sent_at=entity.get("MaybeSentAt"),
    )


def _storage_errors() -> contextlib.AbstractContextManager[None]:
    """Table storage's failures as m365send errors (``DependencyUnavailable``)."""
    return azure_errors("Table storage")


class TableSendLog:
    """``SendLog`` over a ``TableClient``; reservations are created or replaced with ETag checks."""

    def __init__(
        self,
        *,
        table: TableClient,
        lease: timedelta,
        retention: timedelta,
        clock: Callable[[], datetime] | None = None,
        service_time: ServiceTime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        self._lease = lease
        self._retention = retention
        # Leases are judged on Table storage's clock, learnt from every answer's Date (``clock``: tests).
        # Takers decide by its lower bound; holders stamp their leases by its upper bound.
        self._time = service_time or ServiceTime(monotonic=monotonic)
        self._given_clock = clock
        self._clock = clock or self._time.now
        self._stamp = clock or self._time.latest
        self._monotonic = monotonic
        self._hook: dict[str, Any] = self._time.hooks()

    def get(self, key: str) -> SendRecord | None:
        """The record of ``key``, if any."""
        with _storage_errors():
            try:
                return _record(self._table.get_entity(*_address(key), **self._hook))
            except ResourceNotFoundError:
                return None

    def _held(self, record: SendRecord, stamped_at: float) -> float:
        """Until when (monotonic) the holder of ``record``, stamped at ``stamped_at``, surely holds it."""
        held = None if self._given_clock else self._time.held_until(record.lease_until)
        return stamped_at + self._lease.total_seconds() if held is None else held

    def reserve(self, key: str, payload_hash: str) -> Reservation:
        """Create the key's record, or decide on the one that exists (see ``m365send.sendlog``)."""
        if self._given_clock is None and not self._time.bounded:
            self.get(key)  # a worker's first lease: learn the store's clock before stamping one
        sent_at = self._monotonic()
        fresh = SendRecord.reserved(key, payload_hash, now=self._stamp(), lease=self._lease, retention=self._retention)
        with _storage_errors():
            try:
                created = self._table.create_entity(_entity(fresh), **_NO_BLIND_RETRY, **self._hook)
                return Reservation(Decision.NEW, replace(fresh, etag=created.get("etag")), self._held(fresh, sent_at))
            except ResourceExistsError:
                pass
            existing = self.get(key)
            if existing is None:  # deleted between the two calls: someone released it; try once more
                return self.reserve(key, payload_hash)
            if existing.holder == fresh.holder:  # our own create, its first answer lost
                return Reservation(Decision.NEW, existing, self._held(existing, sent_at))
            # Judged now, after the answers above taught the clock the service's time.
            now = self._clock()
            decision = decide(existing, payload_hash, now)
            if not decision.sends:
                return Reservation(decision, existing, decided_at=now)
            # The engine decides whether a take-over's send is a possible duplicate (verified delivery may show not).
            sent_at = self._monotonic()
            stamp = self._stamp()
            fresh = SendRecord.reserved(key, payload_hash, now=stamp, lease=self._lease, retention=self._retention)
            taken = successor(existing, fresh, decision, stamp)
            try:
                etag = self._write(taken, existing.etag)
            except LeaseLost:
                # Another worker took the key between our read and write: it holds the lease now.
                return Reservation(Decision.IN_FLIGHT, replace(existing, lease_until=now + self._lease))
            return Reservation(decision, replace(taken, etag=etag), self._held(taken, sent_at), decided_at=now)

    def _write(self, record: SendRecord, etag: str | None) -> str | None:
        """Write ``record`` if the stored one is still ``etag``, or was last written by ``record``'s holder.

        A 412 (or 404) alone cannot tell another attempt's write from this attempt's own earlier write
        whose answer was lost: the stored record's holder token can. ``LeaseLost`` when it is another's.
        """
        for _ in range(2):
            with _storage_errors():
                try:
                    updated = self._table.update_entity(
                        _entity(record),
                        mode=UpdateMode.REPLACE,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                        **_NO_BLIND_RETRY,
                        **self._hook,
                    )
                    return updated.get("etag")
                except (ResourceModifiedError, ResourceNotFoundError):
                    pass
                stored = self.get(record.key)
                if stored is None or not record.holder or stored.holder != record.holder:
                    raise LeaseLost("another attempt holds this idempotency key now") from None
                etag = stored.etag  # our own write landed: write again over it
        raise LeaseLost("the send record kept changing under this attempt")

    def _replace(self, record: SendRecord, etag: str | None) -> str | None:
        """Write ``record`` (stamped now) if this attempt still holds it; the new etag. ``LeaseLost`` otherwise."""
        return self._write(replace(record, updated_at=self._stamp()), etag)

    def renew(self, reservation: Reservation) -> Reservation:
        """Extend the lease from now; the reservation with the record's new etag."""
        sent_at = self._monotonic()
        renewed = reservation.record.renewed(now=self._stamp(), lease=self._lease)
        etag = self._replace(renewed, reservation.record.etag)
        return Reservation(reservation.decision, replace(renewed, etag=etag), self._held(renewed, sent_at))

    def mark_sent(
        self,
        reservation: Reservation,
        *,
        graph_request_id: str | None,
        answer: dict[str, Any],
        internet_message_id: str | None = None,
    ) -> None:
        """Record that Graph accepted the message."""
        record = reservation.record.sent(
            graph_request_id=graph_request_id, answer=answer, internet_message_id=internet_message_id
        )
        self._replace(record, reservation.record.etag)

    def mark_failed(self, reservation: Reservation, *, answer: dict[str, Any]) -> None:
        """Record a permanent failure and its problem."""
        self._replace(reservation.record.failed(answer=answer), reservation.record.etag)

    def mark_scheduled(self, reservation: Reservation, *, send_at: datetime) -> None:
        """Record that the message waits for ``send_at``; the record lives until ``send_at`` plus the window."""
        record = reservation.record.scheduled(send_at=send_at, now=self._stamp(), retention=self._retention)
        self._replace(record, reservation.record.etag)

    def mark_unknown(self, reservation: Reservation, *, may_have_sent: bool = True) -> None:
        """Record that Graph's answer was lost; the lease ends now, so the next attempt need not wait."""
        record = reservation.record.unknown(now=self._stamp(), may_have_sent=may_have_sent)
        self._replace(record, reservation.record.etag)

    def release(self, reservation: Reservation) -> None:
        """Mark the key pending (its lease ended), unless another attempt has taken it since."""
        try:
            self._replace(reservation.record.pending(now=self._stamp()), reservation.record.etag)
        except LeaseLost:
            pass
        except DependencyUnavailable as error:
            log.warning("could not release a reservation; it frees itself when its lease ends: %s", error.detail)

    def purge_expired(self) -> int:
        """Delete send records whose idempotency window has passed; returns how many."""
        cutoff = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        query = f"PartitionKey ge 'send-' and PartitionKey lt 'send.' and ExpiresAt lt datetime'{cutoff}'"
        deleted = 0
        with _storage_errors():
            for entity in self._table.query_entities(query, select=["PartitionKey", "RowKey"]):
                with contextlib.suppress(ResourceNotFoundError):
                    self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                    deleted += 1
        return deleted

    def recent(self, *, limit: int = 100) -> list[SendRecord]:
        """The most recently changed records, newest first: a scan of every send partition, for small
        tables (the local mailbox page), not for a production table."""
        query = "PartitionKey ge 'send-' and PartitionKey lt 'send.'"
        with _storage_errors():
            records = [_record(entity) for entity in self._table.query_entities(query)]
        epoch = datetime.min.replace(tzinfo=UTC)
        records.sort(key=lambda r: r.updated_at or r.created_at or epoch, reverse=True)
        return records[:limit]

    def forget(self, key: str) -> None:
        """Delete the key's record (an operator replaying a dead letter)."""
        with _storage_errors(), contextlib.suppress(ResourceNotFoundError):
            self._table.delete_entity(*_address(key))


@dataclass(frozen=True)
class DeadLetter:
    """A queue message set aside, with why; ``payload`` is the queue message body as it arrived."""

    id: str
    key: str
    kind: str  # invalid | permanent | conflict | exhausted
    reason: str
    problem: dict[str, Any]
    payload: bytes
    queue_message_id: str
    dequeue_count: int
    recorded_at: datetime


def _key_index(key: str) -> str:
    """The row key prefix of a queue key's dead-letter index rows (a hash: any key, no forbidden characters)."""
    return hashlib.sha256(key.encode()).hexdigest()


class TableDeadLetters:
    """Dead letters in the same table, listed newest first.

    Each dead letter has an index row (partition ``deadletter-key``, row ``<sha256(key)>-<letter id>``)
    so that the status look-up finds a key's newest dead letter with a key range, not a partition scan.
    """

    def __init__(self, *, table: TableClient, clock: Callable[[], datetime] = _now) -> None:
        self._table = table
        self._clock = clock

    def add(
        self,
        *,
        key: str,
        kind: str,
        problem: dict[str, Any],
        payload: bytes,
        queue_message_id: str,
        dequeue_count: int,
    ) -> DeadLetter:
        """Store one dead letter; its id sorts newest first."""
        now = self._clock()
        # Inverted milliseconds make the default (ascending) row order newest first.
        row = f"{10**13 - int(now.timestamp() * 1000):013d}-{uuid.uuid4().hex[:8]}"
        letter = DeadLetter(
            id=row,
            key=key,
            kind=kind,
            reason=str(problem.get("detail", "")),
            problem=problem,
            payload=payload,
            queue_message_id=queue_message_id,
            dequeue_count=dequeue_count,
            recorded_at=now,
        )
        with _storage_errors():
            self._table.create_entity(
                {
                    "PartitionKey": _DEAD_LETTER_PARTITION,
                    "RowKey": row,
                    "Key": key,
                    "Kind": kind,
                    "Reason": letter.reason[:8000],
                    "Problem": json.dumps(problem)[:30000],
                    # Queue messages are at most 64 KB, so the compressed body fits one binary property.
                    "Payload": zlib.compress(payload),
                    "QueueMessageId": queue_message_id,
                    "DequeueCount": dequeue_count,
                    "RecordedAt": now,
                }
            )
            self._table.upsert_entity(
                {"PartitionKey": _INDEX_PARTITION, "RowKey": f"{_key_index(key)}-{row}", "LetterId": row}
            )
        return letter

    def list(self, *, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` dead letters."""
        letters = []
        with _storage_errors():
            rows = self._table.query_entities(f"PartitionKey eq '{_DEAD_LETTER_PARTITION}'", results_per_page=limit)
            for entity in rows:
                letters.append(self._letter(entity))
                if len(letters) >= limit:
                    break
        return letters

    def latest_for(self, key: str) -> DeadLetter | None:
        """The newest dead letter of the queue key ``key``, if any (one key-range query, then one read)."""
        prefix = _key_index(key)
        with _storage_errors():
            rows = self._table.query_entities(
                "PartitionKey eq @partition and RowKey ge @low and RowKey lt @high",
                parameters={"partition": _INDEX_PARTITION, "low": f"{prefix}-", "high": f"{prefix}."},
                results_per_page=1,
                select=["LetterId"],
            )
            for entity in rows:  # index rows sort newest first too
                return self.get(str(entity["LetterId"]))
        return None

    def get(self, letter_id: str) -> DeadLetter | None:
        """One dead letter by id."""
        with _storage_errors():
            try:
                return self._letter(self._table.get_entity(_DEAD_LETTER_PARTITION, letter_id))
            except ResourceNotFoundError:
                return None

    def remove(self, letter_id: str) -> None:
        """Delete one dead letter (after it was replayed), and its index row."""
        letter = self.get(letter_id)
        with _storage_errors(), contextlib.suppress(ResourceNotFoundError):
            self._table.delete_entity(_DEAD_LETTER_PARTITION, letter_id)
            if letter is not None:
                self._table.delete_entity(_INDEX_PARTITION, f"{_key_index(letter.key)}-{letter_id}")

    def purge_older_than(self, age: timedelta) -> int:
        """Delete dead letters recorded more than ``age`` ago (with their index rows); how many."""
        cutoff = (self._clock() - age).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = f"PartitionKey eq '{_DEAD_LETTER_PARTITION}' and RecordedAt lt datetime'{cutoff}'"
        deleted = 0
        with _storage_errors():
            for entity in self._table.query_entities(query, select=["RowKey", "Key"]):
                with contextlib.suppress(ResourceNotFoundError):
                    self._table.delete_entity(_INDEX_PARTITION, f"{_key_index(entity['Key'])}-{entity['RowKey']}")
                with contextlib.suppress(ResourceNotFoundError):
                    self._table.delete_entity(_DEAD_LETTER_PARTITION, entity["RowKey"])
                    deleted += 1
        return deleted

    @staticmethod
    def _letter(entity: Any) -> DeadLetter:
        return DeadLetter(
            id=entity["RowKey"],
            key=entity["Key"],
            kind=entity["Kind"],
            reason=entity["Reason"],
            problem=json.loads(entity["Problem"]) if entity.get("Problem") else {},
            payload=zlib.decompress(entity["Payload"]),
            queue_message_id=entity.get("QueueMessageId", ""),
            dequeue_count=int(entity.get("DequeueCount", 0)),
            recorded_at=entity["RecordedAt"],
        )
