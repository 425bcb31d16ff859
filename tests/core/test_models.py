"""Behaviour of the data model on real PostgreSQL: unique constraints, foreign keys on delete,
defaults, enums, soft delete and encryption at rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import ItemUser, User
from tidings.automation.models import AutoPost, AutoPostItem, IntegrationsWebhooks, Webhooks
from tidings.billing.models import Credits, Subscription
from tidings.channels.models import Integration, Plugs
from tidings.core.enums import Period, Provider, Role, State, SubscriptionTier
from tidings.core.ids import new_cuid, new_uuid
from tidings.media.models import Media
from tidings.notifications.models import Notifications
from tidings.orgs.models import Customer, Organization, UserOrganization
from tidings.posts.models import (
    Comments,
    Errors,
    Post,
    PostAttempt,
    Signatures,
    Tags,
    TagsPosts,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def _org(db: AsyncSession, name: str = "Acme") -> Organization:
    org = Organization(name=name)
    db.add(org)
    await db.flush()
    return org


async def _user(db: AsyncSession, email: str | None = None) -> User:
    user = User(email=email or f"{new_uuid()}@example.com", provider_name=Provider.LOCAL)
    db.add(user)
    await db.flush()
    return user


async def _channel(db: AsyncSession, org: Organization, internal_id: str = "acct-1") -> Integration:
    channel = Integration(
        organization_id=org.id,
        internal_id=internal_id,
        name="Channel",
        provider_identifier="mastodon",
        type="social",
        token="access-token-secret",
    )
    db.add(channel)
    await db.flush()
    return channel


async def _post(db: AsyncSession, channel: Integration, **kwargs: Any) -> Post:
    post = Post(
        organization_id=channel.organization_id,
        integration_id=channel.id,
        content="hello",
        group=kwargs.pop("group", new_uuid()),
        publish_date=kwargs.pop("publish_date", NOW),
        **kwargs,
    )
    db.add(post)
    await db.flush()
    return post


async def _violates(db: AsyncSession, *rows: Any) -> str:
    """Add rows in a savepoint; return the violated constraint's name."""
    with pytest.raises(IntegrityError) as info:
        async with db.begin_nested():
            db.add_all(rows)
            await db.flush()
    return str(info.value.orig.diag.constraint_name)  # type: ignore[union-attr]


# ---- unique constraints ----------------------------------------------------------------------


async def test_user_email_unique_per_provider(db: AsyncSession) -> None:
    await _user(db, "same@example.com")
    name = await _violates(db, User(email="same@example.com", provider_name=Provider.LOCAL))
    assert name == "uq_users_email_provider_name"
    db.add(User(email="same@example.com", provider_name=Provider.GITHUB))
    await db.flush()


async def test_membership_unique_per_user_and_org(db: AsyncSession) -> None:
    org, user = await _org(db), await _user(db)
    db.add(UserOrganization(user_id=user.id, organization_id=org.id))
    await db.flush()
    name = await _violates(db, UserOrganization(user_id=user.id, organization_id=org.id))
    assert name == "uq_user_organization_user_id_organization_id"


async def test_channel_unique_per_org_and_internal_id(db: AsyncSession) -> None:
    org_a, org_b = await _org(db, "A"), await _org(db, "B")
    await _channel(db, org_a, "acct")
    await _channel(db, org_b, "acct")  # the same account in another organization is fine
    name = await _violates(
        db,
        Integration(
            organization_id=org_a.id,
            internal_id="acct",
            name="dup",
            provider_identifier="x",
            type="social",
            token="t",
        ),
    )
    assert name == "uq_integration_organization_id_internal_id"


async def test_one_subscription_per_org(db: AsyncSession) -> None:
    org = await _org(db)
    sub = {"subscription_tier": SubscriptionTier.PRO, "period": Period.MONTHLY}
    db.add(Subscription(organization_id=org.id, total_channels=5, **sub))
    await db.flush()
    name = await _violates(db, Subscription(organization_id=org.id, total_channels=9, **sub))
    assert name == "uq_subscription_organization_id"


