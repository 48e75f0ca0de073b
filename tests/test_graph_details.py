"""Microsoft Graph's documented details that the send-once engine rests on, end to end against the stand-in.

- A draft creation that Graph answered 504 after it created the draft, retried, leaves no second draft.
- Every mail request asks for immutable ids (``Prefer: IdType="ImmutableId"``), so a draft found by
  its tag keeps its id when it moves to Sent Items.
- Sending is asynchronous: a draft that was just sent can still look like a draft. Verified delivery
  does not send such a draft again before a grace period has passed.
- An interrupted attachment upload resumes from the ``nextExpectedRanges`` the session last gave,
  never by a GET on the upload URL (documented for OneDrive, not Outlook).
"""

from __future__ import annotations

import time
from typing import Any

from standins.cloud import LocalCloud
from standins.graph import Fault
from tests.conftest import Configure


def _verified(configure: Configure, storage_settings: dict[str, str], **extra: str) -> Any:
    return configure(**storage_settings, M365_DELIVERY_MODE="verified", **extra)


def test_a_retried_draft_creation_leaves_no_second_draft(
    configure: Configure, storage_settings: dict[str, str], cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = _verified(configure, storage_settings)
    cloud.graph.inject(Fault(504, after=True, on="POST /messages"))  # created, then the answer was a 504

    answer = api.post(seed_message, headers={"Idempotency-Key": "retried-create"})

    assert answer.status == 202, answer.body
    assert len(cloud.graph.sent) == 1
    assert cloud.graph.drafts.drafts == {}


def test_every_mail_request_asks_for_immutable_ids(
    configure: Configure, storage_settings: dict[str, str], cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = _verified(configure, storage_settings)

    api.post(seed_message, headers={"Idempotency-Key": "immutable-1"})
    api.post(seed_message)

    assert len(cloud.graph.sent) == 2
    assert cloud.graph.without_immutable_ids == 0


def test_a_draft_just_sent_that_still_looks_like_a_draft_is_not_sent_again(
    configure: Configure, storage_settings: dict[str, str], cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = _verified(configure, storage_settings, M365_DRAFT_SETTLE_SECONDS="2")
    cloud.graph.send_delay = 1.0  # Exchange takes a second to move a sent draft to Sent Items
    cloud.graph.inject(Fault(504, after=True, on="POST /send"))  # sent, the answer lost
    key = {"Idempotency-Key": "async-send-1"}

    lost = api.post(seed_message, headers=key)
    at_once = api.post(seed_message, headers=key)  # the draft is still in Drafts: on its way, not unsent
    time.sleep(2.2)
    later = api.post(seed_message, headers=key)

    assert lost.status == 502
    assert at_once.status == 503
    assert "Retry-After" in at_once.headers
    assert later.status == 202
    assert later.body.get("verified")  # found in Sent Items by then
    assert len(cloud.graph.sent) == 1
