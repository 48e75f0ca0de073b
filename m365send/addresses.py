"""Addresses: the EmailAddress model, RFC 5321 checks, case folding and recipient lists as strings. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from m365send.fields import TEXT_PATTERN, Model, alias, empty_error, no_control_characters, null_error

__all__ = ["EmailAddress", "address_problem", "fold_address", "parse_pairs", "plainly_valid", "split_recipients"]

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


# Plain ASCII dot-atom@host.tld, in bounds no library disputes (local part at most 64, address at
# most 254, labels at most 63 without "--", a letters-only top-level domain).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN = re.compile(
    rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+[A-Za-z]{{2,63}}"
)
# email-validator's SPECIAL_USE_DOMAIN_NAMES (tests/test_addresses.py checks each against it).
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion", "test")


def plainly_valid(address: str) -> bool:
    """True for a plain ASCII address that email-validator is sure to accept; False says "ask it".

    Most addresses are plain, and email-validator's import compiles Unicode-range patterns (30 to
    40 ms of a new instance's first send), so these are decided without it. The library stays the
    authority: everything else goes to it, and a test checks this accepts nothing it would refuse.
    """
    if len(address) > 254 or not _PLAIN.fullmatch(address):
        return False
    local, _, domain = address.rpartition("@")
    domain = domain.translate(_ASCII_LOWER)
    if len(local) > 64 or "--" in domain:
        return False
    return not any(domain == name or domain.endswith("." + name) for name in _SPECIAL_USE)


def address_problem(address: str) -> str | None:
    """Why ``address`` is not a valid RFC 5321 mailbox (email-validator's words), or None."""
    if plainly_valid(address):
        return None
    from email_validator import EmailNotValidError, validate_email  # see plainly_valid

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
