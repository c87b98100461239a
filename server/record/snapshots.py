"""Snapshots: a participant's capture of the 3D view or a slice view, as a PNG with the camera and the
visible model versions, stored as a blob of the room's site and attached to the room's record."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import struct
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from PIL import Image
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from server.core import audit
from server.core.auth import new_id
from server.core.errors import Invalid, NotFound, TooLarge
from server.deps import CurrentPrincipal, client_ip
from server.record.edge import config_of, in_db, publish, require_contributor
from server.record.models import Snapshot
from server.rooms import repository as rooms
from server.rooms.protocol import OpRejected, camera_payload, identifier

router = APIRouter(prefix="/api", tags=["record"])
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URL_PREFIX = "data:image/png;base64,"
MAX_VISIBLE_MODELS = 200
MAX_SLICE_BYTES = 4096


class SnapshotCreate(BaseModel):
    image: str = Field(description="the canvas as a PNG data URL (canvas.toDataURL('image/png'))")
    kind: Literal["view3d", "slice"] = "view3d"
    label: str = Field(default="", max_length=200)
    camera: dict[str, Any] | None = None  # position, target, up (LPS mm), fov_deg; required for view3d
    visible_models: list[dict[str, Any]] = Field(default_factory=list)  # [{"id", "version"}]
    slice: dict[str, Any] | None = None  # e.g. {"series_id", "orientation", "index", "window"}


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, read before any decoding (so a huge image is refused cheaply)."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise Invalid("image must be a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def decode_png(image: str, *, max_bytes: int, max_pixels: int) -> tuple[bytes, int, int]:
    if not image.startswith(DATA_URL_PREFIX):
        raise Invalid("image must be a data URL starting with data:image/png;base64,")
    if len(image) - len(DATA_URL_PREFIX) > (max_bytes * 4) // 3 + 4:
        raise TooLarge(f"snapshot is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(image[len(DATA_URL_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Invalid("image is not valid base64") from exc
    width, height = png_size(data)
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise Invalid(f"snapshot is {width}x{height}; at most {max_pixels} pixels")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()  # CRCs and structure, without keeping the decoded pixels
    except Exception as exc:
        raise Invalid(f"image is not a valid PNG: {exc}") from exc
    return data, width, height


def _views(body: SnapshotCreate) -> tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any] | None]:
    try:
        camera = camera_payload(body.camera) if body.camera is not None else None
        if body.kind == "view3d" and camera is None:
            raise Invalid("a 3D view snapshot needs its camera")
        if len(body.visible_models) > MAX_VISIBLE_MODELS:
            raise Invalid(f"at most {MAX_VISIBLE_MODELS} visible models")
        models = []
        for m in body.visible_models:
            version = m.get("version")
            if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
                raise Invalid("visible_models[].version must be an integer")
            models.append({"id": identifier(m.get("id"), "visible_models[].id"), "version": version})
    except OpRejected as exc:
        raise Invalid(exc.message) from exc
    if body.slice is not None and len(orjson.dumps(body.slice)) > MAX_SLICE_BYTES:
        raise Invalid(f"slice description is larger than {MAX_SLICE_BYTES} bytes")
    return camera, models, body.slice


def public(row: Snapshot) -> dict[str, Any]:
    return {
        "id": row.id,
        "room_id": row.room_id,
        "kind": row.kind,
        "label": row.label,
        "url": f"/api/rooms/{row.room_id}/snapshots/{row.id}.png",
        "width": row.width,
        "height": row.height,
        "size_bytes": row.size_bytes,
        "sha256": row.blob_sha256,
        "camera": row.camera,
        "visible_models": row.visible_models,
        "slice": row.slice,
        "created_by": row.created_by,
        "created_at_ms": row.created_at_ms,
    }


def of_room(db: Session, room_id: str) -> list[Snapshot]:
    return list(db.exec(select(Snapshot).where(Snapshot.room_id == room_id).order_by(col(Snapshot.created_at_ms))))


@router.post("/rooms/{room_id}/snapshots", status_code=201)
async def capture(room_id: str, body: SnapshotCreate, principal: CurrentPrincipal, request: Request) -> dict[str, Any]:
    config = config_of(request)
    room, _ = await in_db(request, lambda db: require_contributor(db, room_id, principal), write=False)
    camera, models, slice_view = _views(body)
    data, width, height = await asyncio.to_thread(
        decode_png, body.image, max_bytes=config.snapshot_max_bytes, max_pixels=config.snapshot_max_pixels
    )
    ref = await asyncio.to_thread(request.app.state.blobs.put_bytes, data, site_id=room.site_id)

    def run(db: Session) -> Snapshot:
        current, _ = require_contributor(db, room_id, principal)
        row = Snapshot(
            id=new_id(),
            room_id=room_id,
            case_id=current.case_id,
            site_id=current.site_id,
            kind=body.kind,
            label=body.label,
            blob_sha256=ref.sha256,
            size_bytes=ref.size,
            width=width,
            height=height,
            camera=camera,
            visible_models=models,
            slice=slice_view,
            created_by=principal.user_id,
        )
        db.add(row)
        audit.record_by(
            db,
            principal,
            "record.snapshot",
            target_type="room",
            target_id=room_id,
            room_id=room_id,
            ip=client_ip(request),
            snapshot_id=row.id,
            sha256=ref.sha256,
        )
        return row

    row = await in_db(request, run)
    out = public(row)
    payload = {k: out[k] for k in ("id", "kind", "url", "label", "created_by")}
    await publish(request, room_id, "record.snapshot", payload, f"snapshot:{row.id}")
    return out


@router.get("/rooms/{room_id}/snapshots")
async def list_snapshots(room_id: str, principal: CurrentPrincipal, request: Request) -> list[dict[str, Any]]:
    def run(db: Session) -> list[dict[str, Any]]:
        rooms.require_member(db, room_id, principal)
        return [public(r) for r in of_room(db, room_id)]

    return await in_db(request, run, write=False)


@router.get("/rooms/{room_id}/snapshots/{snapshot_id}.png")
async def snapshot_image(room_id: str, snapshot_id: str, principal: CurrentPrincipal, request: Request) -> Response:
    def run(db: Session) -> Snapshot:
        rooms.require_member(db, room_id, principal)
        row = db.get(Snapshot, snapshot_id)
        if row is None or row.room_id != room_id:
            raise NotFound("no such snapshot in this room")
        audit.record_by(
            db,
            principal,
            "record.snapshot_view",
            target_type="room",
            target_id=room_id,
            room_id=room_id,
            ip=client_ip(request),
            snapshot_id=snapshot_id,
        )
        return row

    row = await in_db(request, run)
    path = await asyncio.to_thread(request.app.state.blobs.path_of, row.blob_sha256)
    data = await asyncio.to_thread(path.read_bytes)
    return Response(data, media_type="image/png", headers={"cache-control": "private, max-age=3600"})
