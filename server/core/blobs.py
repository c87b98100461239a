"""The blob store: DICOM files, volumes, meshes, G-code and recordings, addressed by their sha256.

`BlobStore` is the interface; `FilesystemBlobStore` is the implementation for a local disk or a shared
volume (an S3 implementation can sit behind the same Protocol). Layout under `root`:

    ab/cd/abcd…            the blob, named by the sha256 of its bytes
    tmp/                   uploads in flight (`*.part`); stale ones are removed by `start()`
    sites/<site_id>/<sha>  the site's reference to a blob; the file holds the blob's size in bytes
    locks/                 lock files (flock), so several instances can share the volume

Uploads stream into a temp file while hashed, fsynced and renamed into place: a blob is complete or absent,
identical bytes are stored once, and an upload holds about `chunk_bytes` of memory (I/O in worker threads).
`max_bytes` and the site's quota are enforced while reading; job workers use `put_file`/`put_bytes`.
References: a site holds a blob once, however many of its records use it. `put_stream` records the hold,
`delete(sha, site_id=…)` releases it (call it when the site's last record using the blob is gone) and removes
the bytes when no site holds them. A site's usage is the sum of the sizes of the blobs it holds.
Quotas plug in as two synchronous callables, run in a worker thread (a SQL-backed accounting opens its own
session there): `quotas` (a dict or `site_id -> bytes | None`; None is unlimited) and `usage_of`
(`site_id -> bytes`; default: the sum of the site's reference files). The final check runs after hashing
under a per-site lock (flock, so across instances too), so re-uploading a blob the site holds costs
nothing; while streaming, an upload bigger than the remaining quota is stopped early, duplicate or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import inspect
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol, cast

from server.core.blob_errors import (  # noqa: F401 - the errors are part of this module's interface
    BlobNotFound,
    BlobTooLarge,
    MiB,
    QuotaExceeded,
    check_site_id,
    human,
    not_found,
    quota_error,
)

DEFAULT_MEDIA_TYPE = "application/octet-stream"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BlobRef:
    """What a record keeps to point at a blob. `media_type` is echoed from the upload, not stored."""

    sha256: str
    size: int
    media_type: str = DEFAULT_MEDIA_TYPE


@dataclass(frozen=True)
class BlobStat:
    sha256: str
    size: int
    stored_at: datetime  # UTC


class SyncReader(Protocol):  # a binary file: open(path, "rb"), io.BytesIO, SpooledTemporaryFile
    def read(self, size: int = ..., /) -> bytes: ...


class AsyncReader(Protocol):  # async read(size), like Starlette's UploadFile
    async def read(self, size: int = ..., /) -> bytes: ...


BlobSource = AsyncIterable[bytes] | SyncReader | AsyncReader


class BlobStore(Protocol):
    async def start(self) -> None:
        """Prepare the store (create folders, remove what crashed uploads left behind)."""

    async def put_stream(
        self, source: BlobSource, *, site_id: str, max_bytes: int | None, media_type: str = DEFAULT_MEDIA_TYPE
    ) -> BlobRef:
        """Store the bytes of `source` for `site_id`; raises BlobTooLarge or QuotaExceeded, keeping nothing."""

    async def read_stream(self, sha256: str) -> AsyncIterator[bytes]:
        """Open the blob (BlobNotFound at once, before a response starts) and return its chunks."""

    async def exists(self, sha256: str) -> bool: ...

    async def stat(self, sha256: str) -> BlobStat: ...

    async def delete(self, sha256: str, *, site_id: str) -> bool:
        """Release the site's hold on the blob; returns True when the bytes themselves were removed."""

    async def usage(self, site_id: str) -> int:
        """Bytes held by the site."""

    async def verify(self, sha256: str) -> bool:
        """Rehash the stored bytes; False when they no longer match their name."""


