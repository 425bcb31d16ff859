"""JSON shapes of the organizations API (organizations, members, invites, API key)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from tidings.accounts.schemas import Email, RowId, Token, no_nul
from tidings.core.enums import Role

OrgName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_nul),
]
Description = Annotated[str, StringConstraints(max_length=2000), AfterValidator(no_nul)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrgCreateIn(_In):
    name: OrgName
    description: Description | None = None


class OrgUpdateIn(_In):
    name: OrgName | None = None
    description: Description | None = None


class OrgOut(BaseModel):
    id: str
    name: str
    description: str | None
    role: Role
    api_key_set: bool
    created_at: datetime


class SwitchIn(_In):
    organization_id: RowId


class MemberOut(BaseModel):
    user_id: str
    email: str
    name: str | None
    role: Role
    disabled: bool
    joined_at: datetime
    last_online: datetime


class MemberUpdateIn(_In):
    role: Role | None = None
    disabled: bool | None = None


class InviteIn(_In):
    email: Email
    role: Role = Role.USER


class InviteOut(BaseModel):
    id: str
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime


class InviteCreatedOut(InviteOut):
    """A new invite: ``url`` is the link that was emailed (shown to the admin so it can be
    passed on by hand when mail is not configured); ``email_sent`` says whether it went out."""

    url: str
    email_sent: bool


class InviteAcceptIn(_In):
    token: Token


class InvitePreviewOut(BaseModel):
    organization_id: str
    organization_name: str
    email: str
    role: Role
    expires_at: datetime


class ApiKeyOut(BaseModel):
    """The new Public API key, shown this once (only its hash is stored)."""

    api_key: str
