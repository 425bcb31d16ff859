"""Upload from URL against a real loopback HTTP server: caps, lying lengths, guarded redirects."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tidings.media.errors import MediaFetchError, MediaTooLargeError, UnsupportedMediaError
from tidings.media.fetch import ingest_url, name_from_url
from tidings.media.ingest import IngestConfig
from tidings.media.limits import MediaLimits
from tidings.media.sniff import MediaKind
from tidings.media.storage import LocalStorage

from .conftest import files_under
from .http_server import PNG, MediaServer

MB = 1024 * 1024
# A public address: the guard lets it through without DNS; the proxy keeps traffic on loopback.
PUBLIC_HOST = "93.184.215.14"


@pytest.fixture(scope="module")
def server() -> Iterator[MediaServer]:
    media_server = MediaServer()
    media_server.start()
    try:
        yield media_server
    finally:
        media_server.close()


@pytest.fixture
def small_limits_config(tmp_path: Path) -> IngestConfig:
    return IngestConfig(
        spool_dir=tmp_path / "spool",
        limits=MediaLimits(image_bytes=1 * MB, video_bytes=8 * MB, pdf_bytes=1 * MB),
        thumbnail_box=64,
    )


@pytest.fixture
async def proxied_client(server: MediaServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(proxy=server.base, trust_env=False, timeout=5) as client:
        yield client


async def _fetch(
    url: str, storage: LocalStorage, config: IngestConfig, org_id: str, **kwargs: object
):  # type: ignore[no-untyped-def]
    options: dict[str, object] = {"allow_private": True, "allow_http": True}
    options.update(kwargs)
    return await ingest_url(url, organization_id=org_id, storage=storage, config=config, **options)  # type: ignore[arg-type]


def _nothing_left(storage: LocalStorage, config: IngestConfig) -> bool:
    return files_under(storage.root) == [] and files_under(config.spool_dir) == []


async def test_fetches_an_image(
    server: MediaServer, local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    media = await _fetch(f"{server.base}/files/holiday-photo.png", local_storage, config, org_id)
    assert media.kind is MediaKind.IMAGE and media.name == "holiday-photo.png"
    assert (media.width, media.height) == (320, 200)
    assert await local_storage.read_bytes(media.key) == PNG
    assert media.thumbnail is not None


async def test_redirects_are_followed_when_allowed(
    server: MediaServer, local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    media = await _fetch(
        f"{server.base}/redirect?to=/photo.png&status=301", local_storage, config, org_id
    )
    assert media.name == "photo.png"  # the redirect's target names the file better
    assert await local_storage.read_bytes(media.key) == PNG


async def test_size_is_capped_mid_download_without_content_length(
    server: MediaServer,
    local_storage: LocalStorage,
    small_limits_config: IngestConfig,
    org_id: str,
) -> None:
    with pytest.raises(MediaTooLargeError) as caught:
        await _fetch(f"{server.base}/endless.png", local_storage, small_limits_config, org_id)
    assert caught.value.status_code == 413 and caught.value.field == "url"
    assert caught.value.limit == 1 * MB
    # The server would have sent 50 MB; the client hung up soon after the limit.
    time.sleep(0.2)
    assert server.sent["/endless.png"] < 1 * MB + 16 * MB  # limit + socket buffers at most
    assert _nothing_left(local_storage, small_limits_config)


@pytest.mark.parametrize(
    ("declared", "limit"), [(50 * MB, 8 * MB), (3 * MB, 1 * MB)], ids=["over-all", "over-image"]
)
async def test_declared_length_over_the_limit_is_refused_at_once(
    server: MediaServer,
    local_storage: LocalStorage,
    small_limits_config: IngestConfig,
    org_id: str,
    declared: int,
    limit: int,
) -> None:
    started = time.monotonic()
    with pytest.raises(MediaTooLargeError) as caught:
        await _fetch(
            f"{server.base}/declared.png?size={declared}",
            local_storage,
            small_limits_config,
            org_id,
        )
    assert time.monotonic() - started < 2  # did not wait for the 5 s body
    assert caught.value.limit == limit
    assert _nothing_left(local_storage, small_limits_config)


async def test_a_content_length_shorter_than_the_body_is_not_trusted_either(
    server: MediaServer, local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    # Only the announced 2000 bytes are read; the truncated image is then refused.
    with pytest.raises(UnsupportedMediaError) as caught:
        await _fetch(f"{server.base}/short-length.png", local_storage, config, org_id)
    assert caught.value.field == "url"
    assert _nothing_left(local_storage, config)


async def test_a_body_shorter_than_its_content_length_fails(
    server: MediaServer, local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    with pytest.raises(MediaFetchError, match="download failed") as caught:
        await _fetch(f"{server.base}/long-length.png", local_storage, config, org_id)
    assert caught.value.status_code == 400 and caught.value.field == "url"
    assert _nothing_left(local_storage, config)


async def test_the_whole_download_has_a_deadline(
    server: MediaServer, local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    started = time.monotonic()
    with pytest.raises(MediaFetchError, match="took longer"):
        await _fetch(f"{server.base}/stall.png", local_storage, config, org_id, total_timeout=0.5)
    assert time.monotonic() - started < 2.5
    assert _nothing_left(local_storage, config)


async def test_error_statuses_and_non_media(
    server: MediaServer, local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    with pytest.raises(MediaFetchError, match="HTTP 404"):
        await _fetch(f"{server.base}/status/404", local_storage, config, org_id)
    with pytest.raises(MediaFetchError, match="HTTP 500"):
        await _fetch(f"{server.base}/status/500", local_storage, config, org_id)
    # The server says image/png; the bytes say HTML.
    with pytest.raises(UnsupportedMediaError, match="HTML") as caught:
        await _fetch(f"{server.base}/page.html", local_storage, config, org_id)
    assert caught.value.field == "url"
    with pytest.raises(MediaFetchError, match="too many redirects"):
        await _fetch(f"{server.base}/loop", local_storage, config, org_id)
    assert _nothing_left(local_storage, config)


async def test_private_addresses_are_refused_unless_allowed(
    server: MediaServer, local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    before = server.hits["/photo.png"]
    for url in (
        f"{server.base}/photo.png",
        f"http://localhost:{server.port}/photo.png",
        "http://10.0.0.7/photo.png",
        "http://169.254.169.254/latest/meta-data/",
        f"http://[::1]:{server.port}/photo.png",
    ):
        with pytest.raises(MediaFetchError, match="private or loopback") as caught:
            await _fetch(url, local_storage, config, org_id, allow_private=False)
        assert caught.value.field == "url"
    assert server.hits["/photo.png"] == before  # never connected


async def test_only_https_unless_allowed(
    server: MediaServer, local_storage: LocalStorage, config: IngestConfig, org_id: str
) -> None:
    for url in (
        f"http://{PUBLIC_HOST}/photo.png",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "not a url",
    ):
        with pytest.raises(MediaFetchError):
            await _fetch(url, local_storage, config, org_id, allow_private=False, allow_http=False)
    with pytest.raises(MediaFetchError, match="only https"):
        await _fetch(
            f"http://{PUBLIC_HOST}/photo.png",
            local_storage,
            config,
            org_id,
            allow_private=False,
            allow_http=False,
        )


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/photo.png",
        "http://localhost:{port}/photo.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://192.168.1.1/photo.png",
        "http://[::ffff:127.0.0.1]:{port}/photo.png",
        "file:///etc/passwd",
    ],
)
async def test_redirect_to_a_private_address_is_refused(
    server: MediaServer,
    proxied_client: httpx.AsyncClient,
    local_storage: LocalStorage,
    config: IngestConfig,
    org_id: str,
    target: str,
) -> None:
    before = server.hits["/photo.png"]
    location = quote(target.format(port=server.port), safe="")
    # The first hop is a public address (reached through the loopback proxy) and passes the guard;
    # its redirect to a private address must not.
    with pytest.raises(MediaFetchError) as caught:
        await _fetch(
            f"http://{PUBLIC_HOST}/redirect?to={location}",
            local_storage,
            config,
            org_id,
            allow_private=False,
            client=proxied_client,
        )
    assert server.hits["/redirect"] >= 1
    assert server.hits["/photo.png"] == before
    assert "allowed" in caught.value.message
    assert _nothing_left(local_storage, config)


async def test_a_public_url_through_the_proxy_is_fetched(
    server: MediaServer,
    proxied_client: httpx.AsyncClient,
    local_storage: LocalStorage,
    config: IngestConfig,
    org_id: str,
) -> None:
    # The same path with the guard on: proves the refusals above are about the redirect target.
    media = await _fetch(
        f"http://{PUBLIC_HOST}/photo.png",
        local_storage,
        config,
        org_id,
        allow_private=False,
        client=proxied_client,
    )
    assert media.kind is MediaKind.IMAGE


def test_name_from_url() -> None:
    assert name_from_url("https://cdn.example/a/b/My%20Photo.png?x=1") == "My Photo.png"
    assert name_from_url("https://cdn.example/") is None
    assert name_from_url("https://[bad") is None
