"""Request bodies. Unknown fields are refused; every string is bounded."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class Registration(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)


class Login(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    device_name: str | None = Field(default=None, max_length=100)
    # "token" (issue 3): access and refresh tokens in the body instead of a cookie.
    mode: Literal["cookie", "token"] = "cookie"


class PasswordChange(Body):
    current_password: str = Field(max_length=4096)
    new_password: str = Field(max_length=4096)


class UserPatch(Body):
    disabled: bool | None = None
    roles: list[str] | None = Field(default=None, max_length=32)
