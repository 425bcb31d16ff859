"""Peak memory of a large video upload through the media pipeline.

Streams a real ~200 MB MP4 (generated with PyAV), framed as a multipart/form-data request body
in 1 MB chunks, through the whole upload path: streaming multipart parsing, sniffing, the
streaming size limit, the spool file, verification and thumbnail with PyAV, and LocalStorage.
Prints the process's resident memory before and at its peak during the upload.

    .venv/bin/python bench/media_upload_memory.py [--size-mb 200] [--max-growth-mb 50]

The video is generated and the upload measured in separate child processes, so that neither the
encoder's memory nor the parent's imports blur the figure. The measuring process first uploads a
small video, so one-time costs (codec tables, the thread pool) are in the baseline: what is
measured is how memory grows with the size of the upload. Exit status 1 if the growth is over
``--max-growth-mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
BOUNDARY = "tidings-bench-boundary"


def generate(path: Path, size_mb: int) -> None:
    """An MP4 of noise frames (which compress badly, so few frames make many bytes)."""
    import av
    from PIL import Image

    width, height = 1280, 720
    noise = [
        Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)) for _ in range(4)
    ]
    with av.open(str(path), "w", format="mp4") as output:
        stream = output.add_stream("mpeg4", rate=30)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.bit_rate = 400_000_000
        stream.codec_context.gop_size = 30
        stream.codec_context.options = {"qmin": "1", "qmax": "3"}
        index = 0
        while output_size(path) < size_mb * MB:
            for _ in range(10):
                frame = av.VideoFrame.from_image(noise[index % len(noise)])
                frame.pts = index
                frame.time_base = Fraction(1, 30)
                for packet in stream.encode(frame):
                    output.mux(packet)
                index += 1
        for packet in stream.encode():
            output.mux(packet)


def output_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


async def file_chunks(path: Path, chunk_size: int) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, chunk_size):
            yield chunk


async def multipart_body(path: Path, name: str, chunk_size: int) -> AsyncIterator[bytes]:
    """The request body a browser would send: the file framed as multipart/form-data."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="alt"\r\n\r\nbench\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    async for chunk in file_chunks(path, chunk_size):
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def upload(path: Path, work: Path, name: str, chunk_size: int):  # type: ignore[no-untyped-def]
    from tidings.media.ingest import IngestConfig, ingest_stream
    from tidings.media.multipart import open_multipart_file
    from tidings.media.storage import LocalStorage

    storage = LocalStorage(work / "media")
    config = IngestConfig(spool_dir=work / "spool")
    form = await open_multipart_file(
        multipart_body(path, name, chunk_size), f"multipart/form-data; boundary={BOUNDARY}"
    )
    media = await ingest_stream(
        form.chunks,
        filename=form.filename,
        organization_id="bench-org",
        storage=storage,
        config=config,
        thumbnail_timestamp_ms=3000,
    )
    return media, storage


def measure(video: Path, small: Path, work: Path, chunk_size: int) -> dict[str, object]:
    asyncio.run(upload(small, work, "warm-up.mp4", chunk_size))  # one-time costs
    baseline = rss()
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    media, storage = asyncio.run(upload(video, work, "big.mp4", chunk_size))
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    peak = max(peak, rss())
    stored = storage.path_for(media.key)
    digest = hashlib.sha256()
    with video.open("rb") as f:
        while chunk := f.read(MB):
            digest.update(chunk)
    return {
        "file_bytes": video.stat().st_size,
        "stored_bytes": stored.stat().st_size,
        "sha256_matches": media.sha256 == digest.hexdigest(),
        "kind": media.kind.value,
        "size": [media.width, media.height],
        "duration_ms": media.duration_ms,
        "thumbnail_timestamp_ms": media.thumbnail.timestamp_ms if media.thumbnail else None,
        "seconds": round(elapsed, 2),
        "baseline_rss_mb": round(baseline / MB, 1),
        "peak_rss_mb": round(peak / MB, 1),
        "growth_mb": round((peak - baseline) / MB, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--chunk-kb", type=int, default=1024)
    parser.add_argument("--max-growth-mb", type=float, default=50.0)
    parser.add_argument("--generate", nargs=2, metavar=("PATH", "SIZE_MB"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--measure", nargs=3, metavar=("VIDEO", "SMALL", "WORK"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.generate:
        generate(Path(args.generate[0]), int(args.generate[1]))
        return 0
    if args.measure:
        video, small, work = (Path(p) for p in args.measure)
        print(json.dumps(measure(video, small, work, args.chunk_kb * 1024)))
        return 0

    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        root = Path(tmp)
        video, small = root / "big.mp4", root / "small.mp4"
        started = time.perf_counter()
        for path, size in ((video, args.size_mb), (small, 1)):
            subprocess.run(
                [sys.executable, __file__, "--generate", str(path), str(size)], check=True
            )
        print(
            f"generated {video.stat().st_size / MB:.0f} MB MP4 in "
            f"{time.perf_counter() - started:.1f} s"
        )
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--chunk-kb",
                str(args.chunk_kb),
                "--measure",
                str(video),
                str(small),
                str(root / "work"),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            print(result.stderr)
            return 1
        figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(figures, indent=2))
    print(
        f"upload of {figures['file_bytes'] / MB:.0f} MB: peak RSS growth "
        f"{figures['growth_mb']} MB (baseline {figures['baseline_rss_mb']} MB, peak "
        f"{figures['peak_rss_mb']} MB) in {figures['seconds']} s"
    )
    ok = figures["growth_mb"] < args.max_growth_mb and figures["sha256_matches"]
    if not ok:
        print(f"FAIL: growth over {args.max_growth_mb} MB or content mismatch")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
