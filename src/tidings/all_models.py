"""Imports every model so the metadata (and SQLAlchemy's class registry) is complete."""

from tidings.accounts.models import ItemUser, User, UserSession
from tidings.automation.models import (
    AutoPost,
    AutoPostItem,
    IntegrationsWebhooks,
    ThirdParty,
    WebhookDelivery,
    WebhookEvent,
    Webhooks,
)
from tidings.billing.models import Credits, Subscription, UsedCodes
from tidings.channels.models import Integration, OAuthState, Plugs
from tidings.core.orm import Base
from tidings.core.ratelimit_models import RateLimitCounter
from tidings.marketplace.models import (
    Messages,
    MessagesGroup,
    OrderItems,
    Orders,
    SocialMediaAgency,
    SocialMediaAgencyNiche,
)
from tidings.media.models import Media
from tidings.notifications.models import Notifications
from tidings.orgs.models import Customer, Organization, UserOrganization
from tidings.posts.models import (
    Comments,
    Errors,
    Post,
    PostAttempt,
    Sets,
    Signatures,
    Tags,
    TagsPosts,
)

metadata = Base.metadata

__all__ = [
    "AutoPost",
    "AutoPostItem",
    "Base",
    "Comments",
    "Credits",
    "Customer",
    "Errors",
    "Integration",
    "IntegrationsWebhooks",
    "ItemUser",
    "Media",
    "Messages",
    "MessagesGroup",
    "Notifications",
    "OAuthState",
    "OrderItems",
    "Orders",
    "Organization",
    "Plugs",
    "Post",
    "PostAttempt",
    "RateLimitCounter",
    "Sets",
    "Signatures",
    "SocialMediaAgency",
    "SocialMediaAgencyNiche",
    "Subscription",
    "Tags",
    "TagsPosts",
    "ThirdParty",
    "UsedCodes",
    "User",
    "UserOrganization",
    "UserSession",
    "WebhookDelivery",
    "WebhookEvent",
    "Webhooks",
    "metadata",
]
