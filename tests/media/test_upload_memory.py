"""The real HTTP route under uvicorn, in its own process: a 200 MB video upload keeps the server's
memory flat, an oversize upload is cut off without filling the disk, and /uploads serves ranges
and refuses traversal as uvicorn decodes paths.

The figure is printed (``TIDINGS_TEST_UPLOAD_MB`` changes the size of the video).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DatabaseFactory, Tenant, make_tenant
from tidings.db import Database

from .conftest import bytes_under, files_under
from .factories import big_video, image_bytes, video_file
from .helpers import BOUNDARY, CONTENT_TYPE

MB = 1024 * 1024
UPLOAD_MB = int(os.environ.get("TIDINGS_TEST_UPLOAD_MB", "200"))
# Flat: what the server may grow by, whatever the size of the upload (chunks in flight,
# allocator slack, a decoded frame for the thumbnail).
MAX_GROWTH_MB = 64
PAGE = os.sysconf("SC_PAGE_SIZE")
SECRET = b"SECRET next to the media root"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    data_dir: Path
    tenant: Tenant

    @property
    def media_root(self) -> Path:
        return self.data_dir / "media"


@pytest.fixture(scope="module")
async def server(
    database_factory: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """One uvicorn process for the module, on a database of its own (real commits)."""
    tmp_path = tmp_path_factory.mktemp("uvicorn")
    name = await asyncio.to_thread(database_factory.create)
    database = Database(database_factory.url_of(name), pool_size=2)
    try:
        tenant = await make_tenant(database)
    finally:
        await database.dispose()
    port = _free_port()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "secret.txt").write_bytes(SECRET)
    env = {
        **os.environ,
        "TIDINGS_DATA_DIR": str(data_dir),
        "TIDINGS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TIDINGS_MAX_IMAGE_BYTES": str(1 * MB),
        "TIDINGS_MAX_VIDEO_BYTES": str(1024 * MB),
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.media.uvicorn_app", database.url, str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                if process.poll() is not None:
                    break
                try:
                    if (await client.get(f"{base}/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the server did not start")
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        yield Server(process, base, data_dir, tenant)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        await asyncio.to_thread(database_factory.drop, name)


async def multipart_file(path: Path, filename: str) -> AsyncIterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="alt"\r\n\r\nA big one\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, MB):
            yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def multipart_length(path: Path, filename: str) -> int:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="alt"\r\n\r\nA big one\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    )
    return len(head.encode()) + path.stat().st_size + len(f"\r\n--{BOUNDARY}--\r\n".encode())


async def post_file(
    client: httpx.AsyncClient, server: Server, path: Path, filename: str
) -> httpx.Response:
    return await client.post(
        f"{server.base}/api/media",
        content=multipart_file(path, filename),
        headers={
            **server.tenant.headers,
            "Content-Type": CONTENT_TYPE,
            "Content-Length": str(multipart_length(path, filename)),
        },
    )


class PeakSampler:
    """Samples a process's resident memory every few milliseconds while running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_of(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_of(self.pid))
            time.sleep(0.003)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_of(self.pid))


@pytest.fixture
def warm_up_video(tmp_path: Path) -> Iterator[Path]:
    yield video_file(tmp_path / "warm-up.mp4", frames=20, size=(1280, 720))


async def test_a_200_mb_video_upload_keeps_the_server_memory_flat(
    server: Server, tmp_path: Path, warm_up_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generating = asyncio.create_task(asyncio.to_thread(big_video, tmp_path / "big.mp4", UPLOAD_MB))
    async with httpx.AsyncClient(timeout=300) as client:
        # One-time costs (codecs, thread pools, the first ORM queries) belong to the baseline.
        warm = await post_file(client, server, warm_up_video, "warm-up.mp4")
        assert warm.status_code == 201, warm.text
        video = await generating
        size = video.stat().st_size
        baseline = rss_of(server.process.pid)
        started = time.perf_counter()
        with PeakSampler(server.process.pid) as sampler:
            response = await post_file(client, server, video, "big.mp4")
        elapsed = time.perf_counter() - started
        assert response.status_code == 201, response.text
        media = response.json()
        growth = (sampler.peak - baseline) / MB
        with capsys.disabled():
            print(
                f"\n[media] {size / MB:.0f} MB video through POST /api/media under uvicorn: "
                f"server RSS {baseline / MB:.0f} MB -> peak {sampler.peak / MB:.0f} MB "
                f"(growth {growth:.1f} MB) in {elapsed:.1f} s"
            )
        assert growth < MAX_GROWTH_MB, f"server memory grew by {growth:.1f} MB"

        assert media["file_size"] == size and media["type"] == "video"
        assert (media["width"], media["height"]) == (1280, 720)
        key = media["path"].split("/uploads/", 1)[1]
        stored = server.media_root / key
        digest = hashlib.sha256()
        with video.open("rb") as f:
            while chunk := f.read(MB):
                digest.update(chunk)
        with stored.open("rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == digest.hexdigest()
        assert files_under(server.media_root / ".spool") == []

        # Served back over real HTTP with ranges (a player seeking in the middle).
        start = 100 * MB
        ranged = await client.get(media["path"], headers={"Range": f"bytes={start}-{start + 99}"})
        assert ranged.status_code == 206
        with video.open("rb") as f:
            f.seek(start)
            assert ranged.content == f.read(100)


async def test_oversize_upload_is_cut_off_on_the_real_server(server: Server) -> None:
    limit = 1 * MB
    disk: list[int] = []
    spool = server.media_root / ".spool"
    before = files_under(server.media_root)

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="huge.png"\r\n\r\n'
        ).encode()
        yield image_bytes("PNG")
        for _ in range(200):  # 50 MB more, unless the server hangs up first
            disk.append(bytes_under(spool))
            yield bytes(256 * 1024)
            await asyncio.sleep(0)
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{server.base}/api/media",
            content=body(),
            headers={**server.tenant.headers, "Content-Type": CONTENT_TYPE},
        )
    assert response.status_code == 413, response.text
    assert response.json()["field"] == "file"
    assert max(disk) <= limit  # the spool never held more than the limit
    assert files_under(server.media_root) == before  # spool removed, nothing stored


def raw_http(base: str, target: bytes) -> tuple[int, bytes]:
    """Send ``GET <target>`` exactly as given (no client-side normalisation)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data


async def test_traversal_through_uvicorn_is_404(server: Server) -> None:
    targets = [
        b"/uploads/../secret.txt",
        b"/uploads/%2e%2e/secret.txt",
        b"/uploads/%2E%2E%2Fsecret.txt",
        b"/uploads/..%2fsecret.txt",
        b"/uploads/..%5csecret.txt",
        b"/uploads/%2e%2e%5csecret.txt",
        b"/uploads/x/%2e%2e/%2e%2e/secret.txt",
        b"/uploads/secret.txt%00.png",
        b"/uploads/%252e%252e/secret.txt",
        b"/uploads/.spool",
        b"/uploads/%2fetc%2fpasswd",
    ]
    for target in targets:
        status, data = await asyncio.to_thread(raw_http, server.base, target)
        assert status in (400, 404), (target, status)
        assert SECRET not in data, target
