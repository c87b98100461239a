"""How the app wires video in (server/app.py's lifespan calls these two functions):

    # after app.state.hubs is created:
    await install_video(app, store=..., audit=...)   # sets app.state.video
    ...
    # on shutdown, before app.state.hubs.close():
    await close_video(app)

server/rooms/ws.py hands every `rtc.*` frame to app.state.video when it is set (unknown_type otherwise).
"""

from __future__ import annotations

from typing import Any

from server.core import audit as audit_log
from server.rooms.video.config import VideoSettings
from server.rooms.video.ice import pin_host_addresses
from server.rooms.video.service import AuditHook, StoreRecording, VideoService


def database_audit(db: Any) -> AuditHook:
    """Audit video actions in the audit table (the default), like room joins and leaves."""

    def write(action: str, user_id: str | None, site_id: str | None, room_id: str, details: dict[str, Any]) -> None:
        with db.session() as session:
            audit_log.record(
                session,
                action,
                actor_id=user_id,
                actor_site_id=site_id,
                target_type="room",
                target_id=room_id,
                room_id=room_id,
                **details,
            )

    async def hook(
        action: str, *, user_id: str | None, site_id: str | None, room_id: str, details: dict[str, Any]
    ) -> None:
        await db.run_read(write, action, user_id, site_id, room_id, details)

    return hook


async def install_video(
    app: Any,
    *,
    settings: VideoSettings | None = None,
    store: StoreRecording | None = None,
    audit: AuditHook | None = None,
) -> VideoService | None:
    """Start the video service and put it on app.state.video (None when TRINITY_VIDEO_ENABLED=false).

    store(recording_file) -> artifact id: called with each finished recording (a RecordingFile: path,
    room_id, times, duration); default: the file stays in the recording directory.
    audit(action, user_id=, site_id=, room_id=, details=): default: the audit table.
    """
    video_settings = settings or VideoSettings.from_settings(app.state.settings)
    if not video_settings.enabled:
        app.state.video = None
        return None
    pin_host_addresses(video_settings.host_addresses)
    service = VideoService(video_settings, store=store, audit=audit or database_audit(app.state.db))
    await service.start()
    app.state.video = service
    return service


async def close_video(app: Any) -> None:
    service: VideoService | None = getattr(app.state, "video", None)
    if service is not None:
        await service.close()
        app.state.video = None
