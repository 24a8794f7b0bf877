"""Request and response models for tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenPair(BaseModel):
    """An access token for `Authorization: Bearer`, and the refresh token to renew it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIzZmE4NWY2NC0ifQ.c2ln",
                    "refresh_token": "eyJhbGciOiJIUzI1NiJ9.eyJ0eXAiOiJyZWZyZXNoIn0.c2ln",
                    "token_type": "bearer",
                    "expires_in": 900,
                }
            ]
        }
    )

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")


class LoginForm(BaseModel):
    """The OAuth2 password grant's form (RFC 6749 section 4.3.2): the username is the email."""

    # Client id and secret, scope: what a generic OAuth2 client sends, and this service ignores.
    model_config = ConfigDict(extra="ignore")

    grant_type: Literal["password"] | None = Field(
        default=None, description="`password` when sent; may be left out."
    )
    username: str = Field(
        min_length=1,
        max_length=320,
        description="The account's email.",
        examples=["ada@example.com"],
    )
    password: str = Field(min_length=1, max_length=1024, examples=["correct horse battery"])


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(default=None, max_length=4096)


class IntrospectionRequest(BaseModel):
    """RFC 7662 section 2.1: the token, and optionally what kind the caller thinks it is."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(max_length=8192, description="The access token to look up.")
    token_type_hint: str | None = Field(
        default=None, max_length=64, description="Ignored: only access tokens are looked up."
    )


class RevocationRequest(BaseModel):
    """RFC 7009 section 2.1: the token to revoke, and optionally its kind."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(max_length=8192, description="A refresh or access token.")
    token_type_hint: str | None = Field(
        default=None,
        max_length=64,
        description="`refresh_token` or `access_token`: which kind to try first.",
    )
