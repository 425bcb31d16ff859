"""Peak memory of a worker publishing a large video to a YouTube-like server.

Stores a ~200 MB file in LocalStorage (a temporary directory), makes it ready to publish the way
the engine does (:func:`tidings.posts.media.readable` over a storage-backed MediaItem) and
publishes it with the YouTube provider to a local server that speaks the resumable upload
(session, then one PUT) and throws the bytes away. The server runs in a child process, so only
the publishing process is measured: its resident memory before and at its peak during the
publish. ``--whole`` publishes the same file without a stream (held in memory, as before) for
comparison.

    .venv/bin/python bench/publish_video_memory.py [--size-mb 200] [--whole] [--max-growth-mb 50]

Exit status 1 if the growth is over ``--max-growth-mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tidings.channels.providers import ChannelCredentials, MediaItem, PostPart, ProviderConfig
from tidings.channels.providers.youtube import YouTubeProvider, YouTubeSettings
from tidings.media.service import read_whole
from tidings.media.storage import LocalStorage
from tidings.posts.media import readable

MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")

SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _drain(self):
        left = int(self.headers.get("content-length") or 0)
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))

    def do_POST(self):  # open a session
        self._drain()
        self.send_response(200)
        self.send_header("Location", f"http://127.0.0.1:{PORT}/upload/youtube/v3/videos?upload_id=1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self):  # the bytes, thrown away
        self._drain()
        body = json.dumps({"id": "vid1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

PORT = int(sys.argv[1])
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"""


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def publish(root: Path, size: int, port: int, whole: bool) -> tuple[int, int, float]:
    storage = LocalStorage(root)
    key = "bench/2026/01/" + "a" * 32 + ".mp4"
    piece = os.urandom(MB)
    await storage.put_stream(key, _repeat(piece, size // MB))

    def stream() -> AsyncIterator[bytes]:
        return storage.open_stream(key)

    async def read() -> bytes:
        return await read_whole(storage, key, size)

    item = MediaItem(
        url="http://127.0.0.1:9/uploads/clip.mp4",
        type="video",
        mime_type="video/mp4",
        size=size,
        read=read,
        stream=None if whole else stream,
    )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=60) as client:
        [ready] = readable([item], client)
        provider = YouTubeProvider(client, ProviderConfig(urls={"api": base, "web": base}))
        credentials = ChannelCredentials(access_token="t", internal_id="UC1")
        before = rss()
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss())
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        try:
            result = await provider.publish(
                credentials, PostPart(content="d", media=[ready]), YouTubeSettings(title="t")
            )
        finally:
            done.set()
            sampler.join()
        assert result.id == "vid1"
        return before, peak, time.monotonic() - started


async def _repeat(piece: bytes, times: int) -> AsyncIterator[bytes]:
    for _ in range(times):
        yield piece


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--whole", action="store_true", help="publish without a stream")
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as root:
            before, peak, seconds = asyncio.run(
                publish(Path(root), args.size_mb * MB, port, args.whole)
            )
    finally:
        server.terminate()
        server.wait()
    growth = (peak - before) / MB
    mode = "held whole" if args.whole else "streamed"
    print(
        f"[publish] {args.size_mb} MB video to a YouTube-like server, {mode}: worker RSS "
        f"{before / MB:.0f} MB -> peak {peak / MB:.0f} MB (growth {growth:.1f} MB) "
        f"in {seconds:.1f} s"
    )
    return 1 if growth > args.max_growth_mb else 0


if __name__ == "__main__":
    sys.exit(main())
