"""Preflight on real meshes: closed and manifold or refused with why; the orientation chosen per printer is
recorded and the oriented mesh really fits; estimates follow the technology; reasons per printer."""

from __future__ import annotations

import math

import manifold3d
import numpy as np
import pytest
import trimesh

from server.design.manifolds import to_trimesh
from server.printing.drivers.base import BuildVolume
from server.printing.errors import MeshNotPrintable
from server.printing.estimates import RATES
from server.printing.fleet import PartClass, Technology, assess
from server.printing.orientation import Placement, candidate_orientations, rank
from server.printing.preflight import JOB, PrintRequest, check_mesh, preflight, require_printable
from tests.unit.printing.parts import box_mesh, center_fleet, guide_plate, long_bone, open_box, printer, touching_cubes


def placed(mesh: trimesh.Trimesh, placement: Placement) -> trimesh.Trimesh:
    moved = mesh.copy()
    moved.apply_transform(placement.matrix())
    return moved


def assert_fits(mesh: trimesh.Trimesh, placement: Placement, volume: BuildVolume) -> None:
    moved = placed(mesh, placement)
    rotation = placement.matrix()[:3, :3]
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9) and np.linalg.det(rotation) == pytest.approx(1.0)
    assert np.allclose(moved.bounds[0], 0.0, atol=1e-6)
    assert np.all(moved.bounds[1] <= np.array([volume.x_mm, volume.y_mm, volume.z_mm]) + 1e-6)
    assert moved.volume == pytest.approx(mesh.volume, rel=1e-9)


def test_guide_plate_goes_to_biocompatible_resin_printers_only() -> None:
    fleet = center_fleet()
    mesh = guide_plate()
    report = preflight(mesh, PrintRequest(PartClass.GUIDE), fleet)
    assert report.printable and report.mesh.watertight and report.mesh.manifold
    assert {o.printer_id for o in report.ready()} == {"sla-01", "sla-02", "sla-03"}
    reasons = report.reasons()
    assert reasons["fdm-01"] == ("an FDM printer cannot print a guide: it needs an SLA/DLP resin printer",)
    assert reasons["sla-04"] == ("material standard resin is not allowed for a guide: needs biocompatible resin",)
    assert "needs a biocompatible ceramic" not in " ".join(sum(reasons.values(), ()))
    by_id = {p.id: p for p in fleet}
    for outcome in report.ready():
        assert outcome.placement is not None
        assert_fits(mesh, outcome.placement, by_id[outcome.printer_id].build_volume)


def test_resin_orientation_minimizes_height_and_is_recorded() -> None:
    mesh = guide_plate()
    sla = printer("sla-02", Technology.SLA, (145, 145, 185), "resin_biocompatible")
    outcome = preflight(mesh, PrintRequest(PartClass.GUIDE), [sla]).outcomes[0]
    assert outcome.ready and outcome.placement is not None
    heights = [o.height_mm for o in candidate_orientations(mesh)]
    assert outcome.placement.extents_mm[2] == pytest.approx(min(heights), abs=1e-6)
    assert outcome.placement.extents_mm[2] < 0.6 * max(mesh.extents)  # it lies down, not on its end
    assert len(outcome.placement.transform) == 4 and all(len(row) == 4 for row in outcome.placement.transform)
    assert_fits(mesh, outcome.placement, sla.build_volume)


def mushroom() -> trimesh.Trimesh:
    """A 60 mm cap on a 10 mm post, cap up: an overhang all round unless it is printed cap down."""
    post = manifold3d.Manifold.cylinder(40.0, 5.0, 5.0, 48)
    cap = manifold3d.Manifold.cylinder(5.0, 30.0, 30.0, 96).translate((0.0, 0.0, 40.0))
    return to_trimesh(post + cap)


def test_fdm_orientation_minimizes_support_area() -> None:
    mesh = mushroom()
    fdm = printer("fdm-01", Technology.FDM, (180, 180, 180), "pla")
    candidates = candidate_orientations(mesh)
    as_given = next(o for o in candidates if np.allclose(o.rotation[2], (0.0, 0.0, 1.0)))  # z stays up
    assert as_given.support_area_mm2 > 0.8 * math.pi * (30**2 - 5**2)  # the cap's underside
    outcome = preflight(mesh, PrintRequest(PartClass.ANATOMICAL_MODEL), [fdm]).outcomes[0]
    assert outcome.placement is not None
    assert outcome.placement.orientation.support_area_mm2 < 1.0  # cap down: nothing overhangs
    assert outcome.placement.orientation.support_area_mm2 == min(o.support_area_mm2 for o in candidates)
    moved = placed(mesh, outcome.placement)
    low = moved.vertices[moved.vertices[:, 2] < 1e-6]
    assert np.ptp(low[:, 0]) > 55  # the whole cap rests on the plate
    assert rank(candidates, Technology.FDM)[0] == outcome.placement.orientation


def test_long_bone_fits_only_diagonally() -> None:
    mesh = long_bone(200.0)
    fdm = printer("fdm-01", Technology.FDM, (180, 180, 150), "pla")
    outcome = preflight(mesh, PrintRequest(PartClass.ANATOMICAL_MODEL), [fdm]).outcomes[0]
    assert outcome.ready and outcome.placement is not None
    assert outcome.placement.turn_deg not in (0.0, 90.0)  # straight it is 200 mm on a 180 mm plate
    assert max(outcome.placement.orientation.box_mm[:2]) > 180
    assert_fits(mesh, outcome.placement, fdm.build_volume)


