"""REST set-up of the imaging browser tests (what they are not about): cases, a synthetic CT series
ingested over REST, waiting for jobs, the series' volume geometry, and a label map drawn on that
geometry with SimpleITK, as 3D Slicer would export one segmented on the same CT."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.support.browser import SURGEON, auth
from tests.support.imaging_flow import zip_folder

JOB_TIMEOUT_S = 90


def create_case(server: str, label: str, patient_id: str = "") -> str:
    body = {"label": label, **({"patient_id": patient_id} if patient_id else {})}
    response = httpx.post(f"{server}/api/cases", json=body, headers=auth(server, SURGEON))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_job(server: str, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    """The job's final view; it must have succeeded."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        view = httpx.get(f"{server}/api/jobs/{job_id}", headers=headers).json()
        if view["state"] in ("succeeded", "failed", "cancelled"):
            assert view["state"] == "succeeded", view
            return dict(view)
        assert time.monotonic() < deadline, f"job {job_id} still {view['state']}"
        time.sleep(0.1)


def upload_series(server: str, case_id: str, paths: list[Path]) -> None:
    """A written series into the case as one zip, waiting for its ingest (and volume) to finish."""
    headers = auth(server, SURGEON)
    files = [("files", ("ct.zip", zip_folder(paths), "application/zip"))]
    response = httpx.post(f"{server}/api/cases/{case_id}/imaging/uploads", files=files, headers=headers, timeout=60)
    assert response.status_code == 202, response.text
    wait_job(server, headers, response.json()["job"]["id"])


def series_id(server: str, case_id: str) -> str:
    series = httpx.get(f"{server}/api/cases/{case_id}/imaging/series", headers=auth(server, SURGEON)).json()
    return str(series[0]["id"])


def volume_layout(server: str, case_id: str) -> dict[str, Any]:
    """The geometry of the case's first series' volume: size, spacing_mm, origin_lps, direction."""
    url = f"{server}/api/cases/{case_id}/imaging/series/{series_id(server, case_id)}/volume"
    response = httpx.get(url, headers=auth(server, SURGEON))
    assert response.status_code == 200, response.text
    return dict(response.json())


def sphere_label_map(
    volume: dict[str, Any], centre_lps: tuple[float, float, float], radius_mm: float, label: int
) -> bytes:
    """An NRRD label map on the volume's own voxel grid: `label` inside the sphere, 1 in a slab at the
    bottom (another structure, left out when `label` is asked for), 0 elsewhere."""
    import tempfile

    import SimpleITK as sitk

    size = [int(n) for n in volume["size"]]  # x, y, z
    spacing = np.asarray(volume["spacing_mm"], dtype=np.float64)
    origin = np.asarray(volume["origin_lps"], dtype=np.float64)
    direction = np.asarray(volume["direction"], dtype=np.float64).reshape(3, 3)
    k, j, i = np.mgrid[: size[2], : size[1], : size[0]]  # numpy order z, y, x
    voxels = np.stack([i, j, k], axis=-1).astype(np.float64)
    lps = origin + (voxels * spacing) @ direction.T
    labels = np.zeros((size[2], size[1], size[0]), dtype=np.uint8)
    labels[:2] = 1
    labels[np.linalg.norm(lps - np.asarray(centre_lps), axis=-1) <= radius_mm] = label
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(origin.tolist())
    image.SetDirection(direction.ravel().tolist())
    with tempfile.TemporaryDirectory(prefix="labelmap-") as folder:
        path = Path(folder) / "Segmentation-label.nrrd"
        sitk.WriteImage(image, str(path), useCompression=True)
        return path.read_bytes()
