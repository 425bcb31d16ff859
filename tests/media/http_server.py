"""A loopback HTTP server whose misbehaviours are chosen by path (for upload-from-URL tests).

It also acts as a forward proxy: a request line with an absolute URL (``GET http://host/path``)
is answered by the same routes, which lets a test use a public-looking URL while every byte stays
on 127.0.0.1.
"""

from __future__ import annotations

import io
import os
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from .factories import image_bytes

PNG = image_bytes("PNG", size=(320, 200))
NOISE_PNG_HEAD = PNG[:64]


def _noise_png(size: tuple[int, int] = (300, 300)) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buffer, "PNG")
    return buffer.getvalue()


NOISE_PNG = _noise_png()


class MediaServer:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.stop = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up on purpose (size cap, refusal)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                route = parts.path
                outer.hits[route] += 1
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                try:
                    outer.route(self, route, query)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    def _pause(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _write(self, handler: BaseHTTPRequestHandler, route: str, data: bytes) -> None:
        handler.wfile.write(data)
        handler.wfile.flush()
        self.sent[route] += len(data)

    def route(self, h: BaseHTTPRequestHandler, route: str, query: dict[str, str]) -> None:
        def head(status: int, headers: dict[str, str]) -> None:
            h.send_response(status)
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()

        if route in ("/photo.png", "/files/holiday-photo.png"):
            head(200, {"Content-Type": "image/png", "Content-Length": str(len(PNG))})
            self._write(h, route, PNG)
        elif route == "/page.html":
            body = b"<!doctype html><html><body>hello</body></html>"
            head(200, {"Content-Type": "image/png", "Content-Length": str(len(body))})
            self._write(h, route, body)
        elif route == "/endless.png":
            # No Content-Length: chunked, up to 50 MB unless the client hangs up first.
            head(200, {"Content-Type": "image/png", "Transfer-Encoding": "chunked"})
            piece = NOISE_PNG_HEAD + b"\x00" * (64 * 1024 - len(NOISE_PNG_HEAD))
            for _ in range(800):
                if self.stop.is_set():
                    return
                self._write(h, route, b"%x\r\n" % len(piece) + piece + b"\r\n")
                piece = b"\x00" * (64 * 1024)
            self._write(h, route, b"0\r\n\r\n")
        elif route == "/declared.png":
            # Announces `size` bytes, sends a PNG head, then dawdles: an honest check of the
            # length refuses at once instead of waiting.
            size = int(query["size"])
            head(200, {"Content-Type": "image/png", "Content-Length": str(size)})
            self._write(h, route, PNG.ljust(8192, b"\x00"))
            self._pause(5)
        elif route == "/short-length.png":
            # Announces 2000 bytes but sends a whole (larger) file.
            noisy = NOISE_PNG
            head(200, {"Content-Type": "image/png", "Content-Length": "2000"})
            self._write(h, route, noisy + b"\x00" * 100_000)
        elif route == "/long-length.png":
            head(200, {"Content-Type": "image/png", "Content-Length": str(1024 * 1024)})
            self._write(h, route, PNG[:10_000])
            h.close_connection = True
        elif route == "/stall.png":
            head(200, {"Content-Type": "image/png", "Content-Length": str(len(PNG) * 2)})
            self._write(h, route, PNG[:1000])
            self._pause(3)
        elif route == "/redirect":
            status = int(query.get("status", "302"))
            head(status, {"Location": query["to"], "Content-Length": "0"})
        elif route == "/loop":
            head(302, {"Location": "/loop", "Content-Length": "0"})
        elif route.startswith("/status/"):
            head(int(route.rsplit("/", 1)[1]), {"Content-Length": "0"})
        else:
            head(404, {"Content-Length": "0"})
