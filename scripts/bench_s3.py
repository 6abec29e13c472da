"""Benchmark the S3 request shapes custseg could use for a run's large files, on the
emulator the full-flow benchmark uses (a moto server in another process).

Prints, for a file of ``--mb`` megabytes (assignments-CSV-like text), the seconds of:

- ``put``: one create-only PUT (``ObjectStore.upload``, what custseg does up to 256 MiB),
  then ``copy``: one server-side CopyObject of it (what ``current/`` is refreshed with);
- ``multipart N parallel``: N parts sent at once, then the completion, then a copy;
- ``multipart streamed``: parts of ~22 MB sent one after another (as a writer producing
  them chunk by chunk would), then the completion;
- ``busy``: a create-only PUT of ``--busy-mb`` megabytes while another thread of the same
  process runs Python, with the file handed to the socket in ``http.client``'s 8 KiB reads
  and in 1 MiB reads (``custseg.aws.s3.LargeBlocks``).

    .venv/bin/python scripts/bench_s3.py --mb 88 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "shared"))
sys.path.insert(0, str(REPO / "scripts"))

import boto3  # noqa: E402

import bench  # noqa: E402
from custseg.aws.s3 import S3_CONFIG, LargeBlocks, ObjectStore  # noqa: E402

BUCKET = "bench-s3"
LINE = b"C123456,2,High-bill high-lifetime-value customers,1.384222,0.624151,,,,n/a,mid,active,1\n"


def _file(directory: Path, mb: float, name: str) -> Path:
    path = directory / name
    n = int(mb * 1e6) // len(LINE) + 1
    path.write_bytes(LINE * n)
    return path


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _multipart(client: Any, key: str, path: Path, parts: int, parallel: bool) -> None:
    size = path.stat().st_size
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=key, ChecksumAlgorithm="CRC32")
    upload_id = upload["UploadId"]

    def send(i: int) -> dict[str, Any]:
        start, end = i * size // parts, (i + 1) * size // parts
        with path.open("rb") as fh:
            fh.seek(start)
            body = fh.read(end - start)
        resp = client.upload_part(
            Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=i + 1, Body=body,
            ChecksumAlgorithm="CRC32",
        )  # fmt: skip
        return {"ETag": resp["ETag"], "PartNumber": i + 1, "ChecksumCRC32": resp["ChecksumCRC32"]}

    if parallel:
        with ThreadPoolExecutor(parts) as pool:
            done = list(pool.map(send, range(parts)))
    else:
        done = [send(i) for i in range(parts)]
    client.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done},
        IfNoneMatch="*",
    )  # fmt: skip


def _busy_put(client: Any, key: str, path: Path, large_blocks: bool) -> float:
    stop = threading.Event()

    def spin() -> None:  # a thread running Python, as an evaluation or a writer may
        x = 0
        while not stop.is_set():
            for j in range(1000):
                x += j

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        with path.open("rb") as fh:
            body = LargeBlocks(fh) if large_blocks else fh
            return _timed(lambda: client.put_object(Bucket=BUCKET, Key=key, Body=body))
    finally:
        stop.set()
        thread.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=88.0, help="file size (the 1M-row CSV: 88)")
    ap.add_argument("--busy-mb", type=float, default=8.0, help="file size of the busy case")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with tempfile.TemporaryDirectory() as tmp, bench.moto_server() as (url, _pid):
        path = _file(Path(tmp), args.mb, "assignments.csv")
        small = _file(Path(tmp), args.busy_mb, "small.csv")
        client = boto3.client("s3", endpoint_url=url, config=S3_CONFIG)
        client.create_bucket(Bucket=BUCKET)
        store = ObjectStore(client)
        print(f"file {path.stat().st_size / 1e6:.1f} MB; seconds per run")
        for r in range(args.repeat):

            def copy(source: str, r: int = r) -> float:
                return _timed(
                    lambda: client.copy_object(
                        Bucket=BUCKET, Key=f"copy-{source}-{r}",
                        CopySource={"Bucket": BUCKET, "Key": source},
                    )
                )  # fmt: skip

            key = f"put-{r}"
            put = _timed(lambda key=key: store.upload(BUCKET, key, path, if_none_match=True))
            print(f"  put {put:.3f}  copy {copy(key):.3f}", flush=True)
            for parts in (2, 3):
                key = f"mp{parts}-{r}"
                sent = _timed(lambda k=key, p=parts: _multipart(client, k, path, p, True))
                print(f"  multipart {parts} parallel {sent:.3f}  copy {copy(key):.3f}", flush=True)
            key = f"stream-{r}"
            parts = max(1, round(args.mb / 22))
            sent = _timed(lambda k=key, p=parts: _multipart(client, k, path, p, False))
            print(f"  multipart streamed ({parts} parts) {sent:.3f}", flush=True)
        for large in (True, False):
            took = _busy_put(client, f"busy-{large}", small, large)
            blocks = "1 MiB" if large else "8 KiB"
            print(f"  busy: {args.busy_mb:g} MB next to a busy thread, {blocks} reads {took:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