async def test_join_table_uniques(db: AsyncSession) -> None:
    org, user = await _org(db), await _user(db)
    channel = await _channel(db, org)
    post = await _post(db, channel)
    tag = Tags(name="launch", color="#ff0000", org_id=org.id)
    webhook = Webhooks(organization_id=org.id, url="https://example.com/h", events=[])
    db.add_all([tag, webhook])
    await db.flush()
    db.add_all(
        [
            TagsPosts(post_id=post.id, tag_id=tag.id),
            ItemUser(user_id=user.id, key="item"),
            Plugs(
                organization_id=org.id,
                plug_function="autoRepost",
                data="{}",
                integration_id=channel.id,
            ),
            IntegrationsWebhooks(integration_id=channel.id, webhook_id=webhook.id),
        ]
    )
    await db.flush()
    assert await _violates(db, TagsPosts(post_id=post.id, tag_id=tag.id)) == "pk_tags_posts"
    assert await _violates(db, ItemUser(user_id=user.id, key="item")) == "uq_item_user_user_id_key"
    plug = Plugs(
        organization_id=org.id, plug_function="autoRepost", data="{}", integration_id=channel.id
    )
    assert await _violates(db, plug) == "uq_plugs_plug_function_integration_id"
    dup_link = IntegrationsWebhooks(integration_id=channel.id, webhook_id=webhook.id)
    assert await _violates(db, dup_link) == "pk_integrations_webhooks"


async def test_feed_items_are_remembered_once(db: AsyncSession) -> None:
    org = await _org(db)
    feed = AutoPost(
        organization_id=org.id, name="Blog", url="https://e.com/rss", integrations=[], template="t"
    )
    db.add(feed)
    await db.flush()
    db.add(AutoPostItem(auto_post_id=feed.id, key="guid-1"))
    await db.flush()
    name = await _violates(db, AutoPostItem(auto_post_id=feed.id, key="guid-1"))
    assert name == "uq_auto_post_item_auto_post_id_key"


async def test_customer_name_unique_among_live_rows_only(db: AsyncSession) -> None:
    """(org, name, deleted_at) with NULLS NOT DISTINCT: two live customers of one name
    collide; a deleted one does not block a new live one; deleted ones coexist."""
    org = await _org(db)
    first = Customer(name="Bakery", org_id=org.id)
    db.add(first)
    await db.flush()
    name = await _violates(db, Customer(name="Bakery", org_id=org.id))
    assert name == "uq_customer_org_id_name_deleted_at"

    first.deleted_at = NOW
    await db.flush()
    second = Customer(name="Bakery", org_id=org.id)
    db.add(second)
    await db.flush()
    second.deleted_at = NOW + timedelta(seconds=1)
    await db.flush()
    db.add(Customer(name="Bakery", org_id=org.id))
    await db.flush()
    other_org = await _org(db, "Other")
    db.add(Customer(name="Bakery", org_id=other_org.id))
    await db.flush()
    count = await db.scalar(
        select(func.count())
        .select_from(Customer)
        .where(Customer.org_id == org.id)
        .execution_options(include_deleted=True)
    )
    assert count == 3


async def test_one_live_tag_name_per_org(db: AsyncSession) -> None:
    org = await _org(db)
    tag = Tags(name="launch", color="#000000", org_id=org.id)
    db.add(tag)
    await db.flush()
    assert (
        await _violates(db, Tags(name="launch", color="#111111", org_id=org.id))
        == "uq_tags_org_id_name_live"
    )
    tag.deleted_at = NOW
    await db.flush()
    db.add(Tags(name="launch", color="#111111", org_id=org.id))
    await db.flush()


