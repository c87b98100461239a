"""The sans-I/O multipart/related parser used for WADO-RS retrieves: whole bodies, bytes one at a time,
boundaries split across chunks, and the malformed bodies a broken or hostile PACS could send."""

from __future__ import annotations

import pytest

from server.imaging.multipart import (
    MAX_HEADER_BYTES,
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    boundary_of,
)

BOUNDARY = "b0undary-1234"


def body(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"", padding: bytes = b"") -> bytes:
    out = preamble
    for part in parts:
        out += f"--{BOUNDARY}".encode() + padding + b"\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode() + epilogue


def parse(data: bytes, chunk: int) -> tuple[list[dict[str, str]], list[bytes]]:
    parser = MultipartParser(BOUNDARY)
    headers: list[dict[str, str]] = []
    contents: list[bytes] = []
    current = bytearray()
    for i in range(0, len(data), chunk):
        for event in parser.feed(data[i : i + chunk]):
            if isinstance(event, PartStart):
                headers.append(event.headers)
                current = bytearray()
            elif isinstance(event, PartData):
                current += event.data
            elif isinstance(event, PartEnd):
                contents.append(bytes(current))
    parser.close()
    return headers, contents


# Bodies that contain almost-delimiters: the parser must not cut there.
TRICKY = [b"", b"plain", b"\r\n--b0undary-123", b"--b0undary-1234 not at a line start", b"\r\n\r\n\x00" * 50]


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 100_000])
def test_parts_come_out_byte_identical_whatever_the_chunking(chunk: int) -> None:
    headers, contents = parse(body(*TRICKY, preamble=b"ignored preamble\r\n", epilogue=b"ignored"), chunk)
    assert contents == TRICKY
    assert all(h == {"content-type": "application/dicom"} for h in headers)


def test_transport_padding_after_a_boundary_is_allowed() -> None:
    assert parse(body(b"one", b"two", padding=b" \t"), 3)[1] == [b"one", b"two"]


def test_a_large_part_streams_out_before_its_end_arrives() -> None:
    parser = MultipartParser(BOUNDARY)
    parser.feed(f"--{BOUNDARY}\r\n\r\n".encode())
    emitted = sum(len(e.data) for e in parser.feed(b"x" * 1_000_000) if isinstance(e, PartData))
    assert emitted >= 1_000_000 - len(BOUNDARY) - 4  # only a possible delimiter prefix is held back


@pytest.mark.parametrize(
    "data",
    [
        body(b"one")[:-12],  # cut inside the closing delimiter
        body(b"one")[:30],  # cut inside the first part
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n".encode(),  # cut inside the headers
        b"no boundary anywhere",
    ],
)
def test_a_truncated_body_is_an_error(data: bytes) -> None:
    parser = MultipartParser(BOUNDARY)
    parser.feed(data)
    with pytest.raises(MultipartError, match="truncated"):
        parser.close()


def test_oversized_part_headers_are_refused() -> None:
    parser = MultipartParser(BOUNDARY)
    with pytest.raises(MultipartError, match="headers longer"):
        parser.feed(f"--{BOUNDARY}\r\nX-Junk: ".encode() + b"a" * (MAX_HEADER_BYTES + 1))


def test_garbage_after_a_boundary_is_refused() -> None:
    with pytest.raises(MultipartError, match="garbage"):
        MultipartParser(BOUNDARY).feed(f"--{BOUNDARY}junk\r\n\r\n".encode())


def test_a_malformed_header_line_is_refused() -> None:
    with pytest.raises(MultipartError, match="malformed multipart header"):
        MultipartParser(BOUNDARY).feed(f"--{BOUNDARY}\r\nno colon here\r\n\r\n".encode())


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ('multipart/related; type="application/dicom"; boundary=abc', "abc"),
        ('multipart/related; boundary="quoted; with = specials"; type="application/dicom"', "quoted; with = specials"),
        ("Multipart/Related; BOUNDARY=Upper", "Upper"),
    ],
)
def test_boundary_of_reads_quoted_and_bare_parameters(content_type: str, boundary: str) -> None:
    assert boundary_of(content_type) == boundary


@pytest.mark.parametrize(
    "content_type",
    ["application/dicom", "multipart/related; type=application/dicom", "multipart/related; boundary=" + "x" * 300, ""],
)
def test_boundary_of_refuses_what_is_not_a_usable_multipart_type(content_type: str) -> None:
    with pytest.raises(MultipartError):
        boundary_of(content_type)
