/**
 * The room's jobs (imaging ingest, model building, design operations): listed over REST on every join,
 * then kept current by the room's `job` frames (docs/protocol.md §6). Frames are not stored in the
 * room log, so what was missed while disconnected is caught up by the list.
 */
import { request } from "./api";
import { Emitter } from "./emitter";
import type { JobFrame, JobState } from "./protocol";

export interface JobView {
  id: string;
  kind: string;
  state: JobState;
  progress: number;
  message: string;
  room_id?: string | null;
  result: Record<string, unknown> | null;
  error: string | null;
  timings?: Record<string, number>;
}

const RANK: Record<JobState, number> = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };

export function isFinished(job: JobView | undefined): boolean {
  return !!job && RANK[job.state] === 2;
}

const KIND_LABEL: Record<string, string> = {
  "imaging.ingest": "Imaging upload",
  "imaging.build_model": "Model from CT",
  "imaging.labelmap_model": "Model from label map",
  "imaging.pacs_pull": "PACS retrieval",
  "design.run": "Design operation",
};

export class JobStore extends Emitter<{ changed: JobView }> {
  private jobs = new Map<string, JobView>();
  private order = new Map<string, number>(); // id -> creation order, for newest-first lists
  private labels = new Map<string, string>();
  private counter = 0;

  constructor(private readonly roomId: string) {
    super();
  }

  /** Catch up after a (re)join: job frames sent while we were away are not replayed. */
  async load(): Promise<void> {
    const list = await request<JobView[]>("GET", `/api/rooms/${encodeURIComponent(this.roomId)}/jobs`);
    for (const job of [...list].reverse()) this.upsert(job); // the server lists newest first
  }

  fromFrame(frame: JobFrame): void {
    const { type: _type, ...view } = frame;
    this.upsert(view);
  }

  /** Frames and REST answers can arrive in any order: a job never moves back to an earlier state. */
  upsert(view: JobView): void {
    const known = this.jobs.get(view.id);
    if (known && (RANK[view.state] < RANK[known.state] || (view.state === known.state && RANK[view.state] === 2))) return;
    if (!this.order.has(view.id)) this.order.set(view.id, ++this.counter);
    const merged = { ...known, ...view };
    this.jobs.set(view.id, merged);
    this.emit("changed", merged);
  }

  get(id: string): JobView | undefined {
    return this.jobs.get(id);
  }

  /** Newest first. */
  list(): JobView[] {
    return [...this.jobs.values()].sort((a, b) => (this.order.get(b.id) ?? 0) - (this.order.get(a.id) ?? 0));
  }

  /** A label for jobs this client started (a design job's frame does not say which operation it runs). */
  setLabel(id: string, label: string): void {
    this.labels.set(id, label);
  }

  /** Whether this page started the job (it may cancel it; owners may cancel any). */
  startedHere(id: string): boolean {
    return this.labels.has(id);
  }

  labelOf(job: JobView): string {
    const operation = typeof job.result?.operation === "string" ? `Design: ${job.result.operation}` : null;
    return this.labels.get(job.id) ?? operation ?? KIND_LABEL[job.kind] ?? job.kind;
  }
}

/** "running 40 % — segmenting", "failed: <error>", as shown under forms and in the jobs panel. */
export function jobStateText(job: JobView): string {
  switch (job.state) {
    case "queued":
      return "queued";
    case "running":
      return `running ${Math.round(job.progress * 100)} %${job.message ? ` — ${job.message}` : ""}`;
    case "succeeded":
      return "done";
    case "failed":
      return `failed: ${job.error ?? job.message ?? "unknown error"}`;
    case "cancelled":
      return "cancelled";
  }
}
