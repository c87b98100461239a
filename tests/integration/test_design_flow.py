"""Design from the room: a mesh uploaded into the case, cut by a plane the surgeon placed, the pieces
appearing as model versions for everyone, a guide from a marker and two trajectories, provenance back
to the upload, and the same inputs giving the same bytes."""

from __future__ import annotations

import io

import httpx
import numpy as np
import trimesh

from server.rooms.client import RoomClient
from tests.support.imaging_flow import create_case, wait_job
from tests.support.world import LiveServer, World


def _bone() -> bytes:
    shaft = trimesh.creation.capsule(height=40.0, radius=6.0, count=[32, 32])
    shaft.apply_translation([10.0, -20.0, 90.0])
    return bytes(shaft.export(file_type="stl"))


async def _room_with_mesh(http: httpx.AsyncClient) -> tuple[str, str, dict[str, object]]:
    case_id = await create_case(http, "DESIGN-001")
    room = (await http.post("/api/rooms", json={"kind": "consultation", "title": "Cut", "case_id": case_id})).json()
    uploaded = await http.post(
        f"/api/cases/{case_id}/meshes",
        params={"room_id": room["id"]},
        files=[("file", ("femur.stl", _bone(), "model/stl"))],
    )
    assert uploaded.status_code == 201, uploaded.text
    return case_id, room["id"], uploaded.json()


async def test_a_plane_cut_from_the_room_adds_versions_for_everyone(world: World, live: LiveServer) -> None:
    async with live.http(world["surgeon"]) as http:
        _, room_id, bone = await _room_with_mesh(http)
        assert bone["meta"]["watertight"] and set(bone["files"]) >= {"stl", "ply", "glb"}
        async with RoomClient(live.base_url, room_id, world["surgeon"].token) as client:
            assert client.state.models[bone["lineage_id"]]["version"] == 1  # the upload, in the welcome snapshot
            plane = {"point": [10.0, -20.0, 95.0], "normal": [0.0, 0.0, 1.0]}
            await client.send_op("annotation.create", {"id": "resection", "kind": "plane", "data": plane})
            started = await http.post(
                f"/api/rooms/{room_id}/design/cut",
                json={"inputs": {"mesh": bone["id"]}, "annotations": {"plane": "resection"}},
            )
            assert started.status_code == 202, started.text
            job = await wait_job(http, started.json()["id"])
            assert job["state"] == "succeeded", job["error"]
            outputs = job["result"]["outputs"]
            kept, resected = outputs["negative"], outputs["positive"]
            assert kept["lineage_id"] == bone["lineage_id"] and kept["version"] == 2
            changed = await client.wait_for(
                lambda f: f["type"] == "event" and f["kind"] == "scene.model.changed" and f["data"].get("version") == 2,
                15,
            )
            assert [v["version"] for v in changed["data"]["versions"]] == [1, 2]
            await client.wait_seq(changed["seq"])
            assert client.state.models[resected["lineage_id"]]["name"] == "femur (resected)"

        pieces = []
        for piece in (kept, resected):
            data = (await http.get(f"/api/artifacts/{piece['artifact_id']}/file.ply")).content
            pieces.append(trimesh.load(io.BytesIO(data), file_type="ply", process=False))
        original = trimesh.load(io.BytesIO(_bone()), file_type="stl")
        assert all(p.is_watertight for p in pieces)
        assert abs(sum(p.volume for p in pieces) - original.volume) / original.volume < 1e-3
        assert pieces[0].bounds[1][2] <= 95.0 + 1e-6 and pieces[1].bounds[0][2] >= 95.0 - 1e-6

        chain = (await http.get(f"/api/artifacts/{resected['artifact_id']}/provenance")).json()["chain"]
        assert [a["id"] for a in chain] == [resected["artifact_id"], bone["id"]]
        assert chain[0]["provenance"]["annotations"]["planes"][0]["id"] == "resection"
        assert chain[0]["provenance"]["parameters"]["plane"]["normal_lps"] == [0.0, 0.0, 1.0]

        again = await wait_job(
            http,
            (
                await http.post(
                    f"/api/rooms/{room_id}/design/cut",
                    json={
                        "inputs": {"mesh": bone["id"]},
                        "parameters": {"plane": {"point_lps": [10, -20, 95], "normal_lps": [0, 0, 1]}},
                    },
                )
            ).json()["id"],
        )
        first = (await http.get(f"/api/artifacts/{resected['artifact_id']}")).json()
        second = (await http.get(f"/api/artifacts/{again['result']['outputs']['positive']['artifact_id']}")).json()
        assert first["files"]["ply"]["sha256"] == second["files"]["ply"]["sha256"]  # same inputs, same bytes


