/** How annotations and their server-computed measurements are written in the UI. */
import type { Annotation, AnnotationKind, Vec3 } from "./protocol";

export const KIND_LABEL: Record<AnnotationKind, string> = {
  marker: "Marker",
  distance: "Distance",
  angle: "Angle",
  plane: "Cutting plane",
  trajectory: "Drill trajectory",
  note: "Note",
};

/** The measured value as the server computed it (never recomputed here), or a short description. */
export function valueText(a: Annotation): string {
  const d = a.data;
  switch (a.kind) {
    case "distance":
      return d.value_mm === undefined ? "" : `${d.value_mm.toFixed(1)} mm`;
    case "angle":
      return d.value_deg === undefined ? "" : `${d.value_deg.toFixed(1)}°`;
    case "trajectory":
      return `${(d.length_mm ?? 0).toFixed(1)} mm, ⌀ ${(d.diameter_mm ?? 0).toFixed(1)} mm`;
    case "plane":
      return d.normal ? `n ${vec(d.normal, 2)}` : "";
    case "marker":
      return d.point ? vec(d.point, 1) : "";
    case "note":
      return d.text ?? "";
  }
}

/** The raw number behind valueText, for tests and tooltips. */
export function rawValue(a: Annotation): number | undefined {
  return a.data.value_mm ?? a.data.value_deg ?? a.data.length_mm;
}

export function vec(v: Vec3, digits: number): string {
  return `(${v.map((c) => c.toFixed(digits)).join(", ")})`;
}

export function titleOf(a: Annotation): string {
  return a.label?.trim() || KIND_LABEL[a.kind];
}
