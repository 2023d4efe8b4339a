"""A readable device label from a User-Agent header."""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

MAX_USER_AGENT = 512


def build_parser() -> None:
    """Build the parser's patterns now. The first parse builds all of them (0.1 to 0.2 s on
    these machines): on the event loop, every request behind the first sign-in waited."""
    parse("Mozilla/5.0")


@lru_cache(maxsize=4096)
def describe_user_agent(user_agent: str | None) -> dict[str, str | None]:
    if not user_agent:
        return {"browser": None, "os": None, "device": None, "label": "Unknown device"}
    result = parse(user_agent[:MAX_USER_AGENT])
    browser = result.user_agent.family if result.user_agent else None
    os_name = result.os.family if result.os else None
    device = result.device.family if result.device else None
    if device in ("Other", "Generic Smartphone", None):
        device = None
    if browser == "Other":
        browser = None
    if os_name == "Other":
        os_name = None
    parts = [p for p in (browser, os_name) if p]
    label = " on ".join(parts) if parts else user_agent[:60]
    return {"browser": browser, "os": os_name, "device": device, "label": label}