async def test_bad_design_requests_are_refused_with_the_reason(world: World, live: LiveServer) -> None:
    async with live.http(world["surgeon"]) as http:
        case_id, room_id, bone = await _room_with_mesh(http)
        unknown = await http.post(
            f"/api/rooms/{room_id}/design/cut", json={"inputs": {"mesh": bone["id"]}, "annotations": {"plane": "nope"}}
        )
        assert unknown.status_code == 422 and "no annotation 'nope'" in unknown.json()["error"]["message"]
        flat = await http.post(
            f"/api/rooms/{room_id}/design/cut",
            json={
                "inputs": {"mesh": bone["id"]},
                "parameters": {"plane": {"point_lps": [0, 0, 0], "normal_lps": [0, 0, 0]}},
            },
        )
        assert flat.status_code in (400, 422) and "normal_lps" in flat.json()["error"]["message"]
        garbage = await http.post(
            f"/api/cases/{case_id}/meshes", files=[("file", ("broken.stl", b"solid x\nfacet", "model/stl"))]
        )
        assert 400 <= garbage.status_code < 500, garbage.text
        huge = b"\0" * 80 + (10_000_000).to_bytes(4, "little") + b"\0" * 100
        claimed = await http.post(f"/api/cases/{case_id}/meshes", files=[("file", ("big.stl", huge, "model/stl"))])
        assert claimed.status_code in (413, 422) and claimed.json()["error"]["message"]
        wrong = await http.post(
            f"/api/cases/{case_id}/meshes", files=[("file", ("x.docx", b"PK..", "application/zip"))]
        )
        assert wrong.status_code == 422 and ".stl" in wrong.json()["error"]["message"]


async def test_a_guide_from_a_marker_and_two_trajectories(world: World, live: LiveServer) -> None:
    async with live.http(world["engineer"]) as http:
        _, room_id, bone = await _room_with_mesh(http)
        async with RoomClient(live.base_url, room_id, world["engineer"].token) as client:
            await client.send_op(
                "annotation.create", {"id": "site", "kind": "marker", "data": {"point": [16.0, -20.0, 90.0]}}
            )
            for i, z in enumerate((86.0, 94.0)):
                await client.send_op(
                    "annotation.create",
                    {
                        "id": f"drill{i}",
                        "kind": "trajectory",
                        "data": {"entry": [16.0, -20.0, z], "target": [4.0, -20.0, z], "diameter_mm": 2.0},
                    },
                )
            started = await http.post(
                f"/api/rooms/{room_id}/design/guide",
                json={
                    "inputs": {"bone": bone["id"]},
                    "region_radius_mm": 10,
                    "annotations": {"region_marker": "site", "trajectories": ["drill0", "drill1"]},
                    "parameters": {"resolution_mm": 0.5},
                },
            )
            assert started.status_code == 202, started.text
            job = await wait_job(http, started.json()["id"], timeout_s=300)
            assert job["state"] == "succeeded", job["error"]
            guide_id = job["result"]["outputs"]["guide"]["artifact_id"]
            guide = (await http.get(f"/api/artifacts/{guide_id}")).json()
            assert guide["kind"] == "guide" and guide["meta"]["watertight"] and guide["name"] == "Guide for femur"
            await client.wait_for(
                lambda f: (
                    f["type"] == "event" and f["kind"] == "scene.model.added" and f["data"]["name"] == "Guide for femur"
                ),
                15,
            )
            stl = trimesh.load(
                io.BytesIO((await http.get(f"/api/artifacts/{guide_id}/file.stl")).content), file_type="stl"
            )
            expected = [guide["meta"]["bbox_min_lps"], guide["meta"]["bbox_max_lps"]]
            assert np.allclose(stl.bounds, expected, atol=1e-3)  # the printable file is the stored guide
