"""Fleet rules: which material may make which part, which printer can take which job, and why not."""

from __future__ import annotations

import math

import pytest

from server.printing.drivers.base import BuildVolume
from server.printing.errors import InvalidPrinterSpec, UnknownMaterial
from server.printing.fit import box_orientations, fit_box
from server.printing.fleet import (
    MATERIALS,
    JobRequirements,
    PartClass,
    PrinterSpec,
    Technology,
    allowed_materials,
    assess,
    material,
    material_problem,
    request_problems,
)
from tests.unit.printing.parts import printer


def test_guide_allows_only_biocompatible_resin() -> None:
    assert [m.key for m in allowed_materials(PartClass.GUIDE)] == ["resin_biocompatible"]
    assert material_problem(PartClass.GUIDE, material("pla")) == (
        "material PLA is not allowed for a guide: needs biocompatible resin"
    )
    assert "needs biocompatible resin" in str(material_problem(PartClass.GUIDE, material("resin_standard")))


def test_implant_allows_only_titanium_on_metal() -> None:
    assert [m.key for m in allowed_materials(PartClass.IMPLANT)] == ["ti6al4v"]
    assert material_problem(PartClass.IMPLANT, material("ss316l")) == (
        "material stainless steel 316L is not allowed for an implant: needs Ti6Al4V on a metal printer"
    )
    assert material("ti6al4v").technology is Technology.METAL


def test_anatomical_model_allows_any_polymer_and_nothing_else() -> None:
    allowed = {m.key for m in allowed_materials(PartClass.ANATOMICAL_MODEL)}
    assert allowed == {k for k, m in MATERIALS.items() if m.polymer}
    assert {"pla", "petg", "pa12", "resin_standard", "resin_biocompatible"} <= allowed
    assert not allowed & {"ti6al4v", "hydroxyapatite", "bioink_gelma"}


def test_every_part_class_has_a_material_and_steel_makes_none_of_them() -> None:
    for part_class in PartClass:
        assert allowed_materials(part_class), part_class
    # a metal printer may hold 316L for instruments; it is never ready for a Trinity part
    assert all(material_problem(c, material("ss316l")) is not None for c in PartClass)


def test_unknown_material_names_the_known_ones() -> None:
    with pytest.raises(UnknownMaterial, match=r"known: .*pla"):
        material("unobtainium")


def test_printer_spec_refuses_a_material_of_another_technology() -> None:
    with pytest.raises(InvalidPrinterSpec, match="sla printer cannot be loaded with PLA"):
        printer("sla-x", Technology.SLA, (145, 145, 185), "pla")
    with pytest.raises(InvalidPrinterSpec, match="build volume must be positive"):
        printer("fdm-x", Technology.FDM, (0, 180, 180), "pla")
    with pytest.raises(InvalidPrinterSpec, match="needs nozzle_mm"):
        PrinterSpec("fdm-y", "Y", "s", Technology.FDM, BuildVolume(100, 100, 100), "pla")


def test_fit_is_straight_when_it_can_be_and_diagonal_when_it_must() -> None:
    volume = BuildVolume(180, 180, 180)
    assert fit_box((150, 40, 30), volume) == 0.0
    assert fit_box((40, 150, 30), BuildVolume(180, 60, 60)) == 90.0
    turn = fit_box((200, 40, 30), volume)  # 200 mm > 180 mm: only on the diagonal
    assert turn is not None and 30 < turn < 60
    rad = math.radians(turn)
    assert 200 * abs(math.cos(rad)) + 40 * abs(math.sin(rad)) <= 180 + 1e-6
    assert 200 * abs(math.sin(rad)) + 40 * abs(math.cos(rad)) <= 180 + 1e-6
    assert fit_box((300, 40, 30), volume) is None
    assert fit_box((100, 100, 181), volume) is None


def test_too_small_build_volume_says_so_in_any_orientation() -> None:
    fdm = printer("fdm-01", Technology.FDM, (180, 180, 180), "pla")
    req = JobRequirements(PartClass.ANATOMICAL_MODEL, box_orientations(300, 40, 30))
    assert assess(fdm, req).problems == (
        "build volume 180×180×180 mm is too small for a part of 300×40×30 mm in any orientation",  # noqa: RUF001
    )
    standing = JobRequirements(PartClass.ANATOMICAL_MODEL, box_orientations(30, 40, 200))
    capability = assess(fdm, standing)
    assert capability.ready and capability.fit is not None
    assert standing.boxes_mm[capability.fit[0]][2] <= 180  # it lies down to fit


def test_capability_and_setup_are_told_apart() -> None:
    petg_job = JobRequirements(PartClass.ANATOMICAL_MODEL, ((50, 50, 50),), material="petg", nozzle_mm=0.4)
    pla_printer = printer("fdm-01", Technology.FDM, (180, 180, 180), "pla")
    sla_printer = printer("sla-01", Technology.SLA, (145, 145, 185), "resin_standard")
    empty = printer("fdm-02", Technology.FDM, (180, 180, 180), None, nozzle_mm=0.6)
    assert assess(pla_printer, petg_job).setup == ("material PLA is loaded, the job needs PETG",)
    assert assess(pla_printer, petg_job).capable
    assert assess(empty, petg_job).setup == ("no material loaded (needs PETG)", "nozzle 0.6 mm, the job needs 0.4 mm")
    assert assess(sla_printer, petg_job).problems == (
        "an SLA/DLP resin printer cannot print PETG: it needs an FDM printer",
    )


def test_guide_on_wrong_printers_gets_specific_reasons() -> None:
    guide = JobRequirements(PartClass.GUIDE, ((40, 30, 15),), tags=frozenset({"cleanroom"}), site_id="site-a")
    fdm = printer("fdm-01", Technology.FDM, (180, 180, 180), "pla")
    standard = printer("sla-05", Technology.SLA, (120, 68, 150), "resin_standard", tags=frozenset({"cleanroom"}))
    elsewhere = printer("sla-09", Technology.SLA, (120, 68, 150), "resin_biocompatible", site_id="site-b")
    assert assess(fdm, guide).problems == (
        "an FDM printer cannot print a guide: it needs an SLA/DLP resin printer",
        "lacks tag cleanroom",
    )
    assert assess(standard, guide).setup == (
        "material standard resin is not allowed for a guide: needs biocompatible resin",
    )
    assert "printer is at site site-b, the job belongs to site site-a" in assess(elsewhere, guide).problems


def test_request_problems_catch_a_wrong_material_whatever_the_fleet() -> None:
    assert request_problems(JobRequirements(PartClass.GUIDE, ((1, 1, 1),), material="pla")) == [
        "material PLA is not allowed for a guide: needs biocompatible resin"
    ]
    assert request_problems(JobRequirements(PartClass.IMPLANT, ((1, 1, 1),), material="nope")) == [
        "unknown material 'nope'"
    ]
    assert request_problems(JobRequirements(PartClass.IMPLANT, ((1, 1, 1),), technology=Technology.FDM)) == [
        "no fdm material is allowed for an implant"
    ]
    assert request_problems(JobRequirements(PartClass.IMPLANT, ((1, 1, 1),))) == []
