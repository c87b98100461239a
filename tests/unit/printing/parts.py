"""Test parts and a test fleet for the printing core: meshes built with manifold3d and trimesh (closed
by construction), and the center's kind of fleet, 20 printers of five technologies at one site."""

from __future__ import annotations

import manifold3d
import numpy as np
import trimesh

from server.design.manifolds import to_trimesh
from server.design.phantoms import capsule_bone
from server.printing.drivers.base import BuildVolume
from server.printing.fleet import PrinterSpec, Technology

SITE = "site-a"


def guide_plate() -> trimesh.Trimesh:
    """A guide-like plate: a 3 mm curved shell hugging a 26 mm bone over 30 mm, with two 3 mm drill holes."""
    outer = manifold3d.Manifold.cylinder(30.0, 16.0, 16.0, 96)
    inner = manifold3d.Manifold.cylinder(32.0, 13.0, 13.0, 96).translate((0.0, 0.0, -1.0))
    half = manifold3d.Manifold.cube((20.0, 40.0, 34.0)).translate((2.0, -20.0, -2.0))
    shell = (outer - inner) ^ half
    drill = manifold3d.Manifold.cylinder(30.0, 1.5, 1.5, 32).rotate((0.0, 90.0, 0.0))
    plate = shell - drill.translate((0.0, 0.0, 8.0)) - drill.translate((0.0, 0.0, 22.0))
    return to_trimesh(plate)


def long_bone(length_mm: float = 200.0) -> trimesh.Trimesh:
    """The capsule phantom femur scaled to `length_mm` long, standing along z (as imaging leaves it)."""
    bone = capsule_bone(segments=32)
    bone.apply_scale(length_mm / float(np.ptp(bone.vertices[:, 2])))
    return bone


def box_mesh(x_mm: float, y_mm: float, z_mm: float) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=(x_mm, y_mm, z_mm))


def open_box() -> trimesh.Trimesh:
    """A 20 mm cube with one triangle missing: a hole a slicer would have to guess across."""
    mesh = box_mesh(20.0, 20.0, 20.0)
    return trimesh.Trimesh(mesh.vertices, mesh.faces[:-1], process=False)


def touching_cubes() -> trimesh.Trimesh:
    """Two cubes sharing one edge (welded): closed, yet four triangles meet on that edge."""
    a = box_mesh(10.0, 10.0, 10.0)
    b = box_mesh(10.0, 10.0, 10.0)
    b.apply_translation((10.0, 10.0, 0.0))
    vertices = np.concatenate([a.vertices, b.vertices])
    faces = np.concatenate([a.faces, b.faces + len(a.vertices)])
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    mesh.merge_vertices()
    return mesh


def printer(
    pid: str,
    technology: Technology,
    volume_mm: tuple[float, float, float],
    material: str | None,
    *,
    nozzle_mm: float | None = None,
    tags: frozenset[str] = frozenset(),
    site_id: str = SITE,
) -> PrinterSpec:
    if technology is Technology.FDM and nozzle_mm is None:
        nozzle_mm = 0.4
    return PrinterSpec(
        id=pid,
        name=pid.upper(),
        site_id=site_id,
        technology=technology,
        build_volume=BuildVolume(*volume_mm),
        material=material,
        nozzle_mm=nozzle_mm,
        tags=tags,
        location="print room 1",
    )


def center_fleet() -> list[PrinterSpec]:
    """20 printers: 7 FDM, 5 resin, 4 metal, 2 ceramic, 2 bio; sizes from desktop to large format."""
    fdm, sla, metal = Technology.FDM, Technology.SLA, Technology.METAL
    return [
        printer("fdm-01", fdm, (180, 180, 180), "pla"),
        printer("fdm-02", fdm, (250, 210, 210), "pla"),
        printer("fdm-03", fdm, (250, 210, 210), "petg"),
        printer("fdm-04", fdm, (300, 300, 400), "pla", nozzle_mm=0.6),
        printer("fdm-05", fdm, (250, 210, 210), "pa12"),
        printer("fdm-06", fdm, (180, 180, 180), "tpu"),
        printer("fdm-07", fdm, (350, 350, 350), "petg", nozzle_mm=0.6),
        printer("sla-01", sla, (145, 145, 185), "resin_biocompatible", tags=frozenset({"cleanroom"})),
        printer("sla-02", sla, (145, 145, 185), "resin_biocompatible"),
        printer("sla-03", sla, (120, 68, 150), "resin_biocompatible"),
        printer("sla-04", sla, (200, 125, 210), "resin_standard"),
        printer("sla-05", sla, (120, 68, 150), "resin_standard"),
        printer("met-01", metal, (250, 250, 325), "ti6al4v", tags=frozenset({"cleanroom"})),
        printer("met-02", metal, (100, 100, 100), "ti6al4v"),
        printer("met-03", metal, (125, 125, 125), "ti6al4v"),
        printer("met-04", metal, (250, 250, 300), "ss316l"),
        printer("cer-01", Technology.CERAMIC, (76, 43, 150), "hydroxyapatite"),
        printer("cer-02", Technology.CERAMIC, (100, 60, 150), "zirconia"),
        printer("bio-01", Technology.BIO, (130, 90, 60), "bioink_gelma", nozzle_mm=0.41),
        printer("bio-02", Technology.BIO, (130, 90, 60), "bioink_alginate", nozzle_mm=0.61),
    ]
