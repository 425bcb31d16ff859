"""The app under uvicorn in a process of its own, for tests that measure a real HTTP server.

    python -m tests.media.uvicorn_app <database url> <port>

Settings come from the environment (TIDINGS_DATA_DIR, TIDINGS_PUBLIC_URL, limits, ...).
"""

from __future__ import annotations

import sys

import uvicorn

from tidings.app import create_app
from tidings.config import get_settings


def main() -> None:
    database_url, port = sys.argv[1], int(sys.argv[2])
    app = create_app(database_url=database_url, settings=get_settings())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
