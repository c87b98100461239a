/** Reports the user as idle after a minute without input or while the tab is hidden. */
const IDLE_AFTER_MS = 60_000;

export interface ActivityTracker {
  status: () => "active" | "idle";
  stop: () => void;
}

export function trackActivity(report: (status: "active" | "idle") => void): ActivityTracker {
  let status: "active" | "idle" = "active";
  let timer = 0;
  const set = (next: "active" | "idle") => {
    if (next !== status) {
      status = next;
      report(next);
    }
  };
  const active = () => {
    if (document.hidden) return;
    set("active");
    window.clearTimeout(timer);
    timer = window.setTimeout(() => set("idle"), IDLE_AFTER_MS);
  };
  const visibility = () => (document.hidden ? set("idle") : active());
  const events = ["pointerdown", "pointermove", "keydown", "wheel"] as const;
  for (const e of events) window.addEventListener(e, active, { passive: true });
  document.addEventListener("visibilitychange", visibility);
  active();
  const stop = () => {
    window.clearTimeout(timer);
    for (const e of events) window.removeEventListener(e, active);
    document.removeEventListener("visibilitychange", visibility);
  };
  return { status: () => status, stop };
}