class FilesystemBlobStore:
    def __init__(
        self,
        root: Path,
        *,
        quotas: Mapping[str, int | None] | Callable[[str], int | None] | None = None,
        usage_of: Callable[[str], int] | None = None,
        chunk_bytes: int = MiB,
        stale_temp_s: float = 3600.0,
    ) -> None:
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        self.root = Path(root)
        self.chunk_bytes = chunk_bytes
        self.stale_temp_s = stale_temp_s
        if isinstance(quotas, Mapping):
            quotas = dict(quotas).get
        self._quota_of: Callable[[str], int | None] = quotas or _unlimited
        self._usage_of: Callable[[str], int] = usage_of or self._usage_from_markers
        self._tmp = self.root / "tmp"
        self._sites = self.root / "sites"
        self._locks = self.root / "locks"
        self._thread_locks: dict[str, threading.Lock] = {}
        self._thread_locks_guard = threading.Lock()

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare)

    def clean_stale_temp(self, max_age_s: float | None = None) -> int:
        """Remove temp files not written to for `max_age_s` (default `stale_temp_s`); returns how many."""
        cutoff = time.time() - (self.stale_temp_s if max_age_s is None else max_age_s)
        removed = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self._tmp) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed

    def _prepare(self) -> None:
        for folder in (self.root, self._tmp, self._sites, self._locks):
            folder.mkdir(parents=True, exist_ok=True)
        self.clean_stale_temp()

    async def put_stream(
        self, source: BlobSource, *, site_id: str, max_bytes: int | None, media_type: str = DEFAULT_MEDIA_TYPE
    ) -> BlobRef:
        check_site_id(site_id)
        quota, used = await asyncio.to_thread(self._quota_and_usage, site_id)
        temp, file = await asyncio.to_thread(self._open_temp)
        hasher = hashlib.sha256()
        size = 0
        committing = False
        try:
            batch = bytearray()
            async for chunk in self._chunks(source):
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(
                        f"upload exceeds the limit of {max_bytes} bytes ({human(max_bytes)})", limit_bytes=max_bytes
                    )
                if quota is not None and used + size > quota:
                    raise quota_error(site_id, quota, used)
                if not batch and len(chunk) >= self.chunk_bytes:
                    await asyncio.to_thread(_write, file, hasher, chunk)
                    continue
                batch += chunk
                if len(batch) >= self.chunk_bytes:
                    await asyncio.to_thread(_write, file, hasher, batch)
                    batch = bytearray()
            await asyncio.to_thread(_finish, file, hasher, batch)
            sha256 = hasher.hexdigest()
            committing = True  # from here on the commit (in its thread) owns the temp file
            await asyncio.to_thread(self._commit, temp, sha256, size, site_id)
        except BaseException:
            if not committing:
                file.close()
                temp.unlink(missing_ok=True)
            raise
        return BlobRef(sha256, size, media_type)

    def put_file(self, source: Path, *, site_id: str, max_bytes: int | None = None) -> BlobRef:
        """Synchronous store of a local file (job workers): copied while hashed, then committed as above."""
        check_site_id(site_id)
        quota, used = self._quota_and_usage(site_id)
        temp, file = self._open_temp()
        hasher, size = hashlib.sha256(), 0
        try:
            with open(source, "rb") as reader:
                while chunk := reader.read(self.chunk_bytes):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise BlobTooLarge(f"file exceeds the limit of {max_bytes} bytes", limit_bytes=max_bytes)
                    if quota is not None and used + size > quota:
                        raise quota_error(site_id, quota, used)
                    _write(file, hasher, chunk)
            _finish(file, hasher, b"")
        except BaseException:
            file.close()
            temp.unlink(missing_ok=True)
            raise
        self._commit(temp, hasher.hexdigest(), size, site_id)  # removes the temp file whatever happens
        return BlobRef(hasher.hexdigest(), size, DEFAULT_MEDIA_TYPE)

    def put_bytes(self, data: bytes, *, site_id: str) -> BlobRef:
        """Synchronous store of bytes already in memory (a mesh export, a report)."""
        check_site_id(site_id)
        temp, file = self._open_temp()
        hasher = hashlib.sha256()
        try:
            _finish(file, hasher, data)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._commit(temp, hasher.hexdigest(), len(data), site_id)
        return BlobRef(hasher.hexdigest(), len(data), DEFAULT_MEDIA_TYPE)

    def path_of(self, sha256: str) -> Path:
        """The stored file, for readers that need a path (pydicom, SimpleITK); NotFound when absent."""
        path = self._path(sha256)
        if not path.is_file():
            raise not_found(sha256)
        return path

    async def _chunks(self, source: BlobSource) -> AsyncIterator[bytes]:
        if isinstance(source, AsyncIterable):
            async for chunk in source:
                yield chunk
            return
        read = source.read
        while True:
            if inspect.iscoroutinefunction(read):
                data = cast(bytes, await read(self.chunk_bytes))
            else:
                data = await asyncio.to_thread(cast(SyncReader, source).read, self.chunk_bytes)
            if not data:
                return
            yield data

    def _open_temp(self) -> tuple[Path, IO[bytes]]:
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=".part")
        return Path(name), os.fdopen(fd, "wb")

    def _quota_and_usage(self, site_id: str) -> tuple[int | None, int]:
        quota = self._quota_of(site_id)
        return quota, (0 if quota is None else self._usage_of(site_id))

    def _commit(self, temp: Path, sha256: str, size: int, site_id: str) -> None:
        """Check the quota, move the temp file into place (or drop it: dedup) and record the site's hold."""
        try:
            with self._lock(f"site-{site_id}"), self._lock(f"blob-{sha256[:2]}"):
                marker = self._marker(site_id, sha256)
                held = marker.exists()
                if not held:
                    quota, used = self._quota_and_usage(site_id)
                    if quota is not None and used + size > quota:
                        raise quota_error(site_id, quota, used)
                target = self._path(sha256)
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(temp, target)
                    _fsync_dir(target.parent)
                if not held:
                    self._write_marker(marker, size)
        finally:
            temp.unlink(missing_ok=True)

    def _write_marker(self, marker: Path, size: int) -> None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        temp, file = self._open_temp()
        try:
            with file:
                file.write(str(size).encode())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, marker)
            _fsync_dir(marker.parent)
        finally:
            temp.unlink(missing_ok=True)

    async def read_stream(self, sha256: str) -> AsyncIterator[bytes]:
        path = self._path(sha256)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise not_found(sha256) from None
        return self._read_chunks(file)

    async def _read_chunks(self, file: IO[bytes]) -> AsyncIterator[bytes]:
        try:
            while data := await asyncio.to_thread(file.read, self.chunk_bytes):
                yield data
        finally:
            file.close()

    async def exists(self, sha256: str) -> bool:
        return SHA256_RE.match(sha256) is not None and await asyncio.to_thread(self._path(sha256).is_file)

    async def stat(self, sha256: str) -> BlobStat:
        try:
            info = await asyncio.to_thread(self._path(sha256).stat)
        except FileNotFoundError:
            raise not_found(sha256) from None
        return BlobStat(sha256, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))

    async def verify(self, sha256: str) -> bool:
        hasher = hashlib.sha256()
        async for chunk in await self.read_stream(sha256):
            await asyncio.to_thread(hasher.update, chunk)
        return hasher.hexdigest() == sha256

    async def delete(self, sha256: str, *, site_id: str) -> bool:
        check_site_id(site_id)
        self._path(sha256)  # validates the name
        return await asyncio.to_thread(self._delete, sha256, site_id)

    def _delete(self, sha256: str, site_id: str) -> bool:
        with self._lock(f"blob-{sha256[:2]}"):
            self._marker(site_id, sha256).unlink(missing_ok=True)
            if self._held_by_any_site(sha256):
                return False
            path = self._path(sha256)
            existed = path.exists()
            path.unlink(missing_ok=True)
            return existed

    def _held_by_any_site(self, sha256: str) -> bool:
        with contextlib.suppress(FileNotFoundError):
            return any((site / sha256).exists() for site in self._sites.iterdir())
        return False

    async def usage(self, site_id: str) -> int:
        check_site_id(site_id)
        return await asyncio.to_thread(self._usage_of, site_id)

    def _usage_from_markers(self, site_id: str) -> int:
        total = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self._sites / site_id) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError, ValueError):
                    total += int(Path(entry.path).read_text())
        return total

    def _path(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise not_found(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _marker(self, site_id: str, sha256: str) -> Path:
        return self._sites / site_id / sha256

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """Exclusive across threads of this process and, through flock, across instances on the volume."""
        with self._thread_locks_guard:
            thread_lock = self._thread_locks.setdefault(name, threading.Lock())
        with thread_lock:
            self._locks.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock


def _write(file: IO[bytes], hasher: hashlib._Hash, data: bytes | bytearray) -> None:
    hasher.update(data)
    file.write(data)


def _finish(file: IO[bytes], hasher: hashlib._Hash, data: bytes | bytearray) -> None:
    with file:
        if data:
            _write(file, hasher, data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlimited(_site_id: str) -> None:
    return None
