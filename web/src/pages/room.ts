/** The consultation room: viewport, tools, side panels, wired to the room socket. */
import type { Object3D } from "three";
import { accessToken, api } from "../api";
import { CameraSync } from "../cameraSync";
import { h, randomId, toast } from "../dom";
import { CLOSE_REASONS, type AnnotationData, type AnnotationKind, type EventFrame } from "../protocol";
import { RoomSocket } from "../roomSocket";
import { JobStore } from "../jobs";
import { AnnotationLayer } from "../scene/annotations3d";
import { Cursor3D } from "../scene/cursor3d";
import { ModelLayer } from "../scene/models";
import { PointerLayer } from "../scene/pointers";
import { Viewport, type SurfaceHit } from "../scene/viewport";
import { icon } from "../icons";
import { installShortcuts } from "../shortcuts";
import { ToolController } from "../tools";
import { AnnotationsPanel } from "../panels/annotations";
import { ChatPanel } from "../panels/chat";
import { makeOp, type RoomContext } from "../panels/context";
import { inviteButton } from "../panels/invite";
import { PresencePanel } from "../panels/presence";
import { PresenterControls } from "../panels/presenter";
import { DesignPanel } from "../panels/design/designPanel";
import { ImagingPanel } from "../panels/imaging/imagingPanel";
import { JobsPanel } from "../panels/jobs";
import { ScenePanel } from "../panels/scene";
import { SliceViewer } from "../slices/sliceViewer";
import { SideTabs } from "../panels/tabs";
import { Toolbar } from "../panels/toolbar";
import { trackActivity } from "../activity";
import { mountVideo } from "../video"; // video: the call dock (web/src/video/README.md)
import { mountPlanPanel } from "../record/plans";
import { mountFleet } from "../panels/fleet";
import { captureSnapshot } from "../record/snapshot";

