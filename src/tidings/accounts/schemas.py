"""JSON shapes of the accounts API (sign-in, profile, super-admin tools)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from tidings.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from tidings.core.enums import Provider, Role

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200
MAX_BIO_LENGTH = 2000
MAX_TOKEN_LENGTH = 1000


def no_nul(value: str) -> str:
    """Refuse NUL characters, which PostgreSQL text cannot store."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _valid_email(value: str) -> str:
    no_nul(value)
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email: {exc}") from exc
    return result.normalized.lower()


def _valid_timezone(value: str | None) -> str | None:
    if value is not None and value not in available_timezones():
        raise ValueError("unknown IANA time zone")
    return value


Email = Annotated[
    str, StringConstraints(min_length=3, max_length=MAX_EMAIL_LENGTH), AfterValidator(_valid_email)
]
Password = Annotated[
    str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
]
# A password typed to sign in is checked, not judged: any length up to the maximum.
GivenPassword = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_LENGTH),
    AfterValidator(no_nul),
]
Token = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LENGTH)]
#: A row id (UUID or cuid): letters, digits, "-" and "_".
RowId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(_In):
    email: Email
    password: Password
    name: Name | None = None
    organization_name: Name | None = Field(
        default=None, description="Name of the new organization (default: derived from the name)"
    )
    invite: Token | None = Field(
        default=None, description="An invite token: join that organization instead of a new one"
    )


class LoginIn(_In):
    email: Annotated[
        str, StringConstraints(min_length=1, max_length=MAX_EMAIL_LENGTH), AfterValidator(no_nul)
    ]
    password: GivenPassword


class PasswordChangeIn(_In):
    current_password: GivenPassword
    new_password: Password


class PasswordResetIn(_In):
    email: Email


class PasswordResetConfirmIn(_In):
    token: Token
    new_password: Password


class MeUpdateIn(_In):
    name: Name | None = None
    last_name: (
        Annotated[
            str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(no_nul)
        ]
        | None
    ) = None
    bio: (
        Annotated[str, StringConstraints(max_length=MAX_BIO_LENGTH), AfterValidator(no_nul)] | None
    ) = None
    timezone_name: Annotated[
        str | None, StringConstraints(max_length=64), AfterValidator(_valid_timezone)
    ] = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    name: str | None
    last_name: str | None
    bio: str | None
    provider_name: Provider
    is_super_admin: bool
    timezone_name: str | None
    last_online: datetime
    last_read_notifications: datetime
    created_at: datetime


class MembershipOut(BaseModel):
    id: str
    name: str
    role: Role


class ImpersonatorOut(BaseModel):
    id: str
    email: str


class AuthOut(BaseModel):
    """A new session. ``token`` is also set as the httpOnly session cookie; API clients send it
    as ``Authorization: Bearer <token>``."""

    token: str
    expires_at: datetime
    user: UserOut
    organization_id: str | None
    impersonator: ImpersonatorOut | None = None


class MeOut(BaseModel):
    user: UserOut
    organizations: list[MembershipOut]
    current_organization_id: str | None
    impersonator: ImpersonatorOut | None


class OAuthProviderOut(BaseModel):
    name: str
    display_name: str
    start_url: str


class ImpersonateIn(_In):
    user_id: RowId


class AdminOrgOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    members: int


class AdminOrgList(BaseModel):
    items: list[AdminOrgOut]
    total: int
