"""Embossed labels for guides: raised block letters (a built-in 5x7 font) that follow the plate's curved
top surface, so a patient code or side marker prints legibly without a flat pad.

The letters are a level set like the plate: inside the text's outline (rectangles in the label's
tangent plane) and between `c + t - sink` and `c + t + raised` from the bone, so they sit in the
plate's top and stand `raised_mm` above it wherever the plate curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.design.errors import InvalidDesignParameters
from server.design.params import Vec3, positive, unit, vec3

MAX_CHARACTERS = 24
SINK_MM = 0.8  # how far the letters reach down into the plate, so curvature never lifts them off
OVERLAP = 0.05  # of a pixel: pixels meeting only at a corner overlap, rather than touch at a point

# rows top to bottom, "#" is ink
_FONT_ROWS = {
    "A": ".###.|#...#|#...#|#####|#...#|#...#|#...#",
    "B": "####.|#...#|#...#|####.|#...#|#...#|####.",
    "C": ".###.|#...#|#....|#....|#....|#...#|.###.",
    "D": "####.|#...#|#...#|#...#|#...#|#...#|####.",
    "E": "#####|#....|#....|####.|#....|#....|#####",
    "F": "#####|#....|#....|####.|#....|#....|#....",
    "G": ".###.|#...#|#....|#.###|#...#|#...#|.####",
    "H": "#...#|#...#|#...#|#####|#...#|#...#|#...#",
    "I": ".###.|..#..|..#..|..#..|..#..|..#..|.###.",
    "J": "..###|...#.|...#.|...#.|...#.|#..#.|.##..",
    "K": "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#",
    "L": "#....|#....|#....|#....|#....|#....|#####",
    "M": "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#",
    "N": "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#",
    "O": ".###.|#...#|#...#|#...#|#...#|#...#|.###.",
    "P": "####.|#...#|#...#|####.|#....|#....|#....",
    "Q": ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#",
    "R": "####.|#...#|#...#|####.|#.#..|#..#.|#...#",
    "S": ".####|#....|#....|.###.|....#|....#|####.",
    "T": "#####|..#..|..#..|..#..|..#..|..#..|..#..",
    "U": "#...#|#...#|#...#|#...#|#...#|#...#|.###.",
    "V": "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
    "W": "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#.",
    "X": "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",
    "Y": "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..",
    "Z": "#####|....#|...#.|..#..|.#...|#....|#####",
    "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.",
    "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",
    "2": ".###.|#...#|....#|...#.|..#..|.#...|#####",
    "3": "#####|...#.|..#..|...#.|....#|#...#|.###.",
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.",
    "5": "#####|#....|####.|....#|....#|#...#|.###.",
    "6": "..##.|.#...|#....|####.|#...#|#...#|.###.",
    "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",
    "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.",
    "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",
    "-": ".....|.....|.....|#####|.....|.....|.....",
    ".": ".....|.....|.....|.....|.....|.##..|.##..",
    "/": "....#|....#|...#.|..#..|.#...|#....|#....",
    " ": ".....|.....|.....|.....|.....|.....|.....",
}


@dataclass(frozen=True)
class GuideLabel:
    text: str
    anchor_lps: Vec3  # a point on or near the bone where the label is centred
    height_mm: float = 4.0  # letter height; strokes are height/7 wide
    raised_mm: float = 0.6
    up_lps: Vec3 = (0.0, 0.0, 1.0)  # letters stand towards this direction (default superior)

    @classmethod
    def from_json(cls, value: Any, field: str = "label") -> GuideLabel:
        if not isinstance(value, dict):
            raise InvalidDesignParameters(f"{field}: expected an object", field=field)
        text = str(value.get("text", "")).upper()
        unknown = sorted(set(text) - set(_FONT_ROWS))
        if not text.strip() or len(text) > MAX_CHARACTERS or unknown:
            raise InvalidDesignParameters(
                f"{field}.text: 1 to {MAX_CHARACTERS} of A-Z 0-9 - . / and space (not {''.join(unknown)!r})",
                field=field,
            )
        return cls(
            text=text,
            anchor_lps=vec3(value.get("anchor_lps"), f"{field}.anchor_lps"),
            height_mm=positive(value.get("height_mm", 4.0), f"{field}.height_mm"),
            raised_mm=positive(value.get("raised_mm", 0.6), f"{field}.raised_mm"),
            up_lps=unit(value.get("up_lps", (0.0, 0.0, 1.0)), f"{field}.up_lps"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "anchor_lps": list(self.anchor_lps),
            "height_mm": self.height_mm,
            "raised_mm": self.raised_mm,
            "up_lps": list(self.up_lps),
        }


def glyph_rectangles(text: str, height_mm: float) -> np.ndarray:
    """(R, 4) rectangles [u0, v0, u1, v1] of ink, centred on (0, 0), u along the line, v up; runs of
    ink in a row are merged (fewer rectangles to evaluate)."""
    pixel = height_mm / 7
    rectangles = []
    for index, char in enumerate(text):
        for row, bits in enumerate(_FONT_ROWS[char].split("|")):
            column = 0
            while column < 5:
                if bits[column] != "#":
                    column += 1
                    continue
                end = column
                while end < 5 and bits[end] == "#":
                    end += 1
                u0 = (index * 6 + column) * pixel
                v1 = (7 - row) * pixel
                rectangles.append([u0, v1 - pixel, u0 + (end - column) * pixel, v1])
                column = end
    boxes = np.asarray(rectangles, dtype=np.float64).reshape(-1, 4)
    width = (len(text) * 6 - 1) * pixel
    grow = OVERLAP * pixel
    return boxes - np.array([width / 2 + grow, height_mm / 2 + grow, width / 2 - grow, height_mm / 2 - grow])


def text_field(uv: np.ndarray, rectangles: np.ndarray) -> np.ndarray:
    """Positive inside the ink: the largest of the rectangles' inside-positive box distances."""
    best = np.full(len(uv), -np.inf)
    for u0, v0, u1, v1 in rectangles:
        du = np.maximum(u0 - uv[:, 0], uv[:, 0] - u1)
        dv = np.maximum(v0 - uv[:, 1], uv[:, 1] - v1)
        outside = np.hypot(np.maximum(du, 0.0), np.maximum(dv, 0.0))
        best = np.maximum(best, np.where((du <= 0) & (dv <= 0), -np.maximum(du, dv), -outside))
    return best


def label_frame(label: GuideLabel, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reading direction and up direction in the plane across `normal` (the bone's, at the anchor)."""
    up = np.asarray(label.up_lps) - np.dot(label.up_lps, normal) * normal
    if np.linalg.norm(up) < 1e-3:  # the label faces along `up`: fall back to posterior
        up = np.array([0.0, 1.0, 0.0]) - normal[1] * normal
    up /= np.linalg.norm(up)
    return np.cross(up, normal), up  # seen from outside, right x up points at the viewer


def label_extent_mm(label: GuideLabel) -> tuple[float, float]:
    """Half width and half height of the text block."""
    pixel = label.height_mm / 7
    return (len(label.text) * 6 - 1) * pixel / 2, label.height_mm / 2


def stroke_mm(label: GuideLabel) -> float:
    return label.height_mm / 7


def checked_resolution(label: GuideLabel, resolution_mm: float) -> float:
    """A grid fine enough for the strokes: at most a third of a stroke, never coarser than the plate."""
    return min(resolution_mm, math.floor(stroke_mm(label) / 3 * 1000) / 1000)