export function mountRoom(root: HTMLElement, roomId: string): () => void {
  const socket = new RoomSocket(roomId, (force) => accessToken(force));
  const state = socket.state;
  const ctx: RoomContext = {
    socket,
    state,
    selected: null,
    select: (id) => {
      ctx.selected = id;
      annotations3d.select(id);
      annotationsPanel.render();
      viewport.requestRender();
    },
    op: makeOp(socket),
  };

  // ---- layout -------------------------------------------------------------------------------------
  const title = h("h1", { class: "room-title", testid: "room-title" }, "Joining…");
  const statusPill = h("span", { class: "status-pill connecting", testid: "connection-status" }, "connecting");
  const viewportEl = h("div", { class: "viewport", testid: "viewport" });
  const banner = h("div", { class: "reconnect-banner", testid: "reconnect-banner", role: "alert", hidden: true });
  const placeholderBadge = h("div", { class: "placeholder-badge", testid: "placeholder-label" }, "Placeholder model — no imaging yet");
  const followBadge = h("div", { class: "follow-badge", testid: "follow-badge", hidden: true });
  const fatal = h("div", { class: "fatal", testid: "room-fatal", hidden: true });
  const viewportWrap = h("div", { class: "viewport-wrap" }, viewportEl, placeholderBadge, followBadge, banner, fatal);
  const side = h("aside", { class: "side", testid: "side-panel" });
  const stage = h("div", { class: "stage" }, viewportWrap);
  const sideToggle = h("button", { class: "btn ghost side-toggle", testid: "side-toggle", title: "Show or hide the side panel", onclick: () => root.classList.toggle("side-collapsed") }, icon("menu"));
  const headerRight = h("div", { class: "header-right" });
  const header = h(
    "header",
    { class: "room-header" },
    h("a", { class: "back", href: "#/rooms", title: "My rooms" }, "‹ Rooms"),
    title,
    statusPill,
    headerRight,
    sideToggle,
  );
  root.replaceChildren(h("div", { class: "room" }, header, h("div", { class: "room-body" }, stage, side)));
  root.classList.add("room-root");

  // ---- 3D -----------------------------------------------------------------------------------------
  const viewport = new Viewport(viewportEl);
  if (!viewport.webgl) viewportWrap.append(h("div", { class: "no-webgl-msg" }, "3D view unavailable: WebGL is disabled in this browser."));
  // The first loaded model is framed, unless the view belongs to the presenter.
  const frameUnlessFollowing = (o: Object3D) => cameraSync.following || viewport.frameObject(o);
  const models = new ModelLayer(viewport.pickables, frameUnlessFollowing, async () => `Bearer ${await accessToken()}`);
  viewport.frameObject(models.placeholder);
  const annotations3d = new AnnotationLayer(viewport.overlay);
  const pointers = new PointerLayer(viewport.overlay, () => viewport.requestRender());
  const cameraSync = new CameraSync(socket, viewport);
  const cursor3d = new Cursor3D(viewport.overlay, () => viewport.requestRender());
  // The slice viewer docks under the 3D view; its linked cursor is drawn in 3D as well.
  const slices = new SliceViewer(
    (lps) => cursor3d.set(lps),
    (open) => stage.classList.toggle("with-slices", open),
  );
  stage.append(slices.el);
  const jobs = new JobStore(roomId);
  // Fetched once for the panels that need the room's case (the welcome frame has it too, but only later).
  const roomInfo = api.room(roomId);
  roomInfo.catch(() => undefined); // each panel reports its own failure when it needs the room

  const tools = new ToolController({
    viewport,
    create: createAnnotation,
    color: () => state.you?.color ?? "#ffcc00",
    canEdit: () => state.canEdit,
    onChange: () => toolbar.render(),
    onHover: sendPointer,
    needNoteText: () => {
      toast("Type the note text first.", "error");
      toolbar.focusNote();
    },
    onNavigateClick: (hit) => {
      if (slices.isOpen) void slices.locate([hit.point.x, hit.point.y, hit.point.z]);
    },
  });

  // ---- panels -------------------------------------------------------------------------------------
  const annotationsPanel = new AnnotationsPanel(ctx);
  const toolbar = new Toolbar(tools, () => state.canEdit, () => cameraSync.following, () => annotationsPanel.undo(), () => annotationsPanel.redo());
  viewportWrap.append(toolbar.strip, toolbar.hint);
  const chatPanel = new ChatPanel(ctx);
  const presencePanel = new PresencePanel(ctx);
  const scenePanel = new ScenePanel(ctx, models);
  const imagingPanel = new ImagingPanel({
    roomId,
    room: roomInfo,
    jobs,
    canEdit: () => state.canEdit,
    openSlices: (caseId, series, label) => void slices.open(caseId, series, label),
    cursor: () => slices.cursor(),
  });
  const designPanel = new DesignPanel({ ctx, roomId, room: roomInfo, jobs });
  const jobsPanel = new JobsPanel(jobs, (job) => state.you?.role === "owner" || jobs.startedHere(job.id));
  // The plan of the consultation: versions proposed from the visible models, approved by a surgeon
  // with their password; snapshots of the 3D view go to the room's record.
  const planEl = h("div", { class: "panel plan-panel", testid: "plan-panel" });
  const snapshotButton = h("button", { type: "button", testid: "snapshot-button" }, "Snapshot of the 3D view");
  const planMount = h("div");
  planEl.append(snapshotButton, planMount);
  const visibleModels = () => [...state.models.values()].filter((m) => m.visible);
  const planOptions = {
    roomId,
    canDecide: false, // set once we know the user is a surgeon (the server checks again, with the password)
    chosenArtifacts: () => visibleModels().map((m) => m.artifact_id).filter((id): id is string => Boolean(id)),
  };
  const planPanel = mountPlanPanel(planMount, planOptions);
  api
    .me()
    .then((me) => {
      planOptions.canDecide = me.role === "surgeon" && state.you?.role !== "observer";
      void planPanel.refresh();
    })
    .catch(() => undefined);
  snapshotButton.addEventListener("click", () => {
    viewport.renderNow();
    captureSnapshot(roomId, viewport.canvas, {
      kind: "view3d",
      camera: viewport.pose(),
      visibleModels: visibleModels().map((m) => ({ id: m.id, version: m.version })),
    })
      .then(() => toast("Snapshot added to the room's record"))
      .catch((err: Error) => toast(err.message, "error"));
  });
  const presenter = new PresenterControls(ctx, cameraSync);
  headerRight.append(presenter.el);
  const tabs = new SideTabs([
    { id: "annotations", label: "Annotations", el: annotationsPanel.el },
    { id: "chat", label: "Chat", el: chatPanel.el },
    { id: "scene", label: "Scene", el: scenePanel.el },
    { id: "imaging", label: "Imaging", el: imagingPanel.el, onShow: () => imagingPanel.show() },
    { id: "design", label: "Design", el: designPanel.el, onShow: () => designPanel.show() },
    { id: "jobs", label: "Jobs", el: jobsPanel.el },
    { id: "plan", label: "Plan", el: planEl, onShow: () => void planPanel.refresh() },
  ]);
  chatPanel.onUnread = () => tabs.markUnread("chat");
  // A maker room shows its site's printers live (state, job, progress, layer n/N, ETA, temperatures,
  // camera), its print jobs and its print quota.
  const unmountFleet = mountFleet({ socket, room: roomInfo, addTab: (el) => tabs.add({ id: "fleet", label: "Printers", el }, true) });
  side.append(presencePanel.el, tabs.el);
  cameraSync.onFollowChange = () => renderFollow();
  models.onLoaded = () => {
    scenePanel.render();
    designPanel.render();
    placeholderBadge.hidden = !models.showingPlaceholder;
    viewport.requestRender();
  };

  function renderAll(): void {
    title.textContent = state.room?.title || "Untitled room";
    document.title = `${title.textContent} — Trinity`;
    if (state.you?.role === "owner" && !headerRight.querySelector("[data-testid=invite-button]")) headerRight.append(inviteButton(roomId));
    models.sync(state.models.values());
    placeholderBadge.hidden = !models.showingPlaceholder;
    syncAnnotations();
    chatPanel.render();
    presencePanel.render();
    scenePanel.render();
    designPanel.render();
    presenter.render();
    toolbar.render();
    renderFollow();
    root.classList.toggle("read-only", !state.canEdit);
    viewport.requestRender();
  }

  function syncAnnotations(): void {
    if (ctx.selected && !state.annotations.has(ctx.selected)) ctx.selected = null;
    annotations3d.sync(state.annotations, (a) => a.color ?? state.colorOf(a.author));
    annotations3d.select(ctx.selected);
    annotationsPanel.render();
    designPanel.render(); // its plane, marker and trajectory choices
    viewport.requestRender();
  }

  function renderFollow(): void {
    const p = state.presenter;
    followBadge.hidden = !cameraSync.following;
    if (p) followBadge.textContent = `Following ${state.nameOf(p)}'s view`;
    presenter.render();
    toolbar.render();
  }

  function renderConnection(): void {
    const s = socket.status;
    statusPill.textContent = s === "online" ? "live" : s;
    statusPill.className = `status-pill ${s}`;
    const pending = socket.pendingOps;
    const showBanner = s === "reconnecting" || (s === "connecting" && socket.epoch !== null);
    banner.hidden = !showBanner;
    viewportWrap.classList.toggle("with-banner", showBanner);
    banner.textContent = `Reconnecting…${pending ? ` ${pending} change${pending === 1 ? "" : "s"} will be sent when the connection is back.` : ""}`;
  }

  // ---- socket events ------------------------------------------------------------------------------
  socket.on("status", renderConnection);
  socket.on("pending", renderConnection);
  socket.on("joined", (kind) => {
    if (activity.status() === "idle") sendPresence("idle"); // a new connection starts active
    renderAll();
    cameraSync.update(kind === "welcome");
    renderConnection();
    jobs.load().catch((err) => console.warn("could not list the room's jobs", err));
  });
  socket.on("job", (frame) => jobs.fromFrame(frame));
  socket.on("event", (e: EventFrame) => {
    if (e.kind.startsWith("annotation.")) syncAnnotations();
    else if (e.kind === "chat.message") chatPanel.onEvent(e);
    else if (e.kind === "presenter.changed") {
      presencePanel.render();
      cameraSync.update(false);
    } else if (e.kind.startsWith("scene.model.")) {
      models.sync(state.models.values());
      scenePanel.render();
      designPanel.render();
      placeholderBadge.hidden = !models.showingPlaceholder;
      viewport.requestRender();
    } else if (e.kind.startsWith("plan.")) {
      void planPanel.refresh();
    } else if (e.kind === "room.archived") {
      toast("The room has been archived; it is now read-only.");
      tools.setTool("select");
      renderAll();
    }
  });
  socket.on("presence", (p) => {
    if (p.status === "offline") pointers.remove(p.user);
    presencePanel.render();
  });
  socket.on("pointer", (p) => pointers.set(p.user, p.color, state.nameOf(p.user), p.point));
  socket.on("error", (e) => {
    console.warn("room error", e);
    if (e.code === "too_large") toast(e.message, "error");
  });
  socket.on("fatal", ({ code, reason }) => {
    if (!state.room) title.textContent = "Room unavailable";
    presenter.el.hidden = !state.room;
    fatal.hidden = false;
    fatal.replaceChildren(
      h("p", {}, CLOSE_REASONS[code] ?? `Disconnected (${code}${reason ? `: ${reason}` : ""}).`),
      h("a", { class: "btn primary", href: code === 4001 ? "#/login" : "#/rooms" }, code === 4001 ? "Log in" : "Back to my rooms"),
    );
    renderConnection();
  });

  // ---- outgoing: annotations and pointer ------------------------------------------------------------
  function createAnnotation(kind: AnnotationKind, data: AnnotationData): void {
    const id = `a-${randomId(8)}`;
    const payload: Record<string, unknown> = { id, kind, data };
    if (state.you?.color) payload.color = state.you.color;
    void ctx.op("annotation.create", payload).then((seq) => {
      if (seq !== null && state.annotations.has(id)) ctx.select(id);
    });
  }

  let pointerSent = 0;
  let pointerTimer: number | undefined;
  let pointerOnModel = false;
  let latestHit: SurfaceHit | null = null;
  // At most the server's pointer_max_hz (within the socket's rate budget); the latest position wins, and
  // one the socket had to drop for want of a token is sent again after the interval.
  function sendPointer(hit: SurfaceHit | null): void {
    latestHit = hit;
    if (!hit && !pointerOnModel) return;
    const interval = socket.intervals.pointerMs;
    const later = (wait: number) =>
      (pointerTimer ??= window.setTimeout(() => {
        pointerTimer = undefined;
        sendPointer(latestHit);
      }, wait));
    const wait = pointerSent + interval - performance.now();
    if (wait > 0) return void later(wait);
    const p = hit?.point;
    const frame = p ? { type: "pointer", point: [round(p.x), round(p.y), round(p.z)], ...(hit.modelId ? { model_id: hit.modelId } : {}) } : { type: "pointer", point: null };
    if (socket.send(frame)) {
      pointerSent = performance.now();
      pointerOnModel = hit !== null;
    } else if (socket.connected) later(interval);
  }

  // Presence is state, not a stream: a report dropped for want of a token is retried while still current.
  let presenceTimer: number | undefined;
  function sendPresence(status: "active" | "idle"): void {
    window.clearTimeout(presenceTimer);
    if (!socket.send({ type: "presence", status }) && socket.connected) {
      presenceTimer = window.setTimeout(() => sendPresence(status), 1000);
    }
  }

  // ---- keyboard, activity, test hook ----------------------------------------------------------------
  const removeShortcuts = installShortcuts({
    tool: (t) => toolbar.pick(t),
    escape: () => (tools.tool !== "select" && tools.step === 0 ? toolbar.pick("select") : tools.cancel()),
    undo: () => annotationsPanel.undo(),
    redo: () => annotationsPanel.redo(),
    deleteSelected: () => annotationsPanel.deleteSelected(),
    rename: () => annotationsPanel.editSelected(),
    focusChat: () => {
      tabs.show("chat");
      chatPanel.focus();
    },
  });
  const activity = trackActivity(sendPresence);
  (window as unknown as { __trinity?: unknown }).__trinity = { socket, state, viewport, tools, cameraSync, pointers, models, jobs, slices, cursor: cursor3d };

  const unmountVideo = mountVideo(socket, viewportWrap); // video: before the socket starts
  renderAll();
  renderConnection();
  socket.start();

  return () => {
    unmountFleet();
    unmountVideo(); // video
    socket.close();
    removeShortcuts();
    activity.stop();
    window.clearTimeout(pointerTimer);
    window.clearTimeout(presenceTimer);
    slices.close();
    pointers.dispose();
    viewport.dispose();
    root.classList.remove("room-root", "side-collapsed", "read-only");
    delete (window as unknown as { __trinity?: unknown }).__trinity;
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
