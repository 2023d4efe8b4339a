"""The WebAuthn ceremonies (W3C Web Authentication Level 2) of this relying party, on
py_webauthn: options out, responses verified. No store here: the caller keeps the challenge
(server side, single use) and the credential.

The relying-party id is the host of ``WATCHWORD_PUBLIC_URL`` and the only accepted origin is
that URL's origin, so a credential made for this service cannot be replayed by another site.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    bytes_to_base64url,
    options_to_json,
    parse_authentication_credential_json,
    parse_authenticator_data,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

TIMEOUT_MS = 120_000


class CeremonyFailed(Exception):
    """The response does not verify; ``reason`` says which check refused it (for the audit
    trail, never for the caller)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class NewCredential:
    credential_id: str
    public_key: bytes
    sign_count: int
    backed_up: bool
    transports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Assertion:
    credential_id: str
    user_handle: bytes | None
    client_data: bytes
    raw: AuthenticationCredential


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    new_sign_count: int
    backed_up: bool
    user_verified: bool


def _transports(values: Sequence[str]) -> list[AuthenticatorTransport]:
    known = {t.value: t for t in AuthenticatorTransport}
    return [known[v] for v in values if v in known]


class RelyingParty:
    def __init__(self, *, public_url: str, name: str) -> None:
        parts = urlsplit(public_url)
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"not an absolute URL: {public_url!r}")
        self.id = parts.hostname
        self.origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self.name = name

    # -- options --------------------------------------------------------------------------

    def registration_options(
        self,
        *,
        user_handle: bytes,
        user_name: str,
        exclude: Sequence[tuple[str, Sequence[str]]],
    ) -> tuple[bytes, dict[str, Any]]:
        """A new challenge and the options for ``navigator.credentials.create``: a
        discoverable credential (so it can sign in without an email), no attestation."""
        options = generate_registration_options(
            rp_id=self.id,
            rp_name=self.name,
            user_id=user_handle,
            user_name=user_name,
            timeout=TIMEOUT_MS,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[self._descriptor(c, t) for c, t in exclude],
        )
        return options.challenge, json.loads(options_to_json(options))

    def authentication_options(
        self, *, allow: Sequence[tuple[str, Sequence[str]]], user_verification: bool
    ) -> tuple[bytes, dict[str, Any]]:
        """A new challenge and the options for ``navigator.credentials.get``; ``allow``
        empty: any discoverable credential of this relying party."""
        options = generate_authentication_options(
            rp_id=self.id,
            timeout=TIMEOUT_MS,
            allow_credentials=[self._descriptor(c, t) for c, t in allow],
            user_verification=(
                UserVerificationRequirement.REQUIRED
                if user_verification
                else UserVerificationRequirement.PREFERRED
            ),
        )
        return options.challenge, json.loads(options_to_json(options))

    @staticmethod
    def _descriptor(credential_id: str, transports: Sequence[str]) -> PublicKeyCredentialDescriptor:
        from webauthn import base64url_to_bytes

        return PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(credential_id), transports=_transports(transports) or None
        )

    # -- responses ------------------------------------------------------------------------

    @staticmethod
    def registration_challenge(
        credential: Mapping[str, Any],
    ) -> tuple[RegistrationCredential, bytes]:
        """The parsed response and the challenge it answers (to find it server side)."""
        try:
            parsed = parse_registration_credential_json(dict(credential))
            challenge = parse_client_data_json(parsed.response.client_data_json).challenge
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise CeremonyFailed("malformed", str(exc)) from exc
        return parsed, challenge

    def verify_registration(
        self, parsed: RegistrationCredential, challenge: bytes
    ) -> NewCredential:
        try:
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self.id,
                expected_origin=self.origin,
            )
        except WebAuthnException as exc:
            raise CeremonyFailed("registration", str(exc)) from exc
        transports = parsed.response.transports or []
        return NewCredential(
            credential_id=bytes_to_base64url(verified.credential_id),
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            backed_up=verified.credential_backed_up,
            transports=tuple(t.value for t in transports),
        )

    @staticmethod
    def parse_assertion(credential: Mapping[str, Any]) -> tuple[Assertion, bytes]:
        """The parsed response and the challenge it answers (to find it server side)."""
        try:
            parsed = parse_authentication_credential_json(dict(credential))
            challenge = parse_client_data_json(parsed.response.client_data_json).challenge
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise CeremonyFailed("malformed", str(exc)) from exc
        assertion = Assertion(
            credential_id=bytes_to_base64url(parsed.raw_id),
            user_handle=parsed.response.user_handle,
            client_data=parsed.response.client_data_json,
            raw=parsed,
        )
        return assertion, challenge

    def verify_assertion(
        self,
        assertion: Assertion,
        challenge: bytes,
        *,
        public_key: bytes,
        sign_count: int,
        user_verification: bool,
    ) -> VerifiedAssertion:
        """Every check of the library (type, challenge, origin, RP id hash, user presence,
        user verification when asked, signature, and a sign count that moves forward).

        A signed response whose count does not move forward is reported as ``sign_count``:
        two authenticators hold one key (a cloned authenticator)."""
        try:
            verified = verify_authentication_response(
                credential=assertion.raw,
                expected_challenge=challenge,
                expected_rp_id=self.id,
                expected_origin=self.origin,
                credential_public_key=public_key,
                credential_current_sign_count=sign_count,
                require_user_verification=user_verification,
            )
        except WebAuthnException as exc:
            if self._counter_went_back(
                assertion, challenge, public_key, sign_count, user_verification
            ):
                raise CeremonyFailed("sign_count", str(exc)) from exc
            raise CeremonyFailed("assertion", str(exc)) from exc
        return VerifiedAssertion(
            new_sign_count=verified.new_sign_count,
            backed_up=verified.credential_backed_up
            or verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            user_verified=verified.user_verified,
        )

    def _counter_went_back(
        self,
        assertion: Assertion,
        challenge: bytes,
        public_key: bytes,
        sign_count: int,
        user_verification: bool,
    ) -> bool:
        """True only when the response is otherwise valid (the library accepts it with the
        counter check set aside) and its count is not above the stored one: a genuine
        signature from a second copy of the key, not a forged message."""
        try:
            count = parse_authenticator_data(assertion.raw.response.authenticator_data).sign_count
        except (WebAuthnException, ValueError, TypeError):
            return False
        if sign_count == 0 or count > sign_count:
            return False
        try:
            verify_authentication_response(
                credential=assertion.raw,
                expected_challenge=challenge,
                expected_rp_id=self.id,
                expected_origin=self.origin,
                credential_public_key=public_key,
                credential_current_sign_count=0,
                require_user_verification=user_verification,
            )
        except WebAuthnException:
            return False
        return True
