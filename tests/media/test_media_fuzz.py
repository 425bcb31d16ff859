"""Schemathesis over the media library's app API (``/api/media...``): random and malformed
uploads, queries and edits against a real server on a real database, with zero server errors
and no answer that breaks its documented schema. Bounded in time like the Public API's run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import schemathesis
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.conftest import make_tenant
from tests.fuzzing import Fuzzer
from tests.public_api.helpers import ServerThread
from tidings.db import Database

from .factories import image_bytes, video_file

CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
POSITIVE_EXAMPLES = 15
NEGATIVE_EXAMPLES = 10


def fuzz(base_url: str, headers: dict[str, str], media_id: str) -> tuple[list[str], int]:
    """Every media operation, random inputs then the id of a real media; deletions last."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json").include(
        path_regex=r"^/api/media"
    )
    fuzzer = Fuzzer(base_url, headers, CHECKS)
    failures: list[str] = []
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()),
        key=lambda op: (op.method.upper() == "DELETE", op.path),
    )
    for operation in operations:
        passes: list[tuple[GenerationMode, int, dict[str, str] | None]] = [
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES, None),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, None),
        ]
        if "{media_id}" in operation.path:
            passes.append((GenerationMode.POSITIVE, POSITIVE_EXAMPLES, {"media_id": media_id}))
        for mode, examples, path_parameters in passes:
            try:
                fuzzer.run(operation, mode, examples, path_parameters=path_parameters)
            except Unsatisfiable:
                continue  # no invalid value exists (a free-form string in the path)
            except (Exception, BaseExceptionGroup) as exc:
                real = " with a real id" if path_parameters else ""
                failures.append(f"{operation.label} [{mode.value}{real}]: {exc}")
    return failures, fuzzer.calls


async def test_schemathesis_finds_no_server_error_in_the_media_api(
    fresh_database: Database, tmp_path: Path
) -> None:
    tenant = await make_tenant(fresh_database)
    started = time.monotonic()
    with ServerThread(fresh_database.url) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=tenant.headers) as client:
            video = video_file(tmp_path / "v.mp4", frames=10)
            uploaded = [
                await client.post("/api/media", files={"file": (name, data)})
                for name, data in (
                    ("p.png", image_bytes("PNG")),
                    ("v.mp4", video.read_bytes()),
                )
            ]
        assert [r.status_code for r in uploaded] == [201, 201], [r.text for r in uploaded]
        failures, calls = await asyncio.to_thread(
            fuzz, server.base_url, tenant.headers, uploaded[1].json()["id"]
        )
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    assert calls >= 6 * 2 * 5, calls
    assert elapsed < 90, elapsed
