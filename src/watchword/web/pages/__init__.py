"""The pages people use: sign-in, sign-up, the account page and the admin console.

Server-rendered Jinja2 templates and small ES modules, every asset shipped in the package,
calling the same services (and, from the browser, the same JSON API) as everything else.
``WATCHWORD_UI=false`` leaves them out; ``WATCHWORD_UI_TITLE`` names the product on them.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from watchword.config import Settings
from watchword.web.pages import account, admin, factors, mail_links
from watchword.web.pages.rendering import HERE
from watchword.web.pages.signin import login_url, safe_next, sign_in

ASSETS = "/assets"


def install(app: FastAPI, settings: Settings) -> bool:
    """Mount the pages and their assets on ``app``; ``False`` when they are turned off."""
    if not settings.ui:
        return False
    app.include_router(account.router)
    app.include_router(factors.router)
    app.include_router(admin.router)
    app.include_router(mail_links.router)
    app.mount(ASSETS, StaticFiles(directory=HERE / "static"), name="assets")
    return True


__all__ = ["install", "login_url", "safe_next", "sign_in"]
