"""Standard Webhooks signing against the specification's published test vector, and the retry
schedule (no database, no network)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from tidings.automation.models import Webhooks
from tidings.automation.webhooks import (
    InvalidSecret,
    backoff,
    generate_secret,
    secret_key,
    signature,
    signed_headers,
    signing_secrets,
)

# The test vector published with the Standard Webhooks specification and its libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_published_test_vector() -> None:
    assert signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    headers = signed_headers([VECTOR_SECRET], VECTOR_ID, VECTOR_BODY, now=VECTOR_TIMESTAMP)
    assert headers["webhook-id"] == VECTOR_ID
    assert headers["webhook-timestamp"] == str(VECTOR_TIMESTAMP)
    assert headers["webhook-signature"] == VECTOR_SIGNATURE


def test_several_secrets_give_space_separated_signatures() -> None:
    other = generate_secret()
    headers = signed_headers([other, VECTOR_SECRET], VECTOR_ID, VECTOR_BODY)
    parts = headers["webhook-signature"].split(" ")
    timestamp = int(headers["webhook-timestamp"])
    assert parts == [
        signature(other, VECTOR_ID, timestamp, VECTOR_BODY),
        signature(VECTOR_SECRET, VECTOR_ID, timestamp, VECTOR_BODY),
    ]
    # The reference library accepts the header with either secret.
    for secret in (other, VECTOR_SECRET):
        verified = standardwebhooks.Webhook(secret).verify(VECTOR_BODY, headers)
        assert verified == {"test": 2432232314}


def test_the_previous_secret_signs_until_its_deadline() -> None:
    now = datetime.now(UTC)
    row = Webhooks(secret="whsec_new", previous_secret="whsec_old")
    row.previous_secret_until = now + timedelta(seconds=1)
    assert signing_secrets(row, now) == ["whsec_new", "whsec_old"]
    row.previous_secret_until = now
    assert signing_secrets(row, now) == ["whsec_new"]
    row.previous_secret_until = None
    assert signing_secrets(row, now) == ["whsec_new"]


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_not base64!",
        "whsec_c2hvcnQ=",  # 5 bytes
        "whsec_" + "A" * 100,  # 75 bytes
    ],
)
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(InvalidSecret):
        secret_key(secret)


def test_generated_secrets_are_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second and len(secret_key(first)) == 32


def test_backoff_is_exponential_and_capped(configure: Callable[..., None]) -> None:
    configure(webhook_backoff_base_seconds=30, webhook_backoff_cap_seconds=3600)
    waits = [backoff(attempt).total_seconds() for attempt in range(1, 9)]
    assert waits == [30, 120, 480, 1920, 3600, 3600, 3600, 3600]
