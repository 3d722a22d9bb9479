"""The Google STS stand-in answers as the real token-exchange endpoint does (real HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests

from pangeo_cloud.broker.gcs import access_boundary
from pangeo_cloud.testing.google_sts import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, GoogleSTSStandIn

SOURCE = "ya29.source"


@pytest.fixture
def sts() -> Iterator[GoogleSTSStandIn]:
    with GoogleSTSStandIn(expires_in=600) as standin:
        standin.add_source_token(SOURCE)
        yield standin


def _form(**overrides: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": SOURCE,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
        # google-auth URL-encodes the JSON once more inside the form.
        "options": quote(json.dumps(access_boundary("b-1", "alice"))),
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def test_exchange_issues_a_token_and_records_the_boundary(sts: GoogleSTSStandIn) -> None:
    reply = requests.post(sts.token_url, data=_form(), timeout=30)
    assert reply.status_code == 200
    body = reply.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    issued = sts.token_info(body["access_token"])
    assert issued is not None and issued.subject_token == SOURCE
    assert issued.boundary == access_boundary("b-1", "alice")
    assert sts.exchanges[-1].boundary == issued.boundary


@pytest.mark.parametrize(
    ("overrides", "error", "words"),
    [
        ({"grant_type": "refresh_token"}, "unsupported_grant_type", "grant_type"),
        ({"subject_token": "ya29.other"}, "invalid_grant", "invalid or expired"),
        ({"subject_token_type": "urn:x"}, "invalid_request", "subject_token_type"),
        ({"requested_token_type": "urn:x"}, "invalid_request", "requested_token_type"),
        ({"options": None}, "invalid_request", "accessBoundary is required"),
        ({"options": "{not json"}, "invalid_request", "not valid JSON"),
        ({"options": quote('{"accessBoundary": {}}')}, "invalid_request", "1 to 10"),
        (
            {"options": quote(json.dumps({"accessBoundary": {"accessBoundaryRules": [{}]}}))},
            "invalid_request",
            "availableResource",
        ),
    ],
)
def test_bad_requests_get_googles_error_json(sts: GoogleSTSStandIn, overrides, error, words):
    reply = requests.post(sts.token_url, data=_form(**overrides), timeout=30)
    assert reply.status_code == 400
    assert reply.json()["error"] == error
    assert words in reply.json()["error_description"]
    assert sts.issued == []
    assert sts.exchanges[-1].status == 400


def test_only_forms_on_the_token_path_are_served(sts: GoogleSTSStandIn) -> None:
    as_json = requests.post(sts.token_url, json=_form(), timeout=30)
    assert as_json.status_code == 400 and "Content-Type" in as_json.json()["error_description"]
    assert requests.post(sts.url + "/v1/other", data=_form(), timeout=30).status_code == 404
    assert sts.issued == []


def test_tokens_expire(sts: GoogleSTSStandIn) -> None:
    sts.expires_in = 0
    token = requests.post(sts.token_url, data=_form(), timeout=30).json()["access_token"]
    assert sts.token_info(token) is None
    assert sts.token_info("never-issued") is None
