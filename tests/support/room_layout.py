"""Checks of the room page that work the same in every browser: whether the room fits the screen (the
script runs in the page, through Playwright in Chromium or WebDriver BiDi in Firefox), and whether the 3D
view has drawn something (from a screenshot of its canvas, as the user sees it: a WebGL canvas cannot be
read back after it is composited)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Everything a user needs in the room without scrolling the page: laid out, inside the window.
ROOM_CONTROLS = (
    "[data-testid=room-title]",
    "[data-testid=connection-status]",
    "[data-testid=presenter-button]",
    "[data-testid=viewport-canvas]",
    "[data-testid=toolbar]",
    "[data-testid=tool-marker]",
    "[data-testid=toolbar-redo]",
    "[data-testid=side-panel]",
    "[data-testid=tab-annotations]",
    "[data-testid=tab-chat]",
    "[data-testid=tab-imaging]",
    "[data-testid=tab-design]",
    "[data-testid=tab-jobs]",
    "[data-testid=tab-plan]",
)
# What floats over the 3D view must not cover each other.
OVERLAYS = (
    "[data-testid=toolbar]",
    "[data-testid=placeholder-label]",
    "[data-testid=video-dock]",
    "[data-testid=tool-hint]",
)

# Run in the page: a list of sentences, empty when the room fits.
LAYOUT_PROBLEMS_JS = """([controls, overlays]) => {
  const problems = [];
  const W = window.innerWidth, H = window.innerHeight;
  const doc = document.documentElement;
  if (doc.scrollWidth > W + 1) problems.push(`the page scrolls sideways: ${doc.scrollWidth} px wide in ${W}`);
  if (doc.scrollHeight > H + 1) problems.push(`the page scrolls down: ${doc.scrollHeight} px high in ${H}`);
  const rect = (sel) => {
    const el = document.querySelector(sel);
    return el && el.getClientRects().length ? el.getBoundingClientRect() : null;
  };
  const corners = (r) => [r.left, r.top, r.right, r.bottom].map(Math.round).join(", ");
  for (const sel of controls) {
    const r = rect(sel);
    if (!r || r.width < 1 || r.height < 1) problems.push(`${sel} is not shown`);
    else if (r.left < -1 || r.top < -1 || r.right > W + 1 || r.bottom > H + 1)
      problems.push(`${sel} is outside the window: left, top, right, bottom ${corners(r)}`);
  }
  const canvas = rect("[data-testid=viewport-canvas]");
  if (canvas && (canvas.width < 0.5 * Math.min(W, 800) || canvas.height < 300))
    problems.push(`the 3D view is only ${Math.round(canvas.width)} by ${Math.round(canvas.height)} px`);
  const shown = overlays.map((sel) => [sel, rect(sel)]).filter(([, r]) => r && r.width > 0);
  for (let i = 0; i < shown.length; i++)
    for (let j = i + 1; j < shown.length; j++) {
      const [a, p] = shown[i], [b, q] = shown[j];
      const apart = p.right <= q.left + 1 || q.right <= p.left + 1 || p.bottom <= q.top + 1 || q.bottom <= p.top + 1;
      if (!apart) problems.push(`${a} (${corners(p)}) and ${b} (${corners(q)}) overlap`);
    }
  return problems;
}"""


def drawn_fraction(png: bytes) -> float:
    """Share of the image's pixels that differ clearly from its most common colour (the background)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float((np.abs(pixels - background).sum(axis=1) > 48).mean())
