"""What the maker-room browser tests share: the demo site's maker room with more demo users in it, an
admin of the demo site (made as an operator would, with `trinity user create`), and print jobs queued
over REST: a block of a given height (to keep a printer busy) and a fit-check copy of a guide designed
on a bone and approved in a plan, as a surgeon would have it made."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trimesh

from server.demo import DEMO_SITE
from tests.support.browser import ROOT, SURGEON, auth

TECHNICIAN = ("technician", "technician-demo-pass")
ADMIN = ("admin", "admin-demo-pass")
WAIT_S = 120.0  # generous: ends a hung test, never measures one


def create_admin(data: Path) -> None:
    """An admin of the demo site in the server's database (`data` is its TRINITY_DATA_DIR)."""
    env = {**os.environ, "TRINITY_DATA_DIR": str(data), "TRINITY_NEW_USER_PASSWORD": ADMIN[1]}
    command = [sys.executable, "-m", "server.cli", "user", "create", ADMIN[0], "--site", DEMO_SITE, "--role", "admin"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)


def maker_room(server: str, *joining: tuple[str, str]) -> dict[str, Any]:
    """The demo maker room (the surgeon owns it); each of `joining` becomes a member through an invite."""
    owner = auth(server, SURGEON)
    room = next(r for r in httpx.get(f"{server}/api/rooms", headers=owner).json() if r["kind"] == "maker")
    for who in joining:
        headers = auth(server, who)
        if any(r["id"] == room["id"] for r in httpx.get(f"{server}/api/rooms", headers=headers).json()):
            continue
        invite = httpx.post(f"{server}/api/rooms/{room['id']}/invites", json={}, headers=owner).json()
        httpx.post(f"{server}/api/invites/{invite['token']}/accept", headers=headers).raise_for_status()
    return room  # type: ignore[no-any-return]


def queue_block(server: str, who: tuple[str, str], height_mm: float) -> dict[str, Any]:
    """A 20 x 20 x `height_mm` anatomical model queued by `who` (an operator's job is released at once)."""
    headers = auth(server, who)
    case = httpx.post(f"{server}/api/cases", json={"label": "MAKER-BLOCK"}, headers=auth(server, SURGEON)).json()
    part = io.BytesIO()
    trimesh.creation.box(extents=(20.0, 20.0, height_mm)).export(part, file_type="stl")
    files = [("file", ("block.stl", part.getvalue()))]
    artifact = httpx.post(f"{server}/api/cases/{case['id']}/meshes", files=files, headers=auth(server, SURGEON))
    assert artifact.status_code == 201, artifact.text
    body = {"artifact_id": artifact.json()["id"], "part_class": "anatomical_model"}
    job = httpx.post(f"{server}/api/print-jobs", json=body, headers=headers, timeout=60)
    assert job.status_code == 201, job.text
    return job.json()  # type: ignore[no-any-return]


def approved_guide(server: str) -> str:
    """A guide designed by the surgeon on a bone of a new case, pinned by a plan they approved: the guide's
    artifact id, which may now be printed (and copied for a fit check)."""
    surgeon = auth(server, SURGEON)
    case = httpx.post(f"{server}/api/cases", json={"label": "MAKER-FIT"}, headers=surgeon).json()
    room = httpx.post(f"{server}/api/rooms", json={"title": "Guide", "case_id": case["id"]}, headers=surgeon).json()
    bone = trimesh.creation.capsule(height=40.0, radius=6.0, count=[32, 32])
    bone.apply_translation([10.0, -20.0, 90.0])
    files = [("file", ("femur.stl", bone.export(file_type="stl")))]
    upload = httpx.post(
        f"{server}/api/cases/{case['id']}/meshes", params={"room_id": room["id"]}, files=files, headers=surgeon
    )
    assert upload.status_code == 201, upload.text
    drill = {"entry_lps": [16.0, -20.0, 90.0], "target_lps": [4.0, -20.0, 90.0], "diameter_mm": 2.0}
    region = {"kind": "sphere", "center_lps": [16.0, -20.0, 90.0], "radius_mm": 10}
    body = {
        "inputs": {"bone": upload.json()["id"]},
        "parameters": {"resolution_mm": 0.5, "region": region, "trajectories": [drill]},
    }
    started = httpx.post(f"{server}/api/rooms/{room['id']}/design/guide", json=body, headers=surgeon)
    assert started.status_code == 202, started.text
    job = _finished(server, surgeon, started.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    guide = str(job["result"]["outputs"]["guide"]["artifact_id"])
    plan = httpx.post(f"{server}/api/rooms/{room['id']}/plans", json={"artifact_ids": [guide]}, headers=surgeon)
    assert plan.status_code == 201, plan.text
    decision = {"decision": "approved", "password": SURGEON[1]}
    approved = httpx.post(
        f"{server}/api/rooms/{room['id']}/plans/{plan.json()['id']}/decision", json=decision, headers=surgeon
    )
    assert approved.status_code == 200, approved.text
    return guide


def queue_fit_check(server: str, who: tuple[str, str], guide_id: str) -> dict[str, Any]:
    body = {"artifact_id": guide_id, "part_class": "guide", "purpose": "fit_check"}
    job = httpx.post(f"{server}/api/print-jobs", json=body, headers=auth(server, who), timeout=60)
    assert job.status_code == 201, job.text
    return job.json()  # type: ignore[no-any-return]


def _finished(server: str, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        job: dict[str, Any] = httpx.get(f"{server}/api/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
        time.sleep(0.2)
