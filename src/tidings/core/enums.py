"""The spec's enumerations, stored as PostgreSQL enums whose labels are exactly these values."""

from __future__ import annotations

import enum


class Provider(enum.StrEnum):
    """How a user signs in."""

    LOCAL = "LOCAL"
    GITHUB = "GITHUB"
    GOOGLE = "GOOGLE"
    FARCASTER = "FARCASTER"
    WALLET = "WALLET"
    GENERIC = "GENERIC"


class Role(enum.StrEnum):
    """A member's role in an organization."""

    SUPERADMIN = "SUPERADMIN"
    ADMIN = "ADMIN"
    USER = "USER"


class State(enum.StrEnum):
    """A post's state."""

    QUEUE = "QUEUE"
    PUBLISHED = "PUBLISHED"
    ERROR = "ERROR"
    DRAFT = "DRAFT"


class SubscriptionTier(enum.StrEnum):
    STANDARD = "STANDARD"
    PRO = "PRO"
    TEAM = "TEAM"
    ULTIMATE = "ULTIMATE"


class Period(enum.StrEnum):
    MONTHLY = "MONTHLY"
    YEARLY = "YEARLY"


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    CANCELED = "CANCELED"
    COMPLETED = "COMPLETED"


class ApprovedSubmitForOrder(enum.StrEnum):
    """Whether a post submitted for a marketplace order was approved by the buyer."""

    NO = "NO"
    WAITING_CONFIRMATION = "WAITING_CONFIRMATION"
    YES = "YES"


class MessageFrom(enum.StrEnum):
    """Who wrote a marketplace message."""

    BUYER = "BUYER"
    SELLER = "SELLER"


class CreationMethod(enum.StrEnum):
    """Where a post came from (not in the spec; Postiz users filter on it)."""

    UI = "UI"
    API = "API"
    AUTOPOST = "AUTOPOST"
    CLI = "CLI"
