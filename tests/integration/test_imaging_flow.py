"""A CT study from upload to a bone model in the room: de-identified, validated file by file, turned
into a volume with exact geometry, sliced, segmented and surfaced, with its provenance; over REST,
DICOMweb and the room WebSocket."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import trimesh

from server.rooms.client import RoomClient
from tests.support.imaging_flow import create_case, upload, wait_job, wait_spool_empty, zip_folder
from tests.support.phantoms import (
    FAKE_PATIENT,
    CtPhantom,
    Cylinder,
    Grid,
    Sphere,
    deeply_nested_bytes,
    huge_declared_bytes,
    write_series,
)
from tests.support.world import LiveServer, World

PHI = [v for k, v in FAKE_PATIENT.items() if k not in ("PatientSex",)]


def _blob_files(world: World) -> list[Path]:
    root = world.settings.blob_dir
    return [p for p in root.rglob("*") if p.is_file() and p.parent.parent.parent == root]


async def test_upload_to_model_in_the_room(world: World, live: LiveServer, tmp_path: Path) -> None:
    written = write_series(
        tmp_path / "ct",
        grid=Grid(rows=48, columns=56, slice_count=36),
        shuffle_seed=3,
        add_localizer=True,
        add_secondary_capture=True,
        add_truncated=True,
        add_non_dicom=True,
    )
    hostile = {
        "hostile/nested.dcm": deeply_nested_bytes(3000),
        "hostile/huge.dcm": huge_declared_bytes(),
        "../escape.dcm": b"x",
    }
    archive = zip_folder(written.paths + list(written.extra_paths.values()), hostile)
    async with live.http(world["surgeon"]) as http:
        case_id = await create_case(http)
        room = (
            await http.post("/api/rooms", json={"kind": "consultation", "title": "Plan", "case_id": case_id})
        ).json()
        async with RoomClient(live.base_url, room["id"], world["surgeon"].token) as watcher:
            started = await upload(http, case_id, [("study.zip", archive)], room["id"])
            job = await wait_job(http, started["job"]["id"])
            assert job["state"] == "succeeded", job["error"]
            await wait_spool_empty(world.settings.spool_dir)
            result = job["result"]
            assert result["accepted"] == len(written.paths) + 1  # the slices and the localizer
            report = (await http.get(f"/api/cases/{case_id}/imaging/reports/{result['report_id']}")).json()
            codes = {line["name"].rsplit("/", 1)[-1]: line.get("code") for line in report["files"]}
            assert codes["nested.dcm"] == "nested_too_deep" and codes["huge.dcm"] == "too_large"
            assert "path_traversal" in codes.values()
            assert {"secondary_capture", "not_dicom", "truncated"} <= set(codes.values()), codes

            series = (await http.get(f"/api/cases/{case_id}/imaging/series")).json()
            assert len(series) == 1 and series[0]["volume"] is not None
            series_id = series[0]["id"]
            volume = (await http.get(f"/api/cases/{case_id}/imaging/series/{series_id}/volume")).json()
            assert volume["size"] == [56, 48, 36] and np.allclose(volume["spacing_mm"], [0.8, 1.0, 1.5])
            assert volume["planes"]["axial"]["count"] == 36
            png = await http.get(f"/api/cases/{case_id}/imaging/series/{series_id}/slices/axial/18.png?window=bone")
            assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
            bad = await http.get(f"/api/cases/{case_id}/imaging/series/{series_id}/slices/axial/99.png")
            assert bad.status_code == 422 and "outside the volume" in bad.json()["error"]["message"]

            build = await http.post(
                f"/api/cases/{case_id}/imaging/series/{series_id}/models",
                json={
                    "name": "Phantom bone",
                    "room_id": room["id"],
                    "keep": "all",
                    "closing_mm": 0,
                    "target_faces": 20000,
                    "preset": "custom",
                    "hu_min": 500,
                    "hu_max": 3071,
                },
            )
            assert build.status_code == 202, build.text
            built = await wait_job(http, build.json()["id"])
            assert built["state"] == "succeeded", built
            added = await watcher.wait_for(lambda f: f["type"] == "event" and f["kind"] == "scene.model.added", 30)
            model = added["data"]
            assert model["name"] == "Phantom bone" and model["url"].endswith("/file.glb")
            glb = await http.get(model["url"])
            assert glb.status_code == 200
            mesh = trimesh.load(io.BytesIO(glb.content), file_type="glb", force="mesh")
            assert abs(mesh.volume - written.phantom.bone_volume_mm3) / written.phantom.bone_volume_mm3 < 0.05

            chain = (await http.get(f"/api/artifacts/{model['artifact_id']}/provenance")).json()["chain"]
            assert [a["kind"] for a in chain] == ["mesh", "volume"]
            assert chain[-1]["provenance"]["inputs"][0]["series_id"] == series_id

    # Nothing stored anywhere carries the patient's identity.
    for path in _blob_files(world):
        data = path.read_bytes()
        for phi in PHI:
            assert phi.encode() not in data, (phi, path)


async def test_the_same_study_uploaded_twice_maps_to_the_same_uids(
    world: World, live: LiveServer, tmp_path: Path
) -> None:
    written = write_series(tmp_path / "ct", grid=Grid(rows=24, columns=24, slice_count=8))
    files = [(p.name, p.read_bytes()) for p in written.paths]
    async with live.http(world["radiologist"]) as http:
        case_id = await create_case(http)
        first = await wait_job(http, (await upload(http, case_id, files))["job"]["id"])
        second = await wait_job(http, (await upload(http, case_id, files))["job"]["id"])
        assert first["result"]["accepted"] == 8 and second["result"]["duplicates"] == 8
        studies = (await http.get(f"/api/cases/{case_id}/dicom-web/studies")).json()
        assert len(studies) == 1
        study_uid = studies[0]["0020000D"]["Value"][0]
        original_uid = pydicom.dcmread(written.paths[0]).StudyInstanceUID
        assert study_uid != original_uid and study_uid.startswith("2.25.")
        retrieved = await http.get(f"/api/cases/{case_id}/dicom-web/studies/{study_uid}")
        assert retrieved.status_code == 200 and "multipart/related" in retrieved.headers["content-type"]
        assert retrieved.content.count(b"DICM") == 8
        for phi in PHI:
            assert phi.encode() not in retrieved.content


async def test_other_sites_cannot_upload_or_see_a_case(world: World, live: LiveServer) -> None:
    async with live.http(world["surgeon"]) as http, live.http(world["b-surgeon"]) as other:
        case_id = await create_case(http)
        data = zipfile.ZipFile  # noqa: F841 - keep the import honest for readers
        refused = await other.post(f"/api/cases/{case_id}/imaging/uploads", files=[("files", ("a.dcm", b"x"))])
        assert refused.status_code == 404
        assert (await other.get(f"/api/cases/{case_id}/dicom-web/studies")).status_code == 404
        observer = await http.post(
            f"/api/cases/{case_id}/imaging/uploads",
            files=[("files", ("a.dcm", b"x"))],
            headers=world["observer"].headers,
        )
        assert observer.status_code == 403


def _related(parts: list[bytes], boundary: str = "trinity-test-boundary") -> tuple[bytes, str]:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts)
    return body + f"--{boundary}--\r\n".encode(), f'multipart/related; type="application/dicom"; boundary={boundary}'


async def test_dicomweb_stow_qido_wado_round_trip(world: World, live: LiveServer, tmp_path: Path) -> None:
    written = write_series(tmp_path / "ct", grid=Grid(rows=16, columns=20, slice_count=6))
    parts = [p.read_bytes() for p in written.paths] + [b"not dicom at all"]
    body, content_type = _related(parts)
    async with live.http(world["surgeon"]) as http:
        case_id = await create_case(http)
        root = f"/api/cases/{case_id}/dicom-web"
        stored = await http.post(f"{root}/studies", content=body, headers={"content-type": content_type}, timeout=60)
        assert stored.status_code == 202, stored.text  # one part failed, six stored
        answer = stored.json()
        assert len(answer["00081199"]["Value"]) == 6 and len(answer["00081198"]["Value"]) == 1
        assert answer["00081198"]["Value"][0]["00000902"]["Value"][0].startswith("part 7: ")

        truncated = await http.post(f"{root}/studies", content=body[:-40], headers={"content-type": content_type})
        assert truncated.status_code == 422 and "truncated" in truncated.json()["error"]["message"]

        study_uid = (await http.get(f"{root}/studies")).json()[0]["0020000D"]["Value"][0]
        series = (await http.get(f"{root}/studies/{study_uid}/series")).json()
        assert len(series) == 1 and series[0]["00201209"]["Value"] == [6]
        series_uid = series[0]["0020000E"]["Value"][0]
        instances = (await http.get(f"{root}/studies/{study_uid}/series/{series_uid}/instances")).json()
        assert len(instances) == 6
        sop_uid = instances[0]["00080018"]["Value"][0]
        metadata = (
            await http.get(f"{root}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/metadata")
        ).json()
        assert metadata[0]["00100010"]["Value"][0]["Alphabetic"] == "MAND-2026-001"  # the case label, not the name
        assert "BulkDataURI" in metadata[0]["7FE00010"]
        frame = await http.get(f"{root}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/1")
        assert frame.status_code == 200 and b"\r\n\r\n" in frame.content
        assert len(frame.content) > 16 * 20 * 2  # one 16x20 frame of 16-bit pixels, plus the multipart framing
        missing = await http.get(f"{root}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/2")
        assert missing.status_code == 404


async def test_provenance_walks_from_a_guide_back_to_the_ct_series(
    world_sqlite: World, live_sqlite: LiveServer, tmp_path: Path
) -> None:
    centre = (0.0, 0.0, 50.0)
    bone = Sphere(centre, 12.0)
    phantom = CtPhantom(shapes=(bone,), body=Cylinder(centre, (0.0, 0.0, 1.0), 20.0, 30.0))
    written = write_series(
        tmp_path / "ct", phantom, Grid(rows=40, columns=40, slice_count=34, slice_step_mm=1.0, centre_lps=centre)
    )
    async with live_sqlite.http(world_sqlite["surgeon"]) as http:
        case_id = await create_case(http)
        room = (await http.post("/api/rooms", json={"kind": "consultation", "title": "G", "case_id": case_id})).json()
        job = await wait_job(
            http,
            (await upload(http, case_id, [(p.name, p.read_bytes()) for p in written.paths], room["id"]))["job"]["id"],
        )
        assert job["state"] == "succeeded", job["error"]
        series_id = (await http.get(f"/api/cases/{case_id}/imaging/series")).json()[0]["id"]
        built = await wait_job(
            http,
            (
                await http.post(
                    f"/api/cases/{case_id}/imaging/series/{series_id}/models",
                    json={"name": "Sphere", "room_id": room["id"]},
                )
            ).json()["id"],
        )
        assert built["state"] == "succeeded", built["error"]
        guide_job = await http.post(
            f"/api/rooms/{room['id']}/design/guide",
            json={
                "inputs": {"bone": built["result"]["artifact_id"]},
                "parameters": {
                    "region": {"center_lps": [12.0, 0.0, 50.0], "radius_mm": 8.0},
                    "resolution_mm": 0.5,
                    "trajectories": [
                        {"entry_lps": [12.0, 0.0, 50.0], "target_lps": [0.0, 0.0, 50.0], "diameter_mm": 2.0}
                    ],
                },
            },
        )
        assert guide_job.status_code == 202, guide_job.text
        guide = await wait_job(http, guide_job.json()["id"], timeout_s=300)
        assert guide["state"] == "succeeded", guide["error"]
        guide_id = guide["result"]["outputs"]["guide"]["artifact_id"]
        exported = (await http.get(f"/api/artifacts/{guide_id}/provenance")).json()
        kinds = [a["kind"] for a in exported["chain"]]
        assert kinds == ["guide", "mesh", "volume"]
        source = exported["chain"][-1]["provenance"]["inputs"][0]
        assert source["series_id"] == series_id and source["instances"] == 34
        assert exported["chain"][0]["provenance"]["library_versions"]["manifold3d"]


async def test_a_label_map_made_elsewhere_becomes_a_model(
    world_sqlite: World, live_sqlite: LiveServer, tmp_path: Path
) -> None:
    import SimpleITK as sitk

    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    zz, yy, xx = np.mgrid[:30, :30, :30]
    labels[(xx - 15) ** 2 + (yy - 15) ** 2 + (zz - 15) ** 2 <= 8**2] = 3
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((1.0, 1.0, 1.0))
    image.SetOrigin((-10.0, 20.0, 5.0))
    sitk.WriteImage(image, str(tmp_path / "seg.nrrd"))
    async with live_sqlite.http(world_sqlite["engineer"]) as http:
        case_id = await create_case(http)
        started = await http.post(
            f"/api/cases/{case_id}/imaging/labelmaps",
            params={"label": 3, "name": "Tumour"},
            files=[("file", ("seg.nrrd", (tmp_path / "seg.nrrd").read_bytes()))],
        )
        assert started.status_code == 202, started.text
        job = await wait_job(http, started.json()["id"])
        assert job["state"] == "succeeded", job["error"]
        await wait_spool_empty(world_sqlite.settings.spool_dir)
        meta = job["result"]["meta"]
        assert meta["watertight"] and abs(meta["volume_mm3"] - 4 / 3 * np.pi * 8**3) / (4 / 3 * np.pi * 8**3) < 0.05
        assert np.allclose(meta["bbox_min_lps"], [-3.0, 27.0, 12.0], atol=1.0)  # geometry from the file
        wrong = await http.post(
            f"/api/cases/{case_id}/imaging/labelmaps",
            params={"label": 9},
            files=[("file", ("seg.nrrd", (tmp_path / "seg.nrrd").read_bytes()))],
        )
        failed = await wait_job(http, wrong.json()["id"])
        assert failed["state"] == "failed" and "label 9 not in the label map" in failed["error"]
        await wait_spool_empty(world_sqlite.settings.spool_dir)  # a failed job leaves no upload behind


async def test_a_file_that_is_no_label_map_is_refused_at_upload_before_any_job(
    world_sqlite: World, live_sqlite: LiveServer
) -> None:
    from sqlmodel import select

    from server.core.db import Database
    from server.core.job_store import JobRecord

    async with live_sqlite.http(world_sqlite["engineer"]) as http:
        url = f"/api/cases/{await create_case(http)}/imaging/labelmaps"
        png = await http.post(url, files=[("file", ("seg.png", b"\x89PNG\r\n\x1a\n" + bytes(600)))])
        assert png.status_code == 415, png.text
        error = png.json()["error"]
        assert error["code"] == "label_map_format"
        assert "'seg.png' is neither NRRD nor NIfTI (it looks like a PNG image)" in error["message"]
        empty = await http.post(url, files=[("file", ("seg.nrrd", b""))])
        assert empty.status_code == 422, empty.text
        assert empty.json()["error"]["code"] == "label_map_empty"
        assert "'seg.nrrd' is empty" in empty.json()["error"]["message"]
    db = Database(world_sqlite.settings)
    with db.session() as session:
        assert session.exec(select(JobRecord).where(JobRecord.kind == "imaging.labelmap_model")).all() == []
    db.close()
    await wait_spool_empty(world_sqlite.settings.spool_dir, timeout_s=0)  # nothing kept of the refused files
