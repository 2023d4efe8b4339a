"""Schemathesis over the served OpenAPI document, in process, as an admin and as a plain user.

Every generated case must answer without a 5xx, with a status the operation declares and a
body and headers its schema allows. The routes that end the caller's own session get a fresh
credential for each case, so the rest of the run keeps a live one.
"""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.contract.app import ADMIN, USER, build
from tests.helpers import PASSWORD

CONTRACT = build()
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            # Schema-valid data may still fail a rule JSON Schema cannot state (an email
            # address's syntax, a password's strength): those answer 422, never 400.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
            }
        }
    }
)
schema = schemathesis.openapi.from_asgi("/openapi.json", CONTRACT.app, config=CONFIG)

# Operations whose success ends the session that called them (or that of someone the
# fuzzing credential needs): each of their cases signs in anew.
ENDS_A_SESSION = {
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/sessions/revoke-others"),
    ("DELETE", "/v1/sessions/{session_id}"),
    ("DELETE", "/v1/admin/users/{user_id}/sessions"),
    ("PATCH", "/v1/admin/users/{user_id}"),
    ("POST", "/v1/me/password"),
}
# Operations that take a mailed single-use token: every string the schema allows is a
# well-formed token, but only the server knows which are live, so schema-valid ones are
# refused (400 invalid_token) as they must be.
TAKES_A_MAILED_TOKEN = {
    ("POST", "/v1/me/email/verify"),
    ("POST", "/v1/auth/password-reset/confirm"),
}
EXAMPLES = int(os.environ.get("WATCHWORD_CONTRACT_EXAMPLES", "40"))
_tokens: dict[str, str] = {}


def sign_in(email: str) -> str:
    with asgi.get_client(CONTRACT.app) as client:
        response = client.post(
            "http://testserver/v1/auth/login",
            json={"email": email, "password": PASSWORD, "mode": "token"},
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def credential(email: str, case: Any) -> dict[str, str]:
    key = (case.operation.method.upper(), case.operation.path)
    if key in ENDS_A_SESSION or email not in _tokens:
        token = sign_in(email)
        if key not in ENDS_A_SESSION:
            _tokens[email] = token
    else:
        token = _tokens[email]
    return {"Authorization": f"Bearer {token}"}


def run(case: Any, email: str) -> None:
    CONTRACT.counts[email] = CONTRACT.counts.get(email, 0) + 1
    excluded = []
    if case.operation.path.startswith("/oauth2/"):
        # RFC 6749 section 3.2: the server MUST ignore parameters it does not know, so a form
        # with an undeclared one is accepted, as the standard asks, though the schema lists
        # only the parameters a client should send.
        excluded.append(negative_data_rejection)
    if (case.operation.method.upper(), case.operation.path) in TAKES_A_MAILED_TOKEN:
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers=credential(email, case), excluded_checks=excluded)


FUZZ = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same cases on every run
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)


@schema.parametrize()
@FUZZ
def test_as_a_plain_user(case: Any) -> None:
    run(case, USER)


@schema.parametrize()
@FUZZ
def test_as_an_admin(case: Any) -> None:
    run(case, ADMIN)


def test_the_run_was_large_enough() -> None:
    total = sum(CONTRACT.counts.values())
    if total == 0:
        pytest.skip("run alone: the generated cases did not run in this session")
    print("generated cases:", CONTRACT.counts)
    assert total >= 2000, CONTRACT.counts
