"""A local Mastodon-like instance for the publish benchmark: ``POST /api/v1/statuses`` answers
after a fixed latency (50 ms by default), like a platform across the internet would.

It records, for every status, when it arrived and the due time the benchmark wrote in its text
(``due=<epoch ms>``), and counts statuses sent twice under one idempotency key (there must be
none). ``GET /stats`` returns them; ``POST /reset`` forgets them.

    .venv/bin/python bench/publish/server.py --port 8765 --latency 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from typing import Any

import uvicorn

DUE = re.compile(rb"due=(\d+)")


class Instance:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.next_id = 1000
        self.receipts: list[tuple[int, float]] = []
        self.keys: dict[str, int] = {}
        self.duplicates = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        if method == "POST" and path == "/api/v1/statuses":
            await self.status(scope, body, send)
        elif method == "GET" and path == "/stats":
            await self.reply(send, 200, self.stats())
        elif method == "POST" and path == "/reset":
            self.__init__(self.latency)  # type: ignore[misc]
            await self.reply(send, 200, {"ok": True})
        else:
            await self.reply(send, 404, {"error": "Record not found"})

    async def status(self, scope: dict[str, Any], body: bytes, send: Any) -> None:
        arrived = time.time()
        headers = dict(scope["headers"])
        key = headers.get(b"idempotency-key", b"").decode()
        match = DUE.search(body)
        self.receipts.append((int(match.group(1)) if match else 0, arrived))
        if key:
            if key in self.keys:
                self.duplicates += 1
            self.keys[key] = self.keys.get(key, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        self.next_id += 1
        sid = str(self.next_id)
        await self.reply(
            send,
            200,
            {"id": sid, "url": f"http://bench.local/@alice/{sid}", "uri": f"bench:{sid}"},
        )

    def stats(self) -> dict[str, Any]:
        return {
            "count": len(self.receipts),
            "duplicates": self.duplicates,
            "max_in_flight": self.max_in_flight,
            "receipts": self.receipts,
        }

    async def reply(self, send: Any, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    uvicorn.run(
        Instance(args.latency),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="uvloop",
        http="httptools",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
