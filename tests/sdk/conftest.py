from __future__ import annotations

import pytest

from tests.sdk.issuer import Clock, FakeIssuer


@pytest.fixture
def sdk_clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(sdk_clock: Clock) -> FakeIssuer:
    fake = FakeIssuer(sdk_clock)
    fake.add_key("k1", "EdDSA")
    return fake
