/**
 * The maker room's printer dashboard: every printer of the site with its state, job, progress, layer
 * n/N, ETA, temperatures and camera; live from the room's `printer` frames, and from
 * GET /api/sites/{site}/fleet when the room is opened. Technicians confirm a cleared bed here.
 */
import { accessToken, request } from "../api";
import { clear, h, toast } from "../dom";

type Printer = Record<string, unknown> & { id: string; name: string; state: string };
const CAMERA_EVERY_MS = 5_000;

function text(value: unknown): string {
  return value === null || value === undefined ? "" : String(value);
}

export class FleetPanel {
  readonly el = h("div", { class: "panel fleet-panel", testid: "fleet-panel" });
  private printers = new Map<string, Printer>();
  private cards = new Map<string, HTMLElement>();
  private cameraUrls = new Map<string, string>();
  private timer = 0;

  constructor(private readonly siteId: string) {}

  async load(): Promise<void> {
    const fleet = await request<{ printers: Printer[] }>("GET", `/api/sites/${encodeURIComponent(this.siteId)}/fleet`);
    for (const p of fleet.printers) this.printers.set(p.id, p);
    this.render();
    if (!this.timer) this.timer = window.setInterval(() => void this.refreshCameras(), CAMERA_EVERY_MS);
    void this.refreshCameras();
  }

  onPrinterFrame(frame: Record<string, unknown>): void {
    const id = text(frame.id);
    const known = this.printers.get(id);
    this.printers.set(id, { ...(known ?? {}), ...frame, id, name: text(frame.name ?? known?.name), state: text(frame.state) });
    this.renderCard(id);
  }

  dispose(): void {
    window.clearInterval(this.timer);
    for (const url of this.cameraUrls.values()) URL.revokeObjectURL(url);
  }

  private render(): void {
    clear(this.el);
    this.cards.clear();
    if (!this.printers.size) this.el.append(h("p", { class: "muted" }, "No printers at this site."));
    for (const id of [...this.printers.keys()].sort()) this.renderCard(id);
  }

  private renderCard(id: string): void {
    const p = this.printers.get(id);
    if (!p) return;
    const progress = typeof p.progress === "number" ? Math.round(p.progress * 100) : null;
    const layer = p.layer != null && p.layers != null ? `layer ${text(p.layer)}/${text(p.layers)}` : "";
    const eta = typeof p.eta_s === "number" ? `ETA ${Math.round(p.eta_s / 60)} min` : "";
    const temps = Array.isArray(p.temperatures)
      ? (p.temperatures as Array<Record<string, unknown>>).map((t) => `${text(t.name)} ${Math.round(Number(t.actual_c))}°C`).join(" · ")
      : "";
    const card = h(
      "div",
      { class: `printer-card state-${p.state}`, testid: "printer-card", "data-printer": id, "data-state": p.state },
      h("strong", {}, p.name || id),
      h("span", { class: "muted" }, ` ${text(p.technology)} · ${p.state}`),
      progress !== null ? h("progress", { max: 100, value: progress }) : null,
      h("div", { class: "printer-line", testid: "printer-progress" }, [progress !== null ? `${progress}%` : "", layer, eta].filter(Boolean).join(" · ")),
      temps ? h("div", { class: "muted" }, temps) : null,
      p.message ? h("div", { class: "printer-message" }, text(p.message)) : null,
      p.state === "bed-not-cleared"
        ? h("button", { type: "button", testid: "bed-cleared", onclick: () => void this.bedCleared(id) }, "Bed cleared")
        : null,
      this.cameraUrls.has(id) ? h("img", { class: "printer-camera", src: this.cameraUrls.get(id)!, alt: `camera of ${p.name}` }) : null,
    );
    const old = this.cards.get(id);
    if (old) old.replaceWith(card);
    else this.el.append(card);
    this.cards.set(id, card);
  }

  private async bedCleared(id: string): Promise<void> {
    try {
      await request("POST", `/api/printers/${encodeURIComponent(id)}/bed-cleared`);
    } catch (err) {
      toast((err as Error).message, "error");
    }
  }

  /** Simulated printers' synthetic camera images (real cameras come through the video dock). */
  private async refreshCameras(): Promise<void> {
    for (const [id, p] of this.printers) {
      if (p.driver !== "simulator" || p.state === "offline") continue;
      const response = await fetch(`/api/printers/${encodeURIComponent(id)}/camera.jpg`, {
        headers: { authorization: `Bearer ${await accessToken()}` },
      }).catch(() => null);
      if (!response?.ok) continue;
      const old = this.cameraUrls.get(id);
      this.cameraUrls.set(id, URL.createObjectURL(await response.blob()));
      if (old) URL.revokeObjectURL(old);
      this.renderCard(id);
    }
  }
}
