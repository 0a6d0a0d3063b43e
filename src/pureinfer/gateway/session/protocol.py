"""Wire models of `/session`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    admin_key: str = Field(min_length=1, max_length=1000)


class SessionOut(BaseModel):
    csrf_token: str = Field(description="send it as X-CSRF-Token with every state-changing request")
    key_id: str | None = Field(description="the admin key's short id, as audit rows name it")
    expires_at: datetime
