"""Where each layer starts in a G-code file, so a host that reports only a byte position (OctoPrint's
`filepos`) still yields "layer n of N".

Slicers mark layer changes with comments: Cura and many others write `;LAYER:n`, PrusaSlicer writes
`;LAYER_CHANGE`. Pure: no I/O beyond reading the file it is given.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_LAYER_MARK = re.compile(rb"^\s*;\s*(LAYER:\s*-?\d+|LAYER_CHANGE)\b")


@dataclass(frozen=True)
class LayerIndex:
    starts: tuple[int, ...]  # byte offset of each layer's marker line, ascending

    @property
    def layers(self) -> int:
        return len(self.starts)

    def layer_at(self, filepos: int) -> int:
        """The 1-based layer being printed once the host has read up to byte `filepos` (0 before the first)."""
        return bisect_right(self.starts, filepos)

    @classmethod
    def from_lines(cls, lines: Iterable[bytes]) -> LayerIndex:
        starts: list[int] = []
        offset = 0
        for line in lines:
            if line.lstrip()[:1] == b";" and _LAYER_MARK.match(line):
                starts.append(offset)
            offset += len(line)
        return cls(tuple(starts))

    @classmethod
    def from_file(cls, path: Path) -> LayerIndex:
        with path.open("rb") as handle:
            return cls.from_lines(handle)
