"""Printer cameras into maker rooms, through the video capability (server/rooms/video, when installed).

Each connected printer of a site is offered to every maker room of that site, once: a simulated printer
as its synthetic camera (the current layer drawn from above, `SimulatedPrinter.snapshot_png`), a printer
host with a stream URL (OctoPrint's MJPEG, an RTSP camera) as that stream. The video service opens a
camera only while someone in the room watches, so an offer costs nothing until then.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from typing import Any

from PIL import Image

from server.printing.drivers.base import PrinterDriver
from server.printing.models import PrinterRecord

log = logging.getLogger("trinity.printing")
SIMULATOR_FPS = 2.0  # a layer takes seconds: two pictures a second show every one


def camera_id(printer_id: str) -> str:
    return f"printer-{printer_id}"


class CameraOffers:
    def __init__(self, video_of: Callable[[], Any], driver_of: Callable[[str], PrinterDriver | None]) -> None:
        self.video_of = video_of  # the app's video service, or None (not installed, or disabled)
        self.driver_of = driver_of
        self._offered: set[tuple[str, str]] = set()  # (room, printer)

    def sync(self, rooms: Mapping[str, list[str]], printers: list[PrinterRecord]) -> None:
        video = self.video_of()
        if video is None:
            return
        for row in printers:
            driver = self.driver_of(row.id)
            if driver is None:
                continue
            for room_id in rooms.get(row.site_id, ()):
                if (room_id, row.id) in self._offered:
                    continue
                camera = self._camera(row, driver)
                if camera is None:
                    continue
                try:
                    video.add_printer_camera(room_id, camera)
                except Exception:  # video trouble never stops printing
                    log.exception("could not offer a printer camera", extra={"printer": row.id, "room": room_id})
                    continue
                self._offered.add((room_id, row.id))

    def withdraw(self, printer_id: str) -> None:
        """The printer's camera leaves every room it was offered to (the printer was retired)."""
        offered = [(room_id, pid) for room_id, pid in self._offered if pid == printer_id]
        video = self.video_of()
        for room_id, pid in offered:
            self._offered.discard((room_id, pid))
            if video is None:
                continue
            try:
                video.remove_printer_camera(room_id, camera_id(pid))
            except Exception:  # video trouble never stops printing
                log.exception("could not withdraw a printer camera", extra={"printer": pid, "room": room_id})

    def _camera(self, row: PrinterRecord, driver: PrinterDriver) -> Any:
        from server.rooms.video.cameras import FrameProviderCamera, StreamCamera

        if hasattr(driver, "snapshot_png"):
            return FrameProviderCamera(camera_id(row.id), row.name, self.provider(row.id), fps=SIMULATOR_FPS)
        streams = [url for url in driver.camera_urls() if "snapshot" not in url]
        return StreamCamera(camera_id(row.id), row.name, streams[0]) if streams else None

    def provider(self, printer_id: str) -> Callable[[], Image.Image]:
        """The picture of whichever driver the printer has now (a monitor may have rebuilt it)."""
        last: list[Image.Image] = [Image.new("RGB", (320, 320), (24, 26, 30))]

        def picture() -> Image.Image:
            snapshot = getattr(self.driver_of(printer_id), "snapshot_png", None)
            if snapshot is not None:
                last[0] = Image.open(io.BytesIO(snapshot())).convert("RGB")
            return last[0]  # offline: the last picture stays up

        return picture
