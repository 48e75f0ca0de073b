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
