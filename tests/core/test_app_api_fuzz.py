"""Schemathesis over the whole app API (``/api/...``, every operation of its OpenAPI document):
valid and invalid inputs from a signed-in admin against a real server on a real database, and
not one server error. Bad input is the client's fault: it must be answered 4xx.

The operations that end or switch the session itself (logout, password change, impersonation,
organization switch) are left out: they would sign the fuzzer out halfway. Their own tests cover
bad input. Bounded in time: a few examples per operation, no shrinking, no example database.
"""

from __future__ import annotations

import asyncio
import re
import time

import schemathesis
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import make_tenant
from tests.fuzzing import Fuzzer
from tests.public_api.helpers import ServerThread
from tidings.db import Database

SESSION_CHANGING = re.compile(r"logout|password|/auth/|impersonat|sessions|switch")
PASSES = ((GenerationMode.POSITIVE, 10), (GenerationMode.NEGATIVE, 6))


def fuzz(base_url: str, headers: dict[str, str]) -> tuple[list[str], int, int]:
    """Every operation in both modes (deletions last); the failures, calls and operations."""
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json")
    operations = [
        op
        for op in sorted(
            (result.ok() for result in schema.get_all_operations()),
            key=lambda op: (op.method.upper() == "DELETE", op.path, op.method),
        )
        if not SESSION_CHANGING.search(op.path)
    ]
    fuzzer = Fuzzer(base_url, headers, checks=[not_a_server_error])
    failures: list[str] = []
    for operation in operations:
        for mode, examples in PASSES:
            try:
                fuzzer.run(operation, mode, examples)
            except Unsatisfiable:
                continue  # no invalid value exists for this operation's inputs
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    return failures, fuzzer.calls, len(operations)


async def test_schemathesis_finds_no_server_error_in_the_app_api(
    fresh_database: Database,
) -> None:
    tenant = await make_tenant(fresh_database)
    started = time.monotonic()
    with ServerThread(fresh_database.url) as server:
        failures, calls, operations = await asyncio.to_thread(fuzz, server.base_url, tenant.headers)
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    assert operations >= 80, operations
    assert calls >= operations * 5, (calls, operations)
    assert elapsed < 120, elapsed
