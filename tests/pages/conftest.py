"""Helpers for the pages' HTTP tests: sign in through the form, read a form's token."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import Client
from tests.helpers import PASSWORD
from watchword.services.context import RequestContext

TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')
CLI = RequestContext.of("127.0.0.1", "tests")


def form_token(html: str) -> str:
    match = TOKEN.search(html)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


async def page_login(
    client: httpx.AsyncClient,
    email: str = "alice@example.com",
    password: str = PASSWORD,
    **fields: str,
) -> httpx.Response:
    page = await client.get("/login")
    assert page.status_code == 200, page.text
    return await client.post(
        "/login",
        data={"csrf_token": form_token(page.text), "email": email, "password": password, **fields},
    )


async def signed_in_page(client: Client, path: str = "/account") -> tuple[str, str]:
    """(the page's HTML, its CSRF token) for a signed-in client."""
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return page.text, form_token(page.text)


async def make_admin(client: Client, email: str = "root@example.com") -> Any:
    return await client.container.accounts.register(
        email=email, password=PASSWORD, roles=["admin"], ctx=CLI, self_service=False
    )
