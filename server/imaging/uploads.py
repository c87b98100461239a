"""Streams a multipart request body (form uploads, STOW-RS multipart/related) straight into a spool
folder, one file per part, enforcing the byte and file-count limits while reading: nothing is held in
memory beyond one chunk, a truncated body is refused, and an upload over a limit stops at the limit
with nothing left behind."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from server.core.errors import Invalid, TooLarge
from server.imaging.multipart import MultipartError, MultipartParser, PartData, PartEnd, PartStart, boundary_of

SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")
FILENAME = re.compile(r'filename\*?=(?:UTF-8\'\')?"?([^";]*)"?', re.IGNORECASE)


@dataclass
class SpooledPart:
    name: str  # the client's file name, reduced to a safe display form
    path: Path
    content_type: str
    size: int


class _Spooler:
    def __init__(self, folder: Path, boundary: str, *, max_bytes: int, max_files: int) -> None:
        self.folder = folder
        self.parser = MultipartParser(boundary)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.parts: list[SpooledPart] = []
        self.total = 0
        self._file: IO[bytes] | None = None

    def feed(self, chunk: bytes) -> None:
        for event in self.parser.feed(chunk):
            if isinstance(event, PartStart):
                self._start(event)
            elif isinstance(event, PartData):
                self._data(event.data)
            elif isinstance(event, PartEnd):
                self._end()

    def _start(self, event: PartStart) -> None:
        if len(self.parts) >= self.max_files:
            raise TooLarge(f"too many files in one upload (limit {self.max_files})", limit_files=self.max_files)
        match = FILENAME.search(event.headers.get("content-disposition", ""))
        raw = match.group(1) if match else ""
        name = SAFE_NAME.sub("_", raw.replace("\\", "/").rsplit("/", 1)[-1])[:200] or f"part-{len(self.parts) + 1}"
        path = self.folder / f"{len(self.parts):06d}.part"
        self._file = open(path, "wb")  # noqa: SIM115 - closed at the part's end
        content_type = event.content_type.split(";")[0].strip() or "application/octet-stream"
        self.parts.append(SpooledPart(name, path, content_type, 0))

    def _data(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.max_bytes:
            raise TooLarge(f"upload exceeds the limit of {self.max_bytes} bytes", limit_bytes=self.max_bytes)
        assert self._file is not None
        self._file.write(data)
        self.parts[-1].size += len(data)

    def _end(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def spool_multipart(
    content_type: str, body: AsyncIterator[bytes], folder: Path, *, max_bytes: int, max_files: int
) -> list[SpooledPart]:
    """Writes every part of the body into `folder` (created here, removed again on any failure)."""
    try:
        boundary = boundary_of(content_type)
    except MultipartError:
        raise Invalid("send multipart/form-data (files) or multipart/related (DICOM parts) with a boundary") from None
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=False)
    spooler = _Spooler(folder, boundary, max_bytes=max_bytes, max_files=max_files)
    try:
        # Parsing writes and fsyncs files: off the event loop, a chunk at a time.
        async for chunk in body:
            await asyncio.to_thread(spooler.feed, chunk)
        spooler.parser.close()
        spooler.close()
        if not spooler.parts:
            raise Invalid("the upload holds no files")
    except BaseException as exc:
        spooler.close()
        await asyncio.to_thread(shutil.rmtree, folder, True)
        if isinstance(exc, MultipartError):
            raise Invalid(f"malformed multipart body: {exc}") from None
        raise
    return spooler.parts