async def test_at_most_one_auto_added_signature_per_org(db: AsyncSession) -> None:
    org = await _org(db)
    db.add_all(
        [
            Signatures(organization_id=org.id, content="-- A", auto_add=True),
            Signatures(organization_id=org.id, content="-- B", auto_add=False),
        ]
    )
    await db.flush()
    name = await _violates(db, Signatures(organization_id=org.id, content="-- C", auto_add=True))
    assert name == "uq_signatures_auto_add"


# ---- foreign keys on delete ------------------------------------------------------------------


async def test_deleting_an_organization_removes_its_data_but_not_its_users(
    db: AsyncSession,
) -> None:
    org, user = await _org(db), await _user(db)
    db.add(UserOrganization(user_id=user.id, organization_id=org.id, role=Role.ADMIN))
    channel = await _channel(db, org)
    post = await _post(db, channel)
    db.add_all(
        [
            Media(name="a.png", path="https://x/a.png", organization_id=org.id),
            Comments(content="nice", organization_id=org.id, post_id=post.id, user_id=user.id),
            Notifications(organization_id=org.id, content="hi"),
            Tags(name="t", color="#fff", org_id=org.id),
            Customer(name="c", org_id=org.id),
            Credits(organization_id=org.id, credits=3),
            Errors(organization_id=org.id, post_id=post.id, error="boom"),
        ]
    )
    await db.flush()
    await db.execute(text("DELETE FROM organization WHERE id = :id"), {"id": org.id})
    for table in [
        "user_organization",
        "integration",
        "post",
        "media",
        "comments",
        "notifications",
        "tags",
        "customer",
        "credits",
        "errors",
    ]:
        column = "org_id" if table in {"tags", "customer"} else "organization_id"
        left = await db.scalar(
            text(f'SELECT count(*) FROM "{table}" WHERE {column} = :id'), {"id": org.id}
        )
        assert left == 0, table
    assert await db.scalar(text("SELECT count(*) FROM users WHERE id = :id"), {"id": user.id}) == 1


async def test_deleting_a_post_removes_its_thread_comments_tags_and_keeps_error_logs(
    db: AsyncSession,
) -> None:
    org, user = await _org(db), await _user(db)
    channel = await _channel(db, org)
    first = await _post(db, channel, group="g")
    reply = await _post(db, channel, group="g", parent_post_id=first.id)
    tag = Tags(name="t", color="#fff", org_id=org.id)
    db.add(tag)
    await db.flush()
    error = Errors(organization_id=org.id, post_id=first.id, error="failed")
    db.add_all(
        [
            TagsPosts(post_id=first.id, tag_id=tag.id),
            Comments(content="c", organization_id=org.id, post_id=first.id, user_id=user.id),
            PostAttempt(post_id=first.id, organization_id=org.id, attempt=1),
            error,
        ]
    )
    await db.flush()
    await db.execute(text("DELETE FROM post WHERE id = :id"), {"id": first.id})
    assert await db.scalar(text("SELECT count(*) FROM post WHERE id = :id"), {"id": reply.id}) == 0
    for table in ["tags_posts", "comments", "post_attempt"]:
        left = await db.scalar(
            text(f"SELECT count(*) FROM {table} WHERE post_id = :id"), {"id": first.id}
        )
        assert left == 0, table
    kept = await db.scalar(text("SELECT post_id FROM errors WHERE id = :id"), {"id": error.id})
    assert kept is None
    assert await db.scalar(text("SELECT count(*) FROM tags WHERE id = :id"), {"id": tag.id}) == 1


