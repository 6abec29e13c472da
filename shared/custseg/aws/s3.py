"""The S3 object store adapter: the few operations the jobs need, over one boto3 client."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from custseg.layout import content_type

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# One request up to 256 MiB, multipart (16 MiB parts) above. Memory is bounded either way:
# a single PUT streams the file from disk (measured: RSS unchanged uploading 400 MB).
# Below 256 MiB one request is faster than parts plus their assembly (multipart pays off
# for its parallel parts and per-part retries on large files, S3's advice from ~100 MB).
_TRANSFER = TransferConfig(multipart_threshold=256 * 1024**2, multipart_chunksize=16 * 1024**2)
_COPY_OBJECT_MAX = 5 * 1024**3  # the largest object one CopyObject request may copy
_COPY_THREADS = 6  # parallel server-side copies (urllib3 pools 10 connections per host)
_STREAM_BLOCK = 8 * 1024**2  # block size of a streamed download
_STREAM_ATTEMPTS = 3  # a broken download stream is retried from the start this many times
_SEND_BLOCK = 1024**2  # an uploaded file is handed to the socket in blocks of this size


S3_CONFIG = Config(s3={"payload_signing_enabled": False})
"""The S3 client's configuration. Uploads carry a checksum (SHA-256 for run files, see
:meth:`ObjectStore.upload`; botocore's CRC32 otherwise), which S3 verifies, so the body
is not also hashed into the request signature. Over HTTPS (AWS) botocore does this by
itself only for a checksum it computes: one the caller hands over (the assignments CSV's,
computed while it was written) would have the body hashed for the signature again. Said
explicitly, it holds for both, and the local emulator's plain-HTTP endpoint gets the same
requests (instead of a second SHA-256 pass over every body: 0.18 s of CPU per 1M-customer
flow)."""


class LargeBlocks:
    """A binary file whose reads return at least ``block`` bytes (up to the end).

    ``http.client`` sends a file body in 8 KiB reads, each one ``sendall``: one release
    and re-acquisition of the GIL per 8 KiB. With another busy thread in the process (the
    scoring's evaluation, the writer, a second upload), every re-acquisition waits for
    it: measured, an 88 MB upload next to a thread running Python took 47-122 s in 8 KiB
    blocks and 2.4 s in 1 MiB blocks (0.5 s alone either way). Seekable (botocore rewinds
    a body to retry it and measures its length by seeking).
    """

    def __init__(self, fh: BinaryIO, block: int = _SEND_BLOCK) -> None:
        self._fh = fh
        self._block = block

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self._fh.read()
        return self._fh.read(max(size, self._block))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


class PreconditionFailed(Exception):
    """A conditional write lost: the object exists (If-None-Match) or changed (If-Match)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    version_id: str | None
    last_modified: Any  # datetime
    metadata: dict[str, str]


def _is_precondition(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"PreconditionFailed", "ConditionalRequestConflict"} or status in {409, 412}


def _is_missing(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return code in {"404", "NoSuchKey", "NotFound"}


def _sha256_hex(checksum: str | None) -> str | None:
    """S3's base64 ``ChecksumSHA256`` as hex; None when absent or per part (``...-N``)."""
    if not checksum or "-" in checksum:
        return None
    return base64.b64decode(checksum).hex()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


class ObjectStore:
    """S3 operations used by the jobs. ``client`` defaults to ``boto3.client("s3")``."""

    def __init__(self, client: S3Client | None = None) -> None:
        self.client: S3Client = client or boto3.client("s3", config=S3_CONFIG)

    # -- reads ---------------------------------------------------------------------------
    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            resp = self.client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return ObjectInfo(
            key=key,
            size=int(resp["ContentLength"]),
            etag=resp["ETag"].strip('"'),
            version_id=resp.get("VersionId"),
            last_modified=resp["LastModified"],
            metadata=dict(resp.get("Metadata", {})),
        )

    def get_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes | None:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            return self.client.get_object(**kwargs)["Body"].read()
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise

    def get_json(self, bucket: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
        """The parsed JSON object and its ETag, or ``(None, None)`` when absent."""
        try:
            resp = self.client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None, None
            raise
        return json.loads(resp["Body"].read()), resp["ETag"].strip('"')

    def download(self, bucket: str, key: str, path: Path, version_id: str | None = None) -> Path:
        """Stream an object to ``path`` (constant memory).

        Up to 256 MiB: one ``GetObject`` whose body is copied to the file in 8 MiB blocks,
        retried from the start on a broken stream. The managed transfer's single-part
        download hands 256 KiB blocks through a queue to a writer thread: measured on the
        emulator, 0.8-0.9 s for 100 MB against 0.15 s this way. Above 256 MiB the managed
        transfer's parallel ranged GETs pay off.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        for attempt in range(_STREAM_ATTEMPTS):
            resp = self.client.get_object(Bucket=bucket, Key=key, **extra)
            body = resp["Body"]
            if int(resp["ContentLength"]) > _TRANSFER.multipart_threshold:
                body.close()
                self.client.download_file(
                    bucket, key, str(path), ExtraArgs=extra or None, Config=_TRANSFER
                )
                return path
            try:
                with path.open("wb") as fh:
                    shutil.copyfileobj(body, fh, _STREAM_BLOCK)
                return path
            except BotoCoreError:  # a broken stream (a full disk is not retried)
                if attempt + 1 == _STREAM_ATTEMPTS:
                    raise
            finally:
                body.close()
        return path

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def list_folders(self, bucket: str, prefix: str) -> list[str]:
        """Immediate sub-folder names under ``prefix`` (which ends with ``/``)."""
        names: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(prefix) :].rstrip("/"))
        return names

    # -- writes --------------------------------------------------------------------------
    def put_bytes(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        """Write ``body``; conditional when asked. Returns the new ETag."""
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type(key),
        }
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = f'"{if_match}"' if not if_match.startswith('"') else if_match
        try:
            resp = self.client.put_object(**kwargs)
        except ClientError as exc:
            if _is_precondition(exc):
                raise PreconditionFailed(key) from exc
            raise
        return resp["ETag"].strip('"')

    def put_json(self, bucket: str, key: str, obj: Any, **conditions: Any) -> str:
        body = json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8")
        return self.put_bytes(bucket, key, body, **conditions)

    def upload(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        if_none_match: bool = False,
        sha256: str | None = None,
    ) -> str | None:
        """Stream a local file (one PUT up to 256 MiB, multipart above; constant memory).

        ``if_none_match``: create the object only if ``key`` does not exist yet (S3
        ``If-None-Match: *``, on the single PUT or on the multipart completion); raises
        :class:`PreconditionFailed` when it does, leaving the existing object untouched.
        The single create-only PUT carries a SHA-256 checksum, which S3 verifies and keeps
        with the object: returns it (hex), so that a manifest records it without reading
        the file again. None when S3 did not compute a whole-file SHA-256 (multipart).

        ``sha256``: the file's SHA-256 (hex) when the caller knows it (computed while the
        file was written): sent as the checksum, which S3 verifies (``BadDigest`` when the
        bytes differ), instead of botocore reading the whole file to compute it first.
        """
        if not if_none_match:
            self.client.upload_file(
                str(path),
                bucket,
                key,
                ExtraArgs={"ContentType": content_type(key)},
                Config=_TRANSFER,
            )
            return None
        try:
            if path.stat().st_size <= _TRANSFER.multipart_threshold:
                kwargs: dict[str, Any] = {
                    "Bucket": bucket,
                    "Key": key,
                    "ContentType": content_type(key),
                    "IfNoneMatch": "*",
                    "ChecksumAlgorithm": "SHA256",
                }
                if sha256 is not None:
                    kwargs["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(sha256)).decode()
                with path.open("rb") as fh:
                    body = cast(IO[bytes], LargeBlocks(fh))  # reads, seeks, tells
                    resp = self.client.put_object(Body=body, **kwargs)
                return _sha256_hex(resp.get("ChecksumSHA256"))
            self._multipart_create_only(bucket, key, path)
            return None
        except ClientError as exc:
            if _is_precondition(exc):
                raise PreconditionFailed(key) from exc
            raise

    def _multipart_create_only(self, bucket: str, key: str, path: Path) -> None:
        # The managed transfer cannot send If-None-Match; parts go one at a time (16 MiB).
        upload_id = self.create_multipart(bucket, key)
        try:
            parts: list[dict[str, Any]] = []
            with path.open("rb") as fh:
                for number in itertools.count(1):
                    chunk = fh.read(_TRANSFER.multipart_chunksize)
                    if not chunk:
                        break
                    etag = self.upload_part(bucket, key, upload_id, number, chunk)
                    parts.append({"ETag": etag, "PartNumber": number})
            self.complete_multipart(bucket, key, upload_id, parts, if_none_match=True)
        except BaseException:
            self.abort_multipart(bucket, key, upload_id)
            raise

    def copy_many(self, bucket: str, copies: list[tuple[str, str, int | None]]) -> None:
        """Server-side copies ``(source key, target key, size)`` within ``bucket``, in
        parallel (S3 copies each at its own pace), largest first. Every copy is waited
        for; the first error is raised once all have ended."""
        ordered = sorted(copies, key=lambda c: -(c[2] or 0))
        with ThreadPoolExecutor(min(_COPY_THREADS, max(1, len(ordered)))) as pool:
            futures = [
                pool.submit(self.copy, bucket, source, bucket, target, size=size)
                for source, target, size in ordered
            ]
        for future in futures:
            future.result()

    # -- multipart uploads, step by step (the managed transfer has no If-None-Match) -------
    def create_multipart(self, bucket: str, key: str) -> str:
        """Start a multipart upload of ``key``; its upload id. Nothing is visible until
        :meth:`complete_multipart`."""
        resp = self.client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=content_type(key)
        )
        return resp["UploadId"]

    def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> str:
        """Send part ``number`` (1-based; at least 5 MiB unless it is the last); its ETag."""
        resp = self.client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return resp["ETag"]

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[dict[str, Any]],
        *,
        if_none_match: bool = False,
    ) -> None:
        """Assemble the parts into ``key``. ``if_none_match``: only if ``key`` does not
        exist yet (raises :class:`PreconditionFailed` when it does)."""
        kwargs: dict[str, Any] = {"IfNoneMatch": "*"} if if_none_match else {}
        try:
            self.client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                **kwargs,
            )
        except ClientError as exc:
            if _is_precondition(exc):
                raise PreconditionFailed(key) from exc
            raise

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        """Drop an unfinished upload's parts (best effort: the bucket's lifecycle rule
        ``AbortIncompleteMultipartUpload`` removes what this misses)."""
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    def sha256(self, bucket: str, key: str) -> tuple[int, str]:
        """``(size, sha256 hex)`` of a stored object: the SHA-256 S3 keeps with it when it
        was uploaded with one (:meth:`upload`), else read and hashed (constant memory)."""
        head = self.client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        stored = _sha256_hex(head.get("ChecksumSHA256"))
        if stored is not None:
            return int(head["ContentLength"]), stored
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        size = 0
        for block in iter(lambda: body.read(1024 * 1024), b""):
            digest.update(block)
            size += len(block)
        return size, digest.hexdigest()

    def copy(
        self,
        bucket: str,
        key: str,
        dest_bucket: str,
        dest_key: str,
        *,
        version_id: str | None = None,
        size: int | None = None,
    ) -> None:
        """Server-side copy. One ``CopyObject`` request up to 5 GiB (S3's limit for it);
        a multipart copy (``UploadPartCopy``) only above, where S3 requires one: a
        multipart copy of a 100 MB object costs many more requests for nothing.

        ``size``: the source's size when the caller knows it (a manifest entry), which
        spares the ``HeadObject`` that finds it out.
        """
        source: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            source["VersionId"] = version_id
        if size is None:
            size = int(self.client.head_object(**source)["ContentLength"])
        if size <= _COPY_OBJECT_MAX:
            self.client.copy_object(
                CopySource=source,  # type: ignore[arg-type]
                Bucket=dest_bucket,
                Key=dest_key,
                MetadataDirective="COPY",
            )
            return
        self.client.copy(source, dest_bucket, dest_key, Config=_TRANSFER)  # type: ignore[arg-type]
