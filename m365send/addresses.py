"""Addresses: the EmailAddress model, RFC 5321 checks, case folding and recipient lists as strings. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from m365send.fields import TEXT_PATTERN, Model, alias, empty_error, no_control_characters, null_error

__all__ = ["EmailAddress", "address_problem", "fold_address", "parse_pairs", "split_recipients"]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_address(address: str) -> str:
    """An address for case-insensitive comparison: ASCII letters lowered, nothing else changed.

    Not ``casefold``: it maps look-alikes together ("ﬁ" to "fi", "K" (Kelvin) to "k"), so an
    allow-list compared that way would pass an address that is not the one it lists.
    """
    return address.translate(_ASCII_LOWER)


def parse_pairs(entries: Iterable[str]) -> frozenset[tuple[str, str]]:
    """``delegate>principal`` entries as folded pairs; ``ValueError`` names an entry that is not one."""
    pairs = set()
    for entry in entries:
        delegate, arrow, principal = (part.strip() for part in entry.partition(">"))
        if not arrow or not delegate or not principal:
            raise ValueError(f"'{entry}' is not delegate>principal (ops@contoso.com>helpdesk@contoso.com)")
        pairs.add((fold_address(delegate), fold_address(principal)))
    return frozenset(pairs)


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a valid RFC 5321 mailbox, or None.

    Cached: senders and frequent recipients recur, and this check is the costliest part of validation.
    """
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


class EmailAddress(Model):
    """A mailbox: ``Address`` is required and must be a valid RFC 5321 address."""

    name: str | None = Field(
        default=None,
        validation_alias=alias("Name"),
        title="Name",
        description="Display name, e.g. Ann Smith.",
        json_schema_extra={"pattern": TEXT_PATTERN},
    )
    address: str = Field(
        validation_alias=alias("Address"),
        title="Address",
        description="Email address (RFC 5321), e.g. ann@contoso.com.",
        json_schema_extra={"format": "email", "minLength": 1, "maxLength": 254},
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        return no_control_characters(value) if isinstance(value, str) else value

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, value: Any) -> Any:
        if value is None:
            raise null_error("Address")
        if not isinstance(value, str):
            return value  # pydantic's own type error names the type
        if value == "":
            raise empty_error("Address")
        no_control_characters(value)
        reason = address_problem(value)
        if reason:
            raise PydanticCustomError(
                "invalid_address",
                "{address} is not a valid RFC 5321 email address: {reason}",
                {"address": json.dumps(value), "reason": reason},
            )
        return value


def split_recipients(value: Any) -> Any:
    """``"a@contoso.com; b@contoso.com"`` (as Outlook's "Send an email" takes them) → a list of addresses.

    Semicolons and commas separate; blanks around and between them are ignored. Anything that is
    not a string is returned as it is, for the list validation to judge.
    """
    if not isinstance(value, str):
        return value
    return [{"Address": part.strip()} for part in re.split(r"[;,]", value) if part.strip()]
