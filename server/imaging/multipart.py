"""A streaming multipart/related parser with no I/O (RFC 2046), for WADO-RS responses.

Feed it bytes as they arrive; it returns events (a part starts with its headers, a piece of the part's
body, a part ends). It never holds more than one chunk plus a boundary's length of body, so a study of
any size streams through in constant memory; only header blocks are buffered, and they are bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from enum import Enum

MAX_HEADER_BYTES = 16 * 1024
MAX_BOUNDARY_CHARS = 256  # RFC 2046 says 70; Orthanc sends ~100, so be lenient but bounded


class MultipartError(ValueError):
    """The body is not well-formed multipart: no boundary, truncated, oversized headers."""


@dataclass(frozen=True)
class PartStart:
    headers: dict[str, str]  # names lower-cased

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """`multipart/related; type="application/dicom"; boundary=xyz` → ("multipart/related", {params})."""
    message = Message()
    message["content-type"] = value
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:] if isinstance(v, str)}
    return message.get_content_type(), params


def boundary_of(content_type: str) -> str:
    """The boundary of a multipart Content-Type header, validated."""
    media_type, params = parse_content_type(content_type)
    if not media_type.startswith("multipart/"):
        raise MultipartError(f"expected a multipart response, got Content-Type {content_type!r}")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > MAX_BOUNDARY_CHARS or not boundary.isascii():
        raise MultipartError(f"missing or invalid boundary in Content-Type {content_type!r}")
    return boundary


class _State(Enum):
    PREAMBLE = "preamble"
    AFTER_BOUNDARY = "after boundary"
    HEADERS = "headers"
    BODY = "body"
    DONE = "done"


class MultipartParser:
    def __init__(self, boundary: str) -> None:
        # Every delimiter is preceded by CRLF; pretending the stream starts with one lets the first
        # boundary (which usually opens the body) be found like the others.
        self._delimiter = b"\r\n--" + boundary.encode("ascii")
        self._buffer = bytearray(b"\r\n")
        self._state = _State.PREAMBLE
        self.parts = 0

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def feed(self, data: bytes) -> list[Event]:
        if self._state is _State.DONE:
            return []  # the epilogue is ignored, as RFC 2046 says
        self._buffer += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        """The stream ended: raise unless the closing boundary was seen."""
        if self._state is not _State.DONE:
            raise MultipartError(f"multipart body truncated in {self._state.value} after {self.parts} complete part(s)")

    def _step(self, events: list[Event]) -> bool:
        """Consume what the buffer allows in the current state; False when more bytes are needed."""
        buf = self._buffer
        if self._state is _State.PREAMBLE:
            index = buf.find(self._delimiter)
            if index < 0:
                # Keep only what could be the start of a delimiter: a preamble never accumulates.
                del buf[: max(0, len(buf) - len(self._delimiter) + 1)]
                return False
            del buf[: index + len(self._delimiter)]
            self._state = _State.AFTER_BOUNDARY
            return True
        if self._state is _State.AFTER_BOUNDARY:
            if len(buf) < 2:
                return False
            if buf.startswith(b"--"):
                self._state = _State.DONE
                buf.clear()
                return False
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                if len(buf) > 1024:
                    raise MultipartError("garbage after a multipart boundary")
                return False
            if buf[:line_end].strip(b" \t"):  # only transport padding may follow a boundary
                raise MultipartError("garbage after a multipart boundary")
            del buf[: line_end + 2]
            self._state = _State.HEADERS
            return True
        if self._state is _State.HEADERS:
            if buf.startswith(b"\r\n"):  # a part without headers
                header_block, consumed = b"", 2
            else:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        raise MultipartError(f"multipart part headers longer than {MAX_HEADER_BYTES} bytes")
                    return False
                header_block, consumed = bytes(buf[:end]), end + 4
            if consumed > MAX_HEADER_BYTES:
                raise MultipartError(f"multipart part headers longer than {MAX_HEADER_BYTES} bytes")
            del buf[:consumed]
            events.append(PartStart(_parse_headers(header_block)))
            self._state = _State.BODY
            return True
        if self._state is _State.BODY:
            index = buf.find(self._delimiter)
            if index < 0:
                keep = len(self._delimiter) - 1  # a delimiter may straddle two chunks
                if len(buf) > keep:
                    events.append(PartData(bytes(buf[: len(buf) - keep])))
                    del buf[: len(buf) - keep]
                return False
            if index:
                events.append(PartData(bytes(buf[:index])))
            del buf[: index + len(self._delimiter)]
            events.append(PartEnd())
            self.parts += 1
            self._state = _State.AFTER_BOUNDARY
            return True
        return False


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in block.split(b"\r\n") if block else []:
        line = raw.decode("latin-1")
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MultipartError(f"malformed multipart header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers
