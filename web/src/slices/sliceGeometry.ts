/**
 * Slice image pixels ↔ voxel indices ↔ patient LPS millimetres, for the slice viewer's linked cursor.
 * The same mapping as server/imaging/slices.py (pixel_to_lps / lps_to_slice):
 *  - image pixel coordinates have whole numbers at pixel centres; a plane's images may be resampled to
 *    square pixels, so pixel c along an image axis shows voxel (c + 0.5) · voxels / pixels − 0.5,
 *    counted from the other end when the axis is flipped (radiological orientation);
 *  - voxel index ijk → LPS = origin + direction · (spacing ⊙ ijk), direction row-major with the voxel
 *    axes as its columns.
 * Pure functions, no DOM.
 */
import type { PlaneLayout, VolumeLayout } from "../imagingApi";
import type { Vec3 } from "../protocol";

export function pixelToVoxel(px: number, voxels: number, pixels: number, flip: boolean): number {
  const shown = ((px + 0.5) * voxels) / pixels - 0.5;
  return flip ? voxels - 1 - shown : shown;
}

export function voxelToPixel(voxel: number, voxels: number, pixels: number, flip: boolean): number {
  const shown = flip ? voxels - 1 - voxel : voxel;
  return ((shown + 0.5) * pixels) / voxels - 0.5;
}

export function voxelToLps(volume: VolumeLayout, ijk: Vec3): Vec3 {
  const d = volume.direction;
  const mm = ijk.map((v, axis) => v * volume.spacing_mm[axis]);
  const row = (r: number) => volume.origin_lps[r] + d[3 * r] * mm[0] + d[3 * r + 1] * mm[1] + d[3 * r + 2] * mm[2];
  return [row(0), row(1), row(2)];
}

export function lpsToVoxel(volume: VolumeLayout, point: Vec3): Vec3 {
  const d = volume.direction;
  const s = volume.spacing_mm;
  // M = direction · diag(spacing); solve M · ijk = point − origin by the adjugate (M is 3x3 and invertible).
  const m = [0, 1, 2].map((r) => [0, 1, 2].map((c) => d[3 * r + c] * s[c]));
  const b = point.map((v, i) => v - volume.origin_lps[i]);
  const det =
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  const solve = (col: number): number => {
    const r = m.map((row, i) => row.map((v, j) => (j === col ? b[i] : v)));
    return (
      (r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0]) + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0])) /
      det
    );
  };
  return [solve(0), solve(1), solve(2)];
}

/** The continuous voxel position shown at pixel (col, row) of slice `index` of a plane. */
export function voxelAtPixel(volume: VolumeLayout, layout: PlaneLayout, index: number, col: number, row: number): Vec3 {
  const ijk: Vec3 = [0, 0, 0];
  ijk[layout.axis] = index;
  ijk[layout.col_axis] = pixelToVoxel(col, volume.size[layout.col_axis], layout.width_px, layout.col_flip);
  ijk[layout.row_axis] = pixelToVoxel(row, volume.size[layout.row_axis], layout.height_px, layout.row_flip);
  return ijk;
}

/** Where a voxel position appears in a plane's image. */
export function pixelOfVoxel(volume: VolumeLayout, layout: PlaneLayout, ijk: Vec3): { col: number; row: number } {
  return {
    col: voxelToPixel(ijk[layout.col_axis], volume.size[layout.col_axis], layout.width_px, layout.col_flip),
    row: voxelToPixel(ijk[layout.row_axis], volume.size[layout.row_axis], layout.height_px, layout.row_flip),
  };
}

/** The plane's slice nearest to a voxel position. */
export function sliceOfVoxel(layout: PlaneLayout, ijk: Vec3): number {
  return Math.min(layout.count - 1, Math.max(0, Math.round(ijk[layout.axis])));
}

/** The voxel in the middle of the volume, where the cursor starts. */
export function volumeCentre(volume: VolumeLayout): Vec3 {
  return [0, 1, 2].map((a) => Math.floor(volume.size[a] / 2)) as Vec3;
}
