"""Layer-contour stacks for metal, ceramic and bio printers: the right outlines at the right heights, a
compact JSON that reads back, and an estimate from the layers' areas."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import trimesh

from server.printing.contours import FORMAT, QUANTUM_MM, LayerStack, layer_stack, section_at
from server.printing.fleet import PartClass, Technology, material
from server.printing.preflight import PrintRequest, preflight
from server.printing.slicing import slice_part
from tests.unit.printing.parts import guide_plate, printer


def ring(outer_mm: float = 10.0, inner_mm: float = 5.0, height_mm: float = 6.0) -> trimesh.Trimesh:
    mesh = trimesh.creation.annulus(r_min=inner_mm, r_max=outer_mm, height=height_mm, sections=128)
    mesh.apply_translation((40.0, 30.0, height_mm / 2))
    return mesh


def test_each_layer_is_cut_at_mid_height_with_its_hole() -> None:
    stack = layer_stack(ring(), 0.5)
    assert len(stack.layers) == 12
    assert stack.z_mm[0] == pytest.approx(0.25) and stack.z_mm[-1] == pytest.approx(5.75)
    for polygons in stack.layers:
        (polygon,) = polygons
        assert len(polygon.interiors) == 1
        assert polygon.area == pytest.approx(math.pi * (10**2 - 5**2), rel=0.01)
        assert (polygon.centroid.x, polygon.centroid.y) == pytest.approx((40.0, 30.0), abs=0.01)


def test_layer_areas_add_up_to_the_volume() -> None:
    mesh = guide_plate()
    stack = layer_stack(mesh, 0.1)
    assert sum(stack.areas_mm2()) * 0.1 == pytest.approx(mesh.volume, rel=0.02)


def test_json_is_compact_and_reads_back() -> None:
    stack = layer_stack(ring(), 0.5)
    data = stack.to_json()
    document = json.loads(data)
    assert document["format"] == FORMAT and len(document["layers"]) == 12
    assert all(isinstance(v, int) for v in document["layers"][0][1][0][0])  # integer quanta
    again = LayerStack.from_json(data)
    assert again.z_mm == pytest.approx(stack.z_mm, abs=QUANTUM_MM)
    for a, b in zip(again.areas_mm2(), stack.areas_mm2(), strict=True):
        assert a == pytest.approx(b, rel=1e-3)
    with pytest.raises(ValueError, match="not a trinity-layers/1"):
        LayerStack.from_json(b'{"format": "other"}')


def test_section_above_the_part_is_empty() -> None:
    assert section_at(ring(), 3.0)[0].area == pytest.approx(math.pi * 75, rel=0.01)
    assert section_at(ring(), 30.0) == ()


def test_slicing_for_metal_writes_a_contour_stack_with_an_estimate(tmp_path: Path) -> None:
    mesh = guide_plate()
    metal = printer("met-02", Technology.METAL, (100, 100, 100), "ti6al4v")
    metal = replace(metal, layer_height_mm=0.1)  # thick layers: a quick test
    outcome = preflight(mesh, PrintRequest(PartClass.IMPLANT), [metal]).outcomes[0]
    assert outcome.placement is not None and outcome.estimate is not None
    result = slice_part(mesh, metal, tmp_path, transform=outcome.placement.transform)
    assert result.kind == "layers" and result.slicer == "trinity-contours"
    stack = LayerStack.from_json(result.path.read_bytes())
    assert len(stack.layers) == result.estimate.layers == outcome.estimate.layers
    assert stack.bounds_mm[0][2] == pytest.approx(0.0, abs=1e-6)  # placed on the plate
    assert result.estimate.material_g == pytest.approx(mesh.volume / 1000 * material("ti6al4v").density_g_cm3, rel=0.03)
    assert result.estimate.time_s == pytest.approx(outcome.estimate.time_s, rel=0.1)
