"""The throw-away-user ticket: only the issuing service's token makes a valid one."""

from __future__ import annotations

import time

import pytest

from pangeo_cloud.hub.service_users import (
    MAX_LIFETIME,
    TICKET_KEY,
    issuer_tokens,
    make_ticket,
    ticket_issuer,
)

ISSUERS = {"health-check": "service-token"}


def test_a_ticket_of_an_allowed_service_is_valid_for_its_user_only() -> None:
    ticket = make_ticket("service-token", "health-check", "health-check-1")
    assert ticket_issuer(ticket, "health-check-1", ISSUERS) == "health-check"
    assert ticket_issuer(ticket, "health-check-2", ISSUERS) is None
    assert ticket_issuer(ticket, "health-check-1", {"other": "service-token"}) is None


@pytest.mark.parametrize(
    "auth_state",
    [
        None,
        {},
        {"access_token": "gho_x"},  # a real GitHub login's state
        {TICKET_KEY: "yes"},
        {TICKET_KEY: {"service": "health-check", "expires": "soon", "signature": "x"}},
        make_ticket("wrong-token", "health-check", "u"),
        make_ticket("service-token", "health-check", "u", now=time.time() - MAX_LIFETIME - 5),
    ],
)
def test_anything_else_is_no_ticket(auth_state) -> None:
    assert ticket_issuer(auth_state, "u", ISSUERS) is None


def test_a_ticket_cannot_reach_further_than_the_maximum_lifetime() -> None:
    ticket = make_ticket("service-token", "health-check", "u", lifetime=10 * MAX_LIFETIME)
    assert ticket[TICKET_KEY]["expires"] <= time.time() + MAX_LIFETIME + 1
    # A hand-made far-future expiry with a correct signature is refused too.
    far = make_ticket("service-token", "health-check", "u", now=time.time() + MAX_LIFETIME)
    assert ticket_issuer(far, "u", ISSUERS) is None


def test_issuer_tokens_takes_only_named_services_with_tokens() -> None:
    services = [
        {"name": "health-check", "api_token": "t1"},
        {"name": "dask-gateway", "api_token": "t2"},
        {"name": "no-token"},
    ]
    assert issuer_tokens(services, ["health-check", "no-token"]) == {"health-check": "t1"}
