"""Helpers for tests that put a CT study into a case over the REST API and wait for the jobs."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

import httpx


def zip_folder(paths: list[Path], extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            archive.write(path, f"study/{path.name}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def wait_job(http: httpx.AsyncClient, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        view = (await http.get(f"/api/jobs/{job_id}")).json()
        if view["state"] in ("succeeded", "failed", "cancelled"):
            return view  # type: ignore[no-any-return]
        assert loop.time() < deadline, f"job {job_id} still {view['state']} after {timeout_s} s"
        await asyncio.sleep(0.1)


async def wait_spool_empty(spool_dir: Path, timeout_s: float = 5) -> None:
    """Every upload's spool folder is gone (the job runner removes it right after a job's final outcome)."""

    def left_in_spool() -> list[Path]:
        return list(spool_dir.iterdir()) if spool_dir.exists() else []

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while left := await asyncio.to_thread(left_in_spool):
        assert loop.time() < deadline, f"left in the spool: {left}"
        await asyncio.sleep(0.05)


async def create_case(http: httpx.AsyncClient, label: str = "MAND-2026-001") -> str:
    body = {"label": label, "patient_name": "Doe^Jane^Q", "patient_id": "PHANTOM-4711", "birth_date": "19700402"}
    response = await http.post("/api/cases", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def upload(
    http: httpx.AsyncClient, case_id: str, files: list[tuple[str, bytes]], room_id: str | None = None
) -> dict[str, Any]:
    params = {"room_id": room_id} if room_id else None
    multipart = [("files", (name, data, "application/octet-stream")) for name, data in files]
    response = await http.post(f"/api/cases/{case_id}/imaging/uploads", files=multipart, params=params, timeout=60)
    assert response.status_code == 202, response.text
    return response.json()  # type: ignore[no-any-return]
