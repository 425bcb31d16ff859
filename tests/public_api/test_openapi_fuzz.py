"""The Public API's OpenAPI document, and schemathesis over it: every operation fuzzed with
valid and invalid inputs against a real server on a real database, with zero server errors and
zero answers that break the document (status codes, content types, headers, JSON schemas).

Bounded in time: a few examples per operation, no shrinking, no example database.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.channels.factories import make_channel
from tests.conftest import asgi_client, build_app, make_tenant
from tests.fuzzing import Fuzzer
from tests.public_api.helpers import ServerThread
from tidings.core.enums import State
from tidings.core.tenancy import OrgId
from tidings.db import Database
from tidings.orgs.service import rotate_api_key
from tidings.posts.models import Post

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Examples per operation and mode: 21 operations x (positive + negative) stay well under a
#: minute on two cores.
POSITIVE_EXAMPLES = 12
NEGATIVE_EXAMPLES = 6


async def test_the_document_lists_every_endpoint_with_schemas_and_security(
    client: httpx.AsyncClient,
) -> None:
    for prefix in ("/public/v1", "/api/public/v1"):
        response = await client.get(f"{prefix}/openapi.json")
        assert response.status_code == 200
        document = response.json()
        assert document["openapi"].startswith("3.")
        assert document["components"]["securitySchemes"]["apiKey"] == {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "The organization's API key (Settings > Public API)",
        }
        operations = [
            (method.upper(), path[len(prefix) :], op)
            for path, ops in document["paths"].items()
            for method, op in ops.items()
        ]
        assert sorted((m, p) for m, p, _ in operations) == sorted(
            [
                ("GET", "/is-connected"),
                ("GET", "/integrations"),
                ("GET", "/integration-settings/{id}"),
                ("POST", "/integration-trigger/{id}"),
                ("GET", "/find-slot/{integrationId}"),
                ("GET", "/groups"),
                ("DELETE", "/integrations/{id}"),
                ("GET", "/social/{provider}"),
                ("POST", "/upload"),
                ("POST", "/upload-from-url"),
                ("GET", "/posts"),
                ("POST", "/posts"),
                ("DELETE", "/posts/group/{group}"),
                ("DELETE", "/posts/{id}"),
                ("PUT", "/posts/{id}/settings"),
                ("PUT", "/posts/{id}/status"),
                ("GET", "/posts/{id}/missing"),
                ("PUT", "/posts/{id}/release-id"),
                ("GET", "/analytics/post/{postId}"),
                ("GET", "/analytics/{integrationId}"),
                ("GET", "/notifications"),
            ]
        )
        for method, path, op in operations:
            assert op["security"] == [{"apiKey": []}], (method, path)
            assert op.get("description"), (method, path)
            ok = [code for code in op["responses"] if code.startswith("2")]
            assert len(ok) == 1, (method, path)
            assert "schema" in op["responses"][ok[0]]["content"]["application/json"]
            for code in ("401", "422"):
                error = op["responses"][code]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorOut"}, (method, path)
        body = document["paths"][f"{prefix}/posts"]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/CreatePostsIn"
        }
        assert set(document["components"]["schemas"]["CreatePostsIn"]["properties"]) >= {
            "type",
            "date",
            "shortLink",
            "tags",
            "inter",
            "posts",
        }
        upload = document["paths"][f"{prefix}/upload"]["post"]["requestBody"]["content"]
        assert "multipart/form-data" in upload
        # Served without a key, and kept out of the app API's own document.
        page = await client.get(f"{prefix}/docs")
        assert page.status_code == 200 and "openapi.json" in page.text
        assert "<script src" not in page.text  # nothing loaded from elsewhere
    app_document = (await client.get("/api/openapi.json")).json()
    assert not [p for p in app_document["paths"] if "/public/" in p]


def real_ids(path: str, ids: dict[str, str]) -> dict[str, str]:
    """Path parameters naming the organization's own rows, for ``path``."""
    values = {
        "id": ids["post"] if path.startswith("/public/v1/posts/") else ids["channel"],
        "integrationId": ids["channel"],
        "postId": ids["post"],
        "group": ids["group"],
        "provider": "mastodon",
    }
    return {name: value for name, value in values.items() if "{" + name + "}" in path}


