"""Address checks: email-validator is the authority; plain ASCII addresses are decided without importing it."""

from __future__ import annotations

import pytest
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from m365send.addresses import address_problem, plainly_valid
from tests.conftest import fresh_python


def library_accepts(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


# Plain-shaped addresses, each possibly changed at one place by a character at the edge of the
# rules (a dot, hyphen, quote, space, @, non-ASCII letter) or stretched past a length limit, with
# special-use, numeric and Punycode top-level domains among the ordinary ones.
_ATOM = st.text(alphabet="aZ9!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=10)
_LABEL = st.from_regex(r"[aZ9]([aZ9-]{0,8}[aZ9])?", fullmatch=True)
_TLD = st.one_of(
    st.sampled_from([*SPECIAL_USE_DOMAIN_NAMES, "com", "io", "c0m", "COM", "xn--p1ai", "Test", "ONION", "x"]),
    st.from_regex(r"[a-zA-Z]{2,8}", fullmatch=True),
)
_SHAPED = st.builds(
    lambda atoms, labels, tld: f"{'.'.join(atoms)}@{'.'.join([*labels, tld])}",
    st.lists(_ATOM, min_size=1, max_size=3),
    st.lists(_LABEL, min_size=1, max_size=3),
    _TLD,
)


def _changed(address: str, at: int, change: str) -> str:
    at %= len(address) + 1
    if change == "stretch":
        return address[:at] + "a" * 64 + address[at:]
    return address[:at] + change + address[at:]


_ADDRESS = st.one_of(
    _SHAPED,
    st.builds(_changed, _SHAPED, st.integers(0, 80), st.sampled_from([".", "-", "--", '"', " ", "@", "é", "stretch"])),
)


@settings(max_examples=2000, derandomize=True)
@given(_ADDRESS)
@example("ann@contoso.com")
@example("a--b@xn--contoso.com")
@example("ab--c@contoso.com")
@example("ann@ab--cd.com")
@example("ann@contoso.test")
@example("ann@mail.localhost")
@example("ann@contoso.c0m")
@example(f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 63}.com")
@example(f"{'a' * 65}@contoso.com")
def test_every_address_the_fast_path_accepts_email_validator_accepts_too(address: str) -> None:
    if plainly_valid(address):
        assert library_accepts(address), address


@pytest.mark.parametrize(
    "address",
    ["ann@contoso.com", "Ann.Smith+invoices@Mail.Contoso.co.uk", "o'brien@contoso-group.com", "x@a1.io"],
)
def test_common_addresses_take_the_fast_path(address: str) -> None:
    assert plainly_valid(address)
    assert address_problem(address) is None


@pytest.mark.parametrize("name", SPECIAL_USE_DOMAIN_NAMES)
def test_special_use_domains_are_left_to_email_validator(name: str) -> None:
    assert not plainly_valid(f"ann@mail.{name}")
    assert address_problem(f"ann@mail.{name}") == (
        "The part after the @-sign is a special-use or reserved name that cannot be used with email."
    )


@pytest.mark.parametrize(
    ("address", "accepted"),
    [("josé@contoso.com", True), ("ann@bücher.de", True), ("ann..smith@contoso.com", False), ("ann@contoso", False)],
)
def test_other_addresses_are_decided_by_email_validator(address: str, accepted: bool) -> None:
    assert not plainly_valid(address)
    assert (address_problem(address) is None) is accepted


def test_a_send_with_plain_addresses_never_imports_email_validator() -> None:
    # Importing it compiles Unicode-range patterns: tens of milliseconds of a new instance's first send.
    probe = (
        "import sys\n"
        "from m365send.models import parse_send_request\n"
        "from standins.examples import SEED_EXAMPLE\n"
        "parse_send_request(SEED_EXAMPLE)\n"
        "before = 'email_validator' in sys.modules\n"
        "parse_send_request({**SEED_EXAMPLE, 'To': [{'Address': 'josé@contoso.com'}]})\n"
        "print(before, 'email_validator' in sys.modules)\n"
    )
    assert fresh_python(probe) == "False True"
