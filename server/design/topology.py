"""Edges, fans and components of a triangle mesh, vectorized (no per-face Python loops).

Definitions: an edge is *manifold* when exactly two faces share it (one when it is a boundary edge of
an open mesh), and *consistently wound* when those two faces use it in opposite directions. A vertex
is *manifold* when its faces form one fan (two cones touching at a vertex make it non-manifold). A
mesh is *watertight* when every edge is shared by exactly two faces, in opposite directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class EdgeTopology:
    edges: np.ndarray  # (E, 2) unique undirected edges, sorted vertex ids
    edge_faces: np.ndarray  # (E,) faces per edge
    face_edges: np.ndarray  # (F, 3) edge id of each face's sides (v0v1, v1v2, v2v0)
    same_direction: np.ndarray  # (F, 3) True where the side runs from the lower vertex id to the higher

    @property
    def boundary_edges(self) -> int:
        return int((self.edge_faces == 1).sum())

    @property
    def nonmanifold_edges(self) -> int:
        return int((self.edge_faces > 2).sum())


def edge_topology(faces: np.ndarray) -> EdgeTopology:
    sides = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    low, high = sides.min(axis=1), sides.max(axis=1)
    keys = low.astype(np.int64) * (int(faces.max(initial=0)) + 1) + high
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    n = int(faces.max(initial=0)) + 1
    edges = np.stack([unique // n, unique % n], axis=1)
    return EdgeTopology(edges, counts, inverse.reshape(-1, 3), (sides[:, 0] < sides[:, 1]).reshape(-1, 3))


def winding_conflicts(topology: EdgeTopology) -> int:
    """Two-face edges whose faces run along them in the same direction (one of the faces is flipped)."""
    forward = np.bincount(
        topology.face_edges.ravel(), weights=topology.same_direction.ravel(), minlength=len(topology.edges)
    )
    two = topology.edge_faces == 2
    return int((two & (forward != 1)).sum())


def is_watertight(faces: np.ndarray) -> bool:
    """Every edge shared by exactly two faces, used once in each direction."""
    if len(faces) == 0:
        return False
    sides = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64)
    n = int(faces.max()) + 1
    directed = np.sort(sides[:, 0] * n + sides[:, 1])
    if np.any(directed[1:] == directed[:-1]):
        return False  # a directed edge used twice: flipped faces or more than two faces on an edge
    reverse = sides[:, 1] * n + sides[:, 0]
    found = np.searchsorted(directed, reverse)
    found[found == len(directed)] = 0
    return bool(np.all(directed[found] == reverse))


def face_adjacency(topology: EdgeTopology) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) pairs of faces sharing a two-face edge, and (P,) that edge's id."""
    n_faces = len(topology.face_edges)
    face_of_side = np.repeat(np.arange(n_faces), 3)
    order = np.argsort(topology.face_edges.ravel(), kind="stable")
    sorted_edges = topology.face_edges.ravel()[order]
    shared = np.flatnonzero(topology.edge_faces == 2)
    starts = np.searchsorted(sorted_edges, shared)
    return np.stack([face_of_side[order[starts]], face_of_side[order[starts + 1]]], axis=1), shared


def face_components(n_faces: int, adjacency: np.ndarray) -> tuple[int, np.ndarray]:
    graph = sparse.coo_matrix((np.ones(len(adjacency)), (adjacency[:, 0], adjacency[:, 1])), shape=(n_faces, n_faces))
    count, labels = connected_components(graph, directed=False)
    return int(count), labels


def nonmanifold_vertices(faces: np.ndarray, topology: EdgeTopology | None = None) -> int:
    """Vertices whose corners fall into more than one fan.

    Corners (face, slot) at one vertex are joined when their faces share a two-face edge through that
    vertex; a manifold vertex ends up with all its corners in one group.
    """
    topology = topology or edge_topology(faces)
    n_faces = len(faces)
    pairs, shared_edges = face_adjacency(topology)
    if len(pairs) == 0:
        return 0
    corner = np.arange(3 * n_faces).reshape(-1, 3)
    links = []
    for end in (0, 1):
        # the shared edge of each adjacent pair, and the slot of each end vertex in both faces
        shared = topology.edges[shared_edges, end]
        slot_a = np.argmax(faces[pairs[:, 0]] == shared[:, None], axis=1)
        slot_b = np.argmax(faces[pairs[:, 1]] == shared[:, None], axis=1)
        links.append(np.stack([corner[pairs[:, 0], slot_a], corner[pairs[:, 1], slot_b]], axis=1))
    link = np.concatenate(links)
    graph = sparse.coo_matrix((np.ones(len(link)), (link[:, 0], link[:, 1])), shape=(3 * n_faces, 3 * n_faces))
    _count, fan = connected_components(graph, directed=False)
    fans = np.unique(faces.ravel().astype(np.int64) * (3 * n_faces) + fan)
    per_vertex = np.bincount(fans // (3 * n_faces))
    return int((per_vertex > 1).sum())


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary edges, each as vertex ids in the order the faces run along them.

    Walks a loop by following each boundary half-edge to the one leaving its end vertex; a vertex with
    several outgoing boundary edges (a pinched hole) is walked in the order the edges appear.
    """
    sides = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    n = int(faces.max(initial=0)) + 1
    keys = sides[:, 0].astype(np.int64) * n + sides[:, 1]
    reverse = sides[:, 1].astype(np.int64) * n + sides[:, 0]
    open_sides = sides[~np.isin(reverse, keys)]
    if len(open_sides) == 0:
        return []
    # a hole's edges run the other way round from its faces': walk them reversed
    half = open_sides[:, ::-1]
    outgoing: dict[int, list[int]] = {}
    for i, start in enumerate(half[:, 0].tolist()):
        outgoing.setdefault(start, []).append(i)
    used = np.zeros(len(half), dtype=bool)
    loops = []
    for first in range(len(half)):
        if used[first]:
            continue
        loop, edge, closed = [], first, False
        while True:
            used[edge] = True
            loop.append(int(half[edge, 0]))
            end = int(half[edge, 1])
            if end == loop[0]:
                closed = True
                break
            candidates = [e for e in outgoing.get(end, []) if not used[e]]
            if not candidates:
                break
            edge = candidates[0]
        if closed and len(loop) >= 3:
            loops.append(np.asarray(loop, dtype=np.int64))
    return loops
