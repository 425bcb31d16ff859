from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import pytest

from tidings.media.ingest import IngestConfig
from tidings.media.limits import MediaLimits
from tidings.media.storage import LocalStorage

ORG_ID = "0b6c3c1e-3f7a-4a57-9d0e-6f0f5a8e2a11"


@pytest.fixture
def org_id() -> str:
    return ORG_ID


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def config(spool_dir: Path) -> IngestConfig:
    return IngestConfig(spool_dir=spool_dir, limits=MediaLimits(), thumbnail_box=128)


def files_under(root: Path) -> list[Path]:
    """Every regular file below ``root`` (hidden temporaries included)."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def bytes_under(root: Path) -> int:
    """Bytes of every file below ``root`` (a file removed while counting counts 0)."""
    total = 0
    for path in files_under(root):
        with suppress(FileNotFoundError):
            total += path.stat().st_size
    return total
