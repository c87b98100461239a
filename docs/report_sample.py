"""Regenerate docs/img/report.png: the first page of a sample consultation report.

Seeds a throw-away SQLite world (tests.support.world), runs the app with the record installed, builds a
room the way a consultation would (annotations, a snapshot, a guide with provenance, an approved plan,
a finished print), downloads the PDF and renders page 1 with pdftoppm (Debian's poppler-utils).

    .venv/bin/python docs/report_sample.py
"""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.record.print_hooks import print_outcome  # noqa: E402
from server.rooms.client import RoomClient  # noqa: E402
from tests.support.record import RecordServer, add_artifact, data_url, room_with_case  # noqa: E402
from tests.support.world import PASSWORD, make_settings, seed_world  # noqa: E402


def bone_view(width: int = 640, height: int = 400) -> bytes:
    """A stand-in for a captured 3D view: a shaded mandible-like arc on the viewer's background."""
    image = Image.new("RGB", (width, height), (28, 32, 40))
    draw = ImageDraw.Draw(image)
    for i in range(140):
        t = math.pi * (0.1 + 0.8 * i / 139)
        x, y = width / 2 + 230 * math.cos(t), 80 + 230 * math.sin(t)
        shade = int(170 + 60 * math.sin(t))
        draw.ellipse((x - 26, y - 26, x + 26, y + 26), fill=(shade, shade - 12, shade - 40))
    draw.line((width / 2 - 120, 330, width / 2 - 60, 130), fill=(230, 70, 70), width=4)  # the cut plane
    out = io.BytesIO()
    image.filter(ImageFilter.SMOOTH).save(out, format="PNG")
    return out.getvalue()


async def main(out: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="trinity-report-"))
    settings = make_settings(f"sqlite:///{folder / 'trinity.db'}", folder)
    world = seed_world(settings)
    async with RecordServer(settings) as live, live.http(world["surgeon"]) as surgeon:
        case_id, room_id = await room_with_case(surgeon, world, "MAND-2026-014")
        bone = add_artifact(live, case_id=case_id, room_id=room_id, kind="mesh", name="mandible", data=b"bone",
                            created_by=world["engineer"].id)  # fmt: skip
        guide = add_artifact(live, case_id=case_id, room_id=room_id, kind="guide", name="resection guide",
                             data=b"guide", inputs=[bone.id], created_by=world["engineer"].id)  # fmt: skip
        async with RoomClient(live.base_url, room_id, world["surgeon"].token) as room:
            plane = {"point": [0.0, -12.0, 40.0], "normal": [1.0, 0.2, 0.0]}
            await room.send_op(
                "annotation.create", {"id": "cut", "kind": "plane", "data": plane, "label": "Distal cut"}
            )
            gap = {"a": [0.0, -12.0, 40.0], "b": [31.5, -10.0, 44.0]}
            await room.send_op("annotation.create", {"id": "gap", "kind": "distance", "data": gap, "label": "Defect"})
            screw = {"entry": [4.0, -8.0, 38.0], "target": [4.0, 6.0, 38.0], "diameter_mm": 2.0}
            await room.send_op(
                "annotation.create", {"id": "s1", "kind": "trajectory", "data": screw, "label": "Screw 1"}
            )
        camera = {"position": [180.0, -140.0, 90.0], "target": [0.0, 0.0, 40.0], "fov_deg": 35}
        shot = {"image": data_url(bone_view()), "camera": camera, "label": "Resection plan, oblique view",
                "visible_models": [{"id": bone.lineage_id, "version": 1}]}  # fmt: skip
        await surgeon.post(f"/api/rooms/{room_id}/snapshots", json=shot)
        proposal = {"artifact_ids": [guide.id], "notes": "Fibula free flap, two segments"}
        plan = (await surgeon.post(f"/api/rooms/{room_id}/plans", json=proposal)).json()
        decision = {"decision": "approved", "comment": "Approved for printing", "password": PASSWORD}
        await surgeon.post(f"/api/rooms/{room_id}/plans/{plan['id']}/decision", json=decision)
        await print_outcome(live.app, artifact_id=guide.id, print_job_id="PJ-0042", succeeded=True, printer="Form 3B")
        pdf = (await surgeon.get(f"/api/rooms/{room_id}/report.pdf")).content
    (folder / "report.pdf").write_bytes(pdf)
    command = ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(folder / "report.pdf")]
    await asyncio.to_thread(subprocess.run, [*command, str(folder / "page")], check=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "page.png", out)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main(ROOT / "docs" / "img" / "report.png"))
