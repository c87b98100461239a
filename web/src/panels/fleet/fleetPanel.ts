/**
 * The maker room's "Printers" tab: the site's print quota, its print jobs and every printer of the site
 * with its state, job, progress, layer n/N, ETA, temperatures and camera; from
 * GET /api/sites/{site}/fleet when the room is joined (again), then live from the room's `printer` and
 * `print_job` frames. A `printer` frame with state `retired` is a printer's last: its card goes.
 * Technicians confirm a cleared bed here, and technicians and admins retire printers
 * (DELETE /api/printers/{id}).
 */
import { accessToken, api, ApiError, request } from "../../api";
import { clear, h, toast } from "../../dom";
import { printerCard, jobOf, type CardActions, type Printer } from "./printerCard";
import { PrintJobList, text, type PrintJob } from "./printJobs";
import { QuotaView } from "./printQuota";

const CAMERA_EVERY_MS = 5_000;
const OPERATOR_ROLES = new Set(["technician", "admin"]);

export class FleetPanel {
  readonly el = h("div", { class: "panel fleet-panel", testid: "fleet-panel" });
  private readonly cardsEl = h("div", { class: "printer-cards", testid: "printer-cards" });
  private readonly jobs = new PrintJobList((id) => this.printers.get(id)?.name || id);
  private readonly quota: QuotaView;
  private printers = new Map<string, Printer>();
  private cards = new Map<string, HTMLElement>();
  private cameraUrls = new Map<string, string>();
  private confirming = new Set<string>();
  private retiring = new Set<string>();
  private retireErrors = new Map<string, string>();
  private canOperate = false;
  private timer = 0;
  private readonly actions: CardActions = {
    bedCleared: (id) => void this.bedCleared(id),
    askRetire: (id) => this.setRetire(id, true),
    confirmRetire: (id) => void this.retire(id),
    cancelRetire: (id) => this.setRetire(id, false),
  };

  constructor(private readonly siteId: string) {
    this.quota = new QuotaView(siteId);
    this.el.append(this.quota.el, this.jobs.el, h("section", { class: "fleet-section" }, h("h3", {}, "Printers"), this.cardsEl));
  }

  /** The snapshot to start from (on opening, and after every rejoin: frames missed meanwhile are not replayed). */
  async load(): Promise<void> {
    const [fleet, me] = await Promise.all([
      request<{ printers: Printer[]; jobs: PrintJob[] }>("GET", `/api/sites/${encodeURIComponent(this.siteId)}/fleet`),
      api.me().catch(() => null),
    ]);
    if (me) {
      this.canOperate = OPERATOR_ROLES.has(me.role);
      this.quota.canEdit = me.role === "admin";
    }
    this.printers = new Map(fleet.printers.filter((p) => p.state !== "retired").map((p) => [p.id, p]));
    for (const id of [...this.cameraUrls.keys()]) if (!this.printers.has(id)) this.drop(id);
    this.jobs.setOpen(fleet.jobs ?? []);
    this.quota.refresh();
    this.render();
    if (!this.timer) this.timer = window.setInterval(() => void this.refreshCameras(), CAMERA_EVERY_MS);
    void this.refreshCameras();
  }

  onPrinterFrame(frame: Record<string, unknown>): void {
    const id = text(frame.id);
    if (frame.state === "retired") return this.drop(id);
    const known = this.printers.get(id);
    const { type: _type, ...fields } = frame;
    this.printers.set(id, { ...(known ?? {}), ...fields, id, name: text(frame.name ?? known?.name), state: text(frame.state) });
    this.renderCard(id);
  }

  onPrintJobFrame(frame: Record<string, unknown>): void {
    if (this.jobs.onFrame(frame)) this.quota.refresh();
    const printerId = text(frame.printer_id);
    if (printerId && this.printers.has(printerId)) this.renderCard(printerId); // its job line: name, purpose
  }

  dispose(): void {
    window.clearInterval(this.timer);
    for (const url of this.cameraUrls.values()) URL.revokeObjectURL(url);
  }

  private render(): void {
    clear(this.cardsEl);
    this.cards.clear();
    if (!this.printers.size) this.cardsEl.append(h("p", { class: "muted", testid: "no-printers" }, "No printers at this site."));
    for (const id of [...this.printers.keys()].sort()) this.renderCard(id);
    this.jobs.render(); // printer names
  }

  private renderCard(id: string): void {
    const printer = this.printers.get(id);
    if (!printer) return;
    const card = printerCard(
      {
        printer,
        job: this.jobs.get(jobOf(printer)),
        cameraUrl: this.cameraUrls.get(id),
        canOperate: this.canOperate,
        confirming: this.confirming.has(id),
        retiring: this.retiring.has(id),
        retireError: this.retireErrors.get(id),
      },
      this.actions,
    );
    const old = this.cards.get(id);
    if (old) old.replaceWith(card);
    else this.cardsEl.append(card);
    this.cards.set(id, card);
  }

  /** A printer left the fleet: its card, camera image and pending confirmation go. */
  private drop(id: string): void {
    this.printers.delete(id);
    this.cards.get(id)?.remove();
    this.cards.delete(id);
    const url = this.cameraUrls.get(id);
    if (url) URL.revokeObjectURL(url);
    this.cameraUrls.delete(id);
    this.confirming.delete(id);
    this.retireErrors.delete(id);
    if (!this.printers.size) this.render();
  }

  private setRetire(id: string, asking: boolean): void {
    if (asking) this.confirming.add(id);
    else this.confirming.delete(id);
    this.retireErrors.delete(id);
    this.renderCard(id);
  }

  private async retire(id: string): Promise<void> {
    this.retiring.add(id);
    this.retireErrors.delete(id);
    this.renderCard(id);
    try {
      await request("DELETE", `/api/printers/${encodeURIComponent(id)}`);
      this.retiring.delete(id);
      this.drop(id); // the `retired` frame follows; it finds nothing left to remove
      toast(`Printer ${id} retired.`);
    } catch (err) {
      this.retiring.delete(id);
      this.confirming.delete(id);
      this.retireErrors.set(id, err instanceof ApiError ? err.message : `Could not retire printer ${id}.`);
      this.renderCard(id);
    }
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
    for (const [id, p] of [...this.printers]) {
      if (p.driver !== "simulator" || p.state === "offline") continue;
      const response = await fetch(`/api/printers/${encodeURIComponent(id)}/camera.jpg`, {
        headers: { authorization: `Bearer ${await accessToken()}` },
      }).catch(() => null);
      if (!response?.ok) continue;
      const blob = await response.blob();
      if (!this.printers.has(id)) continue; // retired meanwhile
      const old = this.cameraUrls.get(id);
      this.cameraUrls.set(id, URL.createObjectURL(blob));
      if (old) URL.revokeObjectURL(old);
      this.renderCard(id);
    }
  }
}
