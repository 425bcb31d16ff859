"""Configuration from the environment, the secret key, encryption and token hashing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tidings.config import Settings, get_settings
from tidings.core import crypto
from tidings.db import to_libpq_url, to_sqlalchemy_url


def test_settings_read_the_tidings_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIDINGS_DATABASE_URL", "postgresql://me@db.example:5433/tidings")
    monkeypatch.setenv("TIDINGS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TIDINGS_PUBLIC_URL", "https://social.example.com/")
    monkeypatch.setenv("TIDINGS_PORT", "9000")
    monkeypatch.setenv("TIDINGS_ALLOW_PRIVATE_URLS", "true")
    settings = Settings()
    assert settings.database_url == "postgresql://me@db.example:5433/tidings"
    assert not settings.embedded
    assert settings.data_dir == tmp_path
    assert settings.public_url == "https://social.example.com"
    assert settings.port == 9000
    assert settings.allow_private_urls is True


def test_no_database_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_DATABASE_URL", "")
    assert Settings().embedded


def test_database_url_must_be_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_DATABASE_URL", "mysql://root@localhost/db")
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings()


def test_urls_as_users_write_them_are_converted_for_each_driver() -> None:
    assert to_sqlalchemy_url("postgresql://u@h:5432/d") == "postgresql+psycopg://u@h:5432/d"
    assert to_sqlalchemy_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert to_libpq_url("postgresql+psycopg://u@h:5432/d?sslmode=require") == (
        "postgresql://u@h:5432/d?sslmode=require"
    )
    socket_url = "postgresql://postgres:@/tidings?host=/var/run/pg"
    assert to_libpq_url(to_sqlalchemy_url(socket_url)) == socket_url


def test_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key=None)
    first = settings.resolved_secret_key()
    assert len(first) >= 40
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0
    assert Settings(data_dir=tmp_path / "data", secret_key=None).resolved_secret_key() == first
    assert Settings(data_dir=tmp_path / "data", secret_key="given").resolved_secret_key() == "given"


def test_secret_key_file_is_read_once(tmp_path: Path) -> None:
    """Every encryption asks for the key: it must not cost a file read each time."""
    settings = Settings(data_dir=tmp_path, secret_key=None)
    key = settings.resolved_secret_key()
    (tmp_path / "secret_key").unlink()
    assert settings.resolved_secret_key() == key
    assert not (tmp_path / "secret_key").exists()


def test_encryption_round_trip_and_tamper_detection() -> None:
    stored = crypto.encrypt("oauth-access-token")
    assert stored.startswith("enc:v1:") and "oauth-access-token" not in stored
    assert crypto.decrypt(stored) == "oauth-access-token"
    assert crypto.encrypt("same") != crypto.encrypt("same")  # random IV
    tampered = stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB")
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(tampered)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt("plaintext")


def test_another_secret_key_cannot_decrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = crypto.encrypt("token")
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "a-different-key")
    get_settings.cache_clear()
    try:
        with pytest.raises(crypto.DecryptionError, match="TIDINGS_SECRET_KEY"):
            crypto.decrypt(stored)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert crypto.decrypt(stored) == "token"


def test_token_hash_is_stable_and_one_way() -> None:
    assert crypto.hash_token("abc") == crypto.hash_token("abc")
    assert crypto.hash_token("abc") != crypto.hash_token("abd")
    assert len(crypto.hash_token("abc")) == 64
    assert crypto.sign(b"m", "webhooks") != crypto.sign(b"m", "invites")
