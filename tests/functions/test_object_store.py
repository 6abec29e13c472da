"""The S3 adapter (``custseg.aws.s3``) on moto: streamed downloads, create-only uploads
with the SHA-256 S3 verifies, create-only multipart uploads, and the parallel copies that
refresh ``current/``."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ReadTimeoutError

from custseg.aws import s3 as s3_module
from custseg.aws.s3 import LargeBlocks, ObjectStore, PreconditionFailed

BUCKET = "custseg-test-bucket"  # the bucket of the `store` fixture (conftest.py)


def _body(size: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(size))


def test_download_streams_the_object_and_its_version(store: ObjectStore, tmp_path: Path) -> None:
    first = _body(3 * 1024 * 1024 + 17)
    v1 = store.client.put_object(Bucket=BUCKET, Key="a/x.bin", Body=first)["VersionId"]
    store.client.put_object(Bucket=BUCKET, Key="a/x.bin", Body=b"second")
    assert store.download(BUCKET, "a/x.bin", tmp_path / "d" / "x").read_bytes() == b"second"
    got = store.download(BUCKET, "a/x.bin", tmp_path / "v1", version_id=v1)
    assert got.read_bytes() == first


def test_download_above_the_threshold_uses_ranged_gets(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        s3_module,
        "_TRANSFER",
        TransferConfig(multipart_threshold=1024 * 1024, multipart_chunksize=1024 * 1024),
    )
    body = _body(3 * 1024 * 1024 + 5, seed=3)
    store.client.put_object(Bucket=BUCKET, Key="big.bin", Body=body)
    calls: list[str] = []
    original = store.client.download_file

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(args[1])
        original(*args, **kwargs)

    monkeypatch.setattr(store.client, "download_file", spy)
    assert store.download(BUCKET, "big.bin", tmp_path / "big").read_bytes() == body
    assert calls == ["big.bin"]


def test_download_retries_a_broken_stream(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _body(200_000, seed=5)
    store.client.put_object(Bucket=BUCKET, Key="flaky.bin", Body=body)
    original = store.client.get_object
    attempts: list[int] = []

    class Broken:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def read(self, n: int = -1) -> bytes:
            raise ReadTimeoutError(endpoint_url="http://s3")

        def close(self) -> None:
            self.inner.close()

    def get_object(**kwargs: Any) -> Any:
        attempts.append(1)
        resp = original(**kwargs)
        if len(attempts) == 1:  # the first stream breaks after the headers
            resp["Body"] = Broken(resp["Body"])
        return resp

    monkeypatch.setattr(store.client, "get_object", get_object)
    assert store.download(BUCKET, "flaky.bin", tmp_path / "f").read_bytes() == body
    assert len(attempts) == 2


def test_create_only_upload_returns_the_sha256_s3_verified(
    store: ObjectStore, tmp_path: Path
) -> None:
    path = tmp_path / "part.parquet"
    path.write_bytes(_body(2 * 1024 * 1024 + 3, seed=5))
    sent: list[dict[str, str]] = []
    store.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers))
    )
    digest = store.upload(BUCKET, "run/part.parquet", path, if_none_match=True)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    # the checksum travels with the request (S3 verifies it); the body is not also signed
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in sent[0].items()}
    assert "x-amz-checksum-sha256" in headers or "x-amz-trailer" in headers
    assert headers["x-amz-content-sha256"] in (
        "UNSIGNED-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    # S3 keeps it: the stored object's hash is read from it, not by downloading the object
    gets: list[str] = []
    store.client.meta.events.register(
        "before-send.s3.GetObject", lambda request, **_: gets.append(request.url)
    )
    assert store.sha256(BUCKET, "run/part.parquet") == (path.stat().st_size, digest)
    assert gets == []


def test_an_upload_given_the_files_sha256_sends_it_without_reading_the_file_first(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "assignments.csv"
    path.write_bytes(_body(1024 * 1024 + 7, seed=9))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sent: list[dict[str, str]] = []
    store.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers))
    )
    reads: list[int] = []
    real_read = LargeBlocks.read

    def counting_read(self: LargeBlocks, size: int | None = -1) -> bytes:
        data = real_read(self, size)
        reads.append(len(data))
        return data

    monkeypatch.setattr(LargeBlocks, "read", counting_read)
    assert store.upload(BUCKET, "run/a.csv", path, if_none_match=True, sha256=digest) == digest
    headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in sent[0].items()}
    # the given hash is the request's checksum (S3 verifies it against the bytes)
    assert headers["x-amz-checksum-sha256"] == base64.b64encode(bytes.fromhex(digest)).decode()
    assert sum(reads) == path.stat().st_size  # the file was read once: to send it
    assert store.sha256(BUCKET, "run/a.csv") == (path.stat().st_size, digest)


def test_large_blocks_reads_at_least_a_block_and_seeks() -> None:
    body = _body(3 * 1024 * 1024 + 5)
    reader = LargeBlocks(io.BytesIO(body), block=1024 * 1024)
    first = reader.read(8192)  # what http.client asks for
    assert len(first) == 1024 * 1024 and first == body[: 1024 * 1024]
    assert reader.tell() == 1024 * 1024
    assert reader.read(2 * 1024 * 1024 + 100) == body[1024 * 1024 : 3 * 1024 * 1024 + 100]
    assert reader.read() == body[3 * 1024 * 1024 + 100 :]
    assert reader.read(8192) == b""
    reader.seek(0)  # botocore rewinds a body to retry it
    assert reader.read(-1) == body


def test_a_create_only_upload_sends_the_file_in_large_blocks(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "assignments.csv"
    path.write_bytes(_body(1024 * 1024 + 7))
    bodies: list[Any] = []
    put_object = store.client.put_object

    def spy(**kwargs: Any) -> Any:
        bodies.append(kwargs["Body"])
        return put_object(**kwargs)

    monkeypatch.setattr(store.client, "put_object", spy)
    store.upload(BUCKET, "run/assignments.csv", path, if_none_match=True)
    assert len(bodies) == 1 and isinstance(bodies[0], LargeBlocks)
    got = store.client.get_object(Bucket=BUCKET, Key="run/assignments.csv")["Body"].read()
    assert got == path.read_bytes()


def test_sha256_of_an_object_stored_without_one_reads_it(store: ObjectStore) -> None:
    body = _body(1024 * 1024 + 9, seed=2)
    store.client.put_object(Bucket=BUCKET, Key="plain.bin", Body=body, ChecksumAlgorithm="CRC32")
    assert store.sha256(BUCKET, "plain.bin") == (len(body), hashlib.sha256(body).hexdigest())


def test_multipart_upload_is_create_only(
    store: ObjectStore, tmp_path: Path, small_multipart: int
) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(_body(11 * 1024 * 1024, seed=7))
    # no whole-file SHA-256 from S3 for a multipart upload: the caller hashes the file
    assert store.upload(BUCKET, "run/big.csv", path, if_none_match=True) is None
    stored = store.client.get_object(Bucket=BUCKET, Key="run/big.csv")
    assert stored["Body"].read() == path.read_bytes()
    assert stored["ETag"].strip('"').endswith("-3")

    path.write_bytes(_body(11 * 1024 * 1024, seed=8))
    with pytest.raises(PreconditionFailed):
        store.upload(BUCKET, "run/big.csv", path, if_none_match=True)
    again = store.client.get_object(Bucket=BUCKET, Key="run/big.csv")["Body"].read()
    assert again == _body(11 * 1024 * 1024, seed=7)  # the first upload is kept
    # the losing attempt's parts were aborted: no upload is left open
    assert store.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_copy_many_copies_in_parallel_and_reports_a_failure_after_the_rest(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        store.client.put_object(Bucket=BUCKET, Key=f"run/f{i}", Body=_body(1000 * (i + 1), i))
    copies: list[tuple[str, str, int | None]] = [
        (f"run/f{i}", f"current/f{i}", 1000 * (i + 1)) for i in range(5)
    ]
    threads: set[str] = set()
    original = ObjectStore.copy

    def copy(self: ObjectStore, *args: Any, **kwargs: Any) -> None:
        threads.add(threading.current_thread().name)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ObjectStore, "copy", copy)
    store.copy_many(BUCKET, copies)
    for i in range(5):
        got = store.client.get_object(Bucket=BUCKET, Key=f"current/f{i}")["Body"].read()
        assert got == _body(1000 * (i + 1), i)
    assert threading.current_thread().name not in threads

    def failing(self: ObjectStore, bucket: str, key: str, *args: Any, **kwargs: Any) -> None:
        if key == "run/f4":  # the largest, started first
            raise ConnectionError("injected")
        original(self, bucket, key, *args, **kwargs)

    monkeypatch.setattr(ObjectStore, "copy", failing)
    for i in range(4):
        store.client.delete_object(Bucket=BUCKET, Key=f"current/f{i}")
    with pytest.raises(ConnectionError, match="injected"):
        store.copy_many(BUCKET, copies)
    for i in range(4):  # every other copy still ran to its end
        assert store.head(BUCKET, f"current/f{i}") is not None
