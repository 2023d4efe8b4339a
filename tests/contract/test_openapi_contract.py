"""Schemathesis over the served OpenAPI document, in process, as an admin and as a plain user.

Every generated case must answer without a 5xx, with a status the operation declares and a
body and headers its schema allows. The routes that end the caller's own session get a fresh
credential for each case, so the rest of the run keeps a live one.

Two phases: each operation alone, and workflows that follow the document's OpenAPI links
(create or list a resource, then act on the id it answered) on an app of their own, so the
resources they revoke or change never disturb the first phase.
"""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.contract.app import ADMIN, USER, ContractApp, build
from tests.helpers import PASSWORD

CONTRACT = build()
WORKFLOWS = build()
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
# Operations that take an authenticator's signed answer to a challenge the server issued: a
# schema-valid body is still a forged one, refused (400) as it must be.
TAKES_A_SIGNED_CHALLENGE = {
    ("POST", "/v1/me/passkeys"),
}
# Operations that grant scopes: any well-formed scope is schema-valid, but only those the
# caller holds may be given, so the others are refused (400 invalid_scope) as they must be.
GRANTS_SCOPES = {
    ("POST", "/v1/api-keys"),
    ("POST", "/v1/signing-keys"),
}
EXAMPLES = int(os.environ.get("WATCHWORD_CONTRACT_EXAMPLES", "40"))
_tokens: dict[tuple[int, str], str] = {}


def sign_in(target: ContractApp, email: str) -> str:
    with asgi.get_client(target.app) as client:
        response = client.post(
            "http://testserver/v1/auth/login",
            json={"email": email, "password": PASSWORD, "mode": "token"},
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def credential(target: ContractApp, email: str, case: Any) -> dict[str, str]:
    key = (case.operation.method.upper(), case.operation.path)
    cached = (id(target), email)
    if key in ENDS_A_SESSION or cached not in _tokens:
        token = sign_in(target, email)
        if key not in ENDS_A_SESSION:
            _tokens[cached] = token
    else:
        token = _tokens[cached]
    return {"Authorization": f"Bearer {token}"}


def excluded_checks(case: Any) -> list[Any]:
    excluded = []
    if case.operation.path.startswith("/oauth2/"):
        # RFC 6749 section 3.2: the server MUST ignore parameters it does not know, so a form
        # with an undeclared one is accepted, as the standard asks, though the schema lists
        # only the parameters a client should send.
        excluded.append(negative_data_rejection)
    if (case.operation.method.upper(), case.operation.path) in (
        TAKES_A_MAILED_TOKEN | TAKES_A_SIGNED_CHALLENGE | GRANTS_SCOPES
    ):
        excluded.append(positive_data_acceptance)
    return excluded


def run(case: Any, email: str) -> None:
    CONTRACT.counts[email] = CONTRACT.counts.get(email, 0) + 1
    case.call_and_validate(
        headers=credential(CONTRACT, email, case), excluded_checks=excluded_checks(case)
    )


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


workflow_schema = schemathesis.openapi.from_asgi("/openapi.json", WORKFLOWS.app, config=CONFIG)
# Which links were followed, and what the linked operation answered: (link name, status).
FOLLOWED: list[tuple[str, int]] = []


class Workflow(workflow_schema.as_state_machine()):  # type: ignore[misc]
    """Chains of calls along the OpenAPI links, with the credential of ``email``."""

    email = ADMIN

    def setup(self) -> None:
        # Every scenario starts with a live key of each kind for its links to find, so the
        # scenarios a replay draws see the same lists (Hypothesis checks they do).
        headers = {"Authorization": f"Bearer {sign_in(WORKFLOWS, self.email)}"}
        with asgi.get_client(WORKFLOWS.app) as client:
            for path in ("/v1/api-keys", "/v1/signing-keys"):
                body = {"name": "workflow", "scopes": ["profile"]}
                created = client.post(f"http://testserver{path}", json=body, headers=headers)
                assert created.status_code == 201, created.text

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        WORKFLOWS.counts[self.email] = WORKFLOWS.counts.get(self.email, 0) + 1
        return {"headers": credential(WORKFLOWS, self.email, case)}

    def step(self, input: StepInput) -> StepOutput:
        output = super().step(input)
        if input.transition is not None and input.is_applied:
            FOLLOWED.append((input.transition.id, output.response.status_code))
        if (input.case.operation.method.upper(), input.case.operation.path) in ENDS_A_SESSION:
            # The link may have pointed at the cached credential's own session.
            _tokens.pop((id(WORKFLOWS), self.email), None)
        return output

    def validate_response(
        self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
    ) -> None:
        case.validate_response(
            response, excluded_checks=excluded_checks(case), transport_kwargs=kwargs or None
        )


class UserWorkflow(Workflow):
    email = USER


WORKFLOW_RUNS = hypothesis.settings(
    FUZZ, max_examples=max(EXAMPLES // 2, 10), stateful_step_count=8
)


def test_workflows_as_an_admin() -> None:
    Workflow.run(settings=WORKFLOW_RUNS)


def test_workflows_as_a_plain_user() -> None:
    UserWorkflow.run(settings=WORKFLOW_RUNS)


def test_the_workflows_followed_the_links() -> None:
    if not WORKFLOWS.counts:
        pytest.skip("run alone: the workflows did not run in this session")
    # A transition is named "GET /v1/sessions -> [200] RevokeListedSession -> DELETE ...".
    followed = {link.split(" -> ")[1].split("] ")[1] for link, status in FOLLOWED if status < 300}
    print("links followed to a 2xx:", sorted(followed), "steps:", WORKFLOWS.counts)
    # Each kind of resource was listed, then acted on by the id the list answered.
    assert {"RevokeListedApiKey", "RevokeListedSigningKey", "RevokeListedSession"} <= followed


def test_the_run_was_large_enough() -> None:
    total = sum(CONTRACT.counts.values()) + sum(WORKFLOWS.counts.values())
    if total == 0:
        pytest.skip("run alone: the generated cases did not run in this session")
    print("generated cases:", CONTRACT.counts, "workflow steps:", WORKFLOWS.counts)
    assert total >= 2000, (CONTRACT.counts, WORKFLOWS.counts)