def fuzz(base_url: str, key: str, ids: dict[str, str]) -> tuple[list[str], int]:
    """Run every operation's cases -- random inputs, then with the ids of real rows so that
    bodies reach the services -- and return the failures as readable lines and the number of
    calls. Deletions run last so that they do not hide the rows from the others."""
    schema = schemathesis.openapi.from_url(f"{base_url}/public/v1/openapi.json")
    fuzzer = Fuzzer(base_url, {"Authorization": key}, CHECKS)
    failures: list[str] = []
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: (op.method.upper() == "DELETE", op.path),
    )
    for operation in operations:
        fixed = real_ids(operation.path, ids)
        passes: list[tuple[GenerationMode, int, dict[str, str] | None]] = [
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES, None),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, None),
        ]
        if fixed:
            passes.append((GenerationMode.POSITIVE, POSITIVE_EXAMPLES, fixed))
        for mode, examples, path_parameters in passes:
            try:
                fuzzer.run(operation, mode, examples, path_parameters=path_parameters)
            # Schemathesis reports failures as a BaseExceptionGroup; one per operation and pass
            # is enough to report.
            except (Exception, BaseExceptionGroup) as exc:
                real = " with real ids" if path_parameters else ""
                failures.append(f"{operation.label} [{mode.value}{real}]: {exc}")
    return failures, fuzzer.calls


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    fresh_database: Database,
) -> None:
    tenant = await make_tenant(fresh_database)
    async with fresh_database.session() as session:
        key = await rotate_api_key(session, OrgId(tenant.org_id))
        channel = await make_channel(session, tenant.org_id, provider="mastodon")
        post = Post(
            organization_id=tenant.org_id,
            integration_id=channel.id,
            group="fuzz-group",
            content="something to list",
            publish_date=datetime.now(UTC) + timedelta(days=1),
            state=State.QUEUE,
        )
        session.add(post)
        await session.flush()
        ids = {"channel": channel.id, "post": post.id, "group": post.group}
    started = time.monotonic()
    with ServerThread(fresh_database.url) as server:
        failures, calls = await asyncio.to_thread(fuzz, server.base_url, key, ids)
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    assert calls >= 21 * 4, calls
    assert elapsed < 90, elapsed


async def test_the_fuzzing_would_catch_a_schema_violation(fresh_database: Database) -> None:
    """The harness is not blind: an answer that breaks its documented schema is reported."""
    from tidings.public_api import routes

    original = routes.public_openapi("/public/v1")
    tampered = {**original, "paths": dict(original["paths"])}
    ops = dict(tampered["paths"]["/public/v1/is-connected"])
    get = {**ops["get"], "responses": dict(ops["get"]["responses"])}
    get["responses"]["200"] = {
        "description": "lies",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["connected"],
                    "properties": {"connected": {"type": "string"}},
                }
            }
        },
    }
    ops["get"] = get
    tampered["paths"] = {"/public/v1/is-connected": ops}
    tenant = await make_tenant(fresh_database)
    async with fresh_database.session() as session:
        key = await rotate_api_key(session, OrgId(tenant.org_id))
    with ServerThread(fresh_database.url) as server:
        schema = schemathesis.openapi.from_dict(tampered)
        [operation] = [r.ok() for r in schema.get_all_operations()]

        # The harness the fuzz test runs, on one example.
        fuzzer = Fuzzer(server.base_url, {"Authorization": key}, CHECKS)
        with pytest.raises(BaseExceptionGroup, match="Schemathesis found 1 distinct failure"):
            await asyncio.to_thread(fuzzer.run, operation, GenerationMode.POSITIVE, 1)
        assert fuzzer.calls == 1
    # The real document says what the server does.
    async with asgi_client(build_app(fresh_database)) as client:
        answer = await client.get("/public/v1/is-connected", headers={"Authorization": key})
    assert answer.json() == {"connected": True}
