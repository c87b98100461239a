/**
 * One form per design operation: which models it takes, which annotations give its geometry and which
 * parameters it has. Operations the server lists but this table does not know get a form with just
 * their input models (the server's defaults for the rest).
 */
import { h } from "../../dom";
import type { DesignRequest, OperationInfo } from "../../designApi";
import { annotationField, choiceField, modelField, note, numberField, trajectoriesField, type Field, type FormSources } from "./formFields";

export interface OperationForm {
  el: HTMLElement;
  refresh: () => void;
  /** The request to send, or what is missing. */
  request: () => DesignRequest | string;
}

const param = (key: string) => (r: DesignRequest, v: unknown) => {
  r.parameters[key] = v;
};

type Spec = (s: FormSources) => Field[];

const SPECS: Record<string, Spec> = {
  cut: (s) => [
    modelField(s, "mesh", "Model"),
    annotationField(s, "plane", "Cutting plane", "design-plane", (r, id) => (r.annotations.plane = id)),
    note("The plane normal (the arrow) points to the part that is resected: that part becomes a new model, the rest becomes the model's next version."),
  ],
  wedge: (s) => [
    modelField(s, "mesh", "Model"),
    // Fields apply in order: the first starts the list, the second adds to it.
    annotationField(s, "plane", "First plane", "design-plane-1", (r, id) => (r.annotations.planes = [id]), 1),
    annotationField(s, "plane", "Second plane", "design-plane-2", (r, id) => r.annotations.planes?.push(id)),
    note("Both plane normals point into the wedge that is removed. The wedge becomes a new model, the rest the model's next version."),
  ],
  mirror: (s) => [
    modelField(s, "mesh", "Model"),
    annotationField(s, "plane", "Mirror plane", "design-plane", (r, id) => (r.annotations.plane = id)),
    modelField(s, "target", "Align onto (optional)", true),
    note("The mirrored copy becomes a new model; with a target it is aligned onto it (e.g. the healthy side onto the defect)."),
  ],
  guide: (s) => [
    modelField(s, "bone", "Bone"),
    annotationField(s, "marker", "Region centre (a marker)", "design-marker", (r, id) => (r.annotations.region_marker = id)),
    numberField("region_radius_mm", "Region radius", 15, (r, v) => (r.region_radius_mm = v), { min: 1, step: 1, unit: "mm" }),
    trajectoriesField(s),
    numberField("clearance_mm", "Clearance to the bone", 0.2, param("clearance_mm"), { min: 0, step: 0.05, unit: "mm" }),
    numberField("thickness_mm", "Plate thickness", 3, param("thickness_mm"), { min: 0.5, step: 0.5, unit: "mm" }),
    numberField("sleeve_length_mm", "Sleeve length", 15, param("sleeve_length_mm"), { min: 1, step: 1, unit: "mm" }),
    numberField("drill_clearance_mm", "Drill clearance", 0.2, param("drill_clearance_mm"), { min: 0, step: 0.05, unit: "mm" }),
    note("The guide plate covers the bone surface within the radius around the marker, with a drill sleeve on every ticked trajectory."),
  ],
  repair: (s) => [
    modelField(s, "mesh", "Model"),
    choiceField("keep", "Keep", [["all", "All parts"], ["largest", "Largest part only"]], param("keep")),
    note("Merges vertices, drops degenerate faces, fixes normals and fills holes: the result is the model's next version."),
  ],
  decimate: (s) => [modelField(s, "mesh", "Model"), numberField("target_faces", "Target faces", 20000, param("target_faces"), { min: 4, step: 1000, integer: true })],
  smooth: (s) => [modelField(s, "mesh", "Model"), numberField("iterations", "Iterations", 10, param("iterations"), { min: 0, step: 1, integer: true })],
  remesh: (s) => [modelField(s, "mesh", "Model"), numberField("max_edge_mm", "Longest edge", 1, param("max_edge_mm"), { min: 0.05, step: 0.1, unit: "mm" })],
  boolean: (s) => [
    modelField(s, "a", "First model (A)"),
    modelField(s, "b", "Second model (B)"),
    choiceField("op", "Operation", [["union", "Union (A + B)"], ["difference", "Difference (A − B)"], ["intersection", "Intersection (A ∩ B)"]], param("op")),
  ],
  analyze: (s) => [modelField(s, "mesh", "Model"), note("Checks watertightness, volume, components and wall thickness; the report appears below when done.")],
};

export function buildOperationForm(op: OperationInfo, sources: FormSources): OperationForm {
  const spec = SPECS[op.name];
  const fields = spec
    ? spec(sources)
    : [...op.inputs.map((role) => modelField(sources, role, role)), ...op.optional_inputs.map((role) => modelField(sources, role, `${role} (optional)`, true))];
  return {
    el: h("div", { class: "op-fields", testid: `design-form-${op.name}` }, ...fields.map((f) => f.el)),
    refresh: () => fields.forEach((f) => f.refresh?.()),
    request: () => {
      const request: DesignRequest = { inputs: {}, parameters: {}, annotations: {} };
      for (const f of fields) {
        const missing = f.apply(request);
        if (missing) return missing;
      }
      const planes = request.annotations.planes;
      if (planes && new Set(planes).size !== planes.length) return "Pick two different planes.";
      return request;
    },
  };
}

/** The operations offered, in the order a surgeon reaches for them; the server's list decides which exist. */
export const PREFERRED_ORDER = ["cut", "wedge", "mirror", "guide", "repair", "decimate", "smooth", "boolean", "remesh", "analyze"];

export const OPERATION_LABEL: Record<string, string> = {
  cut: "Cut with a plane",
  wedge: "Wedge resection",
  mirror: "Mirror",
  guide: "Drill guide",
  repair: "Repair",
  decimate: "Decimate",
  smooth: "Smooth",
  boolean: "Boolean",
  remesh: "Remesh",
  analyze: "Analyze",
};