async def test_deleting_a_customer_or_a_picture_unlinks_without_deleting(db: AsyncSession) -> None:
    org = await _org(db)
    customer = Customer(name="c", org_id=org.id)
    picture = Media(name="me.png", path="https://x/me.png", organization_id=org.id)
    db.add_all([customer, picture])
    await db.flush()
    channel = await _channel(db, org)
    channel.customer_id = customer.id
    user = await _user(db)
    user.picture_id = picture.id
    await db.flush()
    await db.execute(text("DELETE FROM customer WHERE id = :id"), {"id": customer.id})
    await db.execute(text("DELETE FROM media WHERE id = :id"), {"id": picture.id})
    row = (
        await db.execute(
            text("SELECT customer_id FROM integration WHERE id = :id"), {"id": channel.id}
        )
    ).one()
    assert row.customer_id is None
    assert (
        await db.scalar(text("SELECT picture_id FROM users WHERE id = :id"), {"id": user.id})
        is None
    )


async def test_a_post_cannot_point_at_a_missing_channel(db: AsyncSession) -> None:
    org = await _org(db)
    orphan = Post(
        organization_id=org.id,
        integration_id=new_cuid(),
        content="x",
        group="g",
        publish_date=NOW,
    )
    assert await _violates(db, orphan) == "fk_post_integration_id_integration"


# ---- defaults and enums ----------------------------------------------------------------------


async def test_server_defaults_match_the_spec(db: AsyncSession) -> None:
    """Rows inserted by raw SQL (not the ORM) get the spec's defaults from the database."""
    org_id, user_id, channel_id, post_id = new_uuid(), new_uuid(), new_cuid(), new_cuid()
    await db.execute(text("INSERT INTO organization (id, name) VALUES (:id, 'o')"), {"id": org_id})
    await db.execute(
        text("INSERT INTO users (id, email, provider_name) VALUES (:id, 'd@e.f', 'LOCAL')"),
        {"id": user_id},
    )
    await db.execute(
        text("INSERT INTO user_organization (id, user_id, organization_id) VALUES (:id, :u, :o)"),
        {"id": new_uuid(), "u": user_id, "o": org_id},
    )
    await db.execute(
        text(
            "INSERT INTO integration (id, internal_id, organization_id, name, "
            "provider_identifier, type, token) VALUES (:id, 'i', :o, 'n', 'x', 'social', 't')"
        ),
        {"id": channel_id, "o": org_id},
    )
    await db.execute(
        text(
            'INSERT INTO post (id, publish_date, organization_id, integration_id, content, "group")'
            " VALUES (:id, now(), :o, :c, 'x', 'g')"
        ),
        {"id": post_id, "o": org_id, "c": channel_id},
    )
    await db.execute(
        text("INSERT INTO media (id, name, path, organization_id) VALUES (:id, 'm', 'p', :o)"),
        {"id": new_uuid(), "o": org_id},
    )
    user = (await db.execute(text("SELECT * FROM users WHERE id = :id"), {"id": user_id})).one()
    assert (user.is_super_admin, user.audience, user.activated, user.marketplace) == (
        False,
        0,
        True,
        True,
    )
    assert user.connected_account is False and user.timezone == 0
    assert user.last_online is not None and user.last_read_notifications is not None
    role = await db.scalar(
        text("SELECT role FROM user_organization WHERE user_id = :u"), {"u": user_id}
    )
    assert role == "USER"
    channel = (
        await db.execute(text("SELECT * FROM integration WHERE id = :id"), {"id": channel_id})
    ).one()
    assert channel.posting_times == [{"time": 120}, {"time": 400}, {"time": 700}]
    assert channel.additional_settings == []
    assert (channel.disabled, channel.in_between_steps, channel.refresh_needed) == (
        False,
        False,
        False,
    )
    post = (await db.execute(text("SELECT * FROM post WHERE id = :id"), {"id": post_id})).one()
    assert (post.state, post.approved_submit_for_order, post.delay, post.creation_method) == (
        "QUEUE",
        "NO",
        0,
        "UI",
    )
    media = (
        await db.execute(text("SELECT * FROM media WHERE organization_id = :o"), {"o": org_id})
    ).one()
    assert (media.type, media.file_size) == ("image", 0)
    org = (
        await db.execute(text("SELECT * FROM organization WHERE id = :id"), {"id": org_id})
    ).one()
    assert (org.allow_trial, org.is_trailing) == (False, False)


