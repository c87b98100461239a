"""A finished consultation recording becomes an artifact of the room's case (kind `recording`, MP4 in
the blob store), so the record and its report can point at it; a room without a case keeps the file
where the recorder wrote it and says so."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.artifacts import store as artifacts
from server.rooms import repository as rooms

log = logging.getLogger("trinity.video")


def store_recording(app: Any) -> Any:
    async def store(recording: Any) -> str:
        state = app.state

        def room_case() -> tuple[str | None, str]:
            with state.db.session() as db:
                room = rooms.get_room(db, recording.room_id)
                return room.case_id, room.site_id

        case_id, site_id = await state.db.run_read(room_case)
        if case_id is None:
            log.warning("recording of room %s kept at %s: the room has no case", recording.room_id, recording.path)
            return str(recording.path)
        ref = await asyncio.to_thread(state.blobs.put_file, recording.path, site_id=site_id)

        def record() -> str:
            with state.db.session() as db:
                row = artifacts.add_version(
                    db,
                    case_id=case_id,
                    site_id=site_id,
                    lineage_id=f"recording-{recording.room_id}"[:64],
                    kind="recording",
                    name="Consultation recording",
                    files={"mp4": {"sha256": ref.sha256, "size": ref.size}},
                    meta={
                        "duration_s": recording.duration_s,
                        "started_ms": recording.started_ms,
                        "stopped_ms": recording.stopped_ms,
                        "video_frames": recording.video_frames,
                        "audio_frames": recording.audio_frames,
                    },
                    provenance={"operation": "video.record", "inputs": [], "room_id": recording.room_id},
                    created_by="system",
                    room_id=recording.room_id,
                )
                return row.id

        artifact_id = await state.db.run_write(record)
        recording.path.unlink(missing_ok=True)
        return artifact_id

    return store
