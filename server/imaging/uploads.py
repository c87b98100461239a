"""Streams a multipart request body (form uploads, STOW-RS multipart/related) straight into a spool
folder, one file per part, enforcing the byte and file-count limits while reading: nothing is held in
memory beyond one chunk, and an upload over a limit stops at the limit with nothing left behind."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from server.core.errors import Invalid, TooLarge

SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


@dataclass
class SpooledPart:
    name: str  # the client's file name, reduced to a safe display form
    path: Path
    content_type: str
    size: int


class _Spooler:
    def __init__(self, folder: Path, *, max_bytes: int, max_files: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.parts: list[SpooledPart] = []
        self.total = 0
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._file: IO[bytes] | None = None

    def on_part_begin(self) -> None:
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value.decode("latin-1")
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        if len(self.parts) >= self.max_files:
            raise TooLarge(f"too many files in one upload (limit {self.max_files})", limit_files=self.max_files)
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        raw_name = (options.get(b"filename") or b"").decode("utf-8", "replace")
        name = SAFE_NAME.sub("_", raw_name.replace("\\", "/").rsplit("/", 1)[-1])[:200] or f"part-{len(self.parts) + 1}"
        path = self.folder / f"{len(self.parts):06d}.part"
        self._file = open(path, "wb")  # noqa: SIM115 - closed in on_part_end
        content_type = self._headers.get("content-type", "application/octet-stream").split(";")[0].strip()
        self.parts.append(SpooledPart(name, path, content_type, 0))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = end - start
        self.total += size
        if self.total > self.max_bytes:
            raise TooLarge(f"upload exceeds the limit of {self.max_bytes} bytes", limit_bytes=self.max_bytes)
        assert self._file is not None
        self._file.write(data[start:end])
        self.parts[-1].size += size

    def on_part_end(self) -> None:
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
    mime, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not mime.startswith(b"multipart/") or not boundary:
        raise Invalid("send multipart/form-data (files) or multipart/related (DICOM parts) with a boundary")
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=False)
    spooler = _Spooler(folder, max_bytes=max_bytes, max_files=max_files)
    callbacks = {name: getattr(spooler, name) for name in dir(spooler) if name.startswith("on_")}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        # Parsing writes and fsyncs files: off the event loop, a chunk at a time.
        async for chunk in body:
            await asyncio.to_thread(parser.write, chunk)
        await asyncio.to_thread(parser.finalize)
        spooler.close()
        if not spooler.parts:
            raise Invalid("the upload holds no files")
    except BaseException as exc:
        spooler.close()
        await asyncio.to_thread(shutil.rmtree, folder, True)
        if isinstance(exc, ValueError | AssertionError):  # the parser's way of saying the body is malformed
            raise Invalid(f"malformed multipart body: {exc}") from None
        raise
    return spooler.parts
