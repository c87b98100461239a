"""`trinity ct2mesh`: a CT folder or zip to a printable model, outside the server, in patient mm."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import trimesh

from tests.support.phantoms import CtPhantom, Cylinder, Grid, Sphere, write_series


def _trinity(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=300)


def test_ct2mesh_writes_a_watertight_model_at_the_phantoms_place(tmp_path: Path) -> None:
    centre = (20.0, -15.0, 80.0)
    bone = Sphere((centre[0] + 2, centre[1] - 1, centre[2] + 1), 11.0)
    phantom = CtPhantom(shapes=(bone,), body=Cylinder(centre, (0.0, 0.0, 1.0), 20.0, 40.0))
    written = write_series(
        tmp_path / "ct",
        phantom,
        Grid(rows=56, columns=56, slice_count=40, slice_step_mm=1.0, centre_lps=centre, gantry_tilt_deg=10.0),
        shuffle_seed=5,
        add_localizer=True,
        add_non_dicom=True,
    )
    archive = tmp_path / "ct.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in [*written.paths, *written.extra_paths.values()]:
            z.write(path, path.name)
    for out in ("model.stl", "model.3mf", "model.glb"):
        done = _trinity(
            "ct2mesh",
            str(archive),
            "--out",
            str(tmp_path / out),
            "--faces",
            "20000",
            "--hu-min",
            "500",
            "--hu-max",
            "3071",
            "--closing-mm",
            "0",
        )
        assert done.returncode == 0, done.stderr
        assert "gantry tilt 10.0°" in done.stdout and "localizer" in done.stdout
        mesh = trimesh.load(tmp_path / out, force="mesh")
        assert mesh.is_watertight
        assert abs(mesh.volume - bone.volume_mm3) / bone.volume_mm3 < 0.02
        distance = np.abs(bone.signed_distance_mm(np.asarray(mesh.vertices)))
        assert distance.max() < 1.0, distance.max()


def test_ct2mesh_explains_why_nothing_could_be_made(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not a CT")
    done = _trinity("ct2mesh", str(tmp_path / "in"), "--out", str(tmp_path / "m.stl"))
    assert done.returncode == 2 and "no usable volume" in done.stderr and "notes.txt" in done.stdout
    bad = _trinity("ct2mesh", str(tmp_path / "in"), "--out", str(tmp_path / "m.obj"))
    assert bad.returncode == 2 and ".stl" in bad.stderr
