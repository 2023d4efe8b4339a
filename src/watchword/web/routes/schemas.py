"""Request bodies. Unknown fields are refused; every string is bounded."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from watchword.domain.errors import InvalidInput
from watchword.services.clients import AppRegistration

# What ``check_label`` accepts: no control characters (Unicode category Cc). Declared in the
# schema only: the handler's own check answers 400 with a precise message.
DOCUMENTED_LABEL: dict[str, Any] = {"pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"}
ROLE_NAME: dict[str, Any] = {"pattern": r"^[a-z][a-z0-9_:-]{0,63}$"}


def _printable_name(value: str) -> str:
    # The services check it too (the CLI reaches them directly); here a name JSON Schema
    # cannot judge (an unassigned or format character) is a 422 like any other bad field.
    name = value.strip()
    if not name or not name.isprintable():
        raise ValueError("must be 1 to 100 printable characters")
    return name


# The name of a key or client: shown in lists and audit lines, so printable only.
KeyName = Annotated[
    str,
    Field(min_length=1, max_length=100, json_schema_extra=DOCUMENTED_LABEL),
    AfterValidator(_printable_name),
]


# RFC 6749 section 3.3 scope-token, as domain.scopes checks it: a list of them, or one
# space-separated string of at least one.
SCOPE_TOKEN = r"[\x21\x23-\x5b\x5d-\x7e]{1,128}"
Scopes = (
    Annotated[
        list[Annotated[str, Field(pattern=f"^{SCOPE_TOKEN}$")]],
        Field(min_length=1, max_length=64),
    ]
    | Annotated[str, Field(pattern=f"^ *{SCOPE_TOKEN}( +{SCOPE_TOKEN})* *$", max_length=4096)]
)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class Registration(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    first_name: Annotated[str, Field(max_length=200, json_schema_extra=DOCUMENTED_LABEL)] | None = (
        None
    )
    last_name: Annotated[str, Field(max_length=200, json_schema_extra=DOCUMENTED_LABEL)] | None = (
        None
    )


class Login(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    device_name: (
        Annotated[str, Field(max_length=100, json_schema_extra=DOCUMENTED_LABEL)] | None
    ) = None
    # "token": access and refresh tokens in the body instead of a cookie.
    mode: Literal["cookie", "token"] = "cookie"


class PasswordChange(Body):
    current_password: str = Field(max_length=4096)
    new_password: str = Field(max_length=4096)


class UserPatch(Body):
    # An empty patch changes nothing and is refused (400): the schema says so too.
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    disabled: bool | SkipJsonSchema[None] = None
    roles: (
        Annotated[list[Annotated[str, Field(json_schema_extra=ROLE_NAME)]], Field(max_length=32)]
        | SkipJsonSchema[None]
    ) = None


_URI = Annotated[str, Field(min_length=1, max_length=2048)]


class ClientRegistration(Body):
    """An OAuth2 client: a machine (client credentials) or an app that signs people in."""

    name: KeyName
    client_type: Literal["confidential", "public"] = "confidential"
    scopes: (
        Annotated[list[Annotated[str, Field(pattern=f"^{SCOPE_TOKEN}$")]], Field(max_length=64)]
        | SkipJsonSchema[None]
    ) = None
    token_format: Literal["jwt", "opaque"] = "jwt"
    grant_types: (
        Annotated[
            list[Literal["client_credentials", "authorization_code", "refresh_token"]],
            Field(max_length=3),
        ]
        | SkipJsonSchema[None]
    ) = None
    redirect_uris: Annotated[list[_URI], Field(max_length=10)] = []
    first_party: bool = False
    backchannel_logout_uri: _URI | SkipJsonSchema[None] = None
    post_logout_redirect_uris: Annotated[list[_URI], Field(max_length=10)] = []
    id_token_signed_response_alg: Literal["RS256", "ES256", "EdDSA"] | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _coherent(self) -> ClientRegistration:
        # Which grants go with which type and URIs is a rule across fields: a body that breaks
        # it is a 422 naming the problem, like any other invalid field.
        try:
            self.app_registration()
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc
        return self

    def app_registration(self) -> AppRegistration:
        return AppRegistration.parse(
            client_type=self.client_type,
            grant_types=self.grant_types,
            redirect_uris=self.redirect_uris,
            first_party=self.first_party,
            backchannel_logout_uri=self.backchannel_logout_uri,
            post_logout_redirect_uris=self.post_logout_redirect_uris,
            id_token_signed_response_alg=self.id_token_signed_response_alg,
        ).checked()
