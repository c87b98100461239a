/**
 * Fields of the design operation forms. Each field writes its part of the request (an input artifact,
 * an annotation reference, a parameter) and says what is missing instead. Model and annotation choices
 * are refreshed in place when the room changes, keeping what the user picked if it still exists.
 */
import { h } from "../../dom";
import type { DesignRequest } from "../../designApi";
import { titleOf } from "../../format";
import type { Annotation, AnnotationKind, SceneModel } from "../../protocol";

export interface FormSources {
  models: () => SceneModel[];
  /** Live annotations of a kind, newest first. */
  annotations: (kind: AnnotationKind) => Annotation[];
}

export interface Field {
  el: HTMLElement;
  refresh?: () => void;
  /** Writes the field's value into the request, or returns what is missing. */
  apply: (request: DesignRequest) => string | null;
}

type Option = [value: string, label: string];

/** Replace a select's options, keeping its value when still offered (else the first, or none). */
function syncOptions(select: HTMLSelectElement, options: Option[], emptyLabel: string | null): void {
  const previous = select.value;
  const all: Option[] = emptyLabel === null ? options : [["", emptyLabel], ...options];
  select.replaceChildren(...all.map(([value, label]) => h("option", { value }, label)));
  if (all.some(([value]) => value === previous)) select.value = previous;
  select.disabled = all.length === 0;
}

function field(label: string, control: HTMLElement, testid: string): HTMLElement {
  return h("label", { class: "form-field", testid }, label, control);
}

export function modelField(sources: FormSources, role: string, label: string, optional = false): Field {
  const select = h("select", { testid: `design-input-${role}`, "data-role": role });
  const refresh = () => {
    const options: Option[] = sources.models().filter((m) => m.artifact_id).map((m) => [m.id, `${m.name} (v${m.version ?? 1})`]);
    syncOptions(select, options, optional ? "(none)" : options.length ? null : "no model with geometry yet");
  };
  refresh();
  return {
    el: field(label, select, `design-field-${role}`),
    refresh,
    apply: (request) => {
      const model = sources.models().find((m) => m.id === select.value);
      if (model?.artifact_id) request.inputs[role] = model.artifact_id;
      else if (!optional) return `Pick a model for “${label}”.`;
      return null;
    },
  };
}

export function annotationField(
  sources: FormSources,
  kind: AnnotationKind,
  label: string,
  testid: string,
  put: (request: DesignRequest, id: string) => void,
  /** Which one to offer first, newest = 0 (a wedge's first plane defaults to the one before the newest). */
  preferred = 0,
): Field {
  const select = h("select", { testid });
  let chosen = false; // until the user picks one, the newest annotation is offered
  select.addEventListener("change", () => (chosen = true));
  const refresh = () => {
    const options = sources.annotations(kind).map((a, i, all): Option => [a.id, `${all.length - i}. ${titleOf(a)}`]);
    const kept = chosen && options.some(([id]) => id === select.value);
    syncOptions(select, options, options.length ? null : `no ${kindName(kind)} yet`);
    if (!kept && options.length) select.value = options[Math.min(preferred, options.length - 1)][0];
  };
  refresh();
  return {
    el: field(label, select, `${testid}-field`),
    refresh,
    apply: (request) => {
      if (!select.value) return `Place a ${kindName(kind)} first (tool ${KIND_KEY[kind]}), then pick it as “${label}”.`;
      put(request, select.value);
      return null;
    },
  };
}

export function trajectoriesField(sources: FormSources): Field {
  const box = h("div", { class: "checklist", testid: "design-trajectories" });
  const checked = new Set<string>();
  const refresh = () => {
    const all = sources.annotations("trajectory");
    for (const id of [...checked]) if (!all.some((a) => a.id === id)) checked.delete(id);
    if (all.length === 0) return box.replaceChildren(h("span", { class: "muted" }, "No drill trajectories yet (tool T)."));
    box.replaceChildren(
      ...all.map((a, i) => {
        const input = h("input", { type: "checkbox", value: a.id, checked: checked.has(a.id) });
        input.addEventListener("change", () => (input.checked ? checked.add(a.id) : checked.delete(a.id)));
        return h("label", { class: "check" }, input, ` ${all.length - i}. ${titleOf(a)}`);
      }),
    );
  };
  refresh();
  return {
    el: h("div", { class: "form-field" }, "Drill trajectories", box),
    refresh,
    apply: (request) => {
      if (checked.size === 0) return "Tick at least one drill trajectory.";
      request.annotations.trajectories = [...checked];
      return null;
    },
  };
}

export interface NumberOptions {
  min?: number;
  step?: number;
  integer?: boolean;
  unit?: string;
}

export function numberField(key: string, label: string, initial: number, put: (request: DesignRequest, value: number) => void, options: NumberOptions = {}): Field {
  const input = h("input", { type: "number", class: "medium", testid: `design-param-${key}`, value: String(initial), min: options.min, step: options.step ?? "any" });
  return {
    el: field(options.unit ? `${label} (${options.unit})` : label, input, `design-param-field-${key}`),
    apply: (request) => {
      const value = Number(input.value);
      if (input.value.trim() === "" || !Number.isFinite(value)) return `“${label}” needs a number.`;
      if (options.integer && !Number.isInteger(value)) return `“${label}” needs a whole number.`;
      if (options.min !== undefined && value < options.min) return `“${label}” must be at least ${options.min}.`;
      put(request, value);
      return null;
    },
  };
}

export function choiceField(key: string, label: string, choices: Option[], put: (request: DesignRequest, value: string) => void): Field {
  const select = h("select", { testid: `design-param-${key}` }, ...choices.map(([value, text]) => h("option", { value }, text)));
  return {
    el: field(label, select, `design-param-field-${key}`),
    apply: (request) => {
      put(request, select.value);
      return null;
    },
  };
}

export function note(text: string): Field {
  return { el: h("p", { class: "form-note" }, text), apply: () => null };
}

const KIND_KEY: Record<AnnotationKind, string> = { marker: "M", distance: "D", angle: "A", plane: "P", trajectory: "T", note: "N" };

function kindName(kind: AnnotationKind): string {
  return kind === "plane" ? "cutting plane" : kind;
}
