"""Configuration, read once from the environment (prefix ``TIDINGS_``).

Only wiring lives here: every value has a safe default so that ``tidings serve`` works with no
configuration at all (embedded database, data under the platform's user data dir).
"""

from __future__ import annotations

import os
import secrets
import warnings
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

with warnings.catch_warnings():
    # platformdirs warns about XDG_RUNTIME_DIR on headless machines; irrelevant for the data dir.
    warnings.simplefilter("ignore")
    import platformdirs


def _default_data_dir() -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_data_dir("tidings", appauthor=False))


class Settings(BaseSettings):
    """Every setting of Tidings; the environment variable is the field name prefixed TIDINGS_."""

    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="ignore")
    _secret_from_file: str | None = PrivateAttr(default=None)

    database_url: str | None = Field(
        default=None,
        description="postgresql://user@host:port/db. Unset: the embedded PostgreSQL is used.",
    )
    data_dir: Path = Field(default_factory=_default_data_dir)
    secret_key: str | None = Field(
        default=None, description="Unset: generated once and kept in the data dir."
    )
    public_url: str = "http://127.0.0.1:8000"
    host: str = "127.0.0.1"
    port: int = 8000
    allow_private_urls: bool = False
    disable_registration: bool = False
    # Sign-in with GitHub / Google / a generic OpenID Connect provider (each enabled when its
    # client id is set). Endpoint URLs are overridable for self-hosted or test servers; an OIDC
    # issuer alone is enough when it serves /.well-known/openid-configuration.
    github_client_id: str | None = None
    github_client_secret: str | None = None
    github_oauth_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    google_client_id: str | None = None
    google_client_secret: str | None = None
    google_authorization_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    google_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
    google_userinfo_url: str = "https://openidconnect.googleapis.com/v1/userinfo"
    oidc_issuer: str | None = None
    oidc_authorization_url: str | None = None
    oidc_token_url: str | None = None
    oidc_userinfo_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid email profile"
    oidc_display_name: str = "Single sign-on"
    # Lifetimes of emailed links.
    password_reset_ttl_minutes: int = 60
    invite_ttl_days: int = 7
    billing: bool = False
    log_level: str = "INFO"
    # Limits of the media library, in bytes.
    max_image_bytes: int = 10 * 1024 * 1024
    max_video_bytes: int = 1024 * 1024 * 1024
    max_pdf_bytes: int = 20 * 1024 * 1024
    # Public API: posts created per organization per hour.
    public_api_posts_per_hour: int = 90
    # Optional Redis for shared counters (e.g. the Public API rate limit); unset: PostgreSQL.
    redis_url: str | None = None
    # Publishing engine (per worker process): posts in flight at once, and per provider.
    publish_concurrency: int = 100
    publish_provider_concurrency: int = 50
    # Storage: "local" (under the data dir) or "s3".
    storage: str = "local"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_public_url: str | None = None
    # Mail: unset SMTP host means the log mailer.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "tidings@localhost"
    smtp_starttls: bool = True
    # Outgoing webhooks: attempts per event, exponential backoff (base * 4**n, capped), timeout
    # of one attempt, and how many events in a row may fail before the endpoint is disabled.
    webhook_max_attempts: int = 6
    webhook_backoff_base_seconds: float = 30.0
    webhook_backoff_cap_seconds: float = 3600.0
    webhook_timeout_seconds: float = 10.0
    webhook_disable_after: int = 10
    # Delivered and given-up events (with their delivery log) are kept this many days.
    webhook_retention_days: int = 30
    # RSS/Atom auto-posting: how often feeds are polled (minutes) and the timeout of one fetch.
    autopost_interval_minutes: int = 15
    autopost_timeout_seconds: float = 15.0

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        scheme = urlsplit(value).scheme
        if scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
            raise ValueError(
                "TIDINGS_DATABASE_URL must be a postgresql:// URL, e.g. "
                "postgresql://user@127.0.0.1:5432/tidings"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def embedded(self) -> bool:
        """True when Tidings runs its own PostgreSQL (no database URL configured)."""
        return self.database_url is None

    def ensure_data_dir(self) -> Path:
        """Create the data dir (private to the user) and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir

    def resolved_secret_key(self) -> str:
        """The secret key: configured, else read from (or generated into) the data dir.

        Read once per Settings instance: every encryption asks for it.
        """
        if self.secret_key:
            return self.secret_key
        if self._secret_from_file is None:
            self._secret_from_file = self._read_or_create_secret()
        return self._secret_from_file

    def _read_or_create_secret(self) -> str:
        path = self.ensure_data_dir() / "secret_key"
        if path.exists():
            return path.read_text().strip()
        key = secrets.token_urlsafe(48)
        # O_EXCL: two processes starting at once must not write two different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()