def test_long_bone_standing_fits_a_low_long_printer_after_rotation() -> None:
    mesh = long_bone(200.0)  # stands 200 mm tall as loaded
    long_low = printer("fdm-09", Technology.FDM, (250, 70, 70), "pla")
    outcome = preflight(mesh, PrintRequest(PartClass.ANATOMICAL_MODEL), [long_low]).outcomes[0]
    assert outcome.ready and outcome.placement is not None
    assert_fits(mesh, outcome.placement, long_low.build_volume)
    assert outcome.placement.extents_mm[0] > 195  # lying along the long axis


def test_part_too_big_for_everything_gets_reasons_per_printer() -> None:
    fleet = center_fleet()
    report = preflight(box_mesh(600.0, 500.0, 450.0), PrintRequest(PartClass.ANATOMICAL_MODEL), fleet)
    assert not report.printable and report.ready() == ()
    reasons = report.reasons()
    assert set(reasons) == {p.id for p in fleet}
    assert reasons["fdm-07"] == (
        "build volume 350×350×350 mm is too small for a part of 600×500×450 mm in any orientation",  # noqa: RUF001
    )
    assert reasons["met-01"] == (
        "a metal (SLM/DMLS) printer cannot print an anatomical model: it needs an FDM or SLA/DLP resin printer",
        "build volume 250×250×325 mm is too small for a part of 600×500×450 mm in any orientation",  # noqa: RUF001
    )
    for pid, why in reasons.items():
        assert why, pid


@pytest.mark.parametrize(
    ("mesh", "expected"),
    [
        (open_box(), "not watertight: 3 open edges"),
        (touching_cubes(), "not manifold: 1 edge shared by more than two triangles"),
    ],
)
def test_open_or_non_manifold_mesh_is_refused_with_its_reason(mesh: trimesh.Trimesh, expected: str) -> None:
    report = preflight(mesh, PrintRequest(PartClass.ANATOMICAL_MODEL), center_fleet())
    assert not report.printable
    assert any(expected in why for why in report.reasons()[JOB])
    with pytest.raises(MeshNotPrintable, match=expected):
        require_printable(mesh)


def test_inside_out_mesh_is_refused() -> None:
    mesh = box_mesh(10, 10, 10)
    flipped = trimesh.Trimesh(mesh.vertices, mesh.faces[:, ::-1], process=False)
    assert check_mesh(flipped).problems == ("inside out: the surface faces inwards (negative volume)",)


def test_estimates_follow_each_technology() -> None:
    mesh = box_mesh(20.0, 20.0, 20.0)  # 8 cm³
    fleet = [
        printer("fdm-01", Technology.FDM, (180, 180, 180), "pla"),
        printer("sla-01", Technology.SLA, (145, 145, 185), "resin_standard"),
        printer("met-01", Technology.METAL, (100, 100, 100), "ti6al4v"),
    ]
    model = preflight(mesh, PrintRequest(PartClass.ANATOMICAL_MODEL), fleet)
    implant = preflight(mesh, PrintRequest(PartClass.IMPLANT), fleet)
    fdm, sla = (o.estimate for o in model.outcomes if o.printer_id in ("fdm-01", "sla-01"))
    (metal,) = (o.estimate for o in implant.outcomes if o.printer_id == "met-01")
    assert fdm is not None and sla is not None and metal is not None
    assert fdm.layers == 100 and sla.layers == 400 and metal.layers == math.ceil(20 / 0.03)
    assert sla.time_s == pytest.approx(400 * RATES[Technology.SLA].layer_s)  # layers x layer time
    assert fdm.filament_mm is not None and fdm.filament_mm > 0
    assert 0 < fdm.material_cm3 < 8.0  # infill: less than solid
    assert metal.material_g == pytest.approx(8.0 * 4.43, rel=0.01)  # solid titanium, nothing overhangs
    assert fdm.time_s > fdm.layers * RATES[Technology.FDM].layer_s


def test_ceramic_and_bio_parts_go_to_their_printers() -> None:
    fleet = center_fleet()
    scaffold = preflight(box_mesh(30, 20, 10), PrintRequest(PartClass.SCAFFOLD), fleet)
    tissue = preflight(box_mesh(30, 20, 10), PrintRequest(PartClass.TISSUE, material="bioink_alginate"), fleet)
    assert {o.printer_id for o in scaffold.ready()} == {"cer-01", "cer-02"}
    assert {o.printer_id for o in tissue.ready()} == {"bio-02"}
    assert tissue.reasons()["bio-01"] == ("material GelMA bioink is loaded, the job needs alginate bioink",)


def test_requirements_carry_every_orientation_for_the_scheduler() -> None:
    mesh = long_bone(200.0)
    fleet = center_fleet()
    report = preflight(mesh, PrintRequest(PartClass.ANATOMICAL_MODEL), fleet)
    assert len(report.requirements.boxes_mm) == len(report.orientations) >= 6
    for spec in fleet:  # the scheduler, from boxes alone, agrees with preflight, from the mesh
        outcome = next(o for o in report.outcomes if o.printer_id == spec.id)
        assert assess(spec, report.requirements).capable == outcome.capable