async def test_orm_defaults(db: AsyncSession) -> None:
    org = await _org(db)
    channel = await _channel(db, org)
    post = await _post(db, channel)
    assert post.state is State.QUEUE
    assert channel.posting_times == [{"time": 120}, {"time": 400}, {"time": 700}]
    assert post.id.startswith("c") and len(post.id) == 25
    credits = Credits(organization_id=org.id, credits=1)
    webhook = Webhooks(organization_id=org.id, url="https://e.com", events=["post.published"])
    db.add_all([credits, webhook])
    await db.flush()
    await db.refresh(credits)
    await db.refresh(webhook)
    assert credits.type == "ai_images"
    assert webhook.enabled is True


@pytest.mark.parametrize(
    ("statement", "value"),
    [
        ("UPDATE post SET state = :v", "SCHEDULED"),
        ("UPDATE user_organization SET role = :v", "OWNER"),
        ("UPDATE users SET provider_name = :v", "local"),
    ],
)
async def test_enums_refuse_unknown_labels(db: AsyncSession, statement: str, value: str) -> None:
    with pytest.raises(DBAPIError, match="invalid input value for enum"):
        async with db.begin_nested():
            await db.execute(text(statement), {"v": value})


# ---- soft delete and encryption --------------------------------------------------------------


async def test_soft_deleted_rows_are_invisible_unless_asked_for(db: AsyncSession) -> None:
    org = await _org(db)
    channel = await _channel(db, org)
    live = await _post(db, channel)
    gone = await _post(db, channel, deleted_at=NOW)
    found = (await db.execute(select(Post).where(Post.organization_id == org.id))).scalars().all()
    assert [p.id for p in found] == [live.id]
    assert await db.get(Post, gone.id) is not None  # identity map; a fresh query hides it
    db.expunge_all()
    assert (await db.execute(select(Post).where(Post.id == gone.id))).scalar_one_or_none() is None
    everything = (
        (
            await db.execute(
                select(Post)
                .where(Post.organization_id == org.id)
                .execution_options(include_deleted=True)
            )
        )
        .scalars()
        .all()
    )
    assert {p.id for p in everything} == {live.id, gone.id}
    # Joins hide deleted rows of every soft-deletable entity involved.
    channel_row = await db.get(Integration, channel.id)
    assert channel_row is not None
    channel_row.deleted_at = NOW
    await db.flush()
    db.expunge_all()
    joined = (
        await db.execute(select(Post).join(Integration).where(Post.organization_id == org.id))
    ).all()
    assert joined == []


async def test_tokens_and_secrets_are_encrypted_at_rest(db: AsyncSession) -> None:
    org = await _org(db)
    channel = await _channel(db, org)
    channel.refresh_token = "refresh-secret"
    channel.custom_instance_details = '{"client_secret": "app-secret"}'
    webhook = Webhooks(organization_id=org.id, url="https://e.com", events=[], secret="whsec_abc")
    db.add(webhook)
    await db.flush()
    raw = (
        await db.execute(
            text(
                "SELECT token, refresh_token, custom_instance_details FROM integration "
                "WHERE id = :id"
            ),
            {"id": channel.id},
        )
    ).one()
    for value, secret in zip(
        raw, ["access-token-secret", "refresh-secret", "app-secret"], strict=True
    ):
        assert value.startswith("enc:v1:")
        assert secret not in value
    raw_secret = await db.scalar(
        text("SELECT secret FROM webhooks WHERE id = :id"), {"id": webhook.id}
    )
    assert raw_secret.startswith("enc:v1:") and "whsec_abc" not in raw_secret
    db.expunge_all()
    again = await db.get(Integration, channel.id)
    assert again is not None
    assert (again.token, again.refresh_token) == ("access-token-secret", "refresh-secret")
