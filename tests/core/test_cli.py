"""The ``tidings`` command, run as a user runs it (a subprocess) against real PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tidings.core import crypto
from tidings.db import Database


def run_cli(
    *args: str,
    database_url: str | None,
    data_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_SECRET_KEY"] = "cli-test-secret"
    if database_url is not None:
        env["TIDINGS_DATABASE_URL"] = database_url
    if data_dir is not None:
        env["TIDINGS_DATA_DIR"] = str(data_dir)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]


def test_users_create_then_api_key(fresh_database: Database) -> None:
    url = fresh_database.url
    created = run_cli(
        "users",
        "create",
        "--email",
        "Owner@Example.com",
        "--password",
        "long enough pw",
        "--name",
        "Owner",
        "--org",
        "Acme Agency",
        database_url=url,
    )
    assert created.returncode == 0, created.stderr
    ids = json.loads(created.stdout)
    assert ids["email"] == "owner@example.com"
    assert ids["organization"] == "Acme Agency"
    with psycopg.connect(url) as conn:
        role = conn.execute(
            "SELECT role FROM user_organization WHERE user_id = %s AND organization_id = %s",
            (ids["user_id"], ids["organization_id"]),
        ).fetchone()
        assert role == ("ADMIN",)
        password = conn.execute(
            "SELECT password FROM users WHERE id = %s", (ids["user_id"],)
        ).fetchone()
        assert password is not None and password[0].startswith("$argon2id$")

    by_name = run_cli("orgs", "api-key", "--org", "Acme Agency", database_url=url)
    assert by_name.returncode == 0, by_name.stderr
    first_key = json.loads(by_name.stdout)["api_key"]
    by_id = run_cli("orgs", "api-key", "--org", ids["organization_id"], database_url=url)
    second_key = json.loads(by_id.stdout)["api_key"]
    assert first_key != second_key
    with psycopg.connect(url) as conn:
        stored = conn.execute(
            "SELECT api_key FROM organization WHERE id = %s", (ids["organization_id"],)
        ).fetchone()
    # Only the hash of the newest key is kept: the first key no longer works.
    assert stored == (crypto.hash_token(second_key),)


def test_bad_input_gives_one_clear_line_and_creates_nothing(fresh_database: Database) -> None:
    url = fresh_database.url
    ok = run_cli(
        "users",
        "create",
        "--email",
        "a@example.com",
        "--password",
        "password1",
        "--org",
        "First",
        database_url=url,
    )
    assert ok.returncode == 0, ok.stderr

    duplicate = run_cli(
        "users",
        "create",
        "--email",
        "A@EXAMPLE.com",
        "--password",
        "password1",
        "--org",
        "Second",
        database_url=url,
    )
    assert_one_line_error(duplicate, "email: a user with this email already exists")
    bad_email = run_cli(
        "users",
        "create",
        "--email",
        "not-an-email",
        "--password",
        "password1",
        "--org",
        "Third",
        database_url=url,
    )
    assert_one_line_error(bad_email, "email: invalid email")
    short = run_cli(
        "users",
        "create",
        "--email",
        "b@example.com",
        "--password",
        "short",
        "--org",
        "Fourth",
        database_url=url,
    )
    assert_one_line_error(short, "password must be at least 8 characters")
    blank_org = run_cli(
        "users",
        "create",
        "--email",
        "c@example.com",
        "--password",
        "password1",
        "--org",
        "  ",
        database_url=url,
    )
    assert_one_line_error(blank_org, "name: organization name must not be empty")
    missing_org = run_cli("orgs", "api-key", "--org", "Nope", database_url=url)
    assert_one_line_error(missing_org, "no organization named or with id 'Nope'")

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
        assert conn.execute("SELECT name FROM organization").fetchall() == [("First",)]


def test_missing_option_is_a_usage_error(fresh_database: Database) -> None:
    result = run_cli(
        "users",
        "create",
        "--email",
        "a@example.com",
        "--password",
        "password1",
        database_url=fresh_database.url,
    )
    assert result.returncode == 2
    assert "--org" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_or_invalid_database_is_one_line() -> None:
    unreachable = run_cli("db", "upgrade", database_url="postgresql://postgres@127.0.0.1:1/nowhere")
    assert_one_line_error(unreachable, "cannot connect to the database")
    invalid = run_cli("db", "upgrade", database_url="mysql://root@localhost/tidings")
    assert_one_line_error(invalid, "postgresql://")


def test_db_upgrade_is_idempotent(fresh_database: Database) -> None:
    for _ in range(2):
        result = run_cli("db", "upgrade", database_url=fresh_database.url)
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_starts_on_the_embedded_database(tmp_path: Path) -> None:
    """No TIDINGS_DATABASE_URL: `tidings serve` starts its own PostgreSQL and answers /health."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "tidings.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                body = response.json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert body is not None, process.stdout.read() if process.stdout else ""
        assert body["status"] == "ok"
        assert body["embedded_database"] is True
        assert body["schema_revision"]
        assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
        assert (tmp_path / "data" / "secret_key").exists()
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()
    # The embedded server stops with its last user.
    deadline = time.monotonic() + 20
    pid_file = tmp_path / "data" / "postgres" / "postmaster.pid"
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not pid_file.exists()
