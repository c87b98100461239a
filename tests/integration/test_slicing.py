"""Slicing with the real PrusaSlicer (Debian package prusa-slicer): a designed guide becomes an SL1 resin
archive, an anatomical model becomes G-code for an FDM printer spec with plausible estimates, `--info`
agrees with trimesh, and what cannot or should not be sliced is refused with a reason. A missing
PrusaSlicer fails these tests: it is part of what the printing issue delivers."""

from __future__ import annotations

import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import trimesh

from server.design.guide import GuideParameters, make_guide
from server.design.params import SphereRegion, Trajectory
from server.design.phantoms import capsule_bone, synthetic_bone
from server.printing.errors import MeshNotPrintable, SlicerMissing, SlicingFailed, SlicingTimeout
from server.printing.fleet import PartClass, Technology, material
from server.printing.preflight import PrintRequest, preflight
from server.printing.profiles import SliceOptions
from server.printing.slicing import find_slicer, slice_file, slice_part, slicer_info
from tests.support.services import missing
from tests.unit.printing.parts import open_box, printer

FDM = printer("fdm-02", Technology.FDM, (250, 210, 210), "petg")
SLA = printer("sla-03", Technology.SLA, (120, 68, 150), "resin_biocompatible")


@pytest.fixture(scope="module", autouse=True)
def prusa_slicer() -> str:
    try:
        return find_slicer()
    except SlicerMissing as exc:
        missing("PrusaSlicer", f"{exc}: apt-get install --no-install-recommends prusa-slicer")
        raise


@pytest.fixture(scope="module")
def guide() -> trimesh.Trimesh:
    """A guide plate designed on the phantom femur, as the design package makes them (about 38k faces)."""
    params = GuideParameters(clearance_mm=0.2, thickness_mm=3.0, sleeve_length_mm=14.0, resolution_mm=0.5)
    trajectory = Trajectory((11.0, 0.0, 6.0), (-5.0, 0.0, 6.0), 2.5)
    result = make_guide(synthetic_bone(), SphereRegion((11.0, 0.0, 10.0), 11.0), [trajectory], params)
    return result.meshes["guide"]


def test_guide_becomes_an_sl1_archive(guide: trimesh.Trimesh, tmp_path: Path) -> None:
    outcome = preflight(guide, PrintRequest(PartClass.GUIDE), [SLA]).outcomes[0]
    assert outcome.ready and outcome.placement is not None and outcome.estimate is not None
    steps: list[tuple[float, str]] = []
    result = slice_part(
        guide, SLA, tmp_path, transform=outcome.placement.transform, progress=lambda f, m: steps.append((f, m))
    )
    assert result.kind == "sl1" and result.path.suffix == ".sl1"
    with zipfile.ZipFile(result.path) as archive:
        names = archive.namelist()
        config = archive.read("config.ini").decode()
    layer_images = [n for n in names if n.endswith(".png") and "/" not in n]
    assert len(layer_images) == result.estimate.layers
    assert float(re.search(r"layerHeight = ([\d.]+)", config).group(1)) == SLA.layer_mm  # type: ignore[union-attr]
    height_mm = outcome.placement.extents_mm[2]
    assert abs(result.estimate.layers - height_mm / SLA.layer_mm) <= 2  # the pad goes around, not under
    assert result.estimate.time_s > 0
    used_ml, part_ml = result.estimate.material_cm3, guide.volume / 1000
    assert part_ml <= used_ml <= 3 * part_ml  # the part plus supports and pad
    assert 0.5 < result.estimate.time_s / outcome.estimate.time_s < 2.0  # our estimate is in the right range
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("Rasterizing" in m for _, m in steps)  # PrusaSlicer's own steps came through


def test_anatomical_model_becomes_gcode_with_plausible_estimates(tmp_path: Path) -> None:
    bone = capsule_bone(segments=32)
    bone.apply_scale(0.6)  # a child's femur, 94 mm: a quick slice
    outcome = preflight(bone, PrintRequest(PartClass.ANATOMICAL_MODEL, material="petg"), [FDM]).outcomes[0]
    assert outcome.ready and outcome.placement is not None and outcome.estimate is not None
    options = SliceOptions(supports=False)  # supports add layers of their own between the part's
    result = slice_part(bone, FDM, tmp_path, transform=outcome.placement.transform, options=options)
    assert result.kind == "gcode"
    estimate = result.estimate
    assert estimate.time_s > 0 and estimate.filament_mm and estimate.filament_mm > 0 and estimate.material_g > 0
    height_mm = outcome.placement.extents_mm[2]
    assert abs(estimate.layers - height_mm / FDM.layer_mm) <= 2
    assert estimate.material_g == pytest.approx(estimate.material_cm3 * material("petg").density_g_cm3, rel=0.02)
    assert estimate.material_cm3 < bone.volume / 1000  # infill: less than solid
    assert 0.33 < estimate.time_s / outcome.estimate.time_s < 3.0
    footer = result.path.read_text(errors="replace")[-40000:]
    assert "; bed_shape = 0x0,250x0,250x210,0x210" in footer and "; nozzle_diameter = 0.4" in footer
    assert "; temperature = 240" in footer and "; filament_type = PET" in footer  # our PETG profile


def test_info_agrees_with_trimesh(guide: trimesh.Trimesh, tmp_path: Path) -> None:
    for name, mesh in (("guide", guide), ("bone", capsule_bone(segments=32))):
        path = tmp_path / f"{name}.stl"
        mesh.export(path)
        info = slicer_info(path)
        assert info.manifold and info.open_edges == 0 and info.facets == len(mesh.faces)
        assert info.volume_mm3 == pytest.approx(mesh.volume, rel=0.01)
        assert info.size_mm == pytest.approx(tuple(mesh.extents), abs=0.01)


def test_non_manifold_mesh_is_refused_by_us_and_by_prusaslicer(tmp_path: Path) -> None:
    with pytest.raises(MeshNotPrintable, match="not watertight: 3 open edges"):
        slice_part(open_box(), FDM, tmp_path)
    path = tmp_path / "open.stl"
    open_box().export(path)
    assert not slicer_info(path).manifold
    with pytest.raises(MeshNotPrintable, match=r"PrusaSlicer finds the model not manifold \(open_edges = \d+\)"):
        slice_file(path, FDM, tmp_path, material=material("petg"))


def test_prusaslicer_own_message_when_it_refuses(tmp_path: Path) -> None:
    path = tmp_path / "garbage.stl"
    path.write_text("solid nothing\nthis is not a mesh\n")
    with pytest.raises(SlicingFailed, match=r"PrusaSlicer failed .*Loading of a model file failed"):
        slicer_info(path)


def test_a_slow_slice_is_stopped_at_its_timeout(guide: trimesh.Trimesh, tmp_path: Path) -> None:
    with pytest.raises(SlicingTimeout, match=r"did not finish within 0\.2 s"):
        slice_part(guide, SLA, tmp_path, timeout_s=0.2)


def test_missing_prusaslicer_is_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlicerMissing, match="prusa-slicer"):
        slice_part(trimesh.creation.box(extents=(10, 10, 10)), FDM, tmp_path)
    monkeypatch.undo()
    with pytest.raises(SlicerMissing):
        find_slicer("prusa-slicer-that-is-not-there")


def test_a_printer_without_material_cannot_be_sliced_for(tmp_path: Path) -> None:
    with pytest.raises(SlicingFailed, match="no material loaded"):
        slice_part(trimesh.creation.box(extents=(10, 10, 10)), replace(FDM, material=None), tmp_path)
