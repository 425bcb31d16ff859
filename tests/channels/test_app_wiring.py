"""How the channels domain plugs into the app's lifecycle."""

from __future__ import annotations

from tests.conftest import TransactionalDatabase, build_app
from tidings.channels import service


async def test_shutdown_closes_the_shared_outbound_client(
    test_database: TransactionalDatabase,
) -> None:
    app = build_app(test_database)
    async with app.router.lifespan_context(app):
        client = service.shared_http_client()
        assert not client.is_closed
        # The app's own lifespan still works underneath (it set the database up).
        assert app.state.database is test_database
    assert client.is_closed
    # A later app on this loop gets a fresh client, not the closed one.
    fresh = service.shared_http_client()
    assert fresh is not client and not fresh.is_closed
    await service.close_shared_http_clients()
