/**
 * The client's replica of a room, fed by the snapshot and then by sequenced events, exactly as the
 * server's `evolve` does (server/rooms/state.py), minus the undo stacks which only the server needs.
 */
import type {
  Annotation,
  CameraPose,
  ChatMessage,
  EventFrame,
  MemberInfo,
  PresenceInfo,
  RoomInfo,
  SceneModel,
  Snapshot,
  You,
} from "./protocol";

const CHAT_KEEP = 500;

export class RoomState {
  seq = 0;
  archived = false;
  annotations = new Map<string, Annotation>(); // live ones only; tombstones are dropped
  models = new Map<string, SceneModel>();
  presenter: string | null = null;
  chat: ChatMessage[] = [];
  members = new Map<string, MemberInfo>();
  presence = new Map<string, PresenceInfo>();
  camera: CameraPose | null = null;
  room: RoomInfo | null = null;
  you: You | null = null;

  resetFromSnapshot(snapshot: Snapshot): void {
    this.seq = snapshot.seq;
    this.archived = snapshot.archived;
    this.annotations = new Map(snapshot.annotations.filter((a) => !a.deleted).map((a) => [a.id, a]));
    this.models = new Map(snapshot.models.map((m) => [m.id, m]));
    this.presenter = snapshot.presenter;
    this.chat = [...snapshot.chat];
    this.setMembers(snapshot.members);
    this.setPresence(snapshot.presence);
    this.camera = snapshot.camera;
  }

  setMembers(members: MemberInfo[]): void {
    this.members = new Map(members.map((m) => [m.user, m]));
  }

  setPresence(presence: PresenceInfo[]): void {
    this.presence = new Map(presence.map((p) => [p.user, p]));
  }

  /** Apply one sequenced event; returns false when it was already applied (possible across a resume). */
  apply(event: EventFrame): boolean {
    if (event.seq <= this.seq) return false;
    const data = event.data;
    switch (event.kind) {
      case "annotation.created":
      case "annotation.updated":
      case "annotation.restored":
      case "annotation.deleted": {
        const record = data.annotation as Annotation;
        if (record.deleted) this.annotations.delete(record.id);
        else this.annotations.set(record.id, record);
        break;
      }
      case "chat.message":
        this.chat.push({ seq: event.seq, user: event.user, text: String(data.text), ts: event.ts });
        if (this.chat.length > CHAT_KEEP) this.chat.splice(0, this.chat.length - CHAT_KEEP);
        break;
      case "presenter.changed":
        this.presenter = (data.presenter as string | null) ?? null;
        if (this.presenter === null) this.camera = null;
        break;
      case "scene.model.added":
        this.models.set(String(data.id), data as unknown as SceneModel);
        break;
      case "scene.model.changed": {
        const model = this.models.get(String(data.id));
        if (model) Object.assign(model, data);
        break;
      }
      case "room.archived":
        this.archived = true;
        break;
      default:
        break; // unknown kinds are ignored: additive protocol changes keep the version
    }
    this.seq = event.seq;
    return true;
  }

  nameOf(user: string): string {
    if (user === "system") return "System";
    return this.members.get(user)?.name ?? this.presence.get(user)?.name ?? user;
  }

  colorOf(user: string | undefined): string {
    if (!user) return "#888888";
    return this.members.get(user)?.color ?? this.presence.get(user)?.color ?? "#888888";
  }

  get canEdit(): boolean {
    return !this.archived && !!this.you && this.you.role !== "observer";
  }

  get amPresenter(): boolean {
    return !!this.you && this.presenter === this.you.user;
  }
}
