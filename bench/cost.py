"""What a million emails cost on Flex Consumption, from the scale-out benchmark's measured figures.

Per email, measured (``bench.scaleout``): the instance time the queue drain kept busy, the function
executions, and the app's storage requests (send records and shared pacing, counted at the HTTP
transport). Per email, from Microsoft's documentation of the queue trigger (not measured here: the
local queue host is a stand-in with its own polling): the producer's Put Message, the host's Get
Messages (one per batch of up to ``batchSize`` 16) and its Delete Message.

Flex Consumption bills on-demand instances for their memory while they execute functions (GB-s),
and each execution; a queue backlog keeps every instance working on it executing the whole time,
so GB-s per email = instance memory * instances * drain seconds / emails sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.harness import table

__all__ = ["PRICES", "Price", "per_email", "report"]

# The Bicep's instance size (infra/app/function.bicep, instanceMemoryMB), in GB as Flex bills it.
INSTANCE_GB = 2048 / 1024
# host.json's batchSize: messages the host gets per Get Messages request.
HOST_BATCH = 16


@dataclass(frozen=True)
class Price:
    """One published price (USD, pay-as-you-go), where it is published, and how it was read."""

    usd: float
    per: float  # units the price is for
    unit: str
    page: str
    read: str


# Prices as of 2026-12-07, East US, pay-as-you-go. The Azure pricing pages render their figures in
# the browser and this machine reaches no Azure page, so ``read`` says where each figure was taken
# from; those marked "not confirmed here" should be checked against their page before relying on them.
PRICES = {
    "execution_time": Price(
        0.000026,
        1,
        "GB-s (Flex Consumption, on demand)",
        "https://azure.microsoft.com/pricing/details/functions/",
        "as quoted by modal.com/blog/azure-function-pricing-guide (2025-05-22); before the monthly free grant",
    ),
    "executions": Price(
        0.40,
        1_000_000,
        "executions (Flex Consumption, on demand)",
        "https://azure.microsoft.com/pricing/details/functions/",
        "the page's Flex Consumption on-demand rate, not confirmed here; before the monthly free grant",
    ),
    "table_transactions": Price(
        0.00036,
        10_000,
        "Table storage transactions (standard, LRS)",
        "https://azure.microsoft.com/pricing/details/storage/tables/",
        "the page's rate for Table storage transactions, not confirmed here",
    ),
    "queue_operations": Price(
        0.004,
        10_000,
        "Queue storage class 1 operations (general purpose v2, LRS)",
        "https://azure.microsoft.com/pricing/details/storage/queues/",
        "the page's class 1 rate, not confirmed here; every queue request counted at it (an upper bound)",
    ),
    "acs_email": Price(
        0.00025,
        1,
        "email sent (Azure Communication Services Email, plus $0.00012 per MB)",
        "https://learn.microsoft.com/azure/communication-services/concepts/email-pricing",
        "the learn page's table (MicrosoftDocs/azure-docs, articles/communication-services/concepts/email-pricing.md)",
    ),
}


def per_email(row: dict[str, Any]) -> dict[str, float]:
    """The per-email quantities of one scale-out row (a ``bench.scaleout`` JSON line)."""
    sent = row["sent"]
    app_storage = sum(n for kind, n in row["storage_by_resource"].items() if not kind.startswith("queue:"))
    return {
        "gb_seconds": INSTANCE_GB * row["workers"] * row["seconds"] / sent,
        "executions": row["executions"] / sent,
        "table_requests": app_storage / sent,
        # Put by the producer, Get per host batch, Delete after success; hand-backs would add to it.
        "queue_requests": 1 + 1 / HOST_BATCH + 1,
    }


def dollars_per_million(quantities: dict[str, float]) -> dict[str, float]:
    """Each quantity per email priced for a million emails (USD), and the total."""
    million = 1_000_000
    cost = {
        "compute": quantities["gb_seconds"] * million * _unit("execution_time"),
        "executions": quantities["executions"] * million * _unit("executions"),
        "table": quantities["table_requests"] * million * _unit("table_transactions"),
        "queue": quantities["queue_requests"] * million * _unit("queue_operations"),
    }
    cost["total"] = sum(cost.values())
    return cost


def _decimal(usd: float) -> str:
    """A price as plain decimals (0.000026, not 2.6e-05)."""
    return f"{usd:.8f}".rstrip("0").rstrip(".")


def _unit(name: str) -> float:
    price = PRICES[name]
    return price.usd / price.per


def report(rows: list[dict[str, Any]]) -> str:
    """The cost table (one line per scale-out row) and its prices."""
    lines = []
    for row in rows:
        quantities = per_email(row)
        cost = dollars_per_million(quantities)
        lines.append(
            [
                f"{row['mailboxes']} mailbox{'es' if row['mailboxes'] > 1 else ''}, {row['workers']} instance"
                f"{'s' if row['workers'] > 1 else ''} ({row['sends_per_second']:.1f} emails/s)",
                f"{quantities['gb_seconds']:.3f}",
                f"{quantities['executions']:.2f}",
                f"{quantities['table_requests']:.2f} + {quantities['queue_requests']:.2f}",
                f"${cost['compute']:.2f}",
                f"${cost['executions']:.2f}",
                f"${cost['table'] + cost['queue']:.2f}",
                f"**${cost['total']:.2f}**",
            ]
        )
    acs = PRICES["acs_email"]
    acs_total = f"${acs.usd * 1e6:,.0f} + $120/GB"
    lines.append(["Azure Communication Services Email, for comparison", "", "", "", "", "", "", acs_total])
    prices = "\n".join(f"- ${_decimal(p.usd)} per {p.per:,.0f} {p.unit}: {p.page} ({p.read})." for p in PRICES.values())

    return (
        table(
            "7. What a million emails cost on Flex Consumption (pay-as-you-go, before free grants)",
            [
                "queue drain (shared pacing)",
                "GB-s / email",
                "executions / email",
                "storage requests / email (app's tables + queue)",
                "compute / M",
                "executions / M",
                "storage / M",
                "total / M",
            ],
            lines,
        )
        + "\nPrices (read 2026-12-07):\n"
        + prices
        + "\n"
    )
