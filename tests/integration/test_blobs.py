"""The blob store: streaming without holding uploads in memory, content addressing, atomicity, limits."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.datastructures import UploadFile

from server.core.blobs import BlobNotFound, BlobRef, BlobTooLarge, FilesystemBlobStore, QuotaExceeded
from server.core.errors import TooLarge

MiB = 1024 * 1024


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


def blob_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in ("tmp", "sites", "locks")]


def temp_files(root: Path) -> list[Path]:
    return list((root / "tmp").glob("*")) if (root / "tmp").exists() else []


@pytest.fixture
async def store(tmp_path: Path) -> FilesystemBlobStore:
    blobs = FilesystemBlobStore(tmp_path / "blobs", quotas={"small": 1000})
    await blobs.start()
    return blobs


@pytest.mark.parametrize("source_kind", ["async_iterator", "file"])
async def test_a_50_mb_upload_is_streamed_without_being_held_in_memory(
    store: FilesystemBlobStore, tmp_path: Path, source_kind: str
) -> None:
    total = 50 * MiB
    expected = hashlib.sha256()
    if source_kind == "file":
        path = tmp_path / "volume.raw"
        with path.open("wb") as out:
            for _ in range(50):
                block = os.urandom(MiB)
                expected.update(block)
                out.write(block)

    async def generated() -> AsyncIterator[bytes]:
        sent, i = 0, 0
        while sent < total:
            block = os.urandom(min(total - sent, (64 * 1024) if i % 2 else 3 * MiB))  # small (batched) and big
            expected.update(block)
            sent += len(block)
            i += 1
            yield block

    tracemalloc.start()
    try:
        if source_kind == "file":
            with path.open("rb") as source:
                ref = await store.put_stream(source, site_id="site-a", max_bytes=None)
        else:
            ref = await store.put_stream(generated(), site_id="site-a", max_bytes=None)
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak_bytes < 16 * MiB, f"peak {peak_bytes / MiB:.1f} MiB"
    assert ref == BlobRef(expected.hexdigest(), total, "application/octet-stream")
    sha = ref.sha256
    assert (store.root / sha[:2] / sha[2:4] / sha).stat().st_size == total
    assert await store.usage("site-a") == total
    assert temp_files(store.root) == []


async def test_identical_bytes_are_stored_once_and_counted_for_every_site_holding_them(
    store: FilesystemBlobStore,
) -> None:
    data = os.urandom(300_000)
    first = await store.put_stream(chunks_of(data, 10_000), site_id="site-a", max_bytes=None, media_type="model/stl")
    second = await store.put_stream(io.BytesIO(data), site_id="site-b", max_bytes=None)
    again = await store.put_stream(chunks_of(data, 77_777), site_id="site-a", max_bytes=None)

    assert first.sha256 == second.sha256 == again.sha256 == hashlib.sha256(data).hexdigest()
    assert first.media_type == "model/stl"
    assert blob_files(store.root) == [store.root / first.sha256[:2] / first.sha256[2:4] / first.sha256]
    assert await store.usage("site-a") == len(data)  # held once, however often uploaded
    assert await store.usage("site-b") == len(data)
    assert temp_files(store.root) == []


async def test_a_failed_stream_leaves_no_partial_blob_and_no_temp_file(store: FilesystemBlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield os.urandom(MiB)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_stream(broken(), site_id="site-a", max_bytes=None)

    assert blob_files(store.root) == []
    assert temp_files(store.root) == []
    assert await store.usage("site-a") == 0


async def test_a_cancelled_upload_leaves_no_temp_file(store: FilesystemBlobStore) -> None:
    sent_some = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(MiB)
        sent_some.set()
        await asyncio.Event().wait()  # the client stops sending
        yield b""

    upload = asyncio.create_task(store.put_stream(stalls(), site_id="site-a", max_bytes=None))
    await sent_some.wait()
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload

    assert blob_files(store.root) == []
    assert temp_files(store.root) == []


async def test_max_bytes_stops_the_upload_as_soon_as_exceeded_with_a_message_naming_the_limit(
    store: FilesystemBlobStore,
) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 64 * 1024
            yield bytes(64 * 1024)

    with pytest.raises(BlobTooLarge) as caught:
        await store.put_stream(endless(), site_id="site-a", max_bytes=MiB)

    error = caught.value
    assert isinstance(error, TooLarge) and error.status == 413
    assert "1048576 bytes (1.0 MiB)" in error.message
    assert error.details == {"limit_bytes": MiB}
    assert pulled <= MiB + 64 * 1024  # stopped at the first chunk past the limit
    assert blob_files(store.root) == [] and temp_files(store.root) == []


async def test_a_blob_exactly_at_max_bytes_is_accepted(store: FilesystemBlobStore) -> None:
    ref = await store.put_stream(chunks_of(bytes(MiB), 100_000), site_id="site-a", max_bytes=MiB)
    assert ref.size == MiB


async def test_quota_is_enforced_per_site(store: FilesystemBlobStore) -> None:
    kept = await store.put_stream(io.BytesIO(b"a" * 600), site_id="small", max_bytes=None)

    with pytest.raises(QuotaExceeded) as caught:
        await store.put_stream(io.BytesIO(b"b" * 600), site_id="small", max_bytes=None)
    assert caught.value.status == 507 and caught.value.code == "quota_exceeded"
    assert "quota of 1000 bytes" in caught.value.message
    assert caught.value.details == {"site_id": "small", "quota_bytes": 1000, "used_bytes": 600}
    assert await store.usage("small") == 600
    assert len(blob_files(store.root)) == 1 and temp_files(store.root) == []

    # other sites are not limited by it, and the same bytes cost the small site nothing more
    await store.put_stream(io.BytesIO(b"b" * 600), site_id="site-b", max_bytes=None)
    assert await store.usage("site-b") == 600

    # releasing a blob frees the quota
    assert await store.delete(kept.sha256, site_id="small") is True
    assert await store.usage("small") == 0
    await store.put_stream(io.BytesIO(b"b" * 600), site_id="small", max_bytes=None)
    assert await store.usage("small") == 600


async def test_quota_accounting_plugs_in_through_callables(tmp_path: Path) -> None:
    asked: list[str] = []

    def usage_from_database(site_id: str) -> int:
        asked.append(site_id)
        return 900

    store = FilesystemBlobStore(
        tmp_path, quotas=lambda site_id: 1000 if site_id == "site-a" else None, usage_of=usage_from_database
    )
    await store.start()

    with pytest.raises(QuotaExceeded):
        await store.put_stream(io.BytesIO(bytes(200)), site_id="site-a", max_bytes=None)
    await store.put_stream(io.BytesIO(bytes(100)), site_id="site-a", max_bytes=None)
    await store.put_stream(io.BytesIO(bytes(5000)), site_id="site-b", max_bytes=None)  # unlimited

    assert await store.usage("site-a") == 900
    assert set(asked) == {"site-a"}  # an unlimited site's usage is never computed for a put


async def test_an_upload_file_is_read_through_its_async_read(store: FilesystemBlobStore) -> None:
    data = os.urandom(2 * MiB + 17)
    upload = UploadFile(io.BytesIO(data), filename="series.zip")

    ref = await store.put_stream(upload, site_id="site-a", max_bytes=None, media_type="application/zip")

    assert ref == BlobRef(hashlib.sha256(data).hexdigest(), len(data), "application/zip")


async def test_read_stream_returns_the_stored_bytes_in_chunks(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path, chunk_bytes=256 * 1024)
    data = os.urandom(3 * MiB + 12345)
    ref = await store.put_stream(chunks_of(data, 100_000), site_id="site-a", max_bytes=None)

    chunks = [chunk async for chunk in await store.read_stream(ref.sha256)]

    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= 256 * 1024
    assert (await store.stat(ref.sha256)).size == len(data)
    assert await store.exists(ref.sha256)


async def test_an_unknown_or_malformed_blob_is_not_found_before_streaming_starts(store: FilesystemBlobStore) -> None:
    for name in ("0" * 64, "../../etc/passwd", "ABC"):
        with pytest.raises(BlobNotFound):
            await store.read_stream(name)
        with pytest.raises(BlobNotFound):
            await store.stat(name)
        assert await store.exists(name) is False


async def test_verify_detects_a_corrupted_file(store: FilesystemBlobStore) -> None:
    ref = await store.put_stream(io.BytesIO(os.urandom(100_000)), site_id="site-a", max_bytes=None)
    assert await store.verify(ref.sha256) is True

    path = store.root / ref.sha256[:2] / ref.sha256[2:4] / ref.sha256
    with path.open("r+b") as file:
        file.seek(50_000)
        byte = file.read(1)
        file.seek(50_000)
        file.write(bytes([byte[0] ^ 0xFF]))

    assert await store.verify(ref.sha256) is False


async def test_ten_concurrent_puts_of_the_same_content_store_one_blob(store: FilesystemBlobStore) -> None:
    data = os.urandom(2 * MiB)
    sites = [f"site-{i % 3}" for i in range(10)]

    refs = await asyncio.gather(
        *(store.put_stream(chunks_of(data, 32 * 1024), site_id=site, max_bytes=None) for site in sites)
    )

    assert {ref.sha256 for ref in refs} == {hashlib.sha256(data).hexdigest()}
    assert len(blob_files(store.root)) == 1
    assert temp_files(store.root) == []
    for site in set(sites):
        assert await store.usage(site) == len(data)
    assert await store.verify(refs[0].sha256)


async def test_delete_removes_the_bytes_only_when_no_site_holds_them(store: FilesystemBlobStore) -> None:
    ref = await store.put_stream(io.BytesIO(b"g-code"), site_id="site-a", max_bytes=None)
    await store.put_stream(io.BytesIO(b"g-code"), site_id="site-b", max_bytes=None)

    assert await store.delete(ref.sha256, site_id="site-a") is False  # site-b still holds it
    assert await store.exists(ref.sha256)
    assert await store.usage("site-a") == 0

    assert await store.delete(ref.sha256, site_id="site-b") is True
    assert not await store.exists(ref.sha256)
    assert await store.delete(ref.sha256, site_id="site-b") is False  # already gone: harmless


async def test_start_removes_temp_files_left_by_a_crash_an_hour_ago(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    stale, fresh = tmp_path / "tmp" / "crashed.part", tmp_path / "tmp" / "in-flight.part"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    await FilesystemBlobStore(tmp_path).start()

    assert not stale.exists()
    assert fresh.exists()  # possibly another instance's upload on the shared volume
