/** Keyboard shortcuts of the room: tool keys, Esc, undo/redo, delete and rename of the selection. */
import { TOOL_KEYS, type Tool } from "./tools";

export interface ShortcutActions {
  tool: (tool: Tool) => void;
  escape: () => void;
  undo: () => void;
  redo: () => void;
  deleteSelected: () => void;
  rename: () => void;
  focusChat: () => void;
}

function typingIn(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  if (!el) return false;
  return el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName);
}

export function installShortcuts(actions: ShortcutActions): () => void {
  const onKey = (e: KeyboardEvent): void => {
    if (typingIn(e.target)) return;
    const key = e.key.toLowerCase();
    const mod = e.ctrlKey || e.metaKey;
    if (mod && key === "z") {
      e.preventDefault();
      if (e.shiftKey) actions.redo();
      else actions.undo();
      return;
    }
    if (mod && key === "y") {
      e.preventDefault();
      actions.redo();
      return;
    }
    if (mod || e.altKey) return;
    if (key === "escape") return actions.escape();
    if (key === "delete" || key === "backspace") return actions.deleteSelected();
    if (key === "f2") return actions.rename();
    if (key === "enter" && e.shiftKey) return actions.focusChat();
    const tool = TOOL_KEYS[key];
    if (tool) {
      e.preventDefault();
      actions.tool(tool);
    }
  };
  document.addEventListener("keydown", onKey);
  return () => document.removeEventListener("keydown", onKey);
}
