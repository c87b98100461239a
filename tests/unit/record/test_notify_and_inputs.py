"""Webhook signatures, snapshot PNG checks, CSV cells and report measurements (pure helpers)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from server.core.errors import Invalid, TooLarge
from server.record.audit_api import _cell
from server.record.notify import sign, verify_signature
from server.record.report_pdf import measurement
from server.record.snapshots import decode_png, png_size


def test_signatures_cover_timestamp_and_body_and_expire() -> None:
    body = b'{"event":"plan.pending"}'
    signature = sign("secret", 1_800_000_000, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature("secret", "1800000000", signature, body, now_s=1_800_000_100)
    assert not verify_signature("secret", "1800000001", signature, body, now_s=1_800_000_100)  # timestamp is signed
    assert not verify_signature("secret", "1800000000", signature, body, now_s=1_800_001_000)  # too old: replay
    assert not verify_signature("secret", "soon", signature, body)


def _url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_snapshot_pngs_are_checked_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20)).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert png_size(data) == (30, 20)
    assert decode_png(_url(data), max_bytes=10_000, max_pixels=10_000)[1:] == (30, 20)
    with pytest.raises(Invalid, match="at most 100 pixels"):
        decode_png(_url(data), max_bytes=10_000, max_pixels=100)
    with pytest.raises(TooLarge):
        decode_png(_url(data), max_bytes=10, max_pixels=10_000)
    with pytest.raises(Invalid, match="data URL"):
        decode_png("data:image/jpeg;base64,AAAA", max_bytes=10_000, max_pixels=10_000)
    huge = data[:16] + (65535).to_bytes(4, "big") + (65535).to_bytes(4, "big") + data[24:]
    with pytest.raises(Invalid, match="65535x65535"):
        decode_png(_url(huge), max_bytes=10_000, max_pixels=8192 * 8192)


def test_csv_cells_cannot_smuggle_formulas() -> None:
    assert _cell('=HYPERLINK("x")').startswith("'=") and _cell("-1") == "'-1"
    assert _cell({"a": 1}) == '{"a":1}' and _cell(None) == "" and _cell("room.join") == "room.join"


def test_report_measurements_name_their_units() -> None:
    assert measurement({"data": {"value_mm": 5.0}}) == "5.0 mm"
    assert measurement({"data": {"value_deg": 92.25}}) == "92.2 °"
    assert measurement({"data": {"length_mm": 42.0, "diameter_mm": 2.5}}) == "42.0 mm, Ø 2.5 mm"
    assert measurement({"data": {"point": [0, 0, 0]}}) == ""
