"""Response models of the sessions API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class SessionRead(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime = Field(description="The last login or refresh of this session.")
    user_agent: str | None
    client_address: str | None = Field(description="As seen through the trusted proxies.")
    current: bool = Field(description="True for the session of the token making this request.")


class RevokedSessions(BaseModel):
    revoked: int = Field(description="How many live sessions were revoked.")
