"""Design benchmark: Trinity's design functions against calling manifold3d and fast-simplification
directly, on the same meshes in the same run.

  plane_cut_1m_s          cut.plane_cut on a ~1.1M-face bone (status and volume checks, both pieces,
                          report)                 vs Manifold(Mesh64) + split_by_plane + to_mesh64
  boolean_difference_200k_s
                          booleans.boolean("difference") on two ~200k-face bones
                                                  vs Manifold(a) - Manifold(b) + to_mesh64
  decimate_1m_to_100k_s   simplify.decimate (compaction, watertightness check)
                                                  vs fast_simplification.simplify(target_count)

The meshes are the phantom femur (server/design/phantoms.py), smoothed and refined by manifold3d to
the face counts; the second boolean operand is the same bone turned 20° and moved about 8 mm. Each side
runs once to warm up, then `--repeat` times, Trinity and the peer alternating; the figure is the
median wall time in seconds and `ratio` is trinity / peer (target: at most 1.10).

    python -m bench.design [--repeat 7] [--no-write]
    python bench/run.py design

Prints a table and replaces the "design" key of bench/results.json (other keys are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fast_simplification
import manifold3d
import numpy as np
import trimesh

REPO = Path(__file__).resolve().parent.parent.parent
RESULTS = REPO / "bench" / "results.json"
TARGET_RATIO = 1.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.design", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/results.json alone")
    return parser.parse_args(argv)


def _refined_bone(edge_mm: float, refine: int) -> trimesh.Trimesh:
    from server.design.manifolds import to_manifold, to_trimesh
    from server.design.phantoms import synthetic_bone

    return to_trimesh(to_manifold(synthetic_bone(edge_mm)).smooth_out().refine(refine))


def _moved(mesh: trimesh.Trimesh, angle_deg: float, shift_mm: tuple[float, float, float]) -> trimesh.Trimesh:
    from server.design.meshes import make_mesh

    transform = trimesh.transformations.rotation_matrix(np.radians(angle_deg), [0.3, 1.0, 0.2])
    vertices = np.asarray(mesh.vertices) @ transform[:3, :3].T + np.asarray(shift_mm)
    return make_mesh(vertices, np.asarray(mesh.faces))


def _solid(mesh: trimesh.Trimesh) -> manifold3d.Manifold:
    """What a caller of manifold3d writes: the arrays as Mesh64 (uint64 indices, writeable C order)."""
    return manifold3d.Manifold(
        manifold3d.Mesh64(
            vert_properties=np.require(mesh.vertices, np.float64, ("C", "W")),
            tri_verts=np.require(mesh.faces, np.uint64, ("C", "W")),
        )
    )


def _time(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _compare(trinity: Callable[[], object], peer: Callable[[], object], repeat: int) -> tuple[float, float]:
    trinity()
    peer()  # warm up both (allocator, first-call costs)
    trinity_s, peer_s = [], []
    for i in range(repeat):  # alternate who goes first, so neither always runs on a warmer cache
        if i % 2:
            peer_s.append(_time(peer))
            trinity_s.append(_time(trinity))
        else:
            trinity_s.append(_time(trinity))
            peer_s.append(_time(peer))
    return statistics.median(trinity_s), statistics.median(peer_s)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from server.design.booleans import boolean
    from server.design.cut import plane_cut
    from server.design.params import Plane
    from server.design.simplify import decimate

    started = time.monotonic()
    big = _refined_bone(1.35, 5)
    medium = _refined_bone(1.2, 2)
    other = _moved(medium, 20.0, (4.0, 3.0, 6.0))
    built_s = time.monotonic() - started
    print(f"meshes: {len(big.faces)} faces; {len(medium.faces)} and {len(other.faces)} faces ({built_s:.0f}s to build)")
    plane = Plane((1.0, 0.5, 12.0), (0.2, 0.1, 1.0))

    def peer_cut() -> object:
        positive, negative = _solid(big).split_by_plane(plane.normal_lps, plane.offset_mm)
        return positive.to_mesh64(), negative.to_mesh64()

    def peer_difference() -> object:
        return (_solid(medium) - _solid(other)).to_mesh64()

    def peer_decimate() -> object:
        return fast_simplification.simplify(np.asarray(big.vertices), np.asarray(big.faces), target_count=100_000)

    cases: list[tuple[str, str, Callable[[], object], Callable[[], object]]] = [
        ("plane_cut_1m_s", "manifold3d", lambda: plane_cut(big, plane), peer_cut),
        ("boolean_difference_200k_s", "manifold3d", lambda: boolean("difference", medium, other), peer_difference),
        ("decimate_1m_to_100k_s", "fast_simplification", lambda: decimate(big, 100_000), peer_decimate),
    ]
    figures: dict[str, dict[str, float]] = {}
    for name, peer_name, trinity_fn, peer_fn in cases:
        trinity_s, peer_s = _compare(trinity_fn, peer_fn, args.repeat)
        figures[name] = {
            "trinity": round(trinity_s, 4),
            peer_name: round(peer_s, 4),
            "ratio": round(trinity_s / peer_s, 3),
        }
    print_table(figures, args.repeat)
    if not args.no_write:
        write_results(RESULTS, figures)
    return figures


def print_table(figures: dict[str, dict[str, float]], repeat: int) -> None:
    print(f"\n{'figure (median of ' + str(repeat) + ', s)':<32} {'trinity':>9} {'peer':>9} {'ratio':>7}  peer")
    for name, row in figures.items():
        peer_name = next(k for k in row if k not in ("trinity", "ratio"))
        verdict = "ok" if row["ratio"] <= TARGET_RATIO else f"over {TARGET_RATIO}"
        print(f"{name:<32} {row['trinity']:>9.3f} {row[peer_name]:>9.3f} {row['ratio']:>7.3f}  {peer_name} ({verdict})")
    print()


def write_results(path: Path, figures: dict[str, Any], key: str = "design") -> None:
    """Replace `key` of the results file, keeping the other keys."""
    data: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                data = loaded
    data[key] = figures
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
