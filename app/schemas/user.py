"""Request and response models for users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic.networks import validate_email


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold U+0000; refuse it here as a validation error naming the field.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


def normalize_email(value: str) -> str:
    """The one form in which an address is stored and looked up: as `EmailStr` validates it
    (email-validator's Unicode NFC and IDNA normalisation), then lower-cased. Raises
    ValueError when `value` is no address at all."""
    return validate_email(value)[1].lower()


Password = Annotated[str, Field(min_length=8, max_length=128)]
FullName = Annotated[str, StringConstraints(max_length=200), AfterValidator(_storable)]


class UserCreate(BaseModel):
    """A sign-up: the email is stored lower-cased and must not be taken."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct horse battery",
                    "full_name": "Ada Lovelace",
                }
            ]
        },
    )

    email: EmailStr = Field(max_length=320)
    password: Password
    full_name: FullName | None = None

    @field_validator("email")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return normalize_email(value)


class UserUpdate(BaseModel):
    """A partial update. `is_active` and `is_admin` are honoured for admins only (403 otherwise)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"full_name": "Ada King"}]}
    )

    full_name: FullName | None = None
    password: Password | None = None
    email: EmailStr | None = Field(default=None, max_length=320)
    is_active: bool | None = None
    is_admin: bool | None = None

    @field_validator("email")
    @classmethod
    def _normalize(cls, value: str | None) -> str | None:
        return normalize_email(value) if value is not None else None


class UserRead(BaseModel):
    """An account as the API shows it (never its password hash)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                    "email": "ada@example.com",
                    "full_name": "Ada Lovelace",
                    "is_active": True,
                    "is_admin": False,
                    "created_at": "2026-01-31T09:15:00Z",
                    "updated_at": "2026-01-31T09:15:00Z",
                }
            ]
        },
    )

    id: uuid.UUID
    email: str
    full_name: str | None
    is_active: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime


class UserPage(BaseModel):
    """One page of users, oldest first."""

    items: list[UserRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )
