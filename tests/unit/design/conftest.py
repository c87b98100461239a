"""Bone-like test solids, built once per session: a smooth level-set phantom, an exact union of
primitives, and a marching-cubes surface of the same field (the kind of mesh imaging produces)."""

from __future__ import annotations

import pytest
import trimesh

from server.design.phantoms import capsule_bone, synthetic_bone
from tests.unit.design.shapes import marching_cubes_bone as make_marching_cubes_bone


@pytest.fixture(scope="session")
def bone() -> trimesh.Trimesh:
    """The smooth phantom femur, about 34k faces."""
    return synthetic_bone(edge_mm=1.5)


@pytest.fixture(scope="session")
def union_bone() -> trimesh.Trimesh:
    """Shaft cylinder and three balls, unioned exactly (creases where they meet)."""
    return capsule_bone(segments=48)


@pytest.fixture(scope="session")
def marching_cubes_bone() -> trimesh.Trimesh:
    return make_marching_cubes_bone()
